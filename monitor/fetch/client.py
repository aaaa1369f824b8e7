"""Polling one source over HTTP: conditional GET, caps, deadlines, politeness, SSRF guard.

One `httpx.AsyncClient` serves every source. Each fetch is bounded three ways: httpx's per-phase
timeouts, an overall `asyncio.timeout` (httpx has none, so a trickling server would otherwise
hold us for ever), and byte caps counted on the raw stream and after our own capped
decompression (`decode`). Requests to one public host are spaced and limited per host. Every
failure is classified once (`errors`); nothing network-related escapes."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import zlib
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType

import httpx

from monitor.fetch import netguard
from monitor.fetch.decode import CappedDecoder, TooLarge
from monitor.fetch.errors import classify, fetch_error, status_error, with_elapsed
from monitor.fetch.transport import GuardTransport, PinnedHTTPTransport, tls_context
from monitor.logs import get_logger
from monitor.model import FetchError, FetchRequest, FetchResult
from monitor.redact import redact_url
from monitor.schedule import parse_max_age
from monitor.settings import Settings

log = get_logger(__name__)

MAX_REDIRECTS = 5
ACCEPT = (
    "application/atom+xml, application/rss+xml, application/feed+json, application/xml;q=0.9, "
    "text/xml;q=0.8, application/json;q=0.8, text/html;q=0.5, */*;q=0.1"
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT = frozenset({301, 308})


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
        inner = transport or PinnedHTTPTransport(
            ssl_context=tls_context(settings.fetch_ca_file),
            retries=1,
            limits=httpx.Limits(
                max_connections=connections,
                max_keepalive_connections=connections,
                keepalive_expiry=30.0,
            ),
        )
        self._guard = GuardTransport(
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
            return fetch_error(req, "bad_url", False, f"invalid URL {redact_url(req.url)}: {exc}")
        if url.scheme not in netguard.ALLOWED_SCHEMES or not url.host:
            return fetch_error(
                req,
                "bad_url",
                False,
                f"{redact_url(req.url)}: only absolute http:// and https:// URLs can be polled",
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
            outcome = fetch_error(
                req,
                "timeout",
                True,
                f"no complete answer within {self.settings.fetch_total_timeout:g}s "
                "(overall deadline)",
            )
        except Exception as exc:  # the contract: classify, never raise
            outcome = classify(req, exc)
        if isinstance(outcome, FetchError):
            outcome = with_elapsed(outcome, time.monotonic() - started)
            if outcome.kind == "blocked_ssrf":
                log.warning(
                    "fetch blocked",
                    source=req.source_id,
                    url=redact_url(req.url),
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
                    return fetch_error(req, "blocked_ssrf", False, f"{exc}{where}")
                return fetch_error(req, "dns", True, f"{exc}{where}")
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
        return fetch_error(
            req,
            "too_many_redirects",
            False,
            f"more than {MAX_REDIRECTS} redirects, last to {redact_url(str(request.url))}",
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
        return status_error(req, status, headers)

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
        decoder = CappedDecoder(
            encodings[0] if encodings else "identity", self.settings.fetch_max_decoded_bytes
        )
        raw = 0
        try:
            async for chunk in response.aiter_raw():
                raw += len(chunk)
                if raw > cap:
                    raise TooLarge(f"body is larger than {cap} bytes")
                decoder.feed(chunk)
            return decoder.finish()
        except TooLarge as exc:
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
