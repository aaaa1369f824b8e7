"""Core commands: run, poll, sources, articles, db, config."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitor.settings import Settings

if TYPE_CHECKING:
    from monitor.app import App


def register(sub: argparse._SubParsersAction[Any]) -> None:
    run = sub.add_parser("run", help="run the service in the foreground (Ctrl-C/SIGTERM stops it)")
    run.add_argument("--dry-run", action="store_true", help="render alerts without sending them")
    run.set_defaults(func=cmd_run)

    poll = sub.add_parser("poll", help="poll sources once and print a line per source")
    poll.add_argument("--once", action="store_true", required=True, help="poll once and exit")
    poll.add_argument("--all", action="store_true", help="poll every source now, ignoring schedule")
    poll.add_argument("--source", action="append", metavar="ID", help="only this source (repeat)")
    poll.add_argument("--dry-run", action="store_true", help="fetch and match, store nothing")
    poll.set_defaults(func=cmd_poll)

    sources = sub.add_parser("sources", help="inspect the sources file and their health")
    ssub = sources.add_subparsers(dest="sources_command", metavar="COMMAND", required=True)
    ssub.add_parser("list", help="each source's health").set_defaults(func=cmd_sources_list)
    ssub.add_parser("check", help="validate sources.yaml").set_defaults(func=cmd_sources_check)

    articles = sub.add_parser("articles", help="stored articles")
    asub = articles.add_subparsers(dest="articles_command", metavar="COMMAND", required=True)
    alist = asub.add_parser("list", help="print stored articles, newest first")
    alist.add_argument("--since", default=None, help="only articles first seen within, e.g. 2d")
    alist.add_argument("--source", default=None, metavar="ID")
    alist.add_argument("--limit", type=int, default=None)
    alist.add_argument("--format", choices=("text", "jsonl"), default="text")
    alist.set_defaults(func=cmd_articles_list)

    dbp = sub.add_parser("db", help="database schema")
    dsub = dbp.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    dsub.add_parser("upgrade", help="apply the Alembic migrations").set_defaults(
        func=cmd_db_upgrade
    )
    dsub.add_parser("current", help="show schema revision").set_defaults(func=cmd_db_current)

    config = sub.add_parser("config", help="configuration")
    csub = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    csub.add_parser(
        "check", help="print the effective configuration (secrets masked)"
    ).set_defaults(func=cmd_config_check)


def _settings(app: App, *, logs_to_stderr: bool = False) -> Settings:
    """Settings plus logging; one-shot commands keep stdout for their own output."""
    import logging

    from monitor import logs

    settings = app.settings
    logs.configure(
        settings.log_level, settings.log_format, stream=sys.stderr if logs_to_stderr else None
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return settings


def since_arg(text: str | None) -> datetime | None:
    """'2d', '6h', '30m' → the UTC time that long ago."""
    from monitor.clock import utcnow
    from monitor.timeparse import ago

    return ago(text, utcnow())


def _fail(message: str, code: int = 1) -> int:
    """One error line; exception texts may quote a source or database URL."""
    from monitor.redact import redact_text

    print(f"monitor: {redact_text(message)}", file=sys.stderr)
    return code


CANNOT_START = 2  # the service cannot start as configured (the message says what to fix)


def cmd_run(args: argparse.Namespace, app: App) -> int:
    from monitor.allocator import limit_arenas
    from monitor.service import Service, StartupError

    limit_arenas()  # before any thread: see monitor.allocator
    _settings(app)
    service = Service(app, dry_run=args.dry_run)
    try:
        service.prepare(exclusive=True, watchlists=False)
    except StartupError as exc:
        return _fail(str(exc), CANNOT_START)
    try:
        return asyncio.run(service.run())
    except OSError as exc:  # e.g. the health port is taken: one clear line, not a traceback
        return _fail(f"cannot start: {exc}")


def cmd_poll(args: argparse.Namespace, app: App) -> int:
    from monitor import progress
    from monitor.allocator import limit_arenas
    from monitor.model import PollStatus
    from monitor.redact import redact_text
    from monitor.render import console_safe
    from monitor.service import Service, StartupError

    limit_arenas()  # before any thread: see monitor.allocator
    _settings(app, logs_to_stderr=True)
    app.lazy_models = True  # trained by the first poll that judges; a catch-up never does
    # one-shot: the watchlists load with the first poll that has entries to match
    service = Service(app, dry_run=args.dry_run, one_shot=True)
    try:
        service.prepare(exclusive=False, watchlists=False)
    except StartupError as exc:
        return _fail(str(exc), CANNOT_START)

    async def go() -> list[Any]:
        try:
            return await service.poller.poll_all_due(
                force=args.all or bool(args.source), only=args.source
            )
        finally:
            await service.aclose()

    counted = service.poller.on_report
    with progress.counter("polling sources") as advance:

        def on_report(done: Any) -> None:
            if counted is not None:
                counted(done)
            advance(1)

        service.poller.on_report = on_report
        reports = asyncio.run(go())
    if args.source:
        missing = set(args.source) - {r.source_id for r in reports}
        for source_id in sorted(missing):
            print(f"{source_id:<32} not polled: unknown, disabled or leased by another replica")
    for report in reports:
        line = (
            f"{report.source_id:<32} {report.label:<24} new={report.new:<4} "
            f"updated={report.updated:<3} alerts={report.alerts:<3} {report.seconds:6.2f}s"
        )
        if report.message:
            line += f"  {redact_text(report.message)[:160]}"
        print(console_safe(line))
        for title, watchlist, score in report.matches:
            print(console_safe(f"    match {watchlist} ({score:.1f}): {title[:120]}"))
        for preview in report.previews:
            print("    would send:")
            print("      " + console_safe(preview).replace("\n", "\n      "))
    if not reports and not args.source:
        print("no source is due (use --all to poll every source now)")
    elif reports:
        failed = sum(r.status == PollStatus.ERROR for r in reports)
        new = sum(r.new for r in reports)
        alerts = sum(r.alerts for r in reports)
        print(
            f"polled {len(reports)} source(s): {len(reports) - failed} ok, {failed} failed; "
            f"{new} new article(s), {alerts} alert(s)"
        )
    return 0 if all(r.status != PollStatus.ERROR for r in reports) else 1


def cmd_sources_check(args: argparse.Namespace, app: App) -> int:
    from monitor.redact import redact_text
    from monitor.sources import SourcesError, load_sources

    settings = app.settings
    try:
        sources = load_sources(settings.sources_path)
    except SourcesError as exc:
        for line in exc.errors:
            print(redact_text(line), file=sys.stderr)
        return 1
    print(f"{settings.sources_path}: {len(sources)} sources OK")
    return 0


def cmd_sources_list(args: argparse.Namespace, app: App) -> int:
    from monitor.render import console_safe
    from monitor.store.status import list_sources  # last_error and moved_to come redacted

    try:
        rows = list_sources(app.engine)
    except Exception as exc:
        return _fail(f"cannot read sources from the database ({exc}); run `monitor db upgrade`")
    if not rows:
        print("no sources in the database yet: `monitor poll --once` or `monitor run` syncs them")
        return 0
    print(f"{'SOURCE':<30} {'STATUS':<18} {'FAILS':>5} {'LAST POLL':<20} {'NEXT POLL':<20} NOTE")
    for row in rows:
        status = row.last_status if row.enabled else "removed"
        if row.disabled_reason:
            status = "disabled"
        note = row.disabled_reason or row.last_error or ""
        if not note and row.moved_to:
            note = f"moved permanently to {row.moved_to}: update its url in the sources file"
        print(
            f"{row.id:<30} {status:<18} {row.failures:>5} {_fmt(row.last_polled_at):<20} "
            f"{_fmt(row.next_poll_at):<20} {console_safe(note[:100])}"
        )
    return 0


def _fmt(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def cmd_articles_list(args: argparse.Namespace, app: App) -> int:
    from monitor.render import console_safe
    from monitor.store import articles

    try:
        items = articles.read_articles(
            app.engine, since=since_arg(args.since), source_id=args.source, limit=args.limit
        )
    except Exception as exc:
        return _fail(f"cannot read articles ({exc}); run `monitor db upgrade`")
    for item in items:
        art = item.article
        if args.format == "jsonl":
            print(
                json.dumps(
                    {
                        "id": item.id,
                        "source": item.source_id,
                        "url": art.url,
                        "title": art.title,
                        "summary": art.text,
                        "published": art.published.isoformat() if art.published else None,
                        "first_seen": item.first_seen.isoformat(),
                        "content_hash": art.content_hash,
                        "entry_key": art.entry_key,
                        "story_id": item.story_id,
                    },
                    ensure_ascii=False,
                )
            )
        else:
            line = f"{item.id:>6} {_fmt(item.first_seen)} [{item.source_id}] {art.title[:110]}"
            print(console_safe(line))
            if art.url:
                print(console_safe(f"       {art.url}"))
    return 0


def cmd_db_upgrade(args: argparse.Namespace, app: App) -> int:
    from monitor import progress
    from monitor.store import db

    settings = _settings(app, logs_to_stderr=True)
    try:
        with progress.phase("applying migrations"):
            db.upgrade(settings.db_url)
    except Exception as exc:
        return _fail(f"migration failed: {exc}")
    print(f"database at revision {db.head_revision()}")
    return 0


def cmd_db_current(args: argparse.Namespace, app: App) -> int:
    from monitor.store import db

    current = db.current_revision(app.engine)
    head = db.head_revision()
    print(f"current {current or '-'}; head {head}")
    return 0 if current == head else 1


def cmd_config_check(args: argparse.Namespace, app: App) -> int:
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as exc:
        for err in exc.errors():
            name = "MONITOR_" + "_".join(str(p) for p in err["loc"]).upper()
            print(f"{name}: {err['msg']}", file=sys.stderr)
        return 1
    print(settings.model_dump_json(indent=2))
    return 0
