"""The `monitor` command line: parses arguments, builds what a command needs, holds no logic.

Each area registers its own sub-commands in `monitor/commands/<area>.py` through a
`register(subparsers)` function, so the command tree reads in one place.

Start-up is part of the contract (`monitor health` is the container's HEALTHCHECK, run every
30 s): `COMMANDS` names each top-level command's module and one-line help, so a run imports
only the module of the command it was given, and `monitor --help` imports none.
`tests/test_startup.py` checks the table against what the modules register.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from monitor import __version__

# name -> (module that registers it, its help line), in the order `monitor --help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "monitor.commands.core",
        "run the service in the foreground (Ctrl-C/SIGTERM stops it)",
    ),
    "poll": ("monitor.commands.core", "poll sources once and print a line per source"),
    "sources": ("monitor.commands.core", "inspect the sources file and their health"),
    "articles": ("monitor.commands.core", "stored articles"),
    "db": ("monitor.commands.core", "database schema"),
    "config": ("monitor.commands.core", "configuration"),
    "watchlists": ("monitor.commands.watchlists", "Validate, test and evaluate watchlists."),
    "stories": ("monitor.commands.stories", "near-duplicate stories across outlets"),
    "deliver": ("monitor.commands.alerts", "send due alerts from the outbox once and exit"),
    "alerts": ("monitor.commands.alerts", "inspect and re-send alerts in the outbox"),
    "health": (
        "monitor.commands.ops",
        "exit 0 when the local service is ready (its /readyz), 1 when not, 2 when silent",
    ),
    "feedback": ("monitor.commands.feedback", "what the desk said about alerts (labels, mutes)"),
    "slack": ("monitor.commands.feedback", "Slack app setup"),
    "demo": (
        "monitor.commands.demo",
        "see it work: real articles from a local feed server, the shipped watchlists, alerts "
        "drawn in the terminal (offline, about a minute)",
    ),
}

COMMAND_MODULES = tuple(dict.fromkeys(module for module, _help in COMMANDS.values()))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full command tree; with `command`, only that command's module is imported and the
    other commands are placeholders with their help line (same `--help`, same choices)."""
    parser = argparse.ArgumentParser(
        prog="monitor",
        description="Self-hosted news-monitoring alerts: feeds in, watchlist alerts out.",
    )
    parser.add_argument("--version", action="version", version=f"monitor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None if command is None else COMMANDS.get(command, ("", ""))[0]
    for module in COMMAND_MODULES:
        if wanted is None or module == wanted:
            importlib.import_module(module).register(sub)
            continue
        for name, (owner, help_line) in COMMANDS.items():
            if owner == module:
                sub.add_parser(name, help=help_line, add_help=False).set_defaults(
                    func=None, placeholder=True
                )
    return parser


def command_of(argv: Sequence[str]) -> str:
    """The top-level command named in `argv` ('' for none: `monitor`, `monitor --help`)."""
    for arg in argv:
        if arg.startswith("-"):
            return ""  # -h, --version or `--`: the full parser handles them
        return arg if arg in COMMANDS else ""
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """The program (`argv` None: the process exits right after) or a call with arguments."""
    code = _main(list(sys.argv[1:] if argv is None else argv))
    if argv is None:
        # The process ends next. Interpreter shutdown's garbage collections walk every object
        # SQLAlchemy, pydantic and numpy made at import: 1-2 s of a 5-8 s `monitor poll
        # --once` on a loaded 2-core machine. Frozen objects are skipped; atexit still runs.
        gc.freeze()
    return code


def _main(argv: list[str]) -> int:
    command = command_of(argv)
    parser = build_parser(command or "")
    args = parser.parse_args(argv)
    if getattr(args, "placeholder", False):  # a command `command_of` did not spot: parse it fully
        args = build_parser().parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    if getattr(args, "without_app", False):  # `monitor health`: no settings, no database
        return _guarded(lambda: func(args, None))

    from monitor.app import App

    app = App()  # built once; each part is made on first use, so `--help` opens nothing
    try:
        return _guarded(lambda: func(args, app))
    finally:
        app.close()


def _guarded(call: Any) -> int:
    """Run a command; the failures a user can cause end in one line and an exit code."""
    try:
        return int(call() or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file or folder that cannot be made or read: one line, no trace
        from monitor.redact import redact_text

        print(f"monitor: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:
        from pydantic import ValidationError

        # MONITOR_* settings that do not parse: say which, exit 2
        if not isinstance(exc, ValidationError) or exc.title != "Settings":
            raise
        for err in exc.errors():
            name = "MONITOR_" + "_".join(str(p) for p in err["loc"]).upper()
            print(f"monitor: {name}: {err['msg']}", file=sys.stderr)
        return 2
