"""Secrets in source URLs never reach anything we show: a real local feed server, real polls by
`monitor run` and `monitor poll --once`, then everything a person can read is searched for the
sentinels — the JSON logs of both, the CLI output, the stored `last_error`/`moved_to` and
`/status` (JSON and HTML, with the admin token).

Every source URL carries `user:SENTINEL3@` and `?access_token=SENTINEL1&X-Amz-Signature=SENTINEL2`.
The sources: a broken feed (the parse error quotes the URL), a 301 to a URL with secrets of its
own (SENTINEL4, SENTINEL5), a 500, and an HTML page no selector matches (the error quotes it too).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from monitor.store.tables import SourceRow
from tests.support.cli import run_monitor
from tests.support.cluster import replica_env, start_replica
from tests.support.feedserver import FeedServer, rss

SECRET_QUERY = "access_token=SENTINEL1&X-Amz-Signature=SENTINEL2"
REDACTED_QUERY = "access_token=[redacted]&X-Amz-Signature=[redacted]"
BROKEN_XML = b'<?xml version="1.0"?><rss version="2.0"><channel><title>cut off'
PAGE = b"<html><body><p>no articles on this page</p></body></html>"


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        srv.add("/broken.xml", BROKEN_XML, "application/rss+xml")
        target = srv.url("/new.xml?access_token=SENTINEL4&X-Amz-Signature=SENTINEL5")
        srv.add_redirect("/old.xml", target, status=301)
        srv.add("/new.xml", rss([("n1", "Moved feed item")]))
        srv.add_status("/down.xml", 500, b"oops")
        srv.add_html("/page.html", PAGE)
        yield srv


def _secret_url(server: FeedServer, path: str) -> str:
    return server.url(path).replace("://", "://user:SENTINEL3@", 1) + "?" + SECRET_QUERY


def _write_sources(folder: Path, server: FeedServer) -> None:
    folder.mkdir(exist_ok=True)
    lines = ["sources:"]
    for source_id, path in (
        ("broken", "/broken.xml"),
        ("moved", "/old.xml"),
        ("down", "/down.xml"),
    ):
        lines += [
            f"  - id: {source_id}",
            f"    name: {source_id}",
            f"    url: '{_secret_url(server, path)}'",
            "    every: 10s",
        ]
    lines += [
        "  - id: page",
        "    name: page",
        f"    url: '{_secret_url(server, '/page.html')}'",
        "    kind: html",
        "    every: 10s",
        '    selectors: {item: "article", title: "h2", link: "a[href]"}',
    ]
    (folder / "sources.yaml").write_text("\n".join(lines) + "\n")


def _monitor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_monitor(env, *args, timeout=120)


def _around(text: str, needle: str, width: int = 120) -> list[str]:
    """Each place `needle` occurs, with some context: what leaked, and where."""
    found, start = [], text.find(needle)
    while start != -1 and len(found) < 10:
        found.append(text[max(0, start - width) : start + width])
        start = text.find(needle, start + 1)
    return found


def _stored(db_url: str) -> dict[str, SourceRow]:
    engine = create_engine(db_url)
    try:
        with Session(engine) as session:
            return {row.id: row for row in session.scalars(select(SourceRow))}
    finally:
        engine.dispose()


@pytest.mark.slow
def test_no_url_secret_reaches_logs_cli_database_or_status(
    server: FeedServer, tmp_path: Path
) -> None:
    folder = tmp_path / "watchlists"
    _write_sources(folder, server)
    db_url = f"sqlite:///{tmp_path / 'monitor.db'}"
    env = replica_env(
        database_url=db_url, watchlists_dir=folder, extra={"MONITOR_LOG_LEVEL": "DEBUG"}
    )
    shown: dict[str, str] = {}
    upgrade = _monitor(env, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr

    # The service polls every source itself; /status shows what it stored.
    replica = start_replica("redact", env, tmp_path / "logs")
    try:
        replica.wait_listening()
        deadline = time.monotonic() + 60
        while True:
            code, status = replica.get_json("/status?format=json")
            assert code == 200, status
            if all(s["last_polled_at"] for s in status["sources"]) and status["sources"]:
                break
            assert time.monotonic() < deadline, replica.tail()
            time.sleep(0.3)
        shown["status json"] = replica.get("/status?format=json")[1].decode()
        shown["status html"] = replica.get("/status")[1].decode()
        assert replica.terminate()[0] == 0
        shown["service logs"] = replica.log_path.read_text()
    finally:
        replica.close()

    # The CLI: a forced poll (JSON logs on stderr, a line per source on stdout), then the list.
    poll = _monitor(env, "poll", "--once", "--all")
    shown["poll stdout"], shown["poll stderr"] = poll.stdout, poll.stderr
    listed = _monitor(env, "sources", "list")
    assert listed.returncode == 0, listed.stderr
    shown["sources list"] = listed.stdout + listed.stderr
    checked = _monitor(env, "sources", "check")
    assert checked.returncode == 0, checked.stderr
    shown["sources check"] = checked.stdout + checked.stderr

    rows = _stored(db_url)
    shown["database"] = "\n".join(
        f"{row.id} {row.last_error} {row.moved_to}" for row in rows.values()
    )

    leaks = {where: _around(t, "SENTINEL") for where, t in shown.items() if "SENTINEL" in t}
    assert leaks == {}

    # Not vacuous: each failure and the move were shown, redacted rather than left out.
    assert {r.id: r.last_status for r in rows.values()} == {
        "broken": "parse_error",
        "moved": "not_modified",  # the CLI's poll, after the service's
        "down": "http_5xx",
        "page": "parse_error",
    }
    new_url = server.url("/new.xml") + "?access_token=[redacted]&X-Amz-Signature=[redacted]"
    assert rows["moved"].moved_to == new_url  # stored redacted: see docs/operations.md
    assert f"moved permanently to {new_url[:60]}" in shown["sources list"]  # cut at 100
    assert REDACTED_QUERY in (rows["broken"].last_error or "")
    assert REDACTED_QUERY in (rows["page"].last_error or "")
    notice = "source moved permanently: update its url in the sources file"
    assert notice in shown["service logs"]
    assert REDACTED_QUERY in shown["status json"] and "[redacted]@" in shown["status json"]
    assert new_url in shown["status html"].replace("&amp;", "&")
    assert poll.returncode == 1  # three of the four sources fail, and say so on stdout
    assert REDACTED_QUERY in shown["poll stdout"]


def test_sources_check_does_not_echo_the_secrets_of_a_bad_url(tmp_path: Path) -> None:
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  - id: ftp\n    name: ftp\n"
        f"    url: 'ftp://user:SENTINEL3@files.example/feed?{SECRET_QUERY}'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update(MONITOR_WATCHLISTS_DIR=str(tmp_path), MONITOR_DATABASE_URL="sqlite://")
    checked = _monitor(env, "sources", "check")
    assert checked.returncode == 1
    assert "is not an http(s) URL" in checked.stderr
    assert "SENTINEL" not in checked.stdout + checked.stderr, checked.stderr
    assert REDACTED_QUERY in checked.stderr
