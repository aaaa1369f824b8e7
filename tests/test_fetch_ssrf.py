"""The SSRF guard inside the fetcher: every hop checked before connecting, the validated IP is
the one connected to (DNS rebinding), allow-list, schemes, and no secrets in error messages."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Sequence

import httpx
import pytest
import structlog

from monitor import logs
from monitor.fetch import Fetcher
from monitor.model import FetchError, FetchRequest, FetchResult
from monitor.settings import Settings
from tests.support import feedserver
from tests.support.feedserver import FeedServer

feed_server = feedserver.feed_server  # the shared fixture, used by name below

GUARDIAN = "/feeds/rss-parser__guardian.rss"


class Recorder(httpx.AsyncBaseTransport):
    """The real connecting transport, noting where each request really went."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: list[tuple[str, str, object]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(
            (request.url.host, request.headers["host"], request.extensions.get("sni_hostname"))
        )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Dns:
    """A stub resolver whose answers change per call, like an attacker's DNS server."""

    def __init__(self, answers: dict[str, list[Sequence[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        queue = self.answers.get(host)
        if not queue:
            raise OSError(f"no such host {host}")
        return queue.pop(0) if len(queue) > 1 else queue[0]


def failed(outcome: FetchResult | FetchError) -> FetchError:
    assert isinstance(outcome, FetchError), outcome
    return outcome


async def fetch(settings: Settings, url: str, **kw: object) -> FetchResult | FetchError:
    async with Fetcher(settings, **kw) as fetcher:  # type: ignore[arg-type]
        return await fetcher.fetch(FetchRequest("src", url))


async def test_loopback_is_blocked_by_default_before_any_connection(
    feed_server: FeedServer,
) -> None:
    error = failed(await fetch(Settings(allow_private_hosts=[]), feed_server.url(GUARDIAN)))
    assert (error.kind, error.transient) == ("blocked_ssrf", False)
    assert "loopback" in error.message and "MONITOR_ALLOW_PRIVATE_HOSTS" in error.message
    assert feed_server.hits[GUARDIAN] == 0


@pytest.mark.parametrize(
    "host",
    ["localhost", "127.1", "2130706433", "0x7f000001", "[::ffff:127.0.0.1]", "[::1]"],
)
async def test_loopback_spellings_are_blocked(feed_server: FeedServer, host: str) -> None:
    url = f"http://{host}:{feed_server.port}{GUARDIAN}"
    error = failed(await fetch(Settings(allow_private_hosts=[]), url))
    assert error.kind == "blocked_ssrf", error
    assert feed_server.hits[GUARDIAN] == 0


@pytest.mark.parametrize("allow", [["127.0.0.1"], ["127.0.0.0/8"], ["feeds.internal"]])
async def test_allow_list_lets_an_internal_source_through(
    feed_server: FeedServer, allow: list[str]
) -> None:
    dns = Dns({"feeds.internal": [["127.0.0.1"]]})
    url = f"http://feeds.internal:{feed_server.port}{GUARDIAN}"
    result = await fetch(Settings(allow_private_hosts=allow), url, resolver=dns)
    assert isinstance(result, FetchResult) and result.status == 200
    assert feed_server.last_headers[GUARDIAN]["host"] == f"feeds.internal:{feed_server.port}"


async def test_name_resolving_to_a_private_address_is_blocked(feed_server: FeedServer) -> None:
    dns = Dns({"intranet.example": [["10.1.2.3"]]})
    error = failed(
        await fetch(
            Settings(allow_private_hosts=["127.0.0.1"]),
            "http://intranet.example/feed",
            resolver=dns,
        )
    )
    assert error.kind == "blocked_ssrf"
    assert "intranet.example resolves to 10.1.2.3" in error.message


async def test_dns_rebinding_connects_to_the_validated_address(feed_server: FeedServer) -> None:
    """The check sees 127.0.0.1 (allow-listed); any later lookup would say 169.254.169.254.
    The connection must go to the checked address, with the name kept for Host."""
    dns = Dns({"rebind.test": [["127.0.0.1"], ["169.254.169.254"]]})
    recorder = Recorder()
    settings = Settings(allow_private_hosts=["127.0.0.1"])
    url = f"http://rebind.test:{feed_server.port}{GUARDIAN}"
    async with Fetcher(settings, resolver=dns, transport=recorder) as fetcher:
        first = await fetcher.fetch(FetchRequest("src", url))
        assert isinstance(first, FetchResult) and first.status == 200
        assert first.url == url  # the reported URL keeps the name
        assert dns.calls == ["rebind.test"]  # one lookup: nothing else asked DNS again
        assert recorder.seen == [("127.0.0.1", f"rebind.test:{feed_server.port}", None)]
        # the next poll resolves afresh, sees the metadata address, and never connects
        second = failed(await fetcher.fetch(FetchRequest("src", url)))
    assert second.kind == "blocked_ssrf" and "169.254.169.254" in second.message
    assert len(recorder.seen) == 1
    assert feed_server.hits[GUARDIAN] == 1


async def test_https_keeps_the_name_for_tls(feed_server: FeedServer) -> None:
    """Pinned to an IP, TLS must still verify (and send SNI for) the host name."""
    dns = Dns({"secure.test": [["127.0.0.1"]]})
    recorder = Recorder()
    url = f"https://secure.test:{feed_server.port}/"
    outcome = await fetch(
        Settings(allow_private_hosts=["127.0.0.1"]), url, resolver=dns, transport=recorder
    )
    assert recorder.seen == [("127.0.0.1", f"secure.test:{feed_server.port}", "secure.test")]
    # the local server speaks plain HTTP, so the handshake fails: classified as TLS
    error = failed(outcome)
    assert (error.kind, error.transient) == ("tls", True)


async def test_redirect_to_cloud_metadata_is_blocked_before_connecting(
    feed_server: FeedServer,
) -> None:
    feed_server.add_redirect("/evil", "http://169.254.169.254/latest/meta-data/")
    recorder = Recorder()
    error = failed(
        await fetch(
            Settings(allow_private_hosts=["127.0.0.1"]),
            feed_server.url("/evil"),
            transport=recorder,
        )
    )
    assert (error.kind, error.transient) == ("blocked_ssrf", False)
    assert "169.254.169.254" in error.message and "redirect hop 1" in error.message
    assert [host for host, _, _ in recorder.seen] == ["127.0.0.1"]  # metadata never contacted


async def test_every_hop_is_checked_not_just_the_first(feed_server: FeedServer) -> None:
    dns = Dns({"inside.test": [["192.168.1.10"]]})
    feed_server.add_redirect_chain("/hops", 3, "http://inside.test/secret")
    error = failed(
        await fetch(
            Settings(allow_private_hosts=["127.0.0.1"]), feed_server.url("/hops"), resolver=dns
        )
    )
    assert error.kind == "blocked_ssrf"
    assert "inside.test resolves to 192.168.1.10" in error.message
    assert "redirect hop 3" in error.message


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "gopher://127.0.0.1:6379/_FLUSHALL", "ftp://example.org/feed"],
)
async def test_redirect_to_a_non_http_scheme_is_refused(
    feed_server: FeedServer, location: str
) -> None:
    feed_server.add_redirect("/scheme", location)
    error = failed(
        await fetch(Settings(allow_private_hosts=["127.0.0.1"]), feed_server.url("/scheme"))
    )
    assert (error.kind, error.transient) == ("blocked_ssrf", False)
    assert "only http and https" in error.message


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.org/feed.xml",
        "gopher://x/",
        "http:///nohost",
        "feeds.example.org/rss",
        "",
        "http://[::1/",
    ],
)
async def test_bad_source_urls_are_refused(url: str) -> None:
    error = failed(await fetch(Settings(), url))
    assert (error.kind, error.transient) == ("bad_url", False)


async def test_dns_failure_is_transient() -> None:
    error = failed(await fetch(Settings(), "http://nowhere.test/feed", resolver=Dns({})))
    assert (error.kind, error.transient) == ("dns", True)
    assert "nowhere.test" in error.message


async def test_dns_failure_on_a_redirect_hop_names_the_hop(feed_server: FeedServer) -> None:
    feed_server.add_redirect("/away", "http://nowhere.test/feed")
    error = failed(
        await fetch(
            Settings(allow_private_hosts=["127.0.0.1"]), feed_server.url("/away"), resolver=Dns({})
        )
    )
    assert (error.kind, error.transient) == ("dns", True)
    assert "nowhere.test" in error.message and "redirect hop 1" in error.message


async def test_secrets_in_urls_stay_out_of_error_messages(feed_server: FeedServer) -> None:
    secret = "SENTINEL-3"
    blocked = failed(await fetch(Settings(), feed_server.url(f"/x?token={secret}")))
    feed_server.add_redirect("/r", f"http://169.254.169.254/x?token={secret}")
    hop = failed(await fetch(Settings(allow_private_hosts=["127.0.0.1"]), feed_server.url("/r")))
    feed_server.add_redirect_loop("/loop")
    loop = failed(
        await fetch(
            Settings(allow_private_hosts=["127.0.0.1"]), feed_server.url(f"/loop?token={secret}")
        )
    )
    for error in (blocked, hop, loop):
        assert secret not in error.message, error.message


async def test_ipv6_answer_is_pinned_with_brackets() -> None:
    with FeedServer(host="::1") as server:
        server.add("/v6", b"<rss/>")
        dns = Dns({"six.test": [["::1"]]})
        recorder = Recorder()
        url = f"http://six.test:{server.port}/v6"
        outcome = await fetch(
            Settings(allow_private_hosts=["::1"]), url, resolver=dns, transport=recorder
        )
        assert isinstance(outcome, FetchResult) and outcome.body == b"<rss/>"
        assert recorder.seen == [("::1", f"six.test:{server.port}", None)]
        assert server.last_headers["/v6"]["host"] == f"six.test:{server.port}"
        # and the plain literal form is blocked without the allow-list entry
        blocked = await fetch(Settings(), server.url("/v6"))
        assert isinstance(blocked, FetchError) and "loopback" in blocked.message


@pytest.fixture
def production_logs() -> Iterator[io.StringIO]:
    """The service's JSON logging with its redaction processors, restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure(level="INFO", fmt="json", stream=stream)
    try:
        yield stream
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.parametrize(
    "url",
    [
        "http://[::ffff:127.0.0.1]:8080/feed?token=SENTINEL-3",
        "http://[::1]/feed",
        "http://user:SENTINEL-3@10.0.0.1/feed",
    ],
)
async def test_blocks_are_logged_as_warnings_without_secrets(
    production_logs: io.StringIO, url: str
) -> None:
    error = failed(await fetch(Settings(), url))
    assert error.kind == "blocked_ssrf"
    records = [json.loads(line) for line in production_logs.getvalue().splitlines()]
    blocked = [r for r in records if r.get("event") == "fetch blocked"]
    assert len(blocked) == 1 and blocked[0]["level"] == "warning"
    assert blocked[0]["source"] == "src"
    assert "SENTINEL" not in production_logs.getvalue()
    assert "SENTINEL" not in error.message
