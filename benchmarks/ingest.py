"""Ingest benchmark: our parse → normalize → store path against bare feedparser, and the wall
time to poll 1,000 unchanged sources (all 304) from a local server against bare httpx.

    .venv/bin/python benchmarks/ingest.py [--repeat 3] [--sources 1000]

Prints one table. Targets (issue 2): our path costs at most 1.3x bare `feedparser.parse` on the
same bytes; 1,000 unchanged sources poll in under 2 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import feedparser
import httpx
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor.model import FetchResult, SourceConfig  # noqa: E402
from monitor.service import Service  # noqa: E402
from monitor.settings import Settings  # noqa: E402
from monitor.store import db, queries  # noqa: E402
from monitor.store.tables import utcnow  # noqa: E402
from tests.support.feedserver import FeedServer  # noqa: E402

FEEDS = sorted((REPO.parent / "shared" / "corpus" / "feeds").iterdir())
CTYPES = {".json": "application/feed+json", ".atom": "application/atom+xml"}


def _docs() -> list[tuple[str, bytes, dict[str, str]]]:
    docs = []
    for path in FEEDS:
        headers = {"content-type": CTYPES.get(path.suffix, "application/xml")}
        docs.append((path.name, path.read_bytes(), headers))
    return docs


def bare_feedparser(
    docs: list[tuple[str, bytes, dict[str, str]]], repeat: int
) -> tuple[int, float]:
    entries = 0
    started = time.perf_counter()
    for _ in range(repeat):
        for name, body, headers in docs:
            if name.endswith(".json"):
                continue  # feedparser 6.0.x cannot read JSON Feed; our path can (counted apart)
            parsed = feedparser.parse(
                io.BytesIO(body),
                response_headers={**headers, "content-location": f"http://127.0.0.1/{name}"},
            )
            entries += len(parsed.entries)
    return entries, time.perf_counter() - started


def _settings(tmp: Path, url: str, watchlists: Path) -> Settings:
    return Settings(
        database_url=url,  # type: ignore[arg-type]
        watchlists_dir=watchlists,
        allow_private_hosts=["127.0.0.1"],
        http_port=-1,
        log_level="WARNING",
        fetch_concurrency=10,
        fetch_per_host=10,
    )


def our_path(docs: list[tuple[str, bytes, dict[str, str]]], repeat: int) -> tuple[int, float]:
    """Parse, normalize and store every corpus feed into a fresh SQLite database per repeat."""
    entries = 0
    elapsed = 0.0
    xml_docs = [d for d in docs if not d[0].endswith(".json")]
    for _rep in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            db.upgrade(url)
            service = Service(_settings(Path(tmp), url, REPO / "watchlists"))
            service.registry.reload()
            configs = [
                SourceConfig(id=f"f{i}", name=name, url=f"http://127.0.0.1/{name}")
                for i, (name, _b, _h) in enumerate(xml_docs)
            ]
            with Session(service.engine) as session, session.begin():
                queries.sync_sources(session, configs, utcnow())
            with Session(service.engine) as session, session.begin():
                claims = queries.claim_sources(
                    session, owner=service.owner, now=utcnow(), lease_seconds=600, limit=1000
                )
            by_id = {c.id: c for c in claims}
            started = time.perf_counter()
            for i, (name, body, headers) in enumerate(xml_docs):
                result = FetchResult(
                    f"f{i}", f"http://127.0.0.1/{name}", 200, body, headers, None, None, None, 0.0
                )
                report = service.poller._store_outcome(by_id[f"f{i}"], result, time.monotonic())
                entries += report.new
            elapsed += time.perf_counter() - started
            asyncio.run(service.aclose())
    return entries, elapsed


def _feed_body() -> bytes:
    items = "".join(
        f"<item><title>Item {i}</title><link>http://127.0.0.1/a/{i}</link>"
        f"<guid>item-{i}</guid><description>text {i}</description></item>"
        for i in range(20)
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<link>http://127.0.0.1/</link>{items}</channel></rss>"
    ).encode()


async def _bare_conditional(urls: list[str], validators: dict[str, str], concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(trust_env=False) as client:

        async def one(url: str) -> int:
            async with sem:
                resp = await client.get(url, headers={"If-None-Match": validators[url]})
                return resp.status_code

        started = time.perf_counter()
        statuses = await asyncio.gather(*(one(u) for u in urls))
        elapsed = time.perf_counter() - started
    assert set(statuses) == {304}, set(statuses)
    return elapsed


def _serve(paths: list[str], body: bytes, ready: Any, stop: Any) -> None:
    """The feed server in its own process, so it does not share the client's GIL."""
    with FeedServer() as server:
        for path in paths:
            server.add(path, body)
        ready.put((server.url("/"), server._feeds[paths[0]].etag))
        stop.wait()


def unchanged_sources(count: int, concurrency: int) -> tuple[float, float, int]:
    """Wall time of one poll of `count` unchanged sources (304s): ours vs bare httpx."""
    body = _feed_body()
    paths = [f"/u/{i}.xml" for i in range(count)]
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_serve, args=(paths, body, ready, stop), daemon=True)
    proc.start()
    try:
        root, etag = ready.get(timeout=60)
        base = root.rstrip("/")
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/poll.db"
            db.upgrade(url)
            settings = _settings(Path(tmp), url, Path(tmp)).model_copy(
                update={
                    "fetch_concurrency": concurrency,
                    "fetch_per_host": concurrency,
                    "poll_batch": count,
                }
            )
            service = Service(settings)
            configs = [
                SourceConfig(id=f"u{i}", name=f"u{i}", url=base + p) for i, p in enumerate(paths)
            ]
            with Session(service.engine) as session, session.begin():
                queries.sync_sources(session, configs, utcnow())

            async def two_polls() -> tuple[float, int]:
                await service.poller.poll_due(force=True)  # first poll: 200s, validators stored
                started = time.perf_counter()
                reports = await service.poller.poll_due(force=True)
                elapsed = time.perf_counter() - started
                await service.aclose()
                return elapsed, sum(r.status == "not_modified" for r in reports)

            ours, not_modified = asyncio.run(two_polls())
        validators = {base + p: str(etag) for p in paths}
        bare = asyncio.run(_bare_conditional(list(validators), validators, concurrency))
    finally:
        stop.set()
        proc.join(timeout=10)
    return ours, bare, not_modified


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    docs = _docs()
    # warm-up (imports, caches)
    bare_feedparser(docs[:3], 1)
    bare_n, bare_s = bare_feedparser(docs, args.repeat)
    ours_n, ours_s = our_path(docs, args.repeat)
    poll_ours, poll_bare, n304 = unchanged_sources(args.sources, args.concurrency)
    print(f"corpus: {len(docs)} documents, repeated {args.repeat}x; 2-core machine")
    print(f"{'measure':<58} {'value':>12}")
    print("-" * 71)
    print(f"{'bare feedparser.parse: entries/s':<58} {bare_n / bare_s:>12,.0f}")
    print(f"{'ours parse -> normalize -> store (SQLite): entries/s':<58} {bare_n / ours_s:>12,.0f}")
    print(f"{'  (of which stored as new articles)':<58} {ours_n:>12,}")
    print(
        f"{'cost ratio ours / bare on the same bytes (target <= 1.3)':<58} {ours_s / bare_s:>12.2f}"
    )
    print(f"{f'poll {args.sources} unchanged sources (304s), ours: s':<58} {poll_ours:>12.2f}")
    print(f"{f'same {args.sources} conditional GETs, bare httpx: s':<58} {poll_bare:>12.2f}")
    print(f"{'  (of which answered 304 in our poll)':<58} {n304:>12}")


if __name__ == "__main__":
    main()
