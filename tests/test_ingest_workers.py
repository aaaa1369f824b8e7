"""A poll's ingests run on `MONITOR_INGEST_WORKERS` threads of the poller's own, and the
long-running commands cap glibc's malloc arenas (the memory of a 500-feed catch-up)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from monitor import pipeline
from monitor.service import Service
from monitor.store import db
from tests.support.desk import Desk
from tests.support.feedserver import FeedServer, rss


def _service(
    tmp: Path, server: FeedServer, feeds: int, workers: int, fetches: int | None = None
) -> Service:
    """A prepared service over `feeds` local feeds of 3 items (sources s0, s1, …)."""
    urls = {
        f"s{i}": server.add(
            f"/f{i}.xml", rss([(f"Item {i} {j}", f"http://127.0.0.1/a/{i}/{j}") for j in range(3)])
        )
        for i in range(feeds)
    }
    desk = Desk(
        tmp,
        f"sqlite:///{tmp / 'm.db'}",
        urls,
        ingest_workers=workers,
        fetch_concurrency=fetches or feeds,
        fetch_per_host=fetches or feeds,
    )
    return desk.service


@pytest.mark.parametrize("workers", [1, 3])
def test_ingests_run_on_the_configured_number_of_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    busy: set[int] = set()
    most = 0
    names: set[str] = set()
    lock = threading.Lock()
    real_parse = pipeline.parse

    def counted_parse(*args: Any, **kwargs: Any) -> Any:  # the real parse, counted
        nonlocal most
        with lock:
            busy.add(threading.get_ident())
            most = max(most, len(busy))
            names.add(threading.current_thread().name)
        try:
            time.sleep(0.05)  # long enough for every fetched feed to be waiting for a worker
            return real_parse(*args, **kwargs)
        finally:
            with lock:
                busy.discard(threading.get_ident())

    monkeypatch.setattr(pipeline, "parse", counted_parse)
    with FeedServer() as server:
        service = _service(tmp_path, server, feeds=8, workers=workers)

        async def go() -> list[Any]:
            try:
                return await service.poller.poll_all_due(force=True)
            finally:
                await service.aclose()

        reports = asyncio.run(go())
    assert sorted(r.source_id for r in reports) == sorted(f"s{i}" for i in range(8))
    assert sum(r.new for r in reports) == 24  # every ingest stored its feed
    assert most == workers
    assert names and all(n.startswith("ingest") for n in names)
    assert service.poller._ingest is None  # closed with the service: no thread left behind


def test_fetched_bodies_wait_in_a_bounded_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the ingest is stuck, fetching stops after its slots (fetches in flight plus two
    waiting bodies per worker) instead of holding every feed's body in memory."""
    release = threading.Event()
    real_parse = pipeline.parse

    def stuck_parse(*args: Any, **kwargs: Any) -> Any:  # the real parse, after the gate opens
        release.wait(timeout=30)
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(pipeline, "parse", stuck_parse)
    with FeedServer() as server:
        service = _service(tmp_path, server, feeds=12, workers=1, fetches=2)
        fetched_while_stuck: list[int] = []

        async def go() -> list[Any]:
            polls = asyncio.create_task(service.poller.poll_all_due(force=True))
            await asyncio.sleep(1.5)  # every feed would be fetched by now without the bound
            fetched_while_stuck.append(sum(server.hits.values()))
            release.set()
            try:
                return await polls
            finally:
                await service.aclose()

        reports = asyncio.run(go())
    assert fetched_while_stuck == [4]  # 2 fetch slots + 2 bodies for the one worker
    assert sum(r.new for r in reports) == 36  # nothing lost: every feed stored afterwards


def test_a_failed_ingest_fails_its_source_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error (or a bug) in one source's ingest is that poll's error: the others are
    stored, the one-shot poll finishes, and the failed source's lease is given back."""
    real_parse = pipeline.parse

    def failing_parse(claim: Any, *args: Any, **kwargs: Any) -> Any:
        if claim.id == "s1":
            raise RuntimeError("database is locked")
        return real_parse(claim, *args, **kwargs)

    monkeypatch.setattr(pipeline, "parse", failing_parse)
    with FeedServer() as server:
        service = _service(tmp_path, server, feeds=3, workers=2)

        async def go() -> list[Any]:
            try:
                return await service.poller.poll_all_due(force=True)
            finally:
                await service.aclose()

        reports = {r.source_id: r for r in asyncio.run(go())}
        engine = db.make_engine(f"sqlite:///{tmp_path / 'm.db'}")
        try:
            with engine.connect() as conn:
                leased = conn.exec_driver_sql(
                    "SELECT id FROM source WHERE lease_owner IS NOT NULL"
                ).all()
        finally:
            engine.dispose()
    assert reports["s1"].status == "error"
    assert reports["s1"].message == "ingest failed: RuntimeError: database is locked"
    assert [reports[s].new for s in ("s0", "s2")] == [3, 3]
    assert leased == []  # given back: the next tick polls s1 again


_ARENAS = """
import sys, threading, ctypes
from monitor.allocator import limit_arenas
print(limit_arenas(), flush=True)
start = threading.Barrier(4)
def work():
    start.wait()
    keep = [bytearray(60000) for _ in range(200)]
    start2.wait()
start2 = threading.Barrier(4)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()
"""


def _arenas(env: dict[str, str]) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _ARENAS], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), sum(ln.startswith("Arena ") for ln in done.stderr.splitlines())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc arenas")
def test_one_arena_for_all_threads_unless_the_operator_chose() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert _arenas(env) == ("True", 1)
    said, arenas = _arenas({**env, "MALLOC_ARENA_MAX": "3"})
    assert said == "False"  # glibc read the operator's value itself
    assert arenas > 1  # four threads allocating at once get arenas of their own
