"""Slack Socket Mode: clicks arrive over a websocket the service opens to Slack, so a desk
behind a firewall needs no public URL (`MONITOR_SLACK_APP_TOKEN`, an `xapp-` token with
`connections:write`).

Every envelope is acknowledged at once (Slack redelivers unacknowledged ones), then the click
goes through the same `FeedbackDesk` as the request URL's: recorded once however often it
arrives, the message updated after.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from monitor.feedback import FeedbackDesk, parse_block_action
from monitor.feedback_web import answer_click
from monitor.logs import get_logger

if TYPE_CHECKING:
    from monitor.settings import Settings

log = get_logger(__name__)


class SocketListener:
    def __init__(self, settings: Settings, desk: FeedbackDesk) -> None:
        if settings.slack_app_token is None:
            raise ValueError("Socket Mode needs MONITOR_SLACK_APP_TOKEN")
        self.desk = desk
        base = settings.slack_api_url
        base = base if base.endswith("/") else base + "/"
        # The SDK's own logger would print the websocket URL (a short-lived secret) at DEBUG.
        quiet = logging.getLogger("monitor.socket_mode")
        quiet.setLevel(logging.WARNING)
        self.client = SocketModeClient(
            app_token=settings.slack_app_token.get_secret_value(),
            web_client=AsyncWebClient(base_url=base, timeout=int(max(1, settings.slack_timeout))),
            logger=quiet,
            ping_interval=10,
        )
        self.client.socket_mode_request_listeners.append(self._on_request)

    async def start(self) -> None:
        await self.client.connect()  # type: ignore[no-untyped-call]
        log.info("slack socket mode connected")

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.close()  # type: ignore[no-untyped-call]

    async def _on_request(
        self, client: AsyncBaseSocketModeClient, request: SocketModeRequest
    ) -> None:
        await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))
        if request.type != "interactive" or not isinstance(request.payload, dict):
            return
        click = parse_block_action(request.payload, "socket")
        if click is not None:
            await answer_click(self.desk, click)
