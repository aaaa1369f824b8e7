"""Scale: 10,000 sources, one replica vs three on PostgreSQL (a benchmark, not a test).

    .venv/bin/python benchmarks/scale.py [--sources 10000] [--replicas 1,3] [--window 120]

For each replica count, on a fresh PostgreSQL database, against tests/support/publisher.py (all
sources on 127.0.0.1, conditional GET answered with 304) and the Slack stand-in:

1. catch-up: every source is new and due at once; time until each was polled once (200 answers,
   parsed and stored, no alert: first polls never alert);
2. steady state for `--window` seconds with every source due every `--interval` (default 1 min:
   more than the replicas can poll, so they run saturated and the figure is their capacity);
   mostly 304s, and every `--new-every` seconds `--new-per-round` sources publish an item that
   matches the watchlist. Measured: sources polled per second, share of 304s, CPU (% of one
   core) and peak RSS per replica, alert latency from publication to the Slack post (p50/p99),
   and the part of it after the fetch that saw the item (processing, p50/p99).

Then it prints a table and what one 15-minute cycle of `--sources` needs (sources/s and CPU at
the measured CPU cost per poll). Settings that are not defaults, and why: the 10,000 sources
share one host here, so the per-host fetch cap is raised to the global one
(MONITOR_FETCH_PER_HOST=MONITOR_FETCH_CONCURRENCY); the tick is 1 s so claiming is not the
bottleneck. Needs the machine's PostgreSQL (scripts/pg-test-setup) and takes a few minutes.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import ColumnElement, Engine, create_engine, func, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from sqlmodel import col  # noqa: E402

from monitor.sources import parse_duration  # noqa: E402
from monitor.store import db  # noqa: E402
from monitor.store.tables import SourceRow  # noqa: E402
from tests.support.cluster import (  # noqa: E402
    SLACK_TOKEN,
    Replica,
    free_port,
    replica_env,
    start_replica,
)
from tests.support.publisher import WATCHLIST_YAML, Item, Publisher  # noqa: E402
from tests.support.slackfake import SlackFake  # noqa: E402

PG_ADMIN = os.environ.get(
    "MONITOR_TEST_PG_URL",
    "postgresql+psycopg://monitor_test:monitor_test@127.0.0.1:5432/monitor_test",
)


@dataclass
class Result:
    replicas: int
    sources: int
    catchup_seconds: float
    steady_polls_per_second: float
    share_304: float
    cpu_percent: list[float]
    cpu_ms_per_poll: float
    peak_rss_mib: list[float]
    alerts_expected: int
    alerts_posted: int
    latency_p50: float
    latency_p99: float
    processing_p50: float
    processing_p99: float
    overdue_at_end: int


def fresh_database() -> tuple[str, str]:
    name = f"scale_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_database(name: str) -> None:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def count_sources(engine: Engine, *where: ColumnElement[bool]) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(SourceRow).where(*where)) or 0)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def first_fetch_after(publisher: Publisher, item: Item) -> float | None:
    for moment in publisher.fetch_times.get(item.source, []):
        if moment >= item.published:
            return moment
    return None


def stop_all(group: list[Replica]) -> None:
    """SIGTERM every replica at once, as an orchestrator does; report how long each took."""
    for replica in group:
        replica.signal(signal.SIGTERM)
    for replica in group:
        started = time.monotonic()
        try:
            replica.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print(f"  {replica.name} still running 30 s after SIGTERM; last log lines:")
            print("\n".join(replica.tail().splitlines()[-15:]))
            replica.kill()
            raise
        seconds = time.monotonic() - started
        print(f"  {replica.name}: exit {replica.proc.returncode} {seconds:.1f} s after SIGTERM")
        if seconds > 10:  # over the shutdown budget: show what it was doing
            print("\n".join(replica.tail(20000).splitlines()[-25:]))


def run(args: argparse.Namespace, replicas: int, workdir: Path) -> Result:
    name, url = fresh_database()
    group: list[Replica] = []
    try:
        db.upgrade(url)
        engine = db.make_engine(url)
        with Publisher(args.sources, baseline=1) as publisher, SlackFake(SLACK_TOKEN) as slack:
            config = workdir / f"config-{replicas}"
            config.mkdir()
            (config / "bench.yaml").write_text(WATCHLIST_YAML)
            (config / "sources.yaml").write_text(publisher.sources_yaml(every=args.interval))
            env = replica_env(
                database_url=url,
                watchlists_dir=config,
                slack_api_url=slack.url,
                extra={
                    "MONITOR_TICK_SECONDS": "1",
                    "MONITOR_FETCH_CONCURRENCY": str(args.concurrency),
                    "MONITOR_FETCH_PER_HOST": str(args.concurrency),
                    "MONITOR_POLL_BATCH": str(args.batch),
                    "MONITOR_LOG_LEVEL": "WARNING",
                    "MONITOR_WATCHLISTS_RELOAD": "false",
                },
            )
            started = time.monotonic()
            for index in range(replicas):
                group.append(
                    start_replica(
                        f"bench-{replicas}-{index}", env, workdir / "logs", port=free_port()
                    )
                )
            for replica in group:
                replica.wait_listening(60)
            while count_sources(engine, col(SourceRow.first_poll_done).is_(True)) < args.sources:
                if time.monotonic() - started > args.catchup_limit:
                    raise SystemExit(f"catch-up took over {args.catchup_limit} s; giving up")
                time.sleep(1)
            catchup = time.monotonic() - started
            print(f"  {replicas} replica(s): catch-up of {args.sources} in {catchup:.1f} s")

            publisher.reset_counts()
            cpu_before = [r.cpu_seconds() for r in group]
            rng = random.Random(5)
            items: list[Item] = []
            window_start = time.monotonic()
            next_round = window_start
            while time.monotonic() - window_start < args.window:
                if time.monotonic() >= next_round:
                    chosen = rng.sample(range(args.sources), args.new_per_round)
                    items += publisher.publish_many(chosen, matching=True)
                    next_round += args.new_every
                time.sleep(0.2)
            elapsed = time.monotonic() - window_start
            polls = sum(publisher.fetches.values())
            not_modified = sum(publisher.not_modified.values())
            cpu = [r.cpu_seconds() - b for r, b in zip(group, cpu_before, strict=True)]
            rss = [r.peak_rss_bytes() / 2**20 for r in group]
            overdue = count_sources(
                engine,
                col(SourceRow.next_poll_at) < func.now() - text("interval '60 seconds'"),
            )
            # Let the last items reach Slack (bounded), then measure.
            wanted = {i.guid for i in items}
            drain_until = time.monotonic() + args.drain
            while time.monotonic() < drain_until:
                if wanted <= _posted(slack):
                    break
                time.sleep(0.5)
            posted_at: dict[str, float] = {}
            for message in slack.messages:
                for guid in _guids(message.text + str(message.blocks)):
                    posted_at.setdefault(guid, message.at)
            latency = [posted_at[i.guid] - i.published for i in items if i.guid in posted_at]
            processing = []
            for item in items:
                seen = first_fetch_after(publisher, item)
                if item.guid in posted_at and seen is not None:
                    processing.append(posted_at[item.guid] - seen)
            stop_all(group)
            engine.dispose()
            return Result(
                replicas=replicas,
                sources=args.sources,
                catchup_seconds=catchup,
                steady_polls_per_second=polls / elapsed,
                share_304=not_modified / polls if polls else 0.0,
                cpu_percent=[100 * c / elapsed for c in cpu],
                cpu_ms_per_poll=1000 * sum(cpu) / polls if polls else float("nan"),
                peak_rss_mib=rss,
                alerts_expected=len(items),
                alerts_posted=len([i for i in items if i.guid in posted_at]),
                latency_p50=percentile(latency, 50),
                latency_p99=percentile(latency, 99),
                processing_p50=percentile(processing, 50),
                processing_p99=percentile(processing, 99),
                overdue_at_end=overdue,
            )
    finally:
        for replica in group:
            replica.close()
        drop_database(name)


def _guids(text_: str) -> list[str]:
    return re.findall(r"\bs\d+-n\d+\b", text_)


def _posted(slack: SlackFake) -> set[str]:
    found: set[str] = set()
    for message in slack.messages:
        found.update(_guids(message.text + str(message.blocks)))
    return found


def table(results: list[Result], sources: int, interval: str) -> str:
    need = sources / 900
    demand = sources / parse_duration(interval)
    rows = [
        "| replicas | catch-up (s) | polled/s | 304 share | CPU % per replica "
        "| CPU ms/poll | peak RSS MiB per replica | alerts posted | latency p50/p99 (s) "
        "| after fetch p50/p99 (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r.replicas} | {r.catchup_seconds:.0f} | {r.steady_polls_per_second:.0f} "
            f"| {100 * r.share_304:.0f}% | {', '.join(f'{c:.0f}' for c in r.cpu_percent)} "
            f"| {r.cpu_ms_per_poll:.1f} | {', '.join(f'{m:.0f}' for m in r.peak_rss_mib)} "
            f"| {r.alerts_posted}/{r.alerts_expected} "
            f"| {r.latency_p50:.1f} / {r.latency_p99:.1f} "
            f"| {r.processing_p50:.1f} / {r.processing_p99:.1f} |"
        )
    base = results[0]
    lines = ["\n".join(rows), ""]
    lines.append(
        f"Demand in the steady window: {sources} sources every {interval} = {demand:.0f} polls/s;"
        " a configuration polling clearly less than that is saturated (its capacity)."
    )
    state = "kept up" if base.steady_polls_per_second >= 0.9 * demand else "saturated"
    lines.append(
        f"A 15-minute cycle of {sources} sources needs {need:.1f} polls/s. One replica polled "
        f"{base.steady_polls_per_second:.0f}/s against a demand of {demand:.0f}/s ({state}), "
        f"{base.steady_polls_per_second / need:.1f}x the 15-minute need; at its measured "
        f"{base.cpu_ms_per_poll:.1f} ms CPU per poll the 15-minute load is "
        f"{need * base.cpu_ms_per_poll / 10:.1f}% of one core "
        f"(CPU-bound ceiling about {1000 / base.cpu_ms_per_poll:.0f} polls/s per core)."
    )
    for r in results[1:]:
        lines.append(
            f"{r.replicas} replicas: catch-up {base.catchup_seconds / r.catchup_seconds:.2f}x "
            f"as fast as one (linear: {r.replicas}x)."
        )
    for r in results[1:]:
        ratio = r.steady_polls_per_second / max(base.steady_polls_per_second, 1e-9)
        lines.append(
            f"{r.replicas} replicas: {ratio:.2f}x the polls/s of one (linear: {r.replicas}x)."
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--replicas", default="1,3", help="comma list of replica counts")
    parser.add_argument("--interval", default="1m", help="poll interval of every source")
    parser.add_argument("--window", type=float, default=120.0, help="steady-state seconds")
    parser.add_argument("--new-every", type=float, default=10.0)
    parser.add_argument("--new-per-round", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=10, help="fetches in flight/replica")
    parser.add_argument("--batch", type=int, default=200, help="sources claimed per tick")
    parser.add_argument("--catchup-limit", type=float, default=900.0)
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for alerts")
    args = parser.parse_args()
    counts = [int(x) for x in args.replicas.split(",") if x.strip()]
    print(
        f"scale: {args.sources} sources, interval {args.interval}, window {args.window:.0f} s, "
        f"{args.new_per_round} new items every {args.new_every:.0f} s, {os.cpu_count()} cores"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="monitor-scale-") as tmp:
        for replicas in counts:
            results.append(run(args, replicas, Path(tmp)))
    print()
    print(table(results, args.sources, args.interval))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
