"""The listener's desk-feedback routes: Slack's interactivity request URL and email links.

* `POST /slack/actions`: every request is verified with `MONITOR_SLACK_SIGNING_SECRET`
  (HMAC-SHA256 of `v0:timestamp:body`, 5-minute window, constant-time compare, slack-sdk's
  `SignatureVerifier`); anything else is a 401 that says why. The click is recorded, the answer
  goes back at once, and the message is updated after (Slack wants an answer within 3 s).
* `GET /feedback/<token>`: a confirm page (a link scanner in a mail gateway fetching the link
  records nothing); `POST /feedback/<token>` records, once per link.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from aiohttp import web
from jinja2 import Environment
from slack_sdk.signature import SignatureVerifier

from monitor.clock import utcnow
from monitor.feedback import (
    UNDO,
    Click,
    FeedbackDesk,
    FeedbackRefused,
    LinkError,
    LinkSigner,
    parse_block_action,
)
from monitor.logs import get_logger
from monitor.model import FeedbackAction

if TYPE_CHECKING:
    from monitor.settings import Settings

log = get_logger(__name__)

ANSWER_DEADLINE_SECONDS = 2.5
MAX_BODY = 256 * 1024


class _Verifier(SignatureVerifier):
    """slack-sdk's verifier, with a malformed timestamp refused instead of raising."""

    def is_valid(self, body: str | bytes, timestamp: str | None, signature: str | None) -> bool:
        if timestamp is None or not timestamp.strip().isdigit():
            return False
        return bool(super().is_valid(body, timestamp, signature))


class FeedbackRoutes:
    def __init__(self, settings: Settings, desk: FeedbackDesk) -> None:
        self.settings = settings
        self.desk = desk
        secret = settings.slack_signing_secret
        self.verifier = _Verifier(secret.get_secret_value()) if secret is not None else None
        self.signer = (
            LinkSigner(
                settings.feedback_secret.get_secret_value(),
                settings.public_url or "",
                settings.feedback_link_hours,
            )
            if settings.email_feedback and settings.feedback_secret is not None
            else None
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/slack/actions", self.slack_actions),
            web.get("/feedback/{token}", self.link_page),
            web.post("/feedback/{token}", self.link_record),
        ]

    # --- Slack -----------------------------------------------------------------------------

    async def slack_actions(self, request: web.Request) -> web.Response:
        if self.verifier is None:
            raise web.HTTPNotFound(
                text="Slack interactivity is off: set MONITOR_SLACK_SIGNING_SECRET\n"
            )
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(body))
        timestamp = request.headers.get("X-Slack-Request-Timestamp")
        signature = request.headers.get("X-Slack-Signature")
        if not self.verifier.is_valid(body, timestamp, signature):
            log.warning("slack action refused: bad signature or stale timestamp")
            raise web.HTTPUnauthorized(
                text="invalid Slack request: the signature does not match "
                "MONITOR_SLACK_SIGNING_SECRET, or the timestamp is more than 5 minutes off\n"
            )
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            payload: Any = json.loads(form.get("payload", ["{}"])[0])
        except (UnicodeDecodeError, ValueError):
            raise web.HTTPBadRequest(text="expected a form field 'payload' with JSON\n") from None
        if not isinstance(payload, dict):
            raise web.HTTPBadRequest(text="payload must be a JSON object\n")
        click = parse_block_action(payload, "slack")
        if click is None:
            return web.Response(status=200)
        await answer_click(self.desk, click)
        return web.Response(status=200)

    # --- email links ---------------------------------------------------------------------------

    def _claim(self, request: web.Request) -> Any:
        if self.signer is None:
            raise web.HTTPNotFound(
                text="email feedback is off: set MONITOR_PUBLIC_URL and MONITOR_FEEDBACK_SECRET\n"
            )
        try:
            return self.signer.verify(request.match_info["token"], utcnow())
        except LinkError as exc:
            raise _page(str(exc), status=400 if "valid" in str(exc) else 410) from None

    async def link_page(self, request: web.Request) -> web.Response:
        claim = self._claim(request)
        what = _describe(claim.action)
        html = _ENV.from_string(_CONFIRM).render(what=what, alert=claim.alert_id)
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def link_record(self, request: web.Request) -> web.Response:
        claim = self._claim(request)
        assert self.signer is not None
        target = await asyncio.to_thread(_target, self.desk, claim.alert_id)
        who = target.destination if target is not None else "email"
        click = Click(
            alert_id=claim.alert_id,
            action=claim.action,
            feedback_id=claim.feedback_id,
            user_id=who,
            user_name=who,
            request_key=claim.request_key,
            via="email",
        )
        try:
            outcome = await self.desk.handle(click)
        except FeedbackRefused as exc:
            raise _page(str(exc), status=exc.status) from None
        if outcome.duplicate:
            raise _page("This link was already used; each link records once.", status=409)
        undo = None
        if outcome.changed and outcome.item is not None and claim.action != UNDO:
            undo = self.signer.token(claim.alert_id, UNDO, utcnow(), outcome.item.id)
        html = _ENV.from_string(_DONE).render(text=outcome.text, undo=undo)
        return web.Response(text=html, content_type="text/html", charset="utf-8")


async def answer_click(desk: FeedbackDesk, click: Click) -> None:
    """Wait for the click to be recorded, but never past the answer deadline: the caller then
    answers 200 (never a 5xx: Slack would show the click as failed and retry it). A slow
    record is not abandoned: it goes on after the answer, and the message update or the
    ephemeral note to the clicker follows it (`FeedbackDesk.respond`)."""
    task = asyncio.create_task(desk.respond(click))
    desk.track(task)
    done, _ = await asyncio.wait({task}, timeout=ANSWER_DEADLINE_SECONDS)
    if not done:
        log.warning(
            "slack action answered before it was recorded; recording goes on",
            alert=click.alert_id,
            seconds=ANSWER_DEADLINE_SECONDS,
        )


def _target(desk: FeedbackDesk, alert_id: int) -> Any:
    from monitor.store import feedback as store

    return store.alert_target(desk.engine, alert_id)


def _describe(action: str) -> str:
    if action == UNDO:
        return "take back your earlier feedback"
    try:
        return {
            FeedbackAction.RELEVANT: "mark this alert relevant",
            FeedbackAction.NOT_RELEVANT: "mark this alert not relevant",
            FeedbackAction.MUTE: "mute this story (no more updates or copies of it)",
        }[FeedbackAction(action)]
    except ValueError:
        raise _page("This link is not valid.", status=400) from None


def _page(text: str, *, status: int) -> web.HTTPException:
    """A clear HTML page for a refused link (tampered, expired, already used, unknown)."""
    html = _ENV.from_string(_ERROR).render(text=text)
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
        410: web.HTTPGone,
    }
    return classes.get(status, web.HTTPBadRequest)(text=html, content_type="text/html")


def register(app: web.Application, settings: Settings, desk: FeedbackDesk | None) -> None:
    """Add the feedback routes to the listener (called from monitor/web.py)."""
    if desk is None:
        return
    app.add_routes(FeedbackRoutes(settings, desk).routes())


_ENV = Environment(autoescape=True)
_HEAD = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>monitor feedback</title></head>'
    '<body style="font-family:sans-serif;max-width:36em;margin:2em auto;">'
)
_CONFIRM = (
    _HEAD + "<h2>Confirm</h2><p>You are about to {{ what }} (alert {{ alert }}).</p>"
    '<form method="post"><button type="submit">Confirm</button></form></body></html>'
)
_DONE = (
    _HEAD + "<h2>Thank you</h2><p>{{ text }}</p>"
    '{% if undo %}<form method="post" action="/feedback/{{ undo }}">'
    '<button type="submit">Undo</button></form>{% endif %}</body></html>'
)
_ERROR = _HEAD + "<h2>Sorry</h2><p>{{ text }}</p></body></html>"
