"""The connecting transport under the SSRF guard: every hop resolved, checked against
`netguard`, and connected to the validated address only (no DNS rebinding).

The request keeps its host name all the way down: it is the connection pool's key, the TLS
server name (SNI) and the name the certificate must carry. Only the TCP connect itself goes to
the validated address, through `PinnedBackend`, which takes it from a context variable the
guard sets for the request. (Rewriting the URL to the address instead, as before, made the
address the pool key: a connection verified for `a.example` was then reused for `b.example`
on the same address without `b.example`'s certificate ever being checked.)
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import ssl
import typing
from collections.abc import Mapping

import certifi
import httpcore
import httpx

from monitor.fetch import netguard
from monitor.logs import get_logger
from monitor.redact import redact_url

log = get_logger(__name__)


@functools.cache
def tls_context(cafile: str | None = None) -> ssl.SSLContext:
    """Certificate-verifying TLS settings, built once per CA bundle (loading one costs ~50 ms);
    the public roots (certifi) unless `cafile` names another bundle."""
    return ssl.create_default_context(cafile=cafile or certifi.where())


# (host as httpcore spells it, port) -> the address validated for it, for the current request.
_PINNED: contextvars.ContextVar[Mapping[tuple[str, int], str] | None] = contextvars.ContextVar(
    "monitor_pinned_addresses", default=None
)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the address the SSRF guard validated for the request's host, and only there.

    A connect for a host the guard did not validate (no pinned address) is refused: nothing
    reaches the network past the guard.
    """

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pinned = _PINNED.get()
        address = pinned.get((host.lower(), port)) if pinned else None
        if address is None:
            raise httpcore.ConnectError(
                f"{host}:{port} was not validated by the SSRF guard; not connecting"
            )
        return await self.inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address,
            socket_options=socket_options,
        )  # fmt: skip

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PinnedHTTPTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose connects go through `PinnedBackend`."""

    def __init__(self, *, ssl_context: ssl.SSLContext, limits: httpx.Limits, retries: int) -> None:
        super().__init__(verify=ssl_context, limits=limits, retries=retries)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            retries=retries,
            network_backend=PinnedBackend(),
        )


class GuardTransport(httpx.AsyncBaseTransport):
    """Resolves and checks every hop, then connects to the checked address itself.

    With a `PinnedHTTPTransport` inside (production), the request goes on unchanged and the
    connect is pinned to the checked address. Any other inner transport (tests that record
    where requests go) cannot be told the address, so it gets the request rewritten to it: the
    IP in the URL, the original Host header, and the name as `sni_hostname`.
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
        self.pins = isinstance(inner, PinnedHTTPTransport)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        netguard.check_scheme(url.scheme, redact_url(str(url)))
        host = url.host
        if not host:
            raise netguard.BlockedError(f"{redact_url(str(url))}: URL has no host")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            async with asyncio.timeout(self.resolve_timeout):
                ip = await netguard.resolve_checked(host, port, self.resolver, self.allow)
        except TimeoutError as exc:
            raise netguard.ResolveError(
                f"resolving {host} took longer than {self.resolve_timeout:g}s"
            ) from exc
        if self.pins:
            key = (url.raw_host.decode("ascii").lower(), port)
            token = _PINNED.set({key: str(ip)})
            try:
                return await self.inner.handle_async_request(request)
            finally:
                _PINNED.reset(token)
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
