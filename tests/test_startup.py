"""Start-up: a command imports only what it uses (issue 15).

`monitor health` is the container's HEALTHCHECK, run every 30 s, and must work while the
database is down: it may not import the ORM, the database drivers, the settings or numpy.
`monitor --help` lists the commands from `cli.COMMANDS` without importing their modules. The
import checks run the CLI's `main` in a fresh interpreter and read its `sys.modules` at exit:
no timing is asserted (`benchmarks/startup.py` measures the times).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest

from monitor import cli
from monitor.store import db
from tests.support.feedserver import FeedServer, rss

MONITOR = str(Path(sys.executable).with_name("monitor"))
HEAVY = ("sqlalchemy", "sqlmodel", "numpy", "alembic", "pydantic", "pydantic_settings")


TRACE = """
import atexit, gc, json, sys
out = sys.argv[1]
atexit.register(
    lambda: open(out, "w").write(
        json.dumps({"modules": sorted(sys.modules), "frozen": gc.get_freeze_count()})
    )
)
sys.argv = ["monitor", *sys.argv[2:]]
from monitor.cli import main
sys.exit(main())
"""


frozen: list[int] = []  # gc.get_freeze_count() at exit of each traced run


def run_traced(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The CLI's `main` in a fresh interpreter; returns the process and every module it loaded
    (written by an atexit hook, so `--help`'s SystemExit is counted too)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "modules.json"
        done = subprocess.run(
            [sys.executable, "-c", TRACE, str(out), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        trace = json.loads(out.read_text())
    modules = set(trace["modules"])
    assert "monitor.cli" in modules
    frozen.append(trace["frozen"])
    return done, modules


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


class Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "ready", "checks": {"database": {"ok": True}}}).encode()
        self.send_response(200 if self.path == "/readyz" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_health_against_a_ready_listener_imports_no_database_orm_or_settings(
    listener: str,
) -> None:
    done, modules = run_traced("health", "--url", listener)
    assert done.returncode == 0
    assert done.stdout.startswith("ready (database ok)")
    assert heavy_in(modules) == []
    assert "monitor.app" not in modules and "monitor.settings" not in modules


def test_health_against_nothing_exits_2_without_the_heavy_imports() -> None:
    done, modules = run_traced(
        "health", "--url", f"http://127.0.0.1:{closed_port()}", "--timeout", "1"
    )
    assert done.returncode == 2
    assert "no answer" in done.stderr
    assert heavy_in(modules) == []


def test_health_reads_its_port_from_the_environment_not_the_settings(listener: str) -> None:
    port = listener.rsplit(":", 1)[1]
    env = {**os.environ, "MONITOR_HTTP_PORT": port, "MONITOR_TICK_SECONDS": "not a number"}
    done = subprocess.run(  # the installed entry point, as the HEALTHCHECK runs it
        [MONITOR, "health", "--quiet"], capture_output=True, text=True, env=env, check=False
    )
    # a broken unrelated setting would stop App(); the HEALTHCHECK must not depend on it
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_help_lists_every_command_and_imports_none_of_their_modules() -> None:
    done, modules = run_traced("--help")
    assert done.returncode == 0
    assert done.stdout == cli.build_parser().format_help()
    assert [m for m in modules if m.startswith("monitor.commands.")] == []
    assert heavy_in(modules) == []


def test_a_command_imports_only_its_own_module() -> None:
    done, modules = run_traced("health", "--help")
    assert done.returncode == 0 and "--live" in done.stdout
    assert {m for m in modules if m.startswith("monitor.commands.")} == {"monitor.commands.ops"}


def registered() -> list[tuple[str, str, str]]:
    """(name, module, help) of every top-level command, as the modules register them."""
    found: list[tuple[str, str, str]] = []
    for module in cli.COMMAND_MODULES:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        importlib.import_module(module).register(sub)
        found += [(a.dest, module, str(a.help)) for a in sub._choices_actions]
    return found


def test_the_command_table_is_what_the_modules_register() -> None:
    """A new command must be added to `cli.COMMANDS`, or `monitor --help` would miss it."""
    table = [(name, module, help_line) for name, (module, help_line) in cli.COMMANDS.items()]
    assert table == registered()


def test_a_partial_parser_parses_each_command_as_the_full_parser_does() -> None:
    full = cli.build_parser()
    for argv in (
        ["poll", "--once", "--all"],
        ["health", "--live", "-q"],
        ["demo"],
        ["db", "current"],
    ):
        partial = cli.build_parser(cli.command_of(argv))
        assert vars(partial.parse_args(argv)) == vars(full.parse_args(argv))


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["health", "--quiet"], "health"),
        (["--", "poll", "--once"], ""),
        (["--help"], ""),
        ([], ""),
        (["nonsense"], ""),
        (["--version"], ""),
    ],
)
def test_command_of(argv: list[str], command: str) -> None:
    assert cli.command_of(argv) == command


def test_an_unknown_command_is_refused_with_the_full_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["nonsense"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nonsense'" in err and "'health'" in err


def test_poll_once_starts_without_alembic_or_the_email_templates(tmp_path: Path) -> None:
    """Alembic (its script loader imports Mako and every migration) is for `monitor db upgrade`;
    a poll against a migrated database only compares the schema revision."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    db.upgrade(url)
    folder = tmp_path / "watchlists"
    folder.mkdir()
    with FeedServer() as server:
        server.add("/f.xml", rss([("g1", "Item one")]))
        (folder / "sources.yaml").write_text(
            f"sources:\n  - id: s1\n    name: S1\n    url: {server.url('/f.xml')}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
        env.update(
            MONITOR_DATABASE_URL=url,
            MONITOR_WATCHLISTS_DIR=str(folder),
            MONITOR_ALLOW_PRIVATE_HOSTS="127.0.0.1",
            MONITOR_LOG_LEVEL="WARNING",
        )
        done, modules = run_traced("poll", "--once", "--all", env=env)
    assert done.returncode == 0, done.stderr
    assert "polled 1 source(s): 1 ok, 0 failed; 1 new article(s)" in done.stdout
    assert "sqlalchemy" in modules  # the trace sees the database layer it did use
    # the program froze its objects before exiting: shutdown skips collecting them
    assert frozen[-1] > 10_000
    assert sorted(m for m in modules if m.split(".")[0] in ("alembic", "mako", "jinja2")) == []


def test_head_revision_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db.alembic_config("sqlite://"))
    assert db.head_revision() == script.get_current_head()
    assert db.head_revision() is not None


def test_current_revision_reads_alembics_version_table(tmp_path: Path) -> None:
    from alembic.runtime.migration import MigrationContext

    url = f"sqlite:///{tmp_path / 'm.db'}"
    engine = db.make_engine(url)
    try:
        assert db.current_revision(engine) is None  # an empty database: never upgraded
        assert not db.schema_is_current(engine)
        db.upgrade(url, "0002")
        with engine.connect() as conn:
            assert db.current_revision(engine) == "0002"
            assert MigrationContext.configure(conn).get_current_revision() == "0002"
        assert not db.schema_is_current(engine)
        db.upgrade(url)
        assert db.current_revision(engine) == db.head_revision()
        assert db.schema_is_current(engine)
    finally:
        engine.dispose()


#: What a poll of unchanged feeds does without: the ingest path (parsers, story grouping,
#: matching, numpy), SQLModel's table classes, the watchlists, the sources file parser (its
#: digest is unchanged) and structlog's optional rich/pygments.
NOT_FOR_304S = (
    "numpy",
    "feedparser",
    "sqlmodel",
    "ruamel",
    "rich",
    "pygments",
    "monitor.pipeline",
    "monitor.store.tables",
    "monitor.watchlists",
    "monitor.query",
    "monitor.relevance",
    "monitor.deliver",
    "monitor.sources",
)


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_poll_once_of_unchanged_feeds_needs_no_ingest_orm_watchlists_or_sources_parser(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    db.upgrade(url)
    folder = tmp_path / "watchlists"
    shutil.copytree(Path(__file__).parent / "data" / "watchlists" / "good", folder)
    sources_file = folder / "sources.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update(
        MONITOR_DATABASE_URL=url,
        MONITOR_WATCHLISTS_DIR=str(folder),
        MONITOR_ALLOW_PRIVATE_HOSTS="127.0.0.1",
        MONITOR_LOG_LEVEL="WARNING",
        MONITOR_EMBEDDER="hashing",
    )
    with FeedServer() as server:
        server.add("/a.xml", rss([("a1", "Item one")]))
        server.add("/b.xml", rss([("b1", "Item two")]))
        listing = "sources:\n  - id: a\n    name: A\n    url: {}\n".format(server.url("/a.xml"))
        sources_file.write_text(listing)
        first, first_modules = run_traced("poll", "--once", "--all", env=env)
        assert "polled 1 source(s): 1 ok, 0 failed; 1 new article(s)" in first.stdout
        # the first poll stored an entry: it did use the ingest path and the watchlists
        assert "monitor.pipeline" in first_modules and "monitor.watchlists" in first_modules

        again, modules = run_traced("poll", "--once", "--all", env=env)
        assert again.returncode == 0, again.stderr
        assert "a  " in again.stdout and "not_modified" in again.stdout
        assert "polled 1 source(s): 1 ok, 0 failed; 0 new article(s)" in again.stdout
        assert _loaded(modules, NOT_FOR_304S) == []

        # an edited file is parsed and synced again: the new source is polled (a catch-up)
        sources_file.write_text(
            listing + "  - id: b\n    name: B\n    url: {}\n".format(server.url("/b.xml"))
        )
        edited, modules = run_traced("poll", "--once", "--all", env=env)
        assert "polled 2 source(s): 2 ok, 0 failed; 1 new article(s)" in edited.stdout
        assert "monitor.sources" in modules

        # a broken edit is reported and the last good sources stay (both polled, 304s)
        sources_file.write_text(listing + "  - id: [unclosed\n")
        broken, _ = run_traced("poll", "--once", "--all", env=env)
        assert "sources file invalid" in broken.stderr
        assert "polled 2 source(s): 2 ok, 0 failed; 0 new article(s)" in broken.stdout
