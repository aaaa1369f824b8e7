"""Console page latency at 100,000 stored articles, and the draft backtest's throughput.

Seeds a SQLite database (the embedded default) with 100,000 corpus articles over 30 days,
1,000 sources, 20,000 alerts and their poll history, serves the real listener on 127.0.0.1,
and asks each page 30 times (after one warm-up) with the admin's Bearer token: the table shows
the median, the 95th percentile and the slowest answer. Then it runs the draft backtest of a
watchlist (the live version against a changed draft, models judging) over the last day and
the last 7 days through /api/draft, then the 7 days again as the next keystroke (the saved
version's verdicts kept), and prints articles per second and the time to the first progress.

    .venv/bin/python benchmarks/console.py [--articles 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from sqlalchemy import insert
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.store.tables import AlertRow, PollEventRow, SourceRow
from tests.support import console as support

RUNS = 30
WATCHLISTS = ("missile-tests", "un-mission", "leader-correspondence")


def bulk(engine: object, articles: int) -> None:
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():  # type: ignore[call-overload]
        session.execute(
            insert(SourceRow),
            [
                {"id": f"src-{i:04d}", "name": f"Source {i}", "url": f"https://s{i}.example/feed",
                 "last_status": "ok" if i % 10 else "timeout", "failures": 0 if i % 10 else 3,
                 "last_error": None if i % 10 else "timed out waiting for data",
                 "next_poll_at": now, "polls": 100}
                for i in range(1000)
            ],
        )
        session.execute(
            insert(PollEventRow),
            [
                {"source_id": f"src-{i % 1000:04d}", "polled_at": now - timedelta(minutes=i),
                 "status": "ok", "failures": 0, "new_entries": 1}
                for i in range(50_000)
            ],
        )
        for start in range(0, 20_000, 5000):
            session.execute(
                insert(AlertRow),
                [
                    {"dedup_key": f"b{i}", "article_id": 1 + i * 5 % articles,
                     "watchlist_id": WATCHLISTS[i % 3],
                     "channel": "slack", "destination": "#nk-desk",
                     "status": "sent" if i % 50 else "dead", "payload_json": "{}",
                     "created_at": now - timedelta(minutes=i), "next_attempt_at": now}
                    for i in range(start, start + 5000)
                ],
            )


async def timed(session: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with session.get(url) as resp:
        await resp.read()
        assert resp.status == 200, (url, resp.status)
    return (time.perf_counter() - started) * 1000


async def backtest(
    session: aiohttp.ClientSession, base: str, folder: Path, days: int
) -> tuple[int, float, float, int]:
    text = (folder / "missile-tests.yaml").read_text()
    draft = text.replace("min_confidence: 0.5", "min_confidence: 0.4")
    started = time.perf_counter()
    first = None
    scanned = alerts = 0
    async with session.post(
        base + "/api/draft", json={"id": "missile-tests", "yaml": draft, "days": str(days)}
    ) as resp:
        buffer = b""
        async for chunk in resp.content.iter_any():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                msg = json.loads(line)
                if msg["type"] == "progress" and first is None:
                    first = time.perf_counter() - started
                if msg["type"] == "result":
                    scanned, alerts = msg["scanned"], msg["alerts"]
            if scanned:
                break
    return scanned, time.perf_counter() - started, first or 0.0, alerts


async def main(articles: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="monitor-console-bench-"))
    url = f"sqlite:///{work / 'monitor.db'}"
    support.prepared(url)
    folder = support.watchlist_folder(work / "watchlists")
    service = support.make_service(url, folder)
    started = time.perf_counter()
    ids = support.seed(service.engine, articles=articles, span_days=30)
    bulk(service.engine, articles)
    print(f"seeded {articles:,} articles, 1,000 sources, 20,000 alerts in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    server = await support.start(service)
    pages = {
        "overview /": "/",
        "watchlists": "/watchlists",
        "watchlist": "/watchlists/missile-tests",
        "draft editor": "/watchlists/missile-tests/edit",
        "sources (page 1 of 10)": "/sources",
        "sources, failing": "/sources?health=failing",
        "source (history)": "/sources/src-0010",
        "alerts": "/alerts",
        "alerts, dead": "/alerts?status=dead",
        "alerts of a watchlist, page 100": f"/alerts?watchlist=un-mission&before={20_000 - 5000}",
        "alert": f"/alerts/{ids['dead']}",
        "article (why or why not)": f"/articles/{articles // 2}",
        "stories": "/stories",
        "story": f"/stories/{ids['story']}",
    }
    headers = {"Authorization": f"Bearer {support.ADMIN}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            print(f"\n{articles:,} articles stored, SQLite, {RUNS} requests per page\n")
            print("| page | p50 ms | p95 ms | max ms |")
            print("|---|---:|---:|---:|")
            for label, path in pages.items():
                await timed(session, server.url + path)  # warm-up (templates, caches)
                samples = sorted([await timed(session, server.url + path) for _ in range(RUNS)])
                p95 = samples[int(len(samples) * 0.95) - 1]
                print(f"| {label} | {statistics.median(samples):.1f} | {p95:.1f} | "
                      f"{samples[-1]:.1f} |")
            print("\n| backtest (draft vs live, models judging) | articles | seconds | "
                  "articles/s | first progress s | would alert |")
            print("|---|---:|---:|---:|---:|---:|")
            for days, label in ((1, "last day"), (7, "last 7 days"),
                                (7, "last 7 days, next keystroke")):
                scanned, seconds, first, alerts = await backtest(session, server.url, folder, days)
                print(f"| {label} | {scanned:,} | {seconds:.1f} | "
                      f"{scanned / seconds:,.0f} | {first:.2f} | {alerts} |")
    finally:
        await server.stop()
        service.engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().articles))
