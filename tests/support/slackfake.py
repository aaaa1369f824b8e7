"""A local Slack Web API stand-in: chat.postMessage, chat.update, conversations.history/replies,
auth.test, and interactivity: signed `block_actions` payloads sent to a service's
`/slack/actions` (`click`), Socket Mode (`apps.connections.open` → a local websocket that
delivers envelopes and records acks: `socket_click`), and the notes only the clicker sees
(each payload's `response_url`, and chat.postEphemeral: `ephemerals`).

It stores messages with their metadata and thread, records every request, and can be told to
misbehave on the next calls of a method: answer 429 with Retry-After, 500 (before or after
storing the message), ok:false with an error, hang, or drop the connection after storing the
message (the ambiguous case reconciliation exists for). `down()` stops listening, so
connections are refused (an outage), and `up()` listens on the same port again. It runs its own
event loop on a thread, so synchronous tests, asyncio tests and `monitor run` subprocesses all
reach it by URL. `clock` gives message timestamps (a test's scaled clock: reconciliation compares
them with the dispatcher's times); `on_post` runs after a message is stored, before the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web


@dataclass
class Fault:
    """What to do instead of (or after) the normal answer."""

    action: str  # "429", "500", "500_after_store", "error", "hang", "hang_after_store",
    #              "drop_after_store", "drop"
    retry_after: float = 1.0
    error: str = ""
    seconds: float = 30.0


@dataclass
class Request:
    method: str  # Slack method, e.g. "chat.postMessage"
    http_method: str
    headers: dict[str, str]
    args: dict[str, Any]
    at: float


@dataclass
class Message:
    channel: str  # channel id
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None
    metadata: dict[str, Any] | None
    args: dict[str, Any]
    at: float = field(default_factory=time.time)

    @property
    def alert_id(self) -> str | None:
        payload = (self.metadata or {}).get("event_payload") or {}
        value = payload.get("alert_id")
        return None if value is None else str(value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SlackFake:
    """`url` is the base URL for slack-sdk (`…/api/`); inspect `messages` and `requests`."""

    def __init__(
        self,
        token: str = "xoxb-test-token",
        *,
        port: int | None = None,
        clock: Callable[[], float] = time.time,
        on_post: Callable[[Message], None] | None = None,
    ) -> None:
        self.token = token
        self.clock = clock
        self.on_post = on_post
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/"
        self.messages: list[Message] = []
        self.requests: list[Request] = []
        self.missing_channels: set[str] = set()
        # Every chat.postMessage takes a random time in this range (messages "in flight").
        self.post_delay: tuple[float, float] = (0.0, 0.0)
        self._faults: dict[str, deque[Fault]] = {}
        self._channels: dict[str, str] = {}  # name → id
        self._lock = threading.Lock()
        self._ts = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.updates: list[dict[str, Any]] = []  # chat.update args, in order
        # Notes only the clicker sees: {"via": "response_url"|"chat.postEphemeral", "user",
        # "channel", "text", "response_type", "replace_original"}, in order.
        self.ephemerals: list[dict[str, Any]] = []
        self.app_token = "xapp-test-app-token"
        self.acks: list[dict[str, Any]] = []  # Socket Mode acks received
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_seen = threading.Event()
        self._response_urls: dict[str, tuple[str, str]] = {}  # token -> (user, channel)

    # --- control ------------------------------------------------------------------------------

    def start(self) -> SlackFake:
        self._thread = threading.Thread(target=self._run, name="slack-fake", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Slack fake did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def down(self) -> None:
        """Stop listening: every new connection is refused until `up()`."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._stop_site(), self._loop).result(10)

    def up(self) -> None:
        """Listen again on the same port, with every stored message kept."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._start_site(), self._loop).result(10)

    async def _stop_site(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def _start_site(self) -> None:
        if self._site is None and self._runner is not None:
            self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            await self._site.start()

    def __enter__(self) -> SlackFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, method: str, fault: Fault, times: int = 1) -> None:
        with self._lock:
            queue = self._faults.setdefault(method, deque())
            for _ in range(times):
                queue.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def channel_id(self, name: str) -> str:
        """The id of a channel given by name (with or without #) or id."""
        with self._lock:
            return self._resolve(name)

    def posts(self, method: str = "chat.postMessage") -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == method]

    def by_alert(self) -> dict[str, list[Message]]:
        with self._lock:
            out: dict[str, list[Message]] = {}
            for message in self.messages:
                out.setdefault(message.alert_id or "", []).append(message)
            return out

    def in_channel(self, name: str) -> list[Message]:
        with self._lock:
            cid = self._resolve(name)
            return [m for m in self.messages if m.channel == cid]

    # --- server -------------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_post("/hooks/{path:.*}", self._hook)
        app.router.add_get("/socket", self._socket)
        app.router.add_post("/response/{token}", self._response)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(self._start_site())
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _resolve(self, channel: str) -> str:
        name = channel.lstrip("#")
        if name.startswith(("C", "G")) and name.isupper() and name.isalnum():
            return name
        if name not in self._channels:
            self._channels[name] = f"C{len(self._channels) + 1:08d}"
        return self._channels[name]

    def _next_ts(self) -> str:
        self._ts = max(self.clock(), self._ts + 0.000001)
        return f"{self._ts:.6f}"

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        body = await request.read()
        if body:
            ctype = request.content_type
            if ctype == "application/json":
                args.update(json.loads(body))
            else:
                args.update(dict(parse_qsl(body.decode())))
        for key in ("blocks", "metadata"):
            if isinstance(args.get(key), str):
                with contextlib.suppress(ValueError):
                    args[key] = json.loads(args[key])
        return args

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args = await self._args(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.requests.append(Request(method, request.method, headers, args, self.clock()))
            queue = self._faults.get(method)
            fault = queue.popleft() if queue else None
        if method == "apps.connections.open":
            if headers.get("authorization") != f"Bearer {self.app_token}":
                return web.json_response({"ok": False, "error": "invalid_auth"})
            url = f"ws://127.0.0.1:{self.port}/socket"
            return web.json_response({"ok": True, "url": url})
        if headers.get("authorization") != f"Bearer {self.token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if fault is not None:
            early = await self._fault_before(fault, request)
            if early is not None:
                return early
        if method == "auth.test":
            return web.json_response(
                {
                    "ok": True,
                    "url": "https://fake.slack.com/",
                    "team": "Fake",
                    "user": "monitor",
                    "team_id": "T00000001",
                    "user_id": "U00000001",
                    "bot_id": "B00000001",
                }
            )
        if method == "chat.postMessage":
            answer = self._post(args)
            low, high = self.post_delay
            if high > 0:  # stored, answer still on its way: the window a crash can hit
                await asyncio.sleep(random.uniform(low, high))
        elif method in self._simple:
            answer = self._simple[method](args)
        elif method == "conversations.list":
            with self._lock:
                channels = [{"id": cid, "name": name} for name, cid in self._channels.items()]
            answer = {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}
        else:
            answer = {"ok": False, "error": "unknown_method"}
        if fault is not None and answer.get("ok"):
            late = await self._fault_after(fault, request)
            if late is not None:
                return late
        return web.json_response(answer)

    @property
    def _simple(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """Methods answered from their arguments alone."""
        return {
            "chat.update": self._update,
            "chat.postEphemeral": self._ephemeral,
            "conversations.history": lambda args: self._history(args, replies=False),
            "conversations.replies": lambda args: self._history(args, replies=True),
        }

    async def _response(self, request: web.Request) -> web.StreamResponse:
        """A click's response_url: JSON in, "ok" out, as Slack answers. The token names the
        click it was handed out with (its user and channel)."""
        body = await request.json()
        with self._lock:
            user, channel = self._response_urls.get(request.match_info["token"], (None, None))
            self.ephemerals.append(
                {
                    "via": "response_url",
                    "user": user,
                    "channel": channel,
                    "text": str(body.get("text") or ""),
                    "response_type": body.get("response_type"),
                    "replace_original": body.get("replace_original"),
                }
            )
        return web.Response(text="ok", content_type="text/plain")

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        """Incoming webhook: the channel is fixed by the URL; answers plain "ok"."""
        args = await self._args(request)
        with self._lock:
            self.requests.append(
                Request("webhook", "POST", dict(request.headers), args, time.time())
            )
            queue = self._faults.get("webhook")
            fault = queue.popleft() if queue else None
        if fault is not None and fault.action == "429":
            return web.Response(
                status=429,
                text="rate_limited",
                headers={"Retry-After": str(int(fault.retry_after))},
            )
        if request.match_info["path"] != "T000/B000/secret":
            return web.Response(status=404, text="no_service")
        with self._lock:
            self.messages.append(
                Message(
                    channel="webhook",
                    ts=self._next_ts(),
                    text=str(args.get("text") or ""),
                    blocks=list(args.get("blocks") or []),
                    thread_ts=None,
                    metadata=None,
                    args=args,
                )
            )
        return web.Response(text="ok", content_type="text/plain")

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/T000/B000/secret"

    async def _fault_before(self, fault: Fault, request: web.Request) -> web.StreamResponse | None:
        if fault.action == "429":
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(int(fault.retry_after))},
            )
        if fault.action == "500":
            return web.Response(status=500, text="internal error", content_type="text/html")
        if fault.action == "error":
            return web.json_response({"ok": False, "error": fault.error})
        if fault.action == "hang":
            await asyncio.sleep(fault.seconds)
            return web.json_response({"ok": False, "error": "fake_hang_over"})
        if fault.action == "drop":
            _drop(request)
            return web.Response(status=500)
        return None

    async def _fault_after(self, fault: Fault, request: web.Request) -> web.StreamResponse | None:
        if fault.action == "500_after_store":
            return web.Response(status=500, text="internal error", content_type="text/html")
        if fault.action == "hang_after_store":
            await asyncio.sleep(fault.seconds)
            return None
        if fault.action == "drop_after_store":
            _drop(request)
            return web.Response(status=500)
        return None

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel") or "")
        with self._lock:
            if not channel or channel.lstrip("#") in self.missing_channels:
                return {"ok": False, "error": "channel_not_found"}
            cid = self._resolve(channel)
            ts = self._next_ts()
            thread_ts = args.get("thread_ts")
            message = Message(
                channel=cid,
                ts=ts,
                text=str(args.get("text") or ""),
                blocks=list(args.get("blocks") or []),
                thread_ts=str(thread_ts) if thread_ts else None,
                metadata=args.get("metadata") if isinstance(args.get("metadata"), dict) else None,
                args=args,
                at=self.clock(),
            )
            self.messages.append(message)
        if self.on_post is not None:
            self.on_post(message)
        return {"ok": True, "channel": cid, "ts": ts, "message": {"text": message.text, "ts": ts}}

    def _ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.ephemerals.append(
                {
                    "via": "chat.postEphemeral",
                    "user": args.get("user"),
                    "channel": self._resolve(str(args.get("channel") or "")),
                    "text": str(args.get("text") or ""),
                }
            )
            return {"ok": True, "message_ts": self._next_ts()}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            cid = self._resolve(str(args.get("channel") or ""))
            ts = str(args.get("ts") or "")
            for message in self.messages:
                if message.channel == cid and message.ts == ts:
                    message.text = str(args.get("text") or message.text)
                    message.blocks = list(args.get("blocks") or [])
                    self.updates.append(args)
                    return {"ok": True, "channel": cid, "ts": ts}
        return {"ok": False, "error": "message_not_found"}

    # --- interactivity ------------------------------------------------------------------------

    def action_payload(
        self,
        message: Message,
        action: str,
        *,
        user_id: str = "U0EDITOR1",
        user_name: str = "editor",
        action_ts: str | None = None,
    ) -> dict[str, Any]:
        """The `block_actions` payload Slack sends when `user` presses the button of `message`
        whose action_id ends with `action` (relevant, not_relevant, mute, undo, unmute)."""
        button = None
        for block in message.blocks:
            for element in block.get("elements") or []:
                if str(element.get("action_id", "")) == f"monitor_fb_{action}":
                    button = element
        if button is None:
            raise AssertionError(f"no {action!r} button on the message: {message.blocks}")
        token = f"{random.getrandbits(64):016x}"
        with self._lock:
            self._response_urls[token] = (user_id, message.channel)
        return {
            "type": "block_actions",
            "team": {"id": "T00000001", "domain": "fake"},
            "user": {"id": user_id, "username": user_name, "name": user_name},
            "api_app_id": "A00000001",
            "container": {
                "type": "message",
                "channel_id": message.channel,
                "message_ts": message.ts,
            },
            "channel": {"id": message.channel},
            "message": {"ts": message.ts, "text": message.text, "blocks": message.blocks},
            "trigger_id": f"trig.{random.randint(1, 10**9)}",
            "response_url": f"http://127.0.0.1:{self.port}/response/{token}",
            "actions": [
                {
                    "type": "button",
                    "action_id": button["action_id"],
                    "block_id": "b",
                    "value": button.get("value", ""),
                    "action_ts": action_ts or f"{time.time():.6f}",
                }
            ],
        }

    @staticmethod
    def signed(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
        """Slack's request headers: v0 HMAC-SHA256 of `v0:timestamp:body`."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        base = b"v0:" + ts.encode() + b":" + body
        digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
        return {
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/x-www-form-urlencoded",
        }

    @staticmethod
    def form(payload: dict[str, Any]) -> bytes:
        return urlencode({"payload": json.dumps(payload)}).encode()

    async def click(
        self,
        url: str,
        payload: dict[str, Any],
        secret: str,
        *,
        timestamp: int | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, float]:
        """POST a signed payload to a service's interactivity URL, as Slack does (from the
        caller's event loop, where the service under test runs). → (status, body, seconds)."""
        raw = body if body is not None else self.form(payload)
        sent = headers if headers is not None else self.signed(raw, secret, timestamp)
        started = time.monotonic()
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=raw, headers=sent) as response,
        ):
            text = await response.text()
            return response.status, text, time.monotonic() - started

    def wait_socket(self, timeout: float = 10.0) -> bool:
        """Until a Socket Mode client is connected."""
        return self._socket_seen.wait(timeout)

    def socket_click(self, payload: dict[str, Any], envelope_id: str | None = None) -> str:
        """Deliver an interactive envelope to every connected Socket Mode client."""
        assert self._loop is not None
        envelope_id = envelope_id or f"env-{random.randint(1, 10**9)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": "interactive",
            "accepts_response_payload": False,
            "payload": payload,
        }

        async def send() -> None:
            for ws in list(self._sockets):
                await ws.send_str(json.dumps(envelope))

        asyncio.run_coroutine_threadsafe(send(), self._loop).result(10)
        return envelope_id

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1}))
        self._socket_seen.set()
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    with contextlib.suppress(ValueError):
                        data = json.loads(msg.data)
                        if isinstance(data, dict) and "envelope_id" in data:
                            with self._lock:
                                self.acks.append(data)
        finally:
            self._sockets.remove(ws)
        return ws

    def _history(self, args: dict[str, Any], *, replies: bool) -> dict[str, Any]:
        channel = str(args.get("channel") or "")
        with self._lock:
            if not channel or channel.lstrip("#") in self.missing_channels:
                return {"ok": False, "error": "channel_not_found"}
            cid = self._resolve(channel)
            oldest = float(args.get("oldest") or 0)
            with_meta = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
            limit = int(args.get("limit") or 100)
            start = int(args.get("cursor") or 0)
            if replies:
                root = str(args.get("ts") or "")
                found = [
                    m
                    for m in self.messages
                    if m.channel == cid and (m.ts == root or m.thread_ts == root)
                ]
            else:
                found = [m for m in self.messages if m.channel == cid and m.thread_ts is None]
            found = [m for m in found if float(m.ts) >= oldest]
            if not replies:
                found.reverse()  # newest first, as Slack does
            page = found[start : start + limit]
            more = start + limit < len(found)
            out = []
            for m in page:
                item: dict[str, Any] = {"type": "message", "ts": m.ts, "text": m.text}
                if m.thread_ts:
                    item["thread_ts"] = m.thread_ts
                if with_meta and m.metadata:
                    item["metadata"] = m.metadata
                out.append(item)
        return {
            "ok": True,
            "messages": out,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
