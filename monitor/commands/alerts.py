"""Outbox commands: `deliver --once [--dry-run]`, `alerts list [--status …]`, `alerts retry`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from monitor.model import ALERT_STATES as STATES

if TYPE_CHECKING:
    from monitor.app import App


def register(sub: argparse._SubParsersAction[Any]) -> None:
    deliver = sub.add_parser("deliver", help="send due alerts from the outbox once and exit")
    deliver.add_argument("--once", action="store_true", required=True, help="one tick, then exit")
    deliver.add_argument(
        "--dry-run", action="store_true", help="print what would be sent; send and change nothing"
    )
    deliver.set_defaults(func=cmd_deliver)

    alerts = sub.add_parser("alerts", help="inspect and re-send alerts in the outbox")
    asub = alerts.add_subparsers(dest="alerts_command", metavar="COMMAND", required=True)
    alist = asub.add_parser("list", help="the newest outbox rows")
    alist.add_argument(
        "--status",
        action="append",
        choices=STATES,
        metavar="STATUS",
        help=f"only rows in this state (repeat); one of {', '.join(STATES)}",
    )
    alist.add_argument("--limit", type=int, default=50, help="how many rows (default 50)")
    alist.set_defaults(func=cmd_alerts_list)

    retry = asub.add_parser("retry", help="send alerts again (a dead one, or all dead ones)")
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("id", nargs="?", type=int, help="the alert id (see `monitor alerts list`)")
    target.add_argument("--dead", action="store_true", help="every dead alert")
    retry.set_defaults(func=cmd_alerts_retry)


def _open(app: App) -> Any:
    """Logging configured, and the App's engine once the schema is known to be current."""
    import logging

    from monitor import logs
    from monitor.store import db

    # stdout is the command's own output (the outbox table, the delivery line)
    logs.configure(app.settings.log_level, app.settings.log_format, stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        engine = app.engine
        current = db.schema_is_current(engine)
    except Exception as exc:
        raise SystemExit(f"monitor: cannot reach the database: {exc}") from None
    if not current:
        raise SystemExit(
            "monitor: the database schema is not at the current version: run `monitor db upgrade`"
        )
    return engine


def cmd_deliver(args: argparse.Namespace, app: App) -> int:
    from monitor.deliver import Dispatcher
    from monitor.service import default_owner

    engine = _open(app)
    settings = app.settings
    dispatcher = Dispatcher(
        settings,
        engine,
        owner=default_owner(settings),
        dry_run=args.dry_run,
        notifiers=app.notifiers,
    )

    async def go() -> int:
        try:
            return await dispatcher.tick()
        finally:
            await dispatcher.drain(grace=settings.shutdown_grace_seconds)
            await dispatcher.aclose()

    count = asyncio.run(go())
    if args.dry_run:
        print(f"{count} alerts due (dry run: nothing sent, nothing changed)")
    else:
        failed = dispatcher.failed_total
        print(f"{count} alerts delivered, {failed} failed (see `monitor alerts list`)")
    return 0 if dispatcher.failed_total == 0 else 1


def cmd_alerts_list(args: argparse.Namespace, app: App) -> int:
    from monitor.model import AlertStatus
    from monitor.render import console_safe, truncate
    from monitor.store import alerts

    rows = alerts.read_alerts(_open(app), statuses=args.status or (), limit=args.limit)
    if not rows:
        print("no alerts" + (f" with status {', '.join(args.status)}" if args.status else ""))
        return 0
    print(f"{'ID':>6}  {'STATUS':<9} {'KIND':<8} {'TO':<28} {'TRIES':>5}  CREATED (UTC)     TITLE")
    for row in rows:
        to = truncate(f"{row.channel}:{row.destination}", 28)
        created = row.created_at.strftime("%Y-%m-%d %H:%M")
        title = console_safe(truncate(row.title or f"({row.watchlist_id})", 60)).replace("\n", " ")
        print(
            f"{row.id:>6}  {row.status:<9} {row.kind:<8} {to:<28} {row.attempts:>5}  "
            f"{created:<17} {title}"
        )
        if row.status in (AlertStatus.RETRY, AlertStatus.DEAD) and row.last_error:
            retry = row.status == AlertStatus.RETRY
            when = f" (next try {row.next_attempt_at:%H:%M:%S})" if retry else ""
            print(f"{'':>8}{row.status}: {console_safe(truncate(row.last_error, 150))}{when}")
    return 0


def cmd_alerts_retry(args: argparse.Namespace, app: App) -> int:
    from monitor.clock import utcnow
    from monitor.store import alerts

    ids = [] if args.dead else [args.id]
    count = alerts.requeue(_open(app), ids=ids, dead=args.dead, now=utcnow())
    if count == 0:
        what = "no dead alerts" if args.dead else f"alert {args.id} is unknown or still in flight"
        print(f"monitor: {what}", file=sys.stderr)
        return 1
    print(f"{count} alert(s) queued again; `monitor run` or `monitor deliver --once` sends them")
    return 0
