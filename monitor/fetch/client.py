"""Polling one source over HTTP: conditional GET, caps, deadlines, SSRF guard, one error taxonomy.

One `httpx.AsyncClient` serves every source. Each fetch is bounded three ways: httpx's per-phase
timeouts, an overall `asyncio.timeout` (httpx has none, so a trickling server would otherwise
hold us for ever), and byte caps counted on the raw stream and after our own capped
decompression (httpx's decoder inflates a whole chunk at once, which a gzip bomb exploits).
Every failure is classified here, once, into a `FetchError`; nothing network-related escapes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ssl
import time
import zlib
from datetime import UTC, datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import certifi
import httpx

from monitor.fetch import netguard
from monitor.logs import get_logger
from monitor.model import ErrorKind, FetchError, FetchRequest, FetchResult
from monitor.schedule import parse_max_age, parse_retry_after
from monitor.settings import Settings

log = get_logger(__name__)

MAX_REDIRECTS = 5
ACCEPT = (
    "application/atom+xml, application/rss+xml, application/feed+json, application/xml;q=0.9, "
    "text/xml;q=0.8, application/json;q=0.8, text/html;q=0.5, */*;q=0.1"
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT = frozenset({301, 308})
_STEP = 1024 * 1024


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Certificate-verifying TLS settings, built once: loading the CA bundle costs ~50 ms."""
    return ssl.create_default_context(cafile=certifi.where())


class _TooLarge(Exception):
    pass


class _Decoder:
    """Undo Content-Encoding with a hard cap on the output of every single zlib call."""

    def __init__(self, encoding: str, cap: int) -> None:
        self.encoding = encoding
        self.cap = cap
        self.size = 0
        self._parts: list[bytes] = []
        self._first = True
        self._obj: zlib._Decompress | None = None
        if encoding in ("gzip", "x-gzip"):
            self._obj = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._obj = zlib.decompressobj(zlib.MAX_WBITS)

    def feed(self, data: bytes) -> None:
        if self._obj is None:
            self._add(data)
            return
        if self._first and self.encoding == "deflate" and data:
            self._first = False
            # Some servers send raw deflate without the zlib header; sniff like browsers do.
            if not _looks_like_zlib(data):
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
        pending = data
        while pending:
            # Small steps: one call's output (and zlib's buffer growth) stays ~1 MiB.
            out = self._obj.decompress(pending, min(self.cap - self.size + 1, _STEP))
            self._add(out)
            pending = self._obj.unconsumed_tail
            if self._obj.eof:
                rest = self._obj.unused_data
                if not rest or self.encoding == "deflate":
                    return
                # Concatenated gzip members form one valid body.
                self._obj = zlib.decompressobj(zlib.MAX_WBITS | 16)
                pending = rest

    def finish(self) -> bytes:
        if self._obj is not None and not self._obj.eof:
            self._add(self._obj.flush())
        return b"".join(self._parts)

    def _add(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.cap:
            raise _TooLarge(f"body is larger than {self.cap} bytes after {self.encoding} decoding")
        self._parts.append(data)


def _looks_like_zlib(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


class _GuardTransport(httpx.AsyncBaseTransport):
    """Resolves and checks every hop, then connects to the checked address itself.

    The request handed on carries the IP in its URL, the original Host header, and the host
    name as `sni_hostname`, so TLS still verifies the name while DNS gets no second say.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        resolver: netguard.Resolver,
        allow: netguard.AllowList,
        resolve_timeout: float,
    ) -> None:
        self.inner = inner
        self.resolver = resolver
        self.allow = allow
        self.resolve_timeout = resolve_timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        netguard.check_scheme(url.scheme, _shown(str(url)))
        host = url.host
        if not host:
            raise netguard.BlockedError(f"{_shown(str(url))}: URL has no host")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            async with asyncio.timeout(self.resolve_timeout):
                ip = await netguard.resolve_checked(host, port, self.resolver, self.allow)
        except TimeoutError as exc:
            raise netguard.ResolveError(
                f"resolving {host} took longer than {self.resolve_timeout:g}s"
            ) from exc
        extensions = dict(request.extensions)
        if url.scheme == "https" and netguard.parse_ip(host) is None:
            extensions["sni_hostname"] = host
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=str(ip)),
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        return await self.inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Fetcher:
    """Polls sources politely and safely; see the module docstring for the bounds."""

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: netguard.Resolver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport` replaces the connecting transport under the SSRF guard (tests record
        where connections go with it); `resolver` replaces the system resolver."""
        self.settings = settings
        self.allow = netguard.AllowList.parse(settings.allow_private_hosts)
        # No more connections than fetches in flight: httpcore scans its pool and queue on every
        # request, so spare connections only cost time. The same cost makes high concurrency
        # slower (1,000 local 304s: 1.2 s at 10 in flight, 2.0 s at 20, 5.7 s at 50).
        connections = max(settings.fetch_concurrency, 1)
        inner = transport or httpx.AsyncHTTPTransport(
            verify=_tls_context(),
            retries=1,
            limits=httpx.Limits(
                max_connections=connections,
                max_keepalive_connections=connections,
                keepalive_expiry=30.0,
            ),
        )
        self._guard = _GuardTransport(
            inner,
            resolver or netguard.system_resolver,
            self.allow,
            settings.fetch_connect_timeout,
        )
        self._client = httpx.AsyncClient(
            transport=self._guard,
            follow_redirects=False,  # followed by hand below, so no redirect body is ever read
            trust_env=False,
            timeout=httpx.Timeout(
                connect=settings.fetch_connect_timeout,
                read=settings.fetch_read_timeout,
                write=settings.fetch_read_timeout,
                pool=settings.fetch_total_timeout,
            ),
            headers={
                "User-Agent": settings.user_agent,
                "Accept": ACCEPT,
                "Accept-Encoding": "gzip, deflate",
            },
            # Sources are independent: no cookie from one ever travels to another.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        )
        self._global = asyncio.Semaphore(max(settings.fetch_concurrency, 1))
        self._per_host: dict[str, asyncio.Semaphore] = {}
        self._host_next: dict[str, float] = {}  # earliest start of the next request per host

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, req: FetchRequest) -> FetchResult | FetchError:
        """GET one source; never raises for network trouble, only on cancellation."""
        try:
            url = httpx.URL(req.url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            return _error(req, "bad_url", False, f"invalid URL {_shown(req.url)}: {exc}")
        if url.scheme not in netguard.ALLOWED_SCHEMES or not url.host:
            return _error(
                req,
                "bad_url",
                False,
                f"{_shown(req.url)}: only absolute http:// and https:// URLs can be polled",
            )
        async with self._host_slot(url.host):
            await self._space(url.host)
            async with self._global:
                return await self._fetch_guarded(req, url)

    async def _space(self, host: str) -> None:
        """Keep request starts to one public host `fetch_host_spacing` apart (politeness).

        Each caller reserves its start time before sleeping, so callers that share the host's
        slots queue up one spacing apart. Waiting happens outside the global limit, so a busy
        host never holds back the others.
        """
        spacing = self.settings.fetch_host_spacing
        if spacing <= 0 or self.allow.names(host):
            return
        now = time.monotonic()
        start = max(now, self._host_next.get(host, now))
        self._host_next[host] = start + spacing
        if start > now:
            await asyncio.sleep(start - now)

    async def _fetch_guarded(self, req: FetchRequest, url: httpx.URL) -> FetchResult | FetchError:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.fetch_total_timeout):
                outcome = await self._fetch(req, url, started)
        except TimeoutError:
            outcome = _error(
                req,
                "timeout",
                True,
                f"no complete answer within {self.settings.fetch_total_timeout:g}s "
                "(overall deadline)",
            )
        except Exception as exc:  # the contract: classify, never raise
            outcome = _classify(req, exc)
        if isinstance(outcome, FetchError):
            outcome = _with_elapsed(outcome, time.monotonic() - started)
            if outcome.kind == "blocked_ssrf":
                log.warning(
                    "fetch blocked",
                    source=req.source_id,
                    url=_shown(req.url),
                    reason=outcome.message,
                )
        return outcome

    def _host_slot(self, host: str) -> asyncio.Semaphore:
        slot = self._per_host.get(host)
        if slot is None:
            slot = self._per_host[host] = asyncio.Semaphore(max(self.settings.fetch_per_host, 1))
        return slot

    async def _fetch(
        self, req: FetchRequest, url: httpx.URL, started: float
    ) -> FetchResult | FetchError:
        headers: dict[bytes, bytes] = {}
        for name, value in (
            (b"If-None-Match", req.etag),
            (b"If-Modified-Since", req.last_modified),
        ):
            raw = _validator(value)
            if raw is not None:
                headers[name] = raw
        request = self._client.build_request("GET", url, headers=headers)
        permanent = True  # every redirect so far was a 301/308
        for hop in range(MAX_REDIRECTS + 1):
            try:
                response = await self._client.send(request, stream=True)
            except netguard.GuardError as exc:
                where = "" if hop == 0 else f" (redirect hop {hop})"
                if isinstance(exc, netguard.BlockedError):
                    return _error(req, "blocked_ssrf", False, f"{exc}{where}")
                return _error(req, "dns", True, f"{exc}{where}")
            try:
                if response.status_code in _REDIRECTS and response.next_request is not None:
                    permanent = permanent and response.status_code in _PERMANENT
                    request = response.next_request
                    await _drain(response)
                    continue
                outcome = await self._finish(req, response, started)
                if hop and permanent and isinstance(outcome, FetchResult):
                    outcome = dataclasses.replace(outcome, moved_to=str(response.url))
                return outcome
            finally:
                await response.aclose()
        return _error(
            req,
            "too_many_redirects",
            False,
            f"more than {MAX_REDIRECTS} redirects, last to {_shown(str(request.url))}",
        )

    async def _finish(
        self, req: FetchRequest, response: httpx.Response, started: float
    ) -> FetchResult | FetchError:
        status = response.status_code
        headers = {k.lower(): v for k, v in response.headers.items()}
        if status == 304:
            await _drain(response)
            return self._result(req, response, headers, None, started)
        if 200 <= status < 300:
            body = await self._read_capped(req, response, headers)
            if isinstance(body, FetchError):
                return body
            return self._result(req, response, headers, body, started)
        await _drain(response)
        return _status_error(req, status, headers)

    async def _read_capped(
        self, req: FetchRequest, response: httpx.Response, headers: dict[str, str]
    ) -> bytes | FetchError:
        req_id = req.source_id
        cap = self.settings.fetch_max_bytes
        declared = headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > cap:
            return FetchError(
                req_id,
                "too_large",
                False,
                f"Content-Length {int(declared)} is over the {cap}-byte limit",
                status=response.status_code,
            )
        encodings = [
            e.strip().lower()
            for e in headers.get("content-encoding", "").split(",")
            if e.strip() and e.strip().lower() != "identity"
        ]
        if len(encodings) > 1 or (encodings and encodings[0] not in ("gzip", "x-gzip", "deflate")):
            return FetchError(
                req_id,
                "protocol",
                True,
                f"unsupported Content-Encoding {headers['content-encoding']!r} "
                "(only gzip and deflate are accepted)",
                status=response.status_code,
            )
        decoder = _Decoder(
            encodings[0] if encodings else "identity", self.settings.fetch_max_decoded_bytes
        )
        raw = 0
        try:
            async for chunk in response.aiter_raw():
                raw += len(chunk)
                if raw > cap:
                    raise _TooLarge(f"body is larger than {cap} bytes")
                decoder.feed(chunk)
            return decoder.finish()
        except _TooLarge as exc:
            return FetchError(req_id, "too_large", False, str(exc), status=response.status_code)
        except zlib.error as exc:
            return FetchError(
                req_id,
                "protocol",
                True,
                f"body is not valid {decoder.encoding}: {exc}",
                status=response.status_code,
            )

    def _result(
        self,
        req: FetchRequest,
        response: httpx.Response,
        headers: dict[str, str],
        body: bytes | None,
        started: float,
    ) -> FetchResult:
        cache_control = headers.get("cache-control")
        return FetchResult(
            source_id=req.source_id,
            url=str(response.url),
            status=response.status_code,
            body=body,
            headers=headers,
            etag=headers.get("etag", req.etag if response.status_code == 304 else None),
            last_modified=headers.get(
                "last-modified", req.last_modified if response.status_code == 304 else None
            ),
            max_age_seconds=parse_max_age(cache_control) if cache_control else None,
            elapsed_seconds=time.monotonic() - started,
        )


def _validator(value: str | None) -> bytes | None:
    """A stored ETag/Last-Modified as the bytes to send back; None if unusable.

    httpx decodes non-ASCII header values as UTF-8 when it can, so encoding as UTF-8 sends the
    server its own bytes. A value with CR, LF or NUL cannot have come from a header and is
    dropped (an unconditional GET) rather than failing the source for ever.
    """
    if not value or any(c in value for c in "\r\n\x00"):
        return None
    return value.encode("utf-8")


async def _drain(response: httpx.Response, limit: int = 64 * 1024) -> None:
    """Read a small leftover body so the connection goes back to the pool (an unread
    response, even an empty 304, makes httpcore close it); give up on anything bigger."""
    seen = 0
    async for chunk in response.aiter_raw():
        seen += len(chunk)
        if seen > limit:
            return


def _status_error(req: FetchRequest, status: int, headers: dict[str, str]) -> FetchError:
    retry_after: float | None = None
    if "retry-after" in headers:
        retry_after = parse_retry_after(headers["retry-after"], datetime.now(UTC))
    wait = f", Retry-After {retry_after:g}s" if retry_after is not None else ""
    if status == 410:
        return FetchError(
            req.source_id, "gone", False, "410 Gone: the server says this feed was removed", 410
        )
    if status == 429:
        return FetchError(
            req.source_id, "rate_limited", True, f"429 Too Many Requests{wait}", 429, retry_after
        )
    if status >= 500:
        return FetchError(
            req.source_id, "http_5xx", True, f"server error {status}{wait}", status, retry_after
        )
    if 400 <= status < 500:
        # 408/425 are about this attempt; every other 4xx needs someone to fix the URL or access.
        transient = status in (408, 425)
        hint = {
            401: "authentication required",
            403: "access forbidden",
            404: "not found: check the URL",
        }.get(status, "client error")
        return FetchError(
            req.source_id, "http_4xx", transient, f"{status} {hint}{wait}", status, retry_after
        )
    return FetchError(
        req.source_id, "protocol", True, f"unexpected HTTP status {status}", status, retry_after
    )


def _classify(req: FetchRequest, exc: Exception) -> FetchError:
    """Map every exception of the network path to one `FetchError`."""
    text = str(exc) or type(exc).__name__
    kind: ErrorKind
    transient = True
    if isinstance(exc, netguard.BlockedError):
        kind, transient = "blocked_ssrf", False
    elif isinstance(exc, netguard.ResolveError):
        kind = "dns"
    elif isinstance(exc, httpx.TimeoutException):
        kind = "timeout"
        phase = {
            httpx.ConnectTimeout: "connecting",
            httpx.ReadTimeout: "waiting for data",
            httpx.WriteTimeout: "sending the request",
            httpx.PoolTimeout: "waiting for a free connection",
        }.get(type(exc), "")
        text = f"timed out {phase}".rstrip()
    elif isinstance(exc, httpx.ConnectError):
        kind = "tls" if _is_tls(exc) else "connect"
    elif isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        kind, transient = "bad_url", False
    elif isinstance(exc, httpx.HTTPError):
        kind = "tls" if _is_tls(exc) else "protocol"
    elif isinstance(exc, OSError):
        kind = "connect"
    else:
        kind = "protocol"
        text = f"{type(exc).__name__}: {text}"
        log.error("unexpected fetch failure", source=req.source_id, exc_info=exc)
    return FetchError(req.source_id, kind, transient, _scrub_url(text, req.url))


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _shown(url: str) -> str:
    """A URL fit for messages and logs: no credentials, no query (tokens); never raises, and
    IPv6 hosts keep their brackets so the result parses again."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "[unparsable url]"
    if ":" in host:
        host = f"[{host}]"
    if port:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _scrub_url(text: str, url: str) -> str:
    """Exception texts may quote the URL; keep its query string (tokens) out of stored errors."""
    return text.replace(url, _shown(url)) if ("?" in url or "@" in url) else text


def _error(req: FetchRequest, kind: ErrorKind, transient: bool, message: str) -> FetchError:
    return FetchError(req.source_id, kind, transient, message)


def _with_elapsed(error: FetchError, elapsed: float) -> FetchError:
    return FetchError(
        error.source_id,
        error.kind,
        error.transient,
        error.message,
        error.status,
        error.retry_after_seconds,
        elapsed,
    )
