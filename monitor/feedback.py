"""Desk feedback: a click on an alert's button (Slack) or link (email) becomes one feedback item.

Record first, then show: `FeedbackDesk.act` writes the item in one short transaction (idempotent
on Slack's retries, double clicks and two replicas handed the same click: see
monitor/store/feedback.py) and says whether anything changed; only a change updates the Slack
message, once, after the click has been answered (`refresh`).

Email links are signed per alert and action and expire (`LinkSigner`); each link records once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitor.clock import utcnow
from monitor.logs import get_logger
from monitor.model import Channel, FeedbackAction
from monitor.relevance.examples import Example
from monitor.render import ACTION_PREFIX, AlertContent, FeedbackLink, FeedbackMark, SlackFeedback
from monitor.store import feedback as store
from monitor.store.db import Engine
from monitor.store.feedback import AlertTarget, FeedbackItem, LabelledArticle

log = get_logger(__name__)

UNDO = "undo"
VERBS = {
    FeedbackAction.RELEVANT: "marked relevant",
    FeedbackAction.NOT_RELEVANT: "marked not relevant",
    FeedbackAction.MUTE: "muted the story",
}


class FeedbackRefused(Exception):
    """A click or link that records nothing; the message is for the person who clicked
    (an ephemeral note in Slack, the page of an email link, with `status`)."""

    def __init__(self, text: str, status: int = 404) -> None:
        super().__init__(text)
        self.status = status


READ_ONLY = (
    "This monitor replica runs in dry-run mode (read-only): your click was not recorded. "
    "Ask an admin to point Slack at a replica that is not a dry run."
)
NOT_RECORDED = (
    "monitor could not record your click just now (its database did not answer); "
    "please try again in a minute."
)


@dataclass(frozen=True, slots=True)
class Click:
    """One button press, whatever path it came by."""

    alert_id: int
    action: str  # a FeedbackAction value, or "undo"
    feedback_id: int | None  # undo: the item to take back
    user_id: str
    user_name: str
    request_key: str  # the same for every delivery of the same press
    via: str  # slack, socket, email
    response_url: str | None = None  # Slack: where an ephemeral note to the clicker goes
    channel_id: str | None = None  # Slack: the channel of the message (chat.postEphemeral)


@dataclass(frozen=True, slots=True)
class Outcome:
    changed: bool
    text: str  # what to tell the person
    alert_id: int
    item: FeedbackItem | None = None
    duplicate: bool = False  # this very request was recorded before (a retry, a reused link)
    # Unchanged because something else is in effect: another person's mark, or a different
    # mark of one's own (a press on a stale copy of the message). Worth telling the clicker.
    conflict: bool = False


def parse_block_action(payload: dict[str, Any], via: str) -> Click | None:
    """A Slack `block_actions` payload → the click on one of our buttons (None: not ours)."""
    if payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions") or []
    if not actions or not isinstance(actions[0], dict):
        return None
    action = actions[0]
    action_id = str(action.get("action_id") or "")
    if not action_id.startswith(ACTION_PREFIX):
        return None
    name = action_id.removeprefix(ACTION_PREFIX)
    if name == "unmute":
        name = UNDO
    if name != UNDO and name not in FeedbackAction.__members__.values():
        return None
    value = str(action.get("value") or "")
    alert_part, _, fb_part = value.partition(":")
    if not alert_part.isdigit() or (name == UNDO and not fb_part.isdigit()):
        return None
    user = payload.get("user") or {}
    user_id = str(user.get("id") or "")
    user_name = str(user.get("username") or user.get("name") or user_id)
    # Slack sends the same action_ts on a retry of the same press; a second press has its own.
    stamp = str(action.get("action_ts") or payload.get("trigger_id") or "")
    channel = payload.get("channel") or {}
    container = payload.get("container") or {}
    channel_id = str(channel.get("id") or container.get("channel_id") or "") or None
    return Click(
        alert_id=int(alert_part),
        action=name,
        feedback_id=int(fb_part) if fb_part else None,
        user_id=user_id,
        user_name=user_name,
        request_key=f"slack:{user_id}:{action_id}:{value}:{stamp}"[:200],
        via=via,
        response_url=str(payload.get("response_url") or "") or None,
        channel_id=channel_id,
    )


class FeedbackDesk:
    """Records clicks and keeps the alert messages in step. Shared by both Slack paths and
    the email links; replicas share everything through the database."""

    def __init__(
        self, engine: Engine, slack: Any | None = None, *, read_only: bool = False
    ) -> None:
        self.engine = engine
        self.slack = slack  # a SlackNotifier (has update_message and tell), or None
        self.read_only = read_only  # a dry-run replica records nothing
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- recording (synchronous: run it in a thread) -----------------------------------------

    def act(self, click: Click, *, now: datetime | None = None) -> Outcome:
        now = now or utcnow()
        if self.read_only:
            raise FeedbackRefused(READ_ONLY, status=403)
        target = store.alert_target(self.engine, click.alert_id)
        if target is None:
            raise FeedbackRefused("This alert is not known to monitor (it may have been removed).")
        if not target.takes_feedback:
            raise FeedbackRefused("Only single-article alerts take feedback.")
        if click.action == UNDO:
            return self._undo(target, click, now)
        action = FeedbackAction(click.action)
        recorded = store.record(
            self.engine,
            target,
            action,
            user_id=click.user_id,
            user_name=click.user_name,
            via=click.via,
            request_key=click.request_key,
            now=now,
        )
        item = recorded.item
        if recorded.created:
            log.info(
                "feedback recorded",
                feedback=item.id,
                alert=target.id,
                watchlist=target.watchlist_id,
                action=str(action),
                via=click.via,
            )
            return Outcome(True, f"{VERBS[action].capitalize()}.", target.id, item)
        if recorded.duplicate_request:
            return Outcome(False, "Already recorded.", target.id, item, duplicate=True)
        who = item.user_name or item.user_id or "someone"
        other = item.user_id != click.user_id or item.action != action
        text = f"Already {VERBS[item.action]} by {'@' + who if click.via != 'email' else who}."
        return Outcome(False, text, target.id, item, conflict=other)

    def _undo(self, target: AlertTarget, click: Click, now: datetime) -> Outcome:
        current = store.get(self.engine, click.feedback_id or 0)
        if (
            current is None
            or (current.alert_id != target.id
            and not (current.action == FeedbackAction.MUTE and current.story_id == target.story_id))
        ):
            raise FeedbackRefused("There is nothing to undo on this alert.")
        item = store.undo(self.engine, current.id, by=click.user_name or click.user_id, now=now)
        if item is None:
            fresh = store.get(self.engine, current.id) or current
            by = fresh.undone_by or fresh.rejected_by or ""
            other = by not in (click.user_name, click.user_id)
            text = f"Already undone by {by}." if by and other else "Already undone."
            return Outcome(False, text, target.id, fresh, conflict=other)
        log.info("feedback undone", feedback=item.id, alert=target.id, via=click.via)
        return Outcome(True, "Undone.", target.id, item)

    # --- showing ------------------------------------------------------------------------------

    def slack_feedback(self, alert_id: int) -> SlackFeedback:
        marks = tuple(
            FeedbackMark(item.id, str(item.action), item.user_name or item.user_id)
            for item in store.active_for_alert(self.engine, alert_id)
        )
        return SlackFeedback(alert_id, marks)

    async def refresh(self, alert_id: int) -> bool:
        """chat.update the alert's Slack message to show what is in effect now."""
        if self.slack is None or not hasattr(self.slack, "update_message"):
            return False
        target = await asyncio.to_thread(store.alert_target, self.engine, alert_id)
        if target is None or target.channel != Channel.SLACK or not target.provider_ref:
            return False
        feedback = await asyncio.to_thread(self.slack_feedback, alert_id)
        content = AlertContent.from_json(target.payload_json)
        try:
            await self.slack.update_message(target.provider_ref, content, feedback)
        except Exception as exc:  # the item is recorded; only its display failed
            log.warning(
                "feedback recorded but the message was not updated",
                alert=alert_id,
                error=str(exc)[:300],
            )
            return False
        return True

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep a follow-up task alive until it ends (`drain` waits for them)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def refresh_later(self, alert_id: int) -> None:
        """Update the message after the click was answered (Slack wants an answer in 3 s)."""
        self.track(asyncio.create_task(self._refresh_quietly(alert_id)))

    def tell_later(self, click: Click, text: str) -> None:
        """An ephemeral note to the person who clicked, after the click was answered: a click
        that cannot be honoured is never met with silence."""
        if self.slack is None or not hasattr(self.slack, "tell") or click.via == "email":
            return
        self.track(asyncio.create_task(self._tell(click, text)))

    async def _tell(self, click: Click, text: str) -> None:
        slack = self.slack
        assert slack is not None
        how = await slack.tell(
            text, user=click.user_id, channel=click.channel_id, response_url=click.response_url
        )
        log.info("slack note to the clicker", alert=click.alert_id, sent=how or "no")

    async def _refresh_quietly(self, alert_id: int) -> None:
        await self.refresh(alert_id)

    async def handle(self, click: Click) -> Outcome:
        """Record (in a thread), then schedule the message update when something changed."""
        outcome = await asyncio.to_thread(self.act, click)
        if outcome.changed:
            self.refresh_later(outcome.alert_id)
        return outcome

    async def respond(self, click: Click) -> Outcome | None:
        """A Slack click end to end: record it; then update the message when something
        changed, or tell the clicker why nothing did (unknown alert, already marked by
        someone else, a read-only replica, the database down). A retry of a click already
        recorded, or a person's own second press, stays quiet."""
        started = time.monotonic()
        try:
            outcome = await self.handle(click)
        except FeedbackRefused as exc:
            log.warning("slack action refused", alert=click.alert_id, reason=str(exc))
            self.tell_later(click, str(exc))
            return None
        except Exception as exc:
            log.error(
                "slack action not recorded", alert=click.alert_id, error=str(exc)[:300]
            )
            self.tell_later(click, NOT_RECORDED)
            return None
        if not outcome.changed and not outcome.duplicate and outcome.conflict:
            self.tell_later(click, outcome.text)
        log.info(
            "slack action",
            alert=click.alert_id,
            action=click.action,
            changed=outcome.changed,
            seconds=round(time.monotonic() - started, 3),
        )
        return outcome

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


# --------------------------------------------------------------------------- email links

EMAIL_ACTIONS = (
    (FeedbackAction.RELEVANT, "Relevant"),
    (FeedbackAction.NOT_RELEVANT, "Not relevant"),
    (FeedbackAction.MUTE, "Mute story"),
)


@dataclass(frozen=True, slots=True)
class LinkClaim:
    alert_id: int
    action: str  # a FeedbackAction value, or "undo"
    feedback_id: int | None
    expires: datetime
    token: str

    @property
    def request_key(self) -> str:
        return "email:" + hashlib.sha256(self.token.encode()).hexdigest()[:40]


class LinkError(Exception):
    """A link that is tampered with, expired or malformed; the text says which."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    """`<public url>/feedback/<token>`; the token is the claim and an HMAC-SHA256 of it."""

    def __init__(self, secret: str, public_url: str, hours: float) -> None:
        self._key = hashlib.sha256(b"monitor-feedback-links\x00" + secret.encode()).digest()
        self.base = public_url.rstrip("/")
        self.hours = hours

    def token(
        self, alert_id: int, action: str, now: datetime, feedback_id: int | None = None
    ) -> str:
        expires = int((now + timedelta(hours=self.hours)).timestamp())
        claim = {"a": alert_id, "x": action, "e": expires}
        if feedback_id is not None:
            claim["f"] = feedback_id
        body = _b64(json.dumps(claim, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def links(self, alert_id: int, now: datetime) -> tuple[FeedbackLink, ...]:
        return tuple(
            FeedbackLink(label, f"{self.base}/feedback/{self.token(alert_id, action, now)}")
            for action, label in EMAIL_ACTIONS
        )

    def verify(self, token: str, now: datetime) -> LinkClaim:
        body, _, signature = token.partition(".")
        if (
            not body
            or not signature
            or not hmac.compare_digest(self._sign(body).encode(), signature.encode())
        ):
            raise LinkError("This link is not valid: it was changed or is incomplete.")
        try:
            claim = json.loads(_unb64(body))
            alert_id, action, expires = int(claim["a"]), str(claim["x"]), int(claim["e"])
            feedback_id = int(claim["f"]) if "f" in claim else None
        except (ValueError, KeyError, TypeError) as exc:
            raise LinkError("This link is not valid.") from exc
        when = datetime.fromtimestamp(expires, tz=now.tzinfo)
        if now >= when:
            raise LinkError("This link has expired; use the buttons of a newer alert.")
        return LinkClaim(alert_id, action, feedback_id, when, token)


# --------------------------------------------------------------------------- examples


def feedback_examples(labelled: Sequence[LabelledArticle]) -> list[Example]:
    return [
        Example(
            id=f"feedback-{item.feedback_id}",
            article=item.article,
            relevant=item.relevant,
            note=f"desk feedback by {item.user_name or 'someone'}",
            origin=f"feedback:{item.feedback_id}",
        )
        for item in labelled
    ]


def merge_examples(files: Sequence[Example], labelled: Sequence[LabelledArticle]) -> list[Example]:
    """The examples file plus the desk's labels. The desk wins where both judge one article
    (same URL or same text): its label is the newer, first-hand judgement; committing the
    export beside the watchlist makes it permanent, and rejecting it restores the file's."""
    desk = feedback_examples(labelled)
    urls = {e.article.url for e in desk if e.article.url}
    hashes = {e.article.content_hash for e in desk}
    kept = [
        e
        for e in files
        if not (e.article.url and e.article.url in urls) and e.article.content_hash not in hashes
    ]
    return [*kept, *desk]


def export_line(item: LabelledArticle) -> dict[str, Any]:
    """One examples-file line (the `monitor articles list --format jsonl` shape + label)."""
    a = item.article
    return {
        "id": f"feedback-{item.feedback_id}",
        "source": a.source_id,
        "url": a.url,
        "title": a.title,
        "summary": a.text,
        "published": a.published.isoformat() if a.published else None,
        "first_seen": item.first_seen.isoformat(),
        "content_hash": a.content_hash,
        "relevant": item.relevant,
        "note": f"desk feedback by {item.user_name or 'someone'} on "
        f"{item.created_at.strftime('%Y-%m-%d')}",
    }
