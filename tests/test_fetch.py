"""The fetcher against a real HTTP server on 127.0.0.1: conditional GET, status classification,
redirects, encodings and cookies. Misbehaving servers are in test_fetch_limits.py, the SSRF
guard end to end in test_fetch_ssrf.py."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from monitor.fetch import Fetcher
from monitor.model import FetchError, FetchRequest, FetchResult
from monitor.parse import ParseError, parse_feed
from monitor.settings import Settings
from tests.support import feedserver
from tests.support.feedserver import (
    FEEDS_DIR,
    FeedServer,
    rss,
)

feed_server = feedserver.feed_server  # the shared fixture, used by name below

GUARDIAN = "/feeds/rss-parser__guardian.rss"


def local(**overrides: object) -> Settings:
    """Settings for the local server: 127.0.0.1 must be allow-listed explicitly."""
    return Settings(allow_private_hosts=["127.0.0.1"], **overrides)  # type: ignore[arg-type]


async def get(server: FeedServer, path: str, **req: str | None) -> FetchResult | FetchError:
    async with Fetcher(local()) as fetcher:
        return await fetcher.fetch(FetchRequest("src", server.url(path), **req))


def ok(outcome: FetchResult | FetchError) -> FetchResult:
    assert isinstance(outcome, FetchResult), outcome
    return outcome


def failed(outcome: FetchResult | FetchError) -> FetchError:
    assert isinstance(outcome, FetchError), outcome
    return outcome


async def test_corpus_feed_arrives_byte_exact_with_lower_case_headers(
    feed_server: FeedServer,
) -> None:
    result = ok(await get(feed_server, GUARDIAN))
    assert result.status == 200
    assert result.body == (FEEDS_DIR / "rss-parser__guardian.rss").read_bytes()
    assert result.url == feed_server.url(GUARDIAN)
    assert result.source_id == "src"
    assert all(name == name.lower() for name in result.headers)
    assert result.headers["content-type"] == "application/rss+xml"
    assert result.etag and result.etag.startswith('"')
    assert result.last_modified and result.last_modified.endswith("GMT")
    assert result.max_age_seconds is None
    assert result.elapsed_seconds > 0


async def test_identifying_headers_are_sent(feed_server: FeedServer) -> None:
    settings = local(user_agent="monitor-test/9 (+mailto:ops@example.org)")
    async with Fetcher(settings) as fetcher:
        ok(await fetcher.fetch(FetchRequest("s", feed_server.url(GUARDIAN))))
    seen = feed_server.last_headers[GUARDIAN]
    assert seen["user-agent"] == "monitor-test/9 (+mailto:ops@example.org)"
    assert seen["accept-encoding"] == "gzip, deflate"
    assert "application/rss+xml" in seen["accept"]
    assert "if-none-match" not in seen and "if-modified-since" not in seen


async def test_conditional_get_sends_validators_verbatim_and_gets_304(
    feed_server: FeedServer,
) -> None:
    first = ok(await get(feed_server, GUARDIAN))
    second = ok(
        await get(feed_server, GUARDIAN, etag=first.etag, last_modified=first.last_modified)
    )
    assert second.status == 304 and second.body is None
    assert second.etag == first.etag and second.last_modified == first.last_modified
    seen = feed_server.last_headers[GUARDIAN]
    assert seen["if-none-match"] == first.etag
    assert seen["if-modified-since"] == first.last_modified
    assert feed_server.hits[GUARDIAN] == 2


async def test_odd_etag_is_sent_back_exactly(feed_server: FeedServer) -> None:
    tag = 'W/"abc def;  ,xyz"'
    feed_server.add("/odd", rss([("1", "a")]), etag=tag, last_modified=False)
    first = ok(await get(feed_server, "/odd"))
    assert first.etag == tag and first.last_modified is None
    again = ok(await get(feed_server, "/odd", etag=first.etag))
    assert feed_server.last_headers["/odd"]["if-none-match"] == tag
    assert again.status == 304


async def test_last_modified_alone_gives_304(feed_server: FeedServer) -> None:
    feed_server.add("/lm", rss([("1", "a")]), etag=False)
    first = ok(await get(feed_server, "/lm"))
    assert first.etag is None
    assert ok(await get(feed_server, "/lm", last_modified=first.last_modified)).status == 304


async def test_changed_feed_gives_200_with_new_body_and_validators(
    feed_server: FeedServer,
) -> None:
    feed_server.add("/live", rss([("1", "first")]))
    first = ok(await get(feed_server, "/live"))
    feed_server.update("/live", rss([("1", "first"), ("2", "second")]))
    second = ok(await get(feed_server, "/live", etag=first.etag, last_modified=first.last_modified))
    assert second.status == 200
    assert second.body is not None and b"second" in second.body
    assert second.etag != first.etag and second.last_modified != first.last_modified


async def test_304_without_validators_keeps_the_stored_ones(feed_server: FeedServer) -> None:
    async def bare_304(request: web.Request) -> web.StreamResponse:
        return web.Response(status=304)

    feed_server.add_handler("/bare", bare_304)
    result = ok(await get(feed_server, "/bare", etag='"v1"', last_modified="Sat, 21 Nov 2026"))
    assert (result.status, result.etag, result.last_modified) == (304, '"v1"', "Sat, 21 Nov 2026")


async def test_cache_control_max_age_is_reported(feed_server: FeedServer) -> None:
    feed_server.add("/cc", rss([]), headers={"Cache-Control": "public, max-age=1800"})
    result = ok(await get(feed_server, "/cc"))
    assert result.max_age_seconds == 1800.0
    assert result.headers["cache-control"] == "public, max-age=1800"


async def test_content_location_header_is_passed_on(feed_server: FeedServer) -> None:
    feed_server.add("/cl", rss([]), headers={"Content-Location": "/canonical.xml"})
    assert ok(await get(feed_server, "/cl")).headers["content-location"] == "/canonical.xml"


# --- content encodings -------------------------------------------------------------------------

BODY = rss([(str(i), f"item number {i}") for i in range(200)])


async def test_gzip_body_is_decoded(feed_server: FeedServer) -> None:
    feed_server.add("/gz", BODY, gzip=True)
    result = ok(await get(feed_server, "/gz"))
    assert result.headers["content-encoding"] == "gzip"
    assert result.body == BODY


@pytest.mark.parametrize(
    "compressed",
    [
        zlib.compress(BODY),  # RFC 9110 deflate: zlib wrapper
        zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS).compress(BODY)
        + zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS).flush(),
    ],
    ids=["zlib", "raw-deflate"],
)
async def test_deflate_body_is_decoded(feed_server: FeedServer, compressed: bytes) -> None:
    if not compressed.startswith(b"x"):  # build the raw stream properly in one object
        obj = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        compressed = obj.compress(BODY) + obj.flush()
    feed_server.add_status("/df", 200, compressed, {"Content-Encoding": "deflate"})
    assert ok(await get(feed_server, "/df")).body == BODY


async def test_concatenated_gzip_members_are_one_body(feed_server: FeedServer) -> None:
    def gz(data: bytes) -> bytes:
        return zlib.compress(data, wbits=zlib.MAX_WBITS | 16)

    feed_server.add_status(
        "/gz2", 200, gz(BODY[:1000]) + gz(BODY[1000:]), {"Content-Encoding": "gzip"}
    )
    assert ok(await get(feed_server, "/gz2")).body == BODY


async def test_unadvertised_encoding_is_a_protocol_error(feed_server: FeedServer) -> None:
    feed_server.add_status("/br", 200, b"\x1b\x00", {"Content-Encoding": "br"})
    error = failed(await get(feed_server, "/br"))
    assert (error.kind, error.transient) == ("protocol", True)
    assert "br" in error.message


async def test_corrupt_gzip_is_a_protocol_error(feed_server: FeedServer) -> None:
    feed_server.add_status(
        "/badgz", 200, b"\x1f\x8b\x08\x00garbage-garbage", {"Content-Encoding": "gzip"}
    )
    error = failed(await get(feed_server, "/badgz"))
    assert error.kind == "protocol" and "gzip" in error.message


# --- status codes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "transient"),
    [
        (500, "http_5xx", True),
        (502, "http_5xx", True),
        (504, "http_5xx", True),
        (410, "gone", False),
        (404, "http_4xx", False),
        (401, "http_4xx", False),
        (403, "http_4xx", False),
        (400, "http_4xx", False),
        (408, "http_4xx", True),
        (300, "protocol", True),
    ],
)
async def test_status_classification(
    feed_server: FeedServer, status: int, kind: str, transient: bool
) -> None:
    feed_server.add_status("/s", status, b"nope")
    error = failed(await get(feed_server, "/s"))
    assert (error.kind, error.transient, error.status) == (kind, transient, status)
    assert str(status) in error.message
    assert error.retry_after_seconds is None


async def test_429_with_retry_after_seconds(feed_server: FeedServer) -> None:
    feed_server.add_retry_after("/rl", 120)
    error = failed(await get(feed_server, "/rl"))
    assert (error.kind, error.transient, error.status) == ("rate_limited", True, 429)
    assert error.retry_after_seconds == 120.0


async def test_503_with_retry_after_http_date(feed_server: FeedServer) -> None:
    feed_server.add_retry_after("/busy", datetime.now(UTC) + timedelta(seconds=600), status=503)
    error = failed(await get(feed_server, "/busy"))
    assert (error.kind, error.status) == ("http_5xx", 503)
    assert error.retry_after_seconds is not None
    assert 590 <= error.retry_after_seconds <= 600


async def test_429_with_garbage_retry_after_has_none(feed_server: FeedServer) -> None:
    feed_server.add_retry_after("/rl2", "whenever")
    assert failed(await get(feed_server, "/rl2")).retry_after_seconds is None


# --- redirects ---------------------------------------------------------------------------------


async def test_five_redirects_are_followed_and_the_final_url_reported(
    feed_server: FeedServer,
) -> None:
    feed_server.add_redirect_chain("/moved", 5, GUARDIAN)
    result = ok(await get(feed_server, "/moved"))
    assert result.url == feed_server.url(GUARDIAN)
    assert result.body == (FEEDS_DIR / "rss-parser__guardian.rss").read_bytes()
    assert feed_server.hits["/moved/hop4"] == 1


async def test_six_redirects_are_too_many(feed_server: FeedServer) -> None:
    feed_server.add_redirect_chain("/far", 6, GUARDIAN)
    error = failed(await get(feed_server, "/far"))
    assert (error.kind, error.transient) == ("too_many_redirects", False)
    assert feed_server.hits[GUARDIAN] == 0


async def test_redirect_loop_stops(feed_server: FeedServer) -> None:
    feed_server.add_redirect_loop("/loop")
    error = failed(await get(feed_server, "/loop"))
    assert error.kind == "too_many_redirects"
    assert feed_server.hits["/loop"] == 6  # the first request and five redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_every_redirect_status_is_followed(feed_server: FeedServer, status: int) -> None:
    feed_server.add_redirect("/r", GUARDIAN, status=status)
    assert ok(await get(feed_server, "/r")).status == 200


async def test_permanent_redirects_report_where_the_feed_moved(feed_server: FeedServer) -> None:
    feed_server.add_redirect("/old-feed", GUARDIAN, status=301)
    feed_server.add_redirect("/older-feed", "/old-feed", status=308)
    assert ok(await get(feed_server, "/older-feed")).moved_to == feed_server.url(GUARDIAN)
    assert ok(await get(feed_server, GUARDIAN)).moved_to is None


async def test_a_temporary_hop_means_the_feed_has_not_moved(feed_server: FeedServer) -> None:
    feed_server.add_redirect("/campaign", GUARDIAN, status=302)
    feed_server.add_redirect("/mixed", "/campaign", status=301)
    result = ok(await get(feed_server, "/mixed"))
    assert result.url == feed_server.url(GUARDIAN) and result.moved_to is None


async def test_conditional_headers_survive_a_redirect(feed_server: FeedServer) -> None:
    first = ok(await get(feed_server, GUARDIAN))
    feed_server.add_redirect("/old", GUARDIAN, status=301)
    result = ok(await get(feed_server, "/old", etag=first.etag))
    assert result.status == 304


# --- content the parser must judge ---------------------------------------------------------------


async def test_html_instead_of_a_feed_is_delivered_for_the_parser_to_refuse(
    feed_server: FeedServer,
) -> None:
    feed_server.add_html("/html")
    result = ok(await get(feed_server, "/html"))
    assert result.headers["content-type"].startswith("text/html")
    assert result.body is not None
    with pytest.raises(ParseError) as info:
        parse_feed(result.body, result.headers, result.url)
    assert info.value.kind == "parse_error"


@pytest.mark.parametrize("kind", ["quadratic", "billion_laughs", "xxe"])
async def test_entity_expansion_feed_is_refused_by_the_parser(
    feed_server: FeedServer, kind: str
) -> None:
    feed_server.add_entity_expansion("/ent", kind)  # type: ignore[arg-type]
    result = ok(await get(feed_server, "/ent"))
    assert result.body is not None and b"<!ENTITY" in result.body
    with pytest.raises(ParseError) as info:
        parse_feed(result.body, result.headers, result.url)
    assert info.value.kind == "rejected_entities"


# --- independence of sources ---------------------------------------------------------------------


async def test_cookies_never_travel_between_sources(feed_server: FeedServer) -> None:
    feed_server.add_status("/set", 200, rss([]), {"Set-Cookie": "session=abc; Path=/"})
    async with Fetcher(local()) as fetcher:
        ok(await fetcher.fetch(FetchRequest("a", feed_server.url("/set"))))
        ok(await fetcher.fetch(FetchRequest("b", feed_server.url(GUARDIAN))))
    assert "cookie" not in feed_server.last_headers[GUARDIAN]


async def test_connections_are_reused_across_304s(feed_server: FeedServer) -> None:
    peers: set[object] = set()

    async def track(request: web.Request) -> web.StreamResponse:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(status=304, headers={"ETag": '"x"'})

    feed_server.add_handler("/keep", track)
    async with Fetcher(local(fetch_concurrency=1)) as fetcher:
        for _ in range(20):
            ok(await fetcher.fetch(FetchRequest("k", feed_server.url("/keep"), etag='"x"')))
    assert len(peers) == 1


async def test_fetcher_is_an_async_context_manager_and_closes(feed_server: FeedServer) -> None:
    fetcher = Fetcher(local())
    async with fetcher as entered:
        assert entered is fetcher
        ok(await fetcher.fetch(FetchRequest("s", feed_server.url(GUARDIAN))))
    assert fetcher._client.is_closed


async def test_non_ascii_etag_round_trips(feed_server: FeedServer) -> None:
    feed_server.add("/utf", rss([]), etag='"café-☃"')
    first = ok(await get(feed_server, "/utf"))
    assert first.etag == '"café-☃"'
    assert ok(await get(feed_server, "/utf", etag=first.etag)).status == 304


async def test_unsendable_validator_falls_back_to_a_plain_get(feed_server: FeedServer) -> None:
    result = ok(await get(feed_server, GUARDIAN, etag='"x"\r\nX-Injected: 1'))
    assert result.status == 200
    seen = feed_server.last_headers[GUARDIAN]
    assert "x-injected" not in seen and "if-none-match" not in seen
