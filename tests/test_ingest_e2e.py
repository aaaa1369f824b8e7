"""Ingest through the real path: corpus feeds served over HTTP on 127.0.0.1 → `monitor poll`.

Polling every corpus feed twice stores each entry once, and the second poll is served by 304s.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from monitor.normalize import normalize_entry
from monitor.parse import ParseError, parse_feed
from monitor.settings import Settings
from monitor.store import db
from monitor.store.tables import AlertRow, ArticleCopyRow, ArticleRow, SourceRow
from tests.support.cli import run_monitor
from tests.support.feedserver import FeedServer
from tests.support.paths import CORPUS

FEEDS = sorted((CORPUS / "feeds").iterdir())


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        srv.add_corpus()
        yield srv


def _env(tmp: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update(
        MONITOR_DATABASE_URL=db_url,
        MONITOR_WATCHLISTS_DIR=str(tmp / "watchlists"),
        MONITOR_ALLOW_PRIVATE_HOSTS="127.0.0.1",
        MONITOR_LOG_LEVEL="WARNING",
    )
    return env


def _write_sources(tmp: Path, server: FeedServer, names: list[str]) -> None:
    folder = tmp / "watchlists"
    folder.mkdir(exist_ok=True)
    lines = ["sources:"]
    for i, name in enumerate(names):
        lines += [
            f"  - id: f{i}",
            f"    name: {name}",
            f"    url: {server.url('/feeds/' + name)}",
            "    every: 10m",
        ]
    (folder / "sources.yaml").write_text("\n".join(lines) + "\n")


def _monitor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_monitor(env, *args)


def _expected_keys() -> int:
    """Distinct entries per corpus feed, at most MONITOR_MAX_ENTRIES_PER_DOCUMENT (the default:
    one podcast feed has 730)."""
    cap = Settings.model_fields["max_entries_per_document"].default
    total = 0
    for path in FEEDS:
        ctype = "application/json" if path.suffix == ".json" else "application/xml"
        try:
            parsed = parse_feed(path.read_bytes(), {"content-type": ctype}, "http://127.0.0.1/x")
        except ParseError:
            continue
        total += min(cap, len({normalize_entry(e, "s").entry_key for e in parsed.entries}))
    return total


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_corpus_polled_twice_stored_once(
    backend: str, server: FeedServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'm.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    names = [p.name for p in FEEDS]
    _write_sources(tmp_path, server, names)
    env = _env(tmp_path, url)
    assert _monitor(env, "db", "upgrade").returncode == 0

    first = _monitor(env, "poll", "--once", "--all")
    lines = [ln for ln in first.stdout.splitlines() if ln.startswith("f")]
    assert len(lines) == len(names), first.stdout + first.stderr
    failed = {names[int(ln.split()[0][1:])] for ln in lines if ln.split()[1].startswith("error")}
    # the one truncated document with no items is refused (and backs off), the rest store
    assert failed == {"feed-rs__rss_2.0_reuters_invalid_1.xml"}, first.stdout
    assert first.returncode == 1  # a failed source makes the exit code say so

    engine = db.make_engine(url)
    try:
        with Session(engine) as s:
            articles = s.scalar(select(func.count()).select_from(ArticleRow)) or 0
            copies = s.scalar(select(func.count()).select_from(ArticleCopyRow)) or 0
            # a new source's first poll is catch-up: stored, never alerted
            assert s.scalar(select(func.count()).select_from(AlertRow)) == 0
            assert all(r.catchup for r in s.scalars(select(ArticleRow)))
        assert articles + copies == _expected_keys()

        hits_before = dict(server.hits)
        second = _monitor(env, "poll", "--once", "--all")
        statuses = {
            names[int(ln.split()[0][1:])]: ln.split()[1]
            for ln in second.stdout.splitlines()
            if ln.startswith("f")
        }
        assert {n for n, st in statuses.items() if st != "not_modified"} == failed, second.stdout
        with Session(engine) as s:
            assert s.scalar(select(func.count()).select_from(ArticleRow)) == articles
            assert s.scalar(select(func.count()).select_from(ArticleCopyRow)) == copies
            states = {r.last_status for r in s.scalars(select(SourceRow))}
            assert states == {"not_modified", "parse_error"}
        assert all(server.hits[f"/feeds/{n}"] == hits_before[f"/feeds/{n}"] + 1 for n in names)
    finally:
        engine.dispose()

    listed = _monitor(env, "articles", "list", "--format", "jsonl")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == articles
    assert {
        "id",
        "source",
        "url",
        "title",
        "summary",
        "published",
        "first_seen",
        "content_hash",
    } <= set(rows[0])


@pytest.mark.slow
def test_a_permanently_moved_feed_is_polled_and_shown_to_the_admin(
    server: FeedServer, tmp_path: Path, sqlite_url: str
) -> None:
    name = FEEDS[0].name
    server.add_redirect("/moved-away.xml", "/feeds/" + name, status=301)
    folder = tmp_path / "watchlists"
    folder.mkdir()
    (folder / "sources.yaml").write_text(
        f"sources:\n  - id: moved\n    name: Moved\n    url: {server.url('/moved-away.xml')}\n"
    )
    env = _env(tmp_path, sqlite_url)
    assert _monitor(env, "db", "upgrade").returncode == 0
    polled = _monitor(env, "poll", "--once", "--all")
    assert polled.returncode == 0, polled.stdout + polled.stderr
    assert "update its url in the sources file" in polled.stdout + polled.stderr
    listed = _monitor(env, "sources", "list")
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("moved "))
    assert f"moved permanently to {server.url('/feeds/' + name)}" in line

    # The admin follows the advice: the note goes away with the old URL.
    (folder / "sources.yaml").write_text(
        f"sources:\n  - id: moved\n    name: Moved\n    url: {server.url('/feeds/' + name)}\n"
    )
    assert _monitor(env, "poll", "--once", "--all").returncode == 0
    listed = _monitor(env, "sources", "list")
    assert "moved permanently" not in listed.stdout
