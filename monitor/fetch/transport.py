"""The connecting transport under the SSRF guard: every hop resolved, checked against
`netguard`, and connected to the validated address only (no DNS rebinding)."""

from __future__ import annotations

import asyncio
import functools
import ssl

import certifi
import httpx

from monitor.fetch import netguard
from monitor.logs import get_logger, safe_url

log = get_logger(__name__)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Certificate-verifying TLS settings, built once: loading the CA bundle costs ~50 ms."""
    return ssl.create_default_context(cafile=certifi.where())


class GuardTransport(httpx.AsyncBaseTransport):
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
        netguard.check_scheme(url.scheme, safe_url(str(url)))
        host = url.host
        if not host:
            raise netguard.BlockedError(f"{safe_url(str(url))}: URL has no host")
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
