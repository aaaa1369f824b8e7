"""Misbehaving servers end in the right FetchError in bounded time and memory, and one bad
source never holds up the others (global and per-host limits)."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from aiohttp import web

from monitor.fetch import Fetcher
from monitor.model import FetchError, FetchRequest, FetchResult
from monitor.settings import Settings
from tests.support import feedserver
from tests.support.feedserver import (
    SMALL_RSS,
    FeedServer,
    gzip_bomb,
)

feed_server = feedserver.feed_server  # the shared fixture, used by name below

MB = 1024 * 1024
T = TypeVar("T")


def local(**overrides: object) -> Settings:
    return Settings(allow_private_hosts=["127.0.0.1"], **overrides)  # type: ignore[arg-type]


async def fetch_one(settings: Settings, url: str) -> tuple[FetchResult | FetchError, float]:
    async with Fetcher(settings) as fetcher:
        started = time.monotonic()
        outcome = await fetcher.fetch(FetchRequest("src", url))
        return outcome, time.monotonic() - started


async def peak_memory(run: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """Peak Python allocations while `run` runs (the server thread counts too, which is fine:
    it only ever holds one chunk)."""
    tracemalloc.start()
    try:
        result = await run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def failed(outcome: FetchResult | FetchError) -> FetchError:
    assert isinstance(outcome, FetchError), outcome
    return outcome


# --- time bounds -------------------------------------------------------------------------------


async def test_trickle_is_cut_at_the_overall_deadline(feed_server: FeedServer) -> None:
    # 1 byte every 0.2 s never trips the 5 s read timeout; only the overall deadline stops it
    url = feed_server.add_trickle("/trickle", interval=0.2)
    outcome, took = await fetch_one(local(fetch_total_timeout=1.0, fetch_read_timeout=5.0), url)
    error = failed(outcome)
    assert (error.kind, error.transient) == ("timeout", True)
    assert "overall deadline" in error.message
    # the body alone would take ~60 s; slack above 1 s is for a loaded CI machine
    assert 0.9 <= took <= 2.5
    assert 0.9 <= error.elapsed_seconds <= 2.5


async def test_server_that_never_answers_hits_the_read_timeout(feed_server: FeedServer) -> None:
    url = feed_server.add_hang("/hang")
    outcome, took = await fetch_one(local(fetch_read_timeout=0.5, fetch_total_timeout=10.0), url)
    error = failed(outcome)
    assert (error.kind, error.transient) == ("timeout", True)
    assert "waiting for data" in error.message
    assert 0.4 <= took <= 3.0


async def test_connection_refused_is_a_transient_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome, took = await fetch_one(local(), f"http://127.0.0.1:{port}/feed")
    error = failed(outcome)
    assert (error.kind, error.transient) == ("connect", True)
    assert took < 3


@pytest.mark.slow
async def test_hanging_sources_do_not_delay_healthy_ones(feed_server: FeedServer) -> None:
    for i in range(3):
        feed_server.add_hang(f"/hang{i}")
    settings = local(fetch_concurrency=10, fetch_per_host=10, fetch_total_timeout=3.0)
    finished: dict[str, float] = {}
    async with Fetcher(settings) as fetcher:
        started = time.monotonic()

        async def one(path: str) -> FetchResult | FetchError:
            outcome = await fetcher.fetch(FetchRequest(path, feed_server.url(path)))
            finished[path] = time.monotonic() - started
            return outcome

        paths = [f"/hang{i}" for i in range(3)] + sorted(
            p for p in feed_server._feeds if p.startswith("/feeds/")
        )[:20]
        outcomes = await asyncio.gather(*(one(p) for p in paths))
    healthy = [o for o in outcomes[3:] if isinstance(o, FetchResult)]
    assert len(healthy) == 20
    slowest_healthy = max(finished[p] for p in paths[3:])
    assert slowest_healthy < 2.5
    assert all(failed(o).kind == "timeout" for o in outcomes[:3])
    assert all(2.8 <= finished[p] <= 5.0 for p in paths[:3])
    assert slowest_healthy < min(finished[p] for p in paths[:3])


# --- size caps -----------------------------------------------------------------------------------


async def test_declared_huge_body_is_refused_before_reading(feed_server: FeedServer) -> None:
    url = feed_server.add_huge("/huge", 50 * MB)
    outcome, took = await fetch_one(local(), url)
    error = failed(outcome)
    assert (error.kind, error.transient, error.status) == ("too_large", False, 200)
    assert "Content-Length 52428800" in error.message
    assert took < 2


async def test_lying_content_length_of_10_gb_is_refused_before_reading(
    feed_server: FeedServer,
) -> None:
    url = feed_server.add_huge("/liar", 1024, declared_length=10 * 1024**3)
    error = failed((await fetch_one(local(), url))[0])
    assert error.kind == "too_large" and "10737418240" in error.message


async def test_50_mb_streamed_body_aborts_at_the_raw_cap_in_bounded_memory(
    feed_server: FeedServer,
) -> None:
    # no Content-Length to go by: a chunked 50 MB body, counted while it streams
    url = feed_server.add_huge("/chunked", 50 * MB, chunked=True)
    settings = local(fetch_max_bytes=4 * MB)
    (outcome, took), peak = await peak_memory(lambda: fetch_one(settings, url))
    error = failed(outcome)
    assert error.kind == "too_large" and "4194304" in error.message
    assert took < 5
    print(f"50 MB chunked body, 4 MB cap: {took:.2f} s, peak {peak / MB:.1f} MB")
    assert peak < 12 * MB, f"peak {peak / MB:.1f} MB"


async def test_endless_stream_aborts_at_the_default_cap(feed_server: FeedServer) -> None:
    url = feed_server.add_huge("/endless", None)
    (outcome, took), peak = await peak_memory(lambda: fetch_one(local(), url))
    error = failed(outcome)
    assert error.kind == "too_large" and "10485760" in error.message
    assert took < 10
    print(f"endless body, default 10 MB cap: {took:.2f} s, peak {peak / MB:.1f} MB")
    assert peak < 25 * MB, f"peak {peak / MB:.1f} MB"


async def test_gzip_bomb_aborts_at_the_decoded_cap_in_bounded_memory(
    feed_server: FeedServer,
) -> None:
    bomb = gzip_bomb(200 * MB)
    assert len(bomb) < 300 * 1024  # a small body on the wire...
    url = feed_server.add_gzip_bomb("/bomb", 200 * MB)
    # ...that the default 20 MB decoded cap stops long before 200 MB
    (outcome, took), peak = await peak_memory(lambda: fetch_one(local(), url))
    error = failed(outcome)
    assert (error.kind, error.transient) == ("too_large", False)
    assert "after gzip decoding" in error.message
    assert took < 5
    print(f"gzip bomb (200 MB of zeros), 20 MB cap: {took:.2f} s, peak {peak / MB:.1f} MB")
    assert peak < 30 * MB, f"peak {peak / MB:.1f} MB"


async def test_gzip_bomb_with_a_small_cap_stays_small(feed_server: FeedServer) -> None:
    url = feed_server.add_gzip_bomb("/bomb", 200 * MB)
    settings = local(fetch_max_decoded_bytes=2 * MB)
    (outcome, took), peak = await peak_memory(lambda: fetch_one(settings, url))
    assert failed(outcome).kind == "too_large"
    print(f"gzip bomb, 2 MB cap: {took:.2f} s, peak {peak / MB:.1f} MB")
    assert peak < 6 * MB, f"peak {peak / MB:.1f} MB"


async def test_body_exactly_at_the_cap_is_accepted(feed_server: FeedServer) -> None:
    body = SMALL_RSS + b" " * (64 * 1024 - len(SMALL_RSS))
    url = feed_server.add("/exact", body)
    outcome, _ = await fetch_one(local(fetch_max_bytes=len(body)), url)
    assert isinstance(outcome, FetchResult) and outcome.body == body
    outcome, _ = await fetch_one(local(fetch_max_bytes=len(body) - 1), url)
    assert failed(outcome).kind == "too_large"


# --- concurrency limits --------------------------------------------------------------------------


class InFlight:
    """Counts requests in flight on the server, per Host header and in all."""

    def __init__(self) -> None:
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.total = 0
        self.peak_total = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        host = request.host.split(":")[0]
        self.now[host] = self.now.get(host, 0) + 1
        self.peak[host] = max(self.peak.get(host, 0), self.now[host])
        self.total += 1
        self.peak_total = max(self.peak_total, self.total)
        try:
            await asyncio.sleep(0.2)
            return web.Response(body=SMALL_RSS, content_type="application/rss+xml")
        finally:
            self.now[host] -= 1
            self.total -= 1


async def resolve_to_loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


async def test_per_host_limit(feed_server: FeedServer) -> None:
    counter = InFlight()
    feed_server.add_handler("/slow", counter)
    settings = local(fetch_concurrency=20, fetch_per_host=2, fetch_host_spacing=0)
    async with Fetcher(settings, resolver=resolve_to_loopback) as fetcher:
        urls = [
            f"http://{host}:{feed_server.port}/slow"
            for host in ("a.test", "b.test", "c.test")
            for _ in range(5)
        ]
        outcomes = await asyncio.gather(*(fetcher.fetch(FetchRequest(u, u)) for u in urls))
    assert all(isinstance(o, FetchResult) for o in outcomes)
    assert counter.peak == {"a.test": 2, "b.test": 2, "c.test": 2}
    assert counter.peak_total == 6


class Arrivals:
    """When each request reached the server, per Host header."""

    def __init__(self) -> None:
        self.at: dict[str, list[float]] = {}

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.at.setdefault(request.host.split(":")[0], []).append(time.monotonic())
        return web.Response(body=SMALL_RSS, content_type="application/rss+xml")


async def test_requests_to_one_public_host_are_spaced(feed_server: FeedServer) -> None:
    arrivals = Arrivals()
    feed_server.add_handler("/feed", arrivals)
    # a.test and b.test resolve to loopback but are not listed: treated as someone else's hosts
    settings = local(fetch_host_spacing=0.4, fetch_per_host=2)
    async with Fetcher(settings, resolver=resolve_to_loopback) as fetcher:
        urls = [
            f"http://{host}:{feed_server.port}/feed"
            for host in ("a.test", "b.test")
            for _ in range(3)
        ]
        outcomes = await asyncio.gather(*(fetcher.fetch(FetchRequest(u, u)) for u in urls))
    assert all(isinstance(o, FetchResult) for o in outcomes), outcomes
    for host in ("a.test", "b.test"):
        times = sorted(arrivals.at[host])
        assert len(times) == 3
        assert min(b - a for a, b in itertools.pairwise(times)) >= 0.35, (host, times)
    # hosts are spaced on their own: the second host did not wait for the first
    assert abs(arrivals.at["a.test"][0] - arrivals.at["b.test"][0]) < 0.35


async def test_listed_hosts_are_not_spaced(feed_server: FeedServer) -> None:
    arrivals = Arrivals()
    feed_server.add_handler("/feed", arrivals)
    settings = local(fetch_host_spacing=30.0)  # 127.0.0.1 is in MONITOR_ALLOW_PRIVATE_HOSTS
    async with Fetcher(settings) as fetcher:
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(fetcher.fetch(FetchRequest(str(i), feed_server.url("/feed"))) for i in range(3))
            ),
            timeout=20,
        )
    assert all(isinstance(o, FetchResult) for o in outcomes), outcomes
    assert len(arrivals.at["127.0.0.1"]) == 3


async def test_global_limit(feed_server: FeedServer) -> None:
    counter = InFlight()
    feed_server.add_handler("/slow", counter)
    settings = local(fetch_concurrency=3, fetch_per_host=10, fetch_host_spacing=0)
    async with Fetcher(settings, resolver=resolve_to_loopback) as fetcher:
        urls = [f"http://h{i}.test:{feed_server.port}/slow" for i in range(9)]
        outcomes = await asyncio.gather(*(fetcher.fetch(FetchRequest(u, u)) for u in urls))
    assert all(isinstance(o, FetchResult) for o in outcomes)
    assert counter.peak_total == 3


@pytest.mark.slow
async def test_waiting_for_a_slot_does_not_count_against_the_deadline(
    feed_server: FeedServer,
) -> None:
    counter = InFlight()
    feed_server.add_handler("/slow", counter)
    # 8 fetches of 0.2 s one at a time take ~1.6 s, beyond the 1 s deadline of each
    settings = local(fetch_concurrency=1, fetch_per_host=1, fetch_total_timeout=1.0)
    async with Fetcher(settings) as fetcher:
        outcomes = await asyncio.gather(
            *(fetcher.fetch(FetchRequest(str(i), feed_server.url("/slow"))) for i in range(8))
        )
    assert all(isinstance(o, FetchResult) for o in outcomes), outcomes
    assert counter.peak_total == 1


async def test_hanging_dns_is_cut_at_the_connect_timeout() -> None:
    async def never(host: str, port: int) -> list[str]:
        await asyncio.sleep(60)
        return ["93.184.216.34"]

    settings = local(fetch_connect_timeout=0.3, fetch_total_timeout=10.0)
    async with Fetcher(settings, resolver=never) as fetcher:
        started = time.monotonic()
        outcome = await fetcher.fetch(FetchRequest("src", "http://slow-dns.test/feed"))
        took = time.monotonic() - started
    error = failed(outcome)
    assert (error.kind, error.transient) == ("dns", True)
    assert "slow-dns.test" in error.message
    assert 0.25 <= took <= 2.0
