"""TLS through the SSRF guard against a real local HTTPS server: the certificate is checked for
the host name of every fetch, also when two names resolve to the same pinned address and a
pooled connection for the first one is open."""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import trustme

from monitor.fetch import Fetcher
from monitor.model import FetchError, FetchRequest, FetchResult
from monitor.settings import Settings
from tests.support.feedserver import SMALL_RSS, FeedServer


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[FeedServer]:
    """HTTPS on 127.0.0.1 with a certificate valid for `a.example` only."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("a.example").configure_cert(context)
    with FeedServer(ssl_context=context) as server:
        server.add("/feed", SMALL_RSS)
        yield server


@pytest.fixture
def settings(ca: trustme.CA, tmp_path: Path) -> Settings:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return Settings(
        allow_private_hosts=["127.0.0.1"], fetch_ca_file=str(bundle), fetch_host_spacing=0
    )


async def both_on_loopback(host: str, port: int) -> Sequence[str]:
    if host in ("a.example", "b.example"):
        return ["127.0.0.1"]
    raise OSError(f"no such host {host}")


def _url(server: FeedServer, host: str) -> str:
    return f"https://{host}:{server.port}/feed"


async def test_a_pooled_connection_for_one_name_is_not_reused_for_another(
    tls_server: FeedServer, settings: Settings
) -> None:
    async with Fetcher(settings, resolver=both_on_loopback) as fetcher:
        first = await fetcher.fetch(FetchRequest("a", _url(tls_server, "a.example")))
        assert isinstance(first, FetchResult) and first.status == 200, first
        # Same address, kept-alive connection verified for a.example: b.example must not get it.
        second = await fetcher.fetch(FetchRequest("b", _url(tls_server, "b.example")))
        assert isinstance(second, FetchError), second
        assert (second.kind, second.transient) == ("tls", True)
        assert "b.example" in second.message or "CERTIFICATE_VERIFY_FAILED" in second.message
        # and a.example keeps working over its own connection
        again = await fetcher.fetch(FetchRequest("a", _url(tls_server, "a.example")))
        assert isinstance(again, FetchResult) and again.status == 200
    assert tls_server.hits["/feed"] == 2


async def test_the_wrong_name_fails_verification_on_a_fresh_fetcher_too(
    tls_server: FeedServer, settings: Settings
) -> None:
    async with Fetcher(settings, resolver=both_on_loopback) as fetcher:
        error = await fetcher.fetch(FetchRequest("b", _url(tls_server, "b.example")))
    assert isinstance(error, FetchError) and error.kind == "tls"
    assert tls_server.hits["/feed"] == 0


async def test_the_public_roots_do_not_trust_the_test_ca(tls_server: FeedServer) -> None:
    settings = Settings(allow_private_hosts=["127.0.0.1"], fetch_host_spacing=0)
    async with Fetcher(settings, resolver=both_on_loopback) as fetcher:
        error = await fetcher.fetch(FetchRequest("a", _url(tls_server, "a.example")))
    assert isinstance(error, FetchError) and error.kind == "tls"


async def test_the_connect_goes_to_the_validated_address_only(
    tls_server: FeedServer, settings: Settings
) -> None:
    """DNS answers once, for the check; the pinned connect never asks again."""
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["169.254.169.254"]

    async with Fetcher(settings, resolver=rebinding) as fetcher:
        ok = await fetcher.fetch(FetchRequest("a", _url(tls_server, "a.example")))
        assert isinstance(ok, FetchResult) and ok.url == _url(tls_server, "a.example")
        blocked = await fetcher.fetch(FetchRequest("a", _url(tls_server, "a.example")))
    assert isinstance(blocked, FetchError) and blocked.kind == "blocked_ssrf"
    assert calls == ["a.example", "a.example"]
