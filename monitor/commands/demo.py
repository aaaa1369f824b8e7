"""`monitor demo`: see the product work in a minute, offline, on real articles."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.app import App


def register(sub: argparse._SubParsersAction[Any]) -> None:
    demo = sub.add_parser(
        "demo",
        help="see it work: real articles from a local feed server, the shipped watchlists, "
        "alerts drawn in the terminal (offline, about a minute)",
    )
    demo.add_argument(
        "--database",
        metavar="URL",
        default=None,
        help="keep the demo's data in this database (default: a temporary SQLite file)",
    )
    demo.add_argument(
        "--watchlists",
        metavar="DIR",
        type=Path,
        default=None,
        help="watchlist folder (default: MONITOR_WATCHLISTS_DIR, else the checkout's watchlists/)",
    )
    demo.add_argument("--emails", action="store_true", help="show every alert's email too")
    demo.add_argument("--verbose", action="store_true", help="show the service's INFO logs")
    demo.set_defaults(func=cmd_demo)


def find_watchlists(given: Path | None, configured: Path) -> Path | None:
    """The folder to use: the option, else the configured one, else the checkout's."""
    import monitor

    candidates = [given] if given is not None else [configured]
    if given is None:
        candidates.append(Path(monitor.__file__).resolve().parent.parent / "watchlists")
    for folder in candidates:
        if folder is not None and folder.is_dir() and any(folder.glob("*.yaml")):
            return folder
    return None


def cmd_demo(args: argparse.Namespace, app: App) -> int:
    import logging

    from rich.console import Console

    from monitor import logs
    from monitor.demo.run import DemoOptions, print_summary, run_demo
    from monitor.redact import redact_text

    settings = app.settings
    folder = find_watchlists(args.watchlists, settings.watchlists_dir)
    if folder is None:
        where = args.watchlists or settings.watchlists_dir
        print(
            f"monitor demo: no watchlists in {where}: run it from the repository or pass "
            "--watchlists DIR (the shipped ones are in watchlists/)",
            file=sys.stderr,
        )
        return 2
    from monitor.watchlists import load_watchlists

    _, errors = load_watchlists(folder)
    if errors:
        for error in errors:
            print(f"monitor demo: {error}", file=sys.stderr)
        print(f"monitor demo: invalid watchlists in {folder}", file=sys.stderr)
        return 2
    logs.configure("INFO" if args.verbose else "WARNING", settings.log_format, stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    console = Console(highlight=False, width=min(110, Console().width))
    options = DemoOptions(
        watchlists_dir=folder,
        database_url=args.database,
        embedder=settings.embedder,
        all_emails=args.emails,
        pause=0.8 if console.is_terminal else 0.0,
    )
    try:
        result = asyncio.run(run_demo(options, console))
    except Exception as exc:
        print(f"monitor demo: failed: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    print_summary(console, result, options)
    return 0 if result.alerts.get("alert") else 1
