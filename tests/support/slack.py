"""A Slack Web API stand-in on 127.0.0.1 for the multi-process tests: it records every post.

It answers what the dispatcher calls (`auth.test`, `chat.postMessage`, `conversations.history`
for reconciliation by message metadata) the way Slack does (`{"ok": true, …}`, HTTP 200), keeps
messages per channel with their `ts`, and notes when each arrived so latency can be measured.
Runs on its own thread like tests/support/publisher.py so subprocess replicas can reach it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from aiohttp import web


class SlackStandIn:
    def __init__(self, token: str = "xoxb-test-token-0000") -> None:
        self.token = token
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []
        self._serial = 0
        self.calls: list[str] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def posted(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self._messages]

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(dict(await request.post()))
        return params

    async def _method(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.calls.append(method)
        auth = request.headers.get("Authorization", "")
        params = await self._params(request)
        if auth != f"Bearer {self.token}" and params.get("token") != self.token:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if method == "auth.test":
            return web.json_response({"ok": True, "team_id": "T0", "user_id": "U0", "bot_id": "B0"})
        if method == "chat.postMessage":
            return web.json_response(self._post(params))
        if method == "conversations.history":
            return web.json_response(self._history(params))
        if method == "conversations.replies":
            return web.json_response(self._history(params, thread=str(params.get("ts", ""))))
        if method == "conversations.join":
            return web.json_response({"ok": True, "channel": {"id": params.get("channel")}})
        return web.json_response({"ok": False, "error": "unknown_method"})

    def _post(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel", ""))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        metadata = params.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        blocks = params.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        with self._lock:
            self._serial += 1
            ts = f"{int(time.time())}.{self._serial:06d}"
            message = {
                "channel": channel,
                "ts": ts,
                "text": str(params.get("text", "")),
                "blocks": blocks,
                "metadata": metadata,
                "thread_ts": params.get("thread_ts"),
                "received_at": time.time(),
            }
            self._messages.append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": message["text"]}}

    def _history(self, params: dict[str, Any], thread: str | None = None) -> dict[str, Any]:
        channel = str(params.get("channel", ""))
        oldest = float(params.get("oldest", 0) or 0)
        with self._lock:
            found = [
                {
                    "type": "message",
                    "ts": m["ts"],
                    "text": m["text"],
                    **({"metadata": m["metadata"]} if m["metadata"] else {}),
                }
                for m in reversed(self._messages)
                if m["channel"] == channel
                and float(m["ts"]) >= oldest
                and (thread is None or thread in (m["ts"], m["thread_ts"]))
            ]
        return {"ok": True, "messages": found, "has_more": False}

    def start(self) -> SlackStandIn:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_route("*", "/api/{method}", self._method)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = int(runner.addresses[0][1])
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="slack-stand-in", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Slack stand-in did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
