"""Every command's exit codes, as README's "Exit codes" table states them, through the real CLI.

The fast test checks that every sub-command of the parser has a row. The slow one runs the
main exit paths of each command as separate `monitor` processes (the installed entry point,
stdout and stderr as pipes) against a temporary SQLite database, a real local feed server and
a small HTTP server answering /readyz, two at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest

from monitor.cli import build_parser
from monitor.store import db
from tests.support.feedserver import SMALL_RSS, FeedServer
from tests.support.paths import CORPUS, DATA, REPO

MONITOR = str(Path(sys.executable).with_name("monitor"))
GOOD = DATA / "watchlists" / "good"
CLI = DATA / "watchlists" / "cli"


def commands() -> list[str]:
    """Every leaf command of the parser, e.g. `watchlists test`."""
    found: list[str] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                        walk(sub, [*prefix, name])
                    else:
                        found.append(" ".join([*prefix, name]))

    walk(build_parser(), [])
    return found


def documented() -> set[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    names: set[str] = set()
    for row in rows:
        names.update(re.findall(r"`([a-z][a-z -]*)`", row.split("|")[1]))
    return names


def test_every_command_has_a_row_in_the_exit_code_table() -> None:
    missing = [c for c in commands() if c not in documented()]
    assert missing == []
    assert len(commands()) >= 24


@dataclass
class Case:
    argv: list[str]
    code: int
    env: dict[str, str] = field(default_factory=dict)
    stdout: str = ""  # a piece the output must contain
    stderr: str = ""


class _Ready(BaseHTTPRequestHandler):
    """/readyz answering 503, as a service that is up but not ready does."""

    def do_GET(self) -> None:
        body = json.dumps({"status": "not ready", "checks": {"schema": {"ok": False}}}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("exit-codes")
    url = f"sqlite:///{root / 'monitor.db'}"
    db.upgrade(url)
    # The cases run two at a time: the failing poll has a database of its own, or the
    # passing one, beside it, would sync and poll its source too.
    down_url = f"sqlite:///{root / 'down.db'}"
    db.upgrade(down_url)
    (root / "nothing").mkdir()
    empty = root / "empty.db"
    empty.touch()
    bad = root / "bad.jsonl"
    bad.write_text("not json\n")
    broken = root / "broken.yaml"
    broken.write_text("sources:\n  - id: x\n    every: soon\n")
    not_ready = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    Thread(target=not_ready.serve_forever, daemon=True).start()
    with FeedServer() as feeds:
        ok_feed = feeds.add("/ok.xml", SMALL_RSS)
        bad_feed = feeds.add_status("/down.xml", 500)
        for name, feed in (("ok", ok_feed), ("down", bad_feed)):
            (root / f"sources-{name}.yaml").write_text(
                f"sources:\n  - id: {name}\n    name: {name}\n    url: {feed}\n    every: 1m\n"
            )
        try:
            yield {
                "root": root,
                "url": url,
                "down_url": down_url,
                "empty": f"sqlite:///{empty}",
                "empty_dir": root / "nothing",
                "bad": bad,
                "broken": broken,
                "not_ready": f"http://127.0.0.1:{not_ready.server_address[1]}",
            }
        finally:
            not_ready.shutdown()


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update(
        {
            "MONITOR_WATCHLISTS_DIR": str(GOOD),
            "MONITOR_ALLOW_PRIVATE_HOSTS": "127.0.0.1",
            "MONITOR_HTTP_PORT": "-1",
            "MONITOR_EMBEDDER": "hashing",
        }
    )
    env.update(extra)
    return env


def _cases(w: dict[str, Any]) -> list[Case]:
    db_env = {"MONITOR_DATABASE_URL": w["url"]}
    ok = {**db_env, "MONITOR_SOURCES_FILE": str(w["root"] / "sources-ok.yaml")}
    down = {
        "MONITOR_DATABASE_URL": w["down_url"],
        "MONITOR_SOURCES_FILE": str(w["root"] / "sources-down.yaml"),
    }
    # A database file whose folder cannot exist (its parent is a file), even for root.
    unreadable = {"MONITOR_DATABASE_URL": f"sqlite:///{w['bad']}/monitor.db"}
    articles, labels = str(CLI / "articles.jsonl"), str(CLI / "labels.jsonl")
    pairs = str(CORPUS / "near-duplicates-dev.jsonl")
    corpus = str(CORPUS / "articles.jsonl")
    return [
        Case([], 2, stderr="usage"),
        Case(["--version"], 0, stdout="monitor "),
        # A database of its own: on one that already holds sources, a broken file keeps them.
        Case(
            ["run"],
            2,
            {
                "MONITOR_DATABASE_URL": f"sqlite:///{w['root'] / 'fresh.db'}",
                "MONITOR_SOURCES_FILE": str(w["broken"]),
            },
            stderr="no valid sources file",
        ),
        Case(["poll", "--once", "--all"], 0, ok, stdout="ok"),
        Case(["poll", "--once", "--all"], 1, down, stdout="error:http_5xx"),
        Case(["poll"], 2, ok, stderr="--once"),
        Case(["poll", "--once"], 2, {"MONITOR_TICK_SECONDS": "soon"}, stderr="MONITOR_TICK"),
        Case(["poll", "--once"], 2, {**ok, "MONITOR_DATABASE_URL": w["empty"]}, stderr="schema"),
        Case(["sources", "list"], 0, db_env),
        Case(["sources", "list"], 1, unreadable, stderr="cannot read"),
        Case(["sources", "check"], 0, ok, stdout="sources OK"),
        Case(["sources", "check"], 1, {"MONITOR_SOURCES_FILE": str(w["broken"])}),
        Case(["articles", "list"], 0, db_env),
        Case(["db", "upgrade"], 0, db_env, stdout="database at revision"),
        Case(["db", "upgrade"], 1, unreadable, stderr="migration failed"),
        Case(["db", "current"], 1, {"MONITOR_DATABASE_URL": w["empty"]}),
        Case(["config", "check"], 0, db_env, stdout="watchlists_dir"),
        Case(["config", "check"], 1, {"MONITOR_POLL_BATCH": "many"}, stderr="MONITOR_POLL_BATCH"),
        Case(["watchlists", "check", "--dir", str(GOOD)], 0, stdout="ok:"),
        Case(["watchlists", "check", "--dir", str(DATA / "watchlists" / "broken")], 1),
        Case(["watchlists", "test", "--dir", str(GOOD), "--articles", articles], 0),
        Case(["watchlists", "test", "nope", "--dir", str(GOOD), "--articles", articles], 1),
        Case(["watchlists", "test", "--dir", str(GOOD), "--articles", str(w["bad"])], 2),
        Case(
            ["watchlists", "eval", "--dir", str(GOOD), "--articles", articles, "--labels", labels],
            0,
            stdout="precision",
        ),
        Case(["watchlists", "eval", "--dir", str(GOOD), "--articles", articles], 2),
        Case(["watchlists", "train", "--dir", str(GOOD)], 0),
        Case(["watchlists", "train", "letters", "--dir", str(GOOD)], 1, stderr="no watchlist"),
        Case(["watchlists", "schema"], 0, stdout="$schema"),
        Case(["watchlists", "status", "--dir", str(GOOD)], 0, db_env),
        Case(["watchlists", "status", "nope", "--dir", str(GOOD)], 1, db_env),
        Case(["stories", "list"], 0, db_env),
        Case(["stories", "show", "12345"], 1, db_env, stderr="no story"),
        Case(["stories", "test", "--articles", corpus, "--format", "jsonl"], 0),
        Case(["stories", "test", "--articles", str(w["bad"])], 2),
        Case(["stories", "eval", "--articles", corpus, "--pairs", pairs], 0, stdout="precision"),
        Case(
            [
                "stories",
                "explain",
                "k1cd394750b",
                "k833dde1909",
                "--articles",
                corpus,
                "--embedder",
                "none",
            ],
            0,
            stdout="decision: NOT ONE STORY",
        ),
        Case(["stories", "explain", "1", "2"], 2, db_env, stderr="no stored article"),
        Case(["stories", "reconcile"], 0, db_env),
        Case(["stories", "rebuild-index"], 0, db_env),
        Case(["deliver", "--once"], 0, db_env, stdout="0 alerts delivered"),
        Case(["deliver", "--once"], 1, {"MONITOR_DATABASE_URL": w["empty"]}, stderr="schema"),
        Case(["deliver"], 2, db_env),
        Case(["alerts", "list"], 0, db_env, stdout="no alerts"),
        Case(["alerts", "list"], 1, unreadable, stderr="database"),
        Case(["alerts", "retry", "999"], 1, db_env, stderr="unknown"),
        Case(["alerts", "retry"], 2, db_env),
        Case(["health", "--url", w["not_ready"]], 1, stderr="not ready"),
        Case(["health", "--url", "http://127.0.0.1:9", "--timeout", "1"], 2, stderr="no answer"),
        Case(["feedback", "list"], 0, db_env),
        Case(["feedback", "list", "--since", "soon"], 2, db_env),
        Case(["feedback", "export", "--watchlist", "missile-tests"], 0, db_env),
        Case(["feedback", "reject", "999"], 1, db_env, stderr="no feedback item 999"),
        Case(["feedback", "reject", "x"], 2, db_env),
        Case(["slack", "manifest"], 0, stdout="slack/actions"),
        Case(["slack", "manifest", "--nope"], 2),
        Case(["demo", "--watchlists", str(w["empty_dir"])], 2, stderr="no watchlists"),
        Case(["demo", "--watchlists", str(DATA / "watchlists" / "broken")], 2, stderr="invalid"),
    ]


def _run(case: Case) -> tuple[Case, subprocess.CompletedProcess[str]]:
    done = subprocess.run(
        [MONITOR, *case.argv],
        env=_env(case.env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return case, done


@pytest.mark.slow
def test_each_command_exits_as_documented(world: dict[str, Any]) -> None:
    cases = _cases(world)
    covered = {c for c in commands() if any(x.argv[: len(c.split())] == c.split() for x in cases)}
    assert covered == set(commands())  # a new command needs its cases here
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_run, cases))
    wrong = []
    for case, done in results:
        if (
            done.returncode != case.code
            or case.stdout not in done.stdout
            or case.stderr not in done.stderr
        ):
            wrong.append(
                f"monitor {' '.join(case.argv)}: exit {done.returncode} (want {case.code})\n"
                f"  stdout: {done.stdout[-300:]!r}\n  stderr: {done.stderr[-300:]!r}"
            )
    assert wrong == [], "\n".join(wrong)


@pytest.mark.slow
def test_run_exits_0_on_sigterm_and_health_answers_0_while_ready(world: dict[str, Any]) -> None:
    port = _free_port()
    env = _env(
        {
            "MONITOR_DATABASE_URL": world["url"],
            "MONITOR_SOURCES_FILE": str(world["root"] / "sources-ok.yaml"),
            "MONITOR_HTTP_HOST": "127.0.0.1",
            "MONITOR_HTTP_PORT": str(port),
            "MONITOR_TICK_SECONDS": "1",
        }
    )
    proc = subprocess.Popen(
        [MONITOR, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 30
        code = None
        while time.monotonic() < deadline and proc.poll() is None:
            health = subprocess.run(
                [MONITOR, "health", "--timeout", "1"], env=env, capture_output=True, check=False
            )
            code = health.returncode
            if code == 0:
                break
            time.sleep(0.5)
        assert code == 0, f"health never answered 0 (last {code})"
        taken = subprocess.run(
            [MONITOR, "run"],
            env={**env, "MONITOR_HTTP_PORT": "-1"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert taken.returncode == 2 and "already" in taken.stderr  # one run per SQLite file
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
