"""The local feed server other tests rely on: corpus served byte-exact with working 304s,
bookkeeping, runtime changes, prompt shutdown, separate-process mode, and throughput."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest

from monitor.fetch import Fetcher
from monitor.model import FetchRequest, FetchResult
from monitor.settings import Settings
from tests.support import feedserver
from tests.support.feedserver import FEEDS_DIR, FeedServer, rss
from tests.support.paths import REPO

feed_server = feedserver.feed_server  # the shared fixture, used by name below


def test_corpus_is_served_byte_exact_with_validators(feed_server: FeedServer) -> None:
    files = sorted(p for p in FEEDS_DIR.iterdir() if p.is_file())
    assert len(files) >= 30
    with httpx.Client() as client:  # plain sync code works too
        for file in files:
            response = client.get(feed_server.url(f"/feeds/{file.name}"))
            assert response.status_code == 200, file.name
            assert response.content == file.read_bytes(), file.name
            assert response.headers["etag"] and response.headers["last-modified"]
    assert feed_server.hits[f"/feeds/{files[0].name}"] == 1


def test_content_types_follow_the_file_kind(feed_server: FeedServer) -> None:
    expected = {
        "feed-rs__jsonfeed_influxdata_1.1.json": "application/json",
        "rss-parser__heise.atom": "application/atom+xml",
        "rss-parser__guardian.rss": "application/rss+xml",
        "rss-parser__science-rss1.rdf": "application/rdf+xml",
        "knews-rss__hani.xml": "application/xml",
    }
    with httpx.Client() as client:
        for name, ctype in expected.items():
            assert client.get(feed_server.url(f"/feeds/{name}")).headers["content-type"] == ctype


def test_conditional_requests(feed_server: FeedServer) -> None:
    url = feed_server.url("/feeds/rss-parser__guardian.rss")
    with httpx.Client() as client:
        first = client.get(url)
        etag, lm = first.headers["etag"], first.headers["last-modified"]

        def status(**headers: str) -> int:
            return client.get(url, headers=headers).status_code

        assert status(**{"If-None-Match": etag}) == 304
        assert status(**{"If-None-Match": f'"other", W/{etag}'}) == 304
        assert status(**{"If-None-Match": "*"}) == 304
        assert status(**{"If-Modified-Since": lm}) == 304
        assert status(**{"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}) == 200
        # If-None-Match decides when both are sent (RFC 9110 13.1.3)
        assert status(**{"If-None-Match": '"stale"', "If-Modified-Since": lm}) == 200
        not_modified = client.get(url, headers={"If-None-Match": etag})
        assert not_modified.headers["etag"] == etag and not not_modified.content
    path = "/feeds/rss-parser__guardian.rss"
    assert feed_server.hits[path] == 8
    assert feed_server.last_headers[path]["if-none-match"] == etag


def test_updates_change_validators_strictly(feed_server: FeedServer) -> None:
    stamps = []
    tags = []
    with httpx.Client() as client:
        for n in range(3):  # three changes within one second still get distinct Last-Modified
            feed_server.add("/grow", rss([(str(i), f"item {i}") for i in range(n + 1)]))
            response = client.get(feed_server.url("/grow"))
            stamps.append(parsedate_to_datetime(response.headers["last-modified"]))
            tags.append(response.headers["etag"])
            assert response.content.count(b"<item>") == n + 1
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert len(set(tags)) == 3


def test_update_keeps_type_and_headers(feed_server: FeedServer) -> None:
    feed_server.add("/u", rss([]), "application/atom+xml", headers={"Cache-Control": "max-age=60"})
    feed_server.update("/u", rss([("1", "new")]))
    response = httpx.get(feed_server.url("/u"))
    assert response.headers["content-type"] == "application/atom+xml"
    assert response.headers["cache-control"] == "max-age=60"
    assert b"new" in response.content


def test_gzip_only_when_accepted(feed_server: FeedServer) -> None:
    body = rss([(str(i), "x" * 50) for i in range(50)])
    feed_server.add("/z", body, gzip=True)
    with httpx.Client() as client:
        zipped = client.get(feed_server.url("/z"), headers={"Accept-Encoding": "gzip"})
        plain = client.get(feed_server.url("/z"), headers={"Accept-Encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.content == body
    assert "content-encoding" not in plain.headers and plain.content == body


def test_unknown_path_is_404_and_counted(feed_server: FeedServer) -> None:
    assert httpx.get(feed_server.url("/missing")).status_code == 404
    assert feed_server.hits["/missing"] == 1
    feed_server.reset_hits()
    assert feed_server.hits["/missing"] == 0 and not feed_server.last_headers
    feed_server.remove("/feeds/rss-parser__guardian.rss")
    assert httpx.get(feed_server.url("/feeds/rss-parser__guardian.rss")).status_code == 404


def test_stop_is_prompt_with_requests_hanging() -> None:
    server = FeedServer().start()
    url = server.add_hang("/hang")
    trickle = server.add_trickle("/slow", interval=5.0)
    errors: list[BaseException] = []

    def hang(target: str) -> None:
        try:
            httpx.get(target, timeout=30)
        except httpx.HTTPError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hang, args=(u,)) for u in (url, trickle)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_separate_process_mode_serves_until_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.feedserver", "--corpus", "--synthetic", "3"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:")
        assert httpx.get(base + "synthetic/2.xml").status_code == 200
        assert httpx.get(base + "feeds/rss-parser__guardian.rss").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


@pytest.mark.slow
async def test_a_thousand_unchanged_sources_poll_quickly(feed_server: FeedServer) -> None:
    """1,000 conditional GETs answered 304, through the real Fetcher, server in this process."""
    for i in range(1000):
        feed_server.add(f"/many/{i}", rss([(str(i), f"feed {i}")]))
    settings = Settings(allow_private_hosts=["127.0.0.1"], fetch_concurrency=20, fetch_per_host=20)
    requests = [
        FetchRequest(str(i), feed_server.url(f"/many/{i}"), *feed_server.validators(f"/many/{i}"))
        for i in range(1000)
    ]
    async with Fetcher(settings) as fetcher:
        started = time.perf_counter()
        again = await asyncio.gather(*(fetcher.fetch(r) for r in requests))
        took = time.perf_counter() - started
    assert all(isinstance(o, FetchResult) and o.status == 304 for o in again)
    print(f"1,000 sources answered 304 in {took:.2f} s (server in-process)")
    assert took < 15, f"{took:.2f} s"  # a sanity bound; benchmarks/ measures the real figure


def test_a_taken_port_fails_loudly_and_leaves_no_thread(feed_server: FeedServer) -> None:
    before = threading.active_count()
    with pytest.raises(OSError):
        FeedServer(port=feed_server.port).start()
    assert threading.active_count() == before
