"""The `monitor` command line: parses arguments, builds what a command needs, holds no logic.

Each area registers its own sub-commands in `monitor/commands/<area>.py` through a
`register(subparsers)` function, so the command tree reads in one place.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from monitor import __version__

COMMAND_MODULES = (
    "monitor.commands.core",
    "monitor.commands.watchlists",
    "monitor.commands.stories",
    "monitor.commands.alerts",
    "monitor.commands.ops",
    "monitor.commands.feedback",
    "monitor.commands.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitor",
        description="Self-hosted news-monitoring alerts: feeds in, watchlist alerts out.",
    )
    parser.add_argument("--version", action="version", version=f"monitor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    from monitor.app import App

    app = App()  # built once; each part is made on first use, so `--help` opens nothing
    try:
        return int(func(args, app) or 0)
    except ValidationError as exc:  # MONITOR_* settings that do not parse: say which, exit 2
        if exc.title != "Settings":
            raise
        for err in exc.errors():
            name = "MONITOR_" + "_".join(str(p) for p in err["loc"]).upper()
            print(f"monitor: {name}: {err['msg']}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file or folder that cannot be made or read: one line, no trace
        from monitor.redact import redact_text

        print(f"monitor: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    finally:
        app.close()
