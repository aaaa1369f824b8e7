"""Slack: bot token + chat.postMessage (threads, metadata reconciliation), or incoming webhooks.

No SDK retries on chat.postMessage (`retry_handlers=[]`): a reset after Slack accepted the
message would be re-posted blindly. The outbox retries instead, and a row whose earlier attempt
may have landed is first looked up by the alert id carried in the message metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from monitor.logs import get_logger
from monitor.model import AlertKind
from monitor.notify import DeliveryError, Outgoing
from monitor.render import AlertContent, SlackFeedback, render_slack

log = get_logger(__name__)

EVENT_TYPE = "monitor_alert"
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
# ok:false errors that no retry can fix: dead at once, with the reason.
PERMANENT = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "invalid_blocks",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "no_text",
        "too_many_attachments",
        "restricted_action",
        "cannot_reply_to_message",
    }
)
CONFIG = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "team_access_not_granted",
    }
)


def _host(url: str) -> str:
    """host[:port] of a URL, never its credentials or path (a breaker key is shown on /status)."""
    parts = urlsplit(url)
    host = parts.hostname or "slack"
    return f"{host}:{parts.port}" if parts.port else host


def split_ref(ref: str) -> tuple[str, str]:
    """A stored Slack reference "CHANNEL TS" → (channel, ts)."""
    channel, _, ts = ref.partition(" ")
    return channel, ts


def _retry_after(headers: Any, default: float = 1.0) -> float:
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
        return max(0.0, float(value)) if value is not None else default
    except (TypeError, ValueError, AttributeError):
        return default


def classify_api_error(exc: SlackApiError) -> DeliveryError:
    """SlackApiError (ok:false or an HTTP error status) → DeliveryError."""
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    error = str(data.get("error", "")) if isinstance(data, dict) else ""
    if status == 429 or error == "ratelimited":
        retry = _retry_after(getattr(response, "headers", {}) or {})
        return DeliveryError(
            "rate_limited", "Slack rate limit (429)", transient=True, retry_after=retry
        )
    if status >= 500:
        wait = _retry_after(getattr(response, "headers", {}) or {}, default=0.0) or None
        # Slack may have stored the message before failing: reconcile before posting again.
        return DeliveryError(
            "server_error",
            f"Slack HTTP {status}",
            transient=True,
            retry_after=wait,
            ambiguous=True,
        )
    if error in CONFIG:
        return DeliveryError(
            "config",
            f"Slack error {error}: check MONITOR_SLACK_BOT_TOKEN and the app's scopes",
            transient=False,
        )
    if error in PERMANENT:
        return DeliveryError("rejected", f"Slack error {error}", transient=False)
    if error:
        return DeliveryError("rejected", f"Slack error {error}", transient=True)
    return DeliveryError(
        "server_error", f"Slack HTTP {status} without an answer", transient=True, ambiguous=True
    )


def classify_transport_error(exc: BaseException) -> DeliveryError:
    """Network failures: before the request went out (safe) or after (maybe delivered)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return DeliveryError(
            "connection", f"cannot connect to Slack ({type(exc).__name__})", transient=True
        )
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return DeliveryError(
            "timeout", "no answer from Slack in time", transient=True, ambiguous=True
        )
    return DeliveryError(
        "dropped",
        f"connection to Slack lost ({type(exc).__name__})",
        transient=True,
        ambiguous=True,
    )


class SlackNotifier:
    """Bot-token mode: threads, metadata, reconciliation through conversations.history."""

    channel = "slack"

    def __init__(
        self, token: str, *, base_url: str, timeout: float = 10.0, feedback_buttons: bool = False
    ) -> None:
        self.feedback_buttons = feedback_buttons
        base = base_url if base_url.endswith("/") else base_url + "/"
        # An outage takes the whole API host down, whatever the channel: one breaker for all.
        self.target: str | None = f"slack:{_host(base)}"
        self._post = AsyncWebClient(
            token=token, base_url=base, timeout=int(max(1, timeout)), retry_handlers=[]
        )
        self._read = AsyncWebClient(
            token=token,
            base_url=base,
            timeout=int(max(1, timeout)),
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(),
                AsyncRateLimitErrorRetryHandler(max_retry_count=1),
            ],
        )
        self.timeout = timeout
        self._ids: dict[str, str] = {}
        api = urlsplit(base)
        self._origin = (api.scheme, api.netloc)

    async def send(self, message: Outgoing) -> str:
        feedback = None
        if self.feedback_buttons and message.content.kind in (AlertKind.ALERT, AlertKind.UPDATE):
            feedback = SlackFeedback(message.alert_id)
        rendered = render_slack(message.content, feedback)
        thread_ts = None
        if message.thread_ref:
            _channel, thread_ts = split_ref(message.thread_ref)
        kwargs: dict[str, Any] = {
            "channel": message.destination,
            "text": rendered.text,
            "blocks": rendered.blocks,
            "unfurl_links": False,
            "unfurl_media": False,
            "link_names": False,
            "parse": "none",
            "metadata": {
                "event_type": EVENT_TYPE,
                "event_payload": {
                    "alert_id": str(message.alert_id),
                    "key": message.dedup_key[:200],
                },
            },
        }
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        try:
            async with asyncio.timeout(self.timeout + 2):
                response = await self._post.chat_postMessage(**kwargs)
        except SlackApiError as exc:
            raise classify_api_error(exc) from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise classify_transport_error(exc) from None
        channel = str(response.get("channel") or message.destination)
        return f"{channel} {response.get('ts')}"

    async def update_message(
        self, ref: str, content: AlertContent, feedback: SlackFeedback
    ) -> None:
        """chat.update of a sent alert (the desk's feedback changed what it shows)."""
        channel, ts = split_ref(ref)
        rendered = render_slack(content, feedback)
        try:
            async with asyncio.timeout(self.timeout * 2 + 2):
                await self._read.chat_update(
                    channel=channel,
                    ts=ts,
                    text=rendered.text,
                    blocks=rendered.blocks,
                    link_names=False,
                    parse="none",
                )
        except SlackApiError as exc:
            raise classify_api_error(exc) from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise classify_transport_error(exc) from None

    def _may_post_to(self, response_url: str) -> bool:
        """A click's `response_url` is Slack's (`https://hooks.slack.com/…`) or on the API host
        we were configured with (a proxy, the test stand-in); anything else is not followed,
        whoever put it in the payload."""
        parts = urlsplit(response_url)
        if parts.scheme == "https" and parts.hostname == "hooks.slack.com":
            return True
        return (parts.scheme, parts.netloc) == self._origin

    async def tell(
        self, text: str, *, user: str, channel: str | None, response_url: str | None
    ) -> str | None:
        """An ephemeral note to the one person who clicked (only they see it): through the
        click's `response_url`, else chat.postEphemeral. Returns how it went, None if not."""
        try:
            async with asyncio.timeout(self.timeout + 2):
                if response_url and self._may_post_to(response_url):
                    hook = AsyncWebhookClient(
                        response_url, timeout=int(max(1, self.timeout)), retry_handlers=[]
                    )
                    answer = await hook.send(
                        text=text, response_type="ephemeral", replace_original=False
                    )
                    if answer.status_code < 300:
                        return "response_url"
                    log.warning("slack response_url refused", status=answer.status_code)
                if channel and user:
                    await self._read.chat_postEphemeral(channel=channel, user=user, text=text)
                    return "chat.postEphemeral"
        except (SlackApiError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("slack ephemeral note not sent", error=str(exc)[:300])
        return None

    async def check(self) -> str | None:
        """auth.test: None when the token works, else what to fix (for start-up checks)."""
        try:
            async with asyncio.timeout(self.timeout + 2):
                await self._read.auth_test()
        except SlackApiError as exc:
            return classify_api_error(exc).reason
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return classify_transport_error(exc).reason
        return None

    async def channel_id(self, channel: str) -> str | None:
        """Reads need a channel id; names are resolved once with conversations.list."""
        name = channel.lstrip("#")
        if _CHANNEL_ID.fullmatch(name):
            return name
        if name in self._ids:
            return self._ids[name]
        cursor: str | None = None
        for _page in range(50):
            args: dict[str, Any] = {
                "types": "public_channel,private_channel",
                "exclude_archived": True,
                "limit": 1000,
            }
            if cursor:
                args["cursor"] = cursor
            response = await self._read.conversations_list(**args)
            for item in response.get("channels") or []:
                self._ids[str(item.get("name"))] = str(item.get("id"))
            if name in self._ids:
                return self._ids[name]
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return None

    async def find_sent(self, message: Outgoing, since_epoch: float) -> str | None:
        """Look for this alert id in the channel (or the thread) since the earlier attempt.

        Reads need the channel id: the one Slack answered an earlier post with, the thread's,
        or a name resolved with conversations.list. A name that cannot be resolved is tried as
        given; if Slack does not know it, nothing can be compared and the alert is posted.
        """
        wanted = str(message.alert_id)
        thread_ts = split_ref(message.thread_ref)[1] if message.thread_ref else None
        try:
            async with asyncio.timeout(self.timeout * 3):
                channel = (
                    split_ref(message.thread_ref)[0]
                    if message.thread_ref
                    else message.channel_ref or await self._resolve(message.destination)
                )
                by_name = channel is None
                channel = channel or message.destination
                try:
                    return await self._scan(channel, thread_ts, since_epoch, wanted)
                except SlackApiError as exc:
                    error = classify_api_error(exc)
                    if by_name and "channel_not_found" in error.reason:
                        log.warning(
                            "cannot reconcile: channel name unknown to Slack reads; posting",
                            channel=message.destination,
                        )
                        return None
                    if not error.transient:
                        raise error from None
                    raise DeliveryError(
                        error.kind,
                        f"reconciling: {error.reason}",
                        transient=True,
                        retry_after=error.retry_after,
                        ambiguous=True,
                    ) from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            error = classify_transport_error(exc)
            # A failed look-up proves nothing: keep the row marked and look again later.
            raise DeliveryError(
                error.kind, f"reconciling: {error.reason}", transient=True, ambiguous=True
            ) from None

    async def _resolve(self, channel: str) -> str | None:
        try:
            return await self.channel_id(channel)
        except SlackApiError as exc:
            log.warning(
                "cannot resolve a Slack channel name (needs channels:read); use channel ids",
                channel=channel,
                error=classify_api_error(exc).reason,
            )
            return None

    async def _scan(
        self, channel: str, thread_ts: str | None, since_epoch: float, wanted: str
    ) -> str | None:
        cursor: str | None = None
        for _page in range(10):
            args: dict[str, Any] = {
                "channel": channel,
                "oldest": f"{since_epoch:.6f}",
                "include_all_metadata": True,
                "limit": 200,
            }
            if cursor:
                args["cursor"] = cursor
            if thread_ts:
                args["ts"] = thread_ts
                response = await self._read.conversations_replies(**args)
            else:
                response = await self._read.conversations_history(**args)
            for item in response.get("messages") or []:
                meta = item.get("metadata") or {}
                payload = meta.get("event_payload") or {}
                if meta.get("event_type") == EVENT_TYPE and str(payload.get("alert_id")) == wanted:
                    return f"{channel} {item['ts']}"
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return None
        return None

    async def aclose(self) -> None:
        for client in (self._post, self._read):
            session = getattr(client, "session", None)
            if session is not None:
                with contextlib.suppress(Exception):
                    await session.close()


class WebhookNotifier:
    """Incoming-webhook mode: one fixed channel, no threads, no metadata, no reconciliation."""

    channel = "slack"

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self._client = AsyncWebhookClient(url, timeout=int(max(1, timeout)), retry_handlers=[])
        # The host only: the webhook's path is its secret.
        self.target: str | None = f"slack-webhook:{_host(url)}"
        self.timeout = timeout

    async def send(self, message: Outgoing) -> str:
        rendered = render_slack(message.content)
        try:
            async with asyncio.timeout(self.timeout + 2):
                response = await self._client.send(
                    text=rendered.text,
                    blocks=rendered.blocks,
                    unfurl_links=False,
                    unfurl_media=False,
                )
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise classify_transport_error(exc) from None
        status = int(response.status_code)
        body = str(response.body or "")
        if status == 200:
            return "webhook"
        if status == 429:
            raise DeliveryError(
                "rate_limited",
                "Slack webhook rate limit (429)",
                transient=True,
                retry_after=_retry_after(response.headers or {}),
            )
        if status >= 500:
            raise DeliveryError(
                "server_error", f"Slack webhook HTTP {status}", transient=True, ambiguous=True
            )
        if status in (403, 404, 410) or body in ("no_service", "invalid_token", "no_team"):
            raise DeliveryError(
                "config",
                f"Slack webhook refused ({status} {body[:60]}): check MONITOR_SLACK_WEBHOOK_URL",
                transient=False,
            )
        raise DeliveryError("rejected", f"Slack webhook HTTP {status} {body[:60]}", transient=False)

    async def find_sent(self, message: Outgoing, since_epoch: float) -> str | None:
        return None  # webhooks return no message reference: at-least-once only

    async def aclose(self) -> None:
        session = getattr(self._client, "session", None)
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close()
