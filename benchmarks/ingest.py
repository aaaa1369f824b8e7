"""Ingest benchmark: our parse → normalize → store path against bare feedparser, and the wall
time to poll 1,000 unchanged sources (all 304) from a local server against bare httpx.

    .venv/bin/python benchmarks/ingest.py [--repeat 3] [--sources 1000]

Prints one table. Targets: the full ingest at 3x bare `feedparser.parse`'s entries per second
on the same bytes (rows without MONITOR_PARSER use the default, auto: the lxml fast path with
feedparser as fallback); 1,000 unchanged sources poll in under 2 s on a 2-core machine.
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

from monitor import logs  # noqa: E402
from monitor.app import App  # noqa: E402
from monitor.clock import utcnow  # noqa: E402
from monitor.model import FetchResult, SourceConfig  # noqa: E402
from monitor.normalize import normalize_entry  # noqa: E402
from monitor.parse import ParseError, ParserChoice, parse_feed  # noqa: E402
from monitor.pipeline import poll_fetched  # noqa: E402
from monitor.service import Service  # noqa: E402
from monitor.settings import Settings  # noqa: E402
from monitor.store import db, sources, stories  # noqa: E402
from tests.support.feedserver import FeedServer  # noqa: E402

FEEDS = sorted((REPO / "tests" / "data" / "corpus" / "feeds").iterdir())
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
        # every entry, as bare feedparser parses them all (one corpus feed has 730)
        max_entries_per_document=100_000,
    )


def parse_normalize(
    docs: list[tuple[str, bytes, dict[str, str]]],
    repeat: int,
    parser: ParserChoice = "auto",
    *,
    normalize: bool = True,
) -> float:
    """Our parse (and normalize) stages alone (no database), with one MONITOR_PARSER choice."""
    started = time.perf_counter()
    for _ in range(repeat):
        for name, body, headers in docs:
            if name.endswith(".json"):
                continue
            try:
                parsed = parse_feed(body, headers, f"http://127.0.0.1/{name}", parser=parser)
            except ParseError:
                continue
            if normalize:
                for entry in parsed.entries:
                    normalize_entry(entry, "bench")
    return time.perf_counter() - started


def parse_paths(docs: list[tuple[str, bytes, dict[str, str]]], repeat: int) -> tuple[float, float]:
    """Parse alone with MONITOR_PARSER=feedparser and =auto, alternated round by round so both
    see the same machine load; returns the summed seconds of each."""
    slow = fast = 0.0
    for _ in range(repeat):
        slow += parse_normalize(docs, 1, "feedparser", normalize=False)
        fast += parse_normalize(docs, 1, "auto", normalize=False)
    return slow, fast


def our_path(
    docs: list[tuple[str, bytes, dict[str, str]]],
    repeat: int,
    *,
    with_stories: bool = True,
    parser: ParserChoice = "auto",
) -> tuple[int, float]:
    """Parse, normalize and store every corpus feed into a fresh SQLite database per repeat.

    With `with_stories=False` the story stage is switched off (benchmark only), so the table can
    show the store path the ingest issue defines apart from near-duplicate grouping.
    """
    original = stories.assign_story, stories.story_keys_many, stories.BandIndex
    if not with_stories:  # every part: the keys made before the write, the look-ups inside it
        stories.assign_story = lambda *a, **k: None  # type: ignore[assignment]
        stories.story_keys_many = lambda articles, *a, **k: [None] * len(articles)  # type: ignore[assignment]
        stories.BandIndex = _NoIndex  # type: ignore[assignment,misc]
    try:
        return _our_path(docs, repeat, parser)
    finally:
        stories.assign_story, stories.story_keys_many, stories.BandIndex = original  # type: ignore[misc]


class _NoIndex:
    """`stories.BandIndex` with the story stage switched off."""

    @classmethod
    def prefetch(cls, *_args: object) -> _NoIndex:
        return cls()

    def flush(self, *_args: object) -> None:
        return None


def _our_path(
    docs: list[tuple[str, bytes, dict[str, str]]], repeat: int, parser: ParserChoice
) -> tuple[int, float]:
    entries = 0
    elapsed = 0.0
    xml_docs = [d for d in docs if not d[0].endswith(".json")]
    for _rep in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            db.upgrade(url)
            settings = _settings(Path(tmp), url, REPO / "watchlists")
            service = Service(App(settings.model_copy(update={"parser": parser})))
            service.registry.reload()
            configs = [
                SourceConfig(id=f"f{i}", name=name, url=f"http://127.0.0.1/{name}")
                for i, (name, _b, _h) in enumerate(xml_docs)
            ]
            with Session(service.engine) as session, session.begin():
                sources.sync_sources(session, configs, utcnow())
            with Session(service.engine) as session, session.begin():
                claims = sources.claim_sources(
                    session, owner=service.owner, now=utcnow(), lease_seconds=600, limit=1000
                )
            by_id = {c.id: c for c in claims}
            started = time.perf_counter()
            for i, (name, body, headers) in enumerate(xml_docs):
                result = FetchResult(
                    f"f{i}", f"http://127.0.0.1/{name}", 200, body, headers, None, None, None, 0.0
                )
                report = poll_fetched(service.poller.context(), by_id[f"f{i}"], result, utcnow())
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
        ready.put((server.url("/"), server.validators(paths[0])[0]))
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
            service = Service(App(settings))
            configs = [
                SourceConfig(id=f"u{i}", name=f"u{i}", url=base + p) for i, p in enumerate(paths)
            ]
            with Session(service.engine) as session, session.begin():
                sources.sync_sources(session, configs, utcnow())

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
    # Log as `monitor run` does by default (INFO, JSON): structlog's unconfigured default
    # renders every debug line to the console, a cost the service never pays.
    logs.configure("INFO", "json", stream=sys.stderr)
    docs = _docs()
    # warm-up (imports, caches)
    bare_feedparser(docs[:3], 1)
    parse_normalize(docs[:3], 1, "auto")
    bare_n, bare_s = bare_feedparser(docs, args.repeat)
    slow_parse_s, fast_parse_s = parse_paths(docs, args.repeat)
    pn_s = parse_normalize(docs, args.repeat)
    _store_n, store_s = our_path(docs, args.repeat, with_stories=False)
    ours_n, ours_s = our_path(docs, args.repeat)
    _slow_n, ours_slow_s = our_path(docs, args.repeat, parser="feedparser")
    poll_ours, poll_bare, n304 = unchanged_sources(args.sources, args.concurrency)
    rows = [
        ("bare feedparser.parse (baseline)", bare_s),
        ("ours: parse, MONITOR_PARSER=feedparser", slow_parse_s),
        ("ours: parse, MONITOR_PARSER=auto (lxml + fallback)", fast_parse_s),
        ("ours: parse -> normalize", pn_s),
        ("ours: parse -> normalize -> store (SQLite)", store_s),
        ("ours: full ingest (+ stories, matching, outbox)", ours_s),
        ("ours: full ingest, MONITOR_PARSER=feedparser", ours_slow_s),
    ]
    print(
        f"corpus: {len(docs)} documents ({bare_n // args.repeat} entries), "
        f"repeated {args.repeat}x; {ours_n // args.repeat} stored as new articles per run"
    )
    print(f"{'path':<52} {'entries/s':>10} {'x bare':>8}")
    print("-" * 72)
    for label, seconds in rows:
        print(f"{label:<52} {bare_n / seconds:>10,.0f} {seconds / bare_s:>8.2f}")
    print()
    print(f"{'poll of N unchanged sources (304s)':<52} {'seconds':>10}")
    print("-" * 72)
    print(
        f"{f'ours: monitor poll of {args.sources} sources ({n304} answered 304)':<52} "
        f"{poll_ours:>10.2f}"
    )
    print(f"{f'bare httpx: the same {args.sources} conditional GETs':<52} {poll_bare:>10.2f}")


if __name__ == "__main__":
    main()
