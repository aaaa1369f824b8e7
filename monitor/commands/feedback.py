"""Desk feedback for admins: `feedback list`, `feedback export`, `feedback reject`, and
`slack manifest` (the Slack app to create for buttons and Socket Mode)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.timeparse import duration_arg

if TYPE_CHECKING:
    from monitor.app import App
    from monitor.store.feedback import DeskJudgement

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "slack-app-manifest.yaml"
PLACEHOLDER = "https://monitor.example.org"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    fb = sub.add_parser("feedback", help="what the desk said about alerts (labels, mutes)")
    fsub = fb.add_subparsers(dest="feedback_command", metavar="COMMAND", required=True)
    flist = fsub.add_parser("list", help="feedback items, newest first, with desk precision")
    flist.add_argument("--watchlist", help="only this watchlist")
    flist.add_argument(
        "--since", type=duration_arg, default=timedelta(days=7), help="how far back (default 7d)"
    )
    flist.add_argument("--format", choices=("text", "jsonl"), default="text")
    flist.set_defaults(func=cmd_list)
    export = fsub.add_parser(
        "export", help="a watchlist's desk labels as JSONL in the examples-file format"
    )
    export.add_argument("--watchlist", required=True)
    export.set_defaults(func=cmd_export)
    reject = fsub.add_parser("reject", help="veto a feedback item: it stops counting")
    reject.add_argument("id", type=int, help="the item id (see `monitor feedback list`)")
    reject.set_defaults(func=cmd_reject)

    slack = sub.add_parser("slack", help="Slack app setup")
    ssub = slack.add_subparsers(dest="slack_command", metavar="COMMAND", required=True)
    manifest = ssub.add_parser(
        "manifest", help="print the Slack app manifest to paste into 'create app from manifest'"
    )
    manifest.add_argument(
        "--url", help="public base URL of the listener (default MONITOR_PUBLIC_URL)"
    )
    manifest.add_argument(
        "--socket-mode", action="store_true", help="clicks over Socket Mode (no public URL)"
    )
    manifest.set_defaults(func=cmd_manifest)


def precision_line(judged: DeskJudgement | None) -> str:
    """One window as `0.75 (3 relevant of 4 judged)`, or `no labels`."""
    if judged is None or judged.precision is None:
        return "no labels"
    return f"{judged.precision:.2f} ({judged.relevant} relevant of {judged.judged} judged)"


def desk_line(windows: dict[int, DeskJudgement]) -> str:
    """One watchlist's desk precision: `7d 0.75 (3 relevant of 4 judged), 30d …`."""
    from monitor.store.feedback import DESK_WINDOWS

    return ", ".join(f"{days}d {precision_line(windows.get(days))}" for days in DESK_WINDOWS)


def cmd_list(args: argparse.Namespace, app: App) -> int:
    from monitor.clock import utcnow
    from monitor.store import feedback

    now = utcnow()
    items = feedback.list_feedback(
        app.engine, watchlist_id=args.watchlist, since=now - args.since
    )
    if args.format == "jsonl":
        for item in items:
            print(
                json.dumps(
                    {
                        "id": item.id,
                        "alert": item.alert_id,
                        "watchlist": item.watchlist_id,
                        "article": item.article_id,
                        "action": str(item.action),
                        "state": item.state,
                        "user": item.user_name or item.user_id,
                        "via": item.via,
                        "channel": item.channel,
                        "destination": item.destination,
                        "at": item.created_at.isoformat(),
                        "title": item.title,
                    },
                    ensure_ascii=False,
                )
            )
        return 0
    desk = feedback.desk_precision(app.engine, now, watchlist_id=args.watchlist)
    for wl in sorted(desk) if not args.watchlist else [args.watchlist]:
        print(f"{wl}: desk precision {desk_line(desk.get(wl, {}))}")
    if not items:
        print("no feedback in this period")
        return 0
    print(f"{'id':>5}  {'when (UTC)':<16}  {'watchlist':<22} {'action':<13} {'state':<8} "
          f"{'who':<16} {'via':<6} title")
    from monitor.render import console_safe

    for item in items:
        print(
            console_safe(
                f"{item.id:>5}  {item.created_at:%Y-%m-%d %H:%M}  {item.watchlist_id[:22]:<22} "
                f"{item.action:<13} {item.state:<8} {(item.user_name or item.user_id)[:16]:<16} "
                f"{item.via:<6} {item.title[:80]}"
            )
        )
    return 0


def cmd_export(args: argparse.Namespace, app: App) -> int:
    from monitor.feedback import export_line
    from monitor.store import feedback

    for item in feedback.labelled_articles(app.engine, args.watchlist):
        print(json.dumps(export_line(item), ensure_ascii=False))
    return 0


def cmd_reject(args: argparse.Namespace, app: App) -> int:
    from monitor.clock import utcnow
    from monitor.store import feedback

    try:
        who = f"admin:{getpass.getuser()}"
    except Exception:
        who = "admin"
    item = feedback.reject(app.engine, args.id, by=who, now=utcnow())
    if item is None:
        existing = feedback.get(app.engine, args.id)
        if existing is None:
            print(f"no feedback item {args.id}", file=sys.stderr)
            return 1
        print(f"feedback {args.id} was already rejected")
        return 0
    print(
        f"feedback {item.id} rejected ({item.action} on alert {item.alert_id}, "
        f"{item.watchlist_id}); the models drop it at their next refit"
    )
    return 0


def cmd_manifest(args: argparse.Namespace, app: App) -> int:
    text = MANIFEST.read_text(encoding="utf-8")
    url = (args.url or app.settings.public_url or PLACEHOLDER).rstrip("/")
    text = text.replace(PLACEHOLDER, url)
    if args.socket_mode:
        text = text.replace("socket_mode_enabled: false", "socket_mode_enabled: true")
        text = "\n".join(
            line for line in text.splitlines() if "request_url:" not in line
        ) + "\n"
    sys.stdout.write(text)
    return 0
