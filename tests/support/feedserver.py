"""A real HTTP feed server on 127.0.0.1 that serves the corpus and misbehaves on demand.

aiohttp runs on its own event loop in a daemon thread, so sync tests, async tests (whose loop
stays free) and subprocess end-to-end tests (through `url()`) all talk to it over real TCP.
Feeds carry ETag and Last-Modified and get 304 for matching conditional requests; every
misbehaviour the fetcher must survive has an `add_*` method. Nothing large is held in memory:
huge bodies are generated while streaming and the gzip bomb is a ~200 KB precomputed member.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ssl
import threading
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Literal

import pytest
from aiohttp import web

from tests.support.paths import FEEDS

FEEDS_DIR = FEEDS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CONTENT_TYPES = {
    ".json": "application/json",
    ".atom": "application/atom+xml",
    ".rss": "application/rss+xml",
    ".rdf": "application/rdf+xml",
    ".xml": "application/xml",
}

SMALL_RSS = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>t</title>'
    b"<link>http://example.org/</link><description>d</description>"
    b"<item><title>One</title><link>http://example.org/1</link><guid>1</guid></item>"
    b"</channel></rss>\n"
)


def rss(items: list[tuple[str, str]], *, title: str = "Test feed", ttl: int | None = None) -> bytes:
    """A small RSS 2.0 document with (guid, title) items; tests grow it to make new items appear."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0"><channel>',
        f"<title>{title}</title><link>http://example.org/</link><description>test</description>",
    ]
    if ttl is not None:
        parts.append(f"<ttl>{ttl}</ttl>")
    for guid, item_title in items:
        parts.append(
            f"<item><guid>{guid}</guid><title>{item_title}</title>"
            f"<link>http://example.org/a/{guid}</link>"
            f"<description>{item_title} text</description></item>"
        )
    parts.append("</channel></rss>\n")
    return "\n".join(parts).encode()


@functools.lru_cache(maxsize=4)
def gzip_bomb(decoded_size: int = 200 * 1024 * 1024) -> bytes:
    """One gzip member inflating to `decoded_size` zero bytes (about 1/1000 of that on the wire)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1024 * 1024)
    out = []
    left = decoded_size
    while left > 0:
        out.append(comp.compress(block[: min(left, len(block))]))
        left -= len(block)
    out.append(comp.flush())
    return b"".join(out)


def entity_expansion_feed(kind: Literal["quadratic", "billion_laughs", "xxe"]) -> bytes:
    """An entity payload (billion laughs, quadratic blow-up, external entity) wrapped in an
    otherwise valid RSS feed."""
    if kind == "quadratic":
        entity = "A" * 20_000
        decl = f'<!DOCTYPE rss [<!ENTITY a "{entity}">]>'
        use = "&a;" * 20_000
    elif kind == "billion_laughs":
        lines = ['<!ENTITY lol0 "lol">']
        lines += [f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
        decl = "<!DOCTYPE rss [" + "".join(lines) + "]>"
        use = "&lol9;"
    else:
        decl = '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        use = "&xxe;"
    return (
        f'<?xml version="1.0"?>\n{decl}\n<rss version="2.0"><channel><title>t</title>'
        f"<item><title>x</title><description>{use}</description><guid>1</guid></item>"
        "</channel></rss>\n"
    ).encode()


HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
    b"<body><h1>Checking your browser before accessing the site.</h1>"
    b"<p>Please enable JavaScript and cookies to continue.</p></body></html>"
)


@dataclass
class _Feed:
    body: bytes
    content_type: str
    etag: str | None
    last_modified: str | None
    headers: dict[str, str]
    gzipped: bytes | None


class FeedServer:
    """A started server: `with FeedServer() as srv: srv.add(...); httpx.get(srv.url(...))`."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """`ssl_context` (a server context with its certificate) serves HTTPS instead."""
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.hits: Counter[str] = Counter()
        self.last_headers: dict[str, dict[str, str]] = {}
        self._routes: dict[str, Handler] = {}
        self._feeds: dict[str, _Feed] = {}
        self._lock = threading.Lock()
        self._last_mtime = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> FeedServer:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="feedserver", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout=10)
        except BaseException:
            self.stop()  # e.g. the port is taken: leave no loop thread behind
            raise
        return self

    async def _start(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.host, self.port, backlog=2048, ssl_context=self.ssl_context
        )
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        loop.close()
        self._loop = None

    async def _stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses and bookkeeping ---------------------------------------------------------

    def url(self, path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def reset_hits(self) -> None:
        self.hits.clear()
        self.last_headers.clear()

    def remove(self, path: str) -> None:
        self._routes.pop(path, None)
        self._feeds.pop(path, None)

    # --- well-behaved feeds ----------------------------------------------------------------

    def add(
        self,
        path: str,
        body: bytes,
        content_type: str = "application/rss+xml",
        *,
        etag: bool | str = True,
        last_modified: bool | str = True,
        headers: dict[str, str] | None = None,
        gzip: bool = False,
    ) -> str:
        """Serve `body` at `path` (replacing what was there: that is how items appear);
        returns the URL. ETag and Last-Modified change with every new body."""
        with self._lock:
            if last_modified is True:
                mtime = max(int(time.time()), self._last_mtime + 1)
                self._last_mtime = mtime
                lm: str | None = format_datetime(datetime.fromtimestamp(mtime, UTC), usegmt=True)
            else:
                lm = last_modified or None
        tag: str | None
        tag = f'"{hashlib.sha256(body).hexdigest()[:20]}"' if etag is True else etag or None
        self._feeds[path] = _Feed(
            body,
            content_type,
            tag,
            lm,
            dict(headers or {}),
            zlib.compress(body, wbits=zlib.MAX_WBITS | 16) if gzip else None,
        )
        self._routes[path] = self._serve_feed
        return self.url(path)

    def validators(self, path: str) -> tuple[str | None, str | None]:
        """The (ETag, Last-Modified) the feed at `path` currently carries."""
        feed = self._feeds[path]
        return feed.etag, feed.last_modified

    def update(self, path: str, body: bytes) -> None:
        """Give the feed at `path` a new body, keeping its type and headers."""
        old = self._feeds[path]
        self.add(path, body, old.content_type, headers=old.headers, gzip=old.gzipped is not None)

    def add_corpus(self, prefix: str = "/feeds/") -> list[str]:
        """Serve every file of the corpus `feeds/` folder as `<prefix><name>`; returns the paths."""
        paths = []
        for file in sorted(FEEDS_DIR.iterdir()):
            if not file.is_file():
                continue
            path = prefix + file.name
            self.add(path, file.read_bytes(), _CONTENT_TYPES.get(file.suffix, "application/xml"))
            paths.append(path)
        return paths

    def add_handler(self, path: str, handler: Handler) -> None:
        """Anything else: an aiohttp handler run on the server's loop."""
        self._routes[path] = handler

    # --- misbehaviours -----------------------------------------------------------------

    def add_status(
        self, path: str, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> str:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, body=body, headers=headers)

        self._routes[path] = handler
        return self.url(path)

    def add_retry_after(
        self, path: str, retry_after: int | datetime | str, status: int = 429
    ) -> str:
        """`status` with Retry-After as delay-seconds (int) or an HTTP-date (datetime)."""
        if isinstance(retry_after, datetime):
            value = format_datetime(retry_after.astimezone(UTC), usegmt=True)
        else:
            value = str(retry_after)
        return self.add_status(path, status, b"slow down", {"Retry-After": value})

    def add_redirect(self, path: str, location: str, status: int = 302) -> str:
        return self.add_status(path, status, b"", {"Location": location})

    def add_redirect_loop(self, path: str) -> str:
        return self.add_redirect(path, path)

    def add_redirect_chain(self, path: str, hops: int, target: str) -> str:
        """`hops` redirects in a row, the last one to `target` (a path or a full URL)."""
        current = path
        for i in range(1, hops):
            nxt = f"{path}/hop{i}"
            self.add_redirect(current, nxt)
            current = nxt
        self.add_redirect(current, target)
        return self.url(path)

    def add_trickle(self, path: str, body: bytes = SMALL_RSS, interval: float = 0.5) -> str:
        """Answer at once, then send the body one byte every `interval` seconds."""

        async def handler(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
            resp.content_length = len(body)
            await resp.prepare(request)
            try:
                for i in range(len(body)):
                    await resp.write(body[i : i + 1])
                    if await self._sleep(interval):
                        break
            except ConnectionError:
                pass  # the client gave up, as it should
            return resp

        self._routes[path] = handler
        return self.url(path)

    def add_huge(
        self,
        path: str,
        size: int | None = 50 * 1024 * 1024,
        *,
        declared_length: int | None = None,
        chunked: bool = False,
        chunk: int = 64 * 1024,
    ) -> str:
        """A generated body of `size` bytes (None: endless), with its true Content-Length, or
        chunked (no length to go by), or `declared_length` instead (a lying server)."""
        block = b"<!-- " + b"x" * (chunk - 10) + b" -->\n"

        async def handler(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
            if declared_length is not None:
                resp.headers["Content-Length"] = str(declared_length)
            elif size is not None and not chunked:
                resp.content_length = size
            else:
                resp.enable_chunked_encoding()
            await resp.prepare(request)
            sent = 0
            try:
                while (size is None or sent < size) and not self._stopped():
                    piece = block if size is None else block[: min(chunk, size - sent)]
                    await resp.write(piece)
                    sent += len(piece)
            except (ConnectionError, RuntimeError):
                pass
            return resp

        self._routes[path] = handler
        return self.url(path)

    def add_gzip_bomb(self, path: str, decoded_size: int = 200 * 1024 * 1024) -> str:
        """A small gzip body inflating to `decoded_size` zeros, sent with Content-Encoding: gzip."""
        payload = gzip_bomb(decoded_size)
        return self.add_status(
            path,
            200,
            payload,
            {"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"},
        )

    def add_entity_expansion(
        self, path: str, kind: Literal["quadratic", "billion_laughs", "xxe"] = "quadratic"
    ) -> str:
        return self.add(path, entity_expansion_feed(kind), "application/rss+xml")

    def add_html(self, path: str, body: bytes = HTML_PAGE) -> str:
        """200 with an HTML page where a feed was expected (a bot wall, a moved site)."""
        return self.add(path, body, "text/html; charset=utf-8")

    def add_hang(self, path: str) -> str:
        """Accept the request and never answer (until the server stops)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            await self._sleep(3600)
            return web.Response(status=503)

        self._routes[path] = handler
        return self.url(path)

    # --- serving ---------------------------------------------------------------------------

    def _stopped(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, waking early when the server stops; True if it stopped."""
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        self.last_headers[path] = {k.lower(): v for k, v in request.headers.items()}
        handler = self._routes.get(path)
        if handler is None:
            return web.Response(status=404, text=f"no route for {path}\n")
        return await handler(request)

    async def _serve_feed(self, request: web.Request) -> web.StreamResponse:
        feed = self._feeds.get(request.path)
        if feed is None:
            return web.Response(status=404)
        headers = dict(feed.headers)
        if feed.etag:
            headers["ETag"] = feed.etag
        if feed.last_modified:
            headers["Last-Modified"] = feed.last_modified
        if _not_modified(request, feed):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = feed.content_type
        body = feed.body
        if feed.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            body = feed.gzipped
        return web.Response(status=200, body=body, headers=headers)


def _not_modified(request: web.Request, feed: _Feed) -> bool:
    """RFC 9110 §13.1: If-None-Match wins; If-Modified-Since only counts without it."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        if feed.etag is None:
            return False
        if inm.strip() == feed.etag:
            return True
        wanted = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in wanted or feed.etag.removeprefix("W/") in wanted
    ims = request.headers.get("If-Modified-Since")
    if ims is None or feed.last_modified is None:
        return False
    try:
        return parsedate_to_datetime(feed.last_modified) <= parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A started FeedServer with the corpus feeds under /feeds/<name>."""
    with FeedServer() as server:
        server.add_corpus()
        yield server


def main(argv: list[str] | None = None) -> int:
    """Serve from a separate process (benchmarks, manual runs): prints the base URL, then
    serves until SIGTERM/SIGINT. A separate process keeps the server off the client's GIL."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m tests.support.feedserver")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--corpus", action="store_true", help="serve the corpus under /feeds/")
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="serve N small distinct feeds under /synthetic/<i>.xml",
    )
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with FeedServer(port=args.port) as server:
        if args.corpus:
            server.add_corpus()
        for i in range(args.synthetic):
            server.add(f"/synthetic/{i}.xml", rss([(f"s{i}-1", f"Synthetic feed {i}")]))
        print(server.url("/"), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
