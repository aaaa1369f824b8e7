"""`monitor watchlists check|test|eval|schema`: the tools an admin needs to trust a watchlist."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from monitor.corpus import CorpusItem, InputError, read_articles, read_labels
from monitor.evaluation import evaluate, label_key
from monitor.model import Match, Watchlist
from monitor.query.matcher import compile_matcher
from monitor.timeparse import duration_arg
from monitor.watchlists import (
    WatchlistError,
    load_aliases,
    load_watchlist_file,
    load_watchlists,
    schema_json,
)

if TYPE_CHECKING:
    from monitor.app import App


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `monitor watchlists …` to the CLI."""
    parser = sub.add_parser("watchlists", help="Validate, test and evaluate watchlists.")
    parser.set_defaults(func=lambda _args, _app: (parser.print_help(sys.stderr), 2)[1])
    area = parser.add_subparsers(dest="watchlists_command", metavar="SUBCOMMAND")

    check = area.add_parser(
        "check", help="Validate every watchlist, aliases.yaml and sources.yaml."
    )
    _dir_arg(check)
    check.add_argument("--sources", type=Path, help="Sources file (default: from settings).")
    check.set_defaults(func=cmd_check)

    test = area.add_parser("test", help="Run watchlists on stored articles or a JSONL file.")
    test.add_argument(
        "target", nargs="?", help="A watchlist id or a draft .yaml file (default: all)."
    )
    test.add_argument(
        "--since",
        type=duration_arg,
        default="30d",
        help="Stored articles first seen within (30d, 12h).",
    )
    test.add_argument("--articles", type=Path, help="JSONL file of articles (the corpus format).")
    test.add_argument("--format", choices=("text", "jsonl"), default="text")
    _dir_arg(test)
    test.set_defaults(func=cmd_test)

    ev = area.add_parser("eval", help="Precision, recall and F1 against labelled articles.")
    ev.add_argument("--articles", type=Path, required=True, help="JSONL file of articles.")
    ev.add_argument(
        "--labels", type=Path, required=True, help="JSONL labels {id, <watchlist>: bool}."
    )
    ev.add_argument("--watchlist", action="append", help="Only this watchlist id (repeatable).")
    ev.add_argument("--quiet", action="store_true", help="Only the table, no misses/false alarms.")
    _dir_arg(ev)
    ev.set_defaults(func=cmd_eval)

    schema = area.add_parser("schema", help="Print the watchlist JSON Schema (for editors).")
    schema.set_defaults(func=cmd_schema)


def _dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", type=Path, default=None, help="Watchlist folder (default: MONITOR_WATCHLISTS_DIR)."
    )


def _directory(args: argparse.Namespace, app: App) -> Path:
    return Path(args.dir) if args.dir is not None else app.settings.watchlists_dir


def _print_errors(errors: list[WatchlistError] | list[str], out: TextIO | None = None) -> None:
    for err in errors:
        print(str(err), file=out or sys.stderr)


# ------------------------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace, app: App) -> int:
    directory = _directory(args, app)
    watchlists, errors = load_watchlists(directory)
    problems: list[str] = [str(e) for e in errors]
    sources_path: Path = args.sources or _default_sources(args, directory, app)
    source_ids: set[str] | None = None
    if sources_path.exists():
        from monitor.sources import SourcesError, load_sources

        try:
            source_ids = {s.id for s in load_sources(sources_path)}
        except SourcesError as exc:
            problems.extend(exc.errors)
    else:
        problems.append(f"{sources_path}: sources file not found (set MONITOR_SOURCES_FILE)")
    if source_ids is not None:
        for wl in watchlists.values():
            unknown = [s for s in wl.sources if s not in source_ids]
            if unknown:
                problems.append(
                    f"{wl.path}:{_key_line(wl.path, 'sources')}: sources: unknown source id(s) "
                    f"{', '.join(unknown)}; use ids from {sources_path.name}"
                )
    for wl in watchlists.values():
        first = wl.path.read_text(encoding="utf-8").splitlines()[:1]
        if not first or "yaml-language-server: $schema=" not in first[0]:
            print(
                f"{wl.path}:1: note: start the file with "
                "'# yaml-language-server: $schema=./watchlist.schema.json' for editor help",
                file=sys.stderr,
            )
    if problems:
        _print_errors(problems)
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    aliases, _ = load_aliases(directory / "aliases.yaml")
    sources_note = f", {len(source_ids)} sources" if source_ids is not None else ""
    print(f"ok: {len(watchlists)} watchlists, {len(aliases)} aliases{sources_note}")
    return 0


def _default_sources(args: argparse.Namespace, directory: Path, app: App) -> Path:
    return directory / "sources.yaml" if args.dir is not None else app.settings.sources_path


def _key_line(path: Path, key: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith(f"{key}:"):
            return number
    return 1


def _stored_items(app: App, since: timedelta) -> list[CorpusItem]:
    from monitor.store.articles import read_articles

    rows = read_articles(app.engine, since=datetime.now(UTC) - since)
    return [CorpusItem(str(row.id), 0, row.article) for row in rows]


def _select(args: argparse.Namespace, app: App) -> tuple[list[Watchlist], list[WatchlistError]]:
    directory = _directory(args, app)
    watchlists, errors = load_watchlists(directory)
    target: str | None = args.target
    if target is None:
        return list(watchlists.values()), errors
    path = Path(target)
    if target.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            return [], [WatchlistError(target, None, "file not found")]
        aliases, alias_errors = load_aliases(directory / "aliases.yaml")
        draft, draft_errors = load_watchlist_file(path, aliases)
        return ([draft] if draft else []), alias_errors + draft_errors
    if target not in watchlists:
        known = ", ".join(sorted(watchlists)) or "none"
        mine = [e for e in errors if Path(e.file).stem == target]
        return [], mine or [
            WatchlistError(target, None, f"no watchlist with this id (known: {known})")
        ]
    return [watchlists[target]], []


# --------------------------------------------------------------------------------- test


def highlight(match: Match, open_mark: str = "**", close_mark: str = "**") -> str:
    """The snippet with its highlight spans wrapped in markers."""
    out: list[str] = []
    cursor = 0
    for span in match.highlights:
        out.append(match.snippet[cursor : span.start])
        out.append(open_mark + match.snippet[span.start : span.end] + close_mark)
        cursor = span.end
    out.append(match.snippet[cursor:])
    return "".join(out)


def cmd_test(args: argparse.Namespace, app: App) -> int:
    selected, errors = _select(args, app)
    if not selected:
        _print_errors(errors)
        return 1 if errors else 0
    matcher = compile_matcher(selected)
    try:
        items = read_articles(args.articles) if args.articles else _stored_items(app, args.since)
    except InputError as exc:
        raise SystemExit(str(exc)) from None
    matched = 0
    for item in items:
        found = matcher.match(item.article)
        matched += bool(found)
        if args.format == "jsonl":
            row = {
                "id": item.id,
                "matches": [
                    {"watchlist": m.watchlist_id, "score": m.score, "terms": list(m.terms)}
                    for m in found
                ],
            }
            print(json.dumps(row, ensure_ascii=False))
        elif found:
            print(f"{item.id}  {item.article.title}")
            for m in found:
                print(f"  [{m.watchlist_id}] score {m.score:g}  terms: {', '.join(m.terms)}")
                print(f"    {' '.join(highlight(m).split())}")
    if args.format == "text":
        names = ", ".join(wl.id for wl in selected)
        print(f"{matched} of {len(items)} articles matched ({names})")
    if errors:
        _print_errors(errors)
    return 0


def cmd_eval(args: argparse.Namespace, app: App) -> int:
    directory = _directory(args, app)
    watchlists, errors = load_watchlists(directory)
    if errors:
        _print_errors(errors)
    try:
        labels = read_labels(args.labels)
        items = read_articles(args.articles)
    except InputError as exc:
        raise SystemExit(str(exc)) from None
    sample = next(iter(labels.values()), {})
    wanted = args.watchlist or [w for w in sorted(watchlists) if label_key(w, sample) is not None]
    unknown = [w for w in wanted if w not in watchlists]
    if unknown:
        print(f"unknown watchlist(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    if not wanted:
        print("no watchlist has labels in this file (keys such as un_mission)", file=sys.stderr)
        return 2
    matcher = compile_matcher([watchlists[w] for w in wanted])
    outcomes = evaluate(matcher, wanted, items, labels)
    print(
        f"{'watchlist':<24} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>9} {'recall':>7} {'f1':>6}"
    )
    for o in outcomes:
        s = o.score
        print(
            f"{s.watchlist:<24} {s.tp:>4} {s.fp:>4} {s.fn:>4} "
            f"{s.precision:>9.3f} {s.recall:>7.3f} {s.f1:>6.3f}"
        )
    if not args.quiet:
        for o in outcomes:
            for title, rows in (("misses", o.misses), ("false alarms", o.false_alarms)):
                if rows:
                    print(f"\n{o.score.watchlist}: {title} ({len(rows)})")
                for item, why in rows:
                    print(f"  {item.id}  {item.article.title[:100]}")
                    print(f"    {why.reason}")
                    if why.match is not None:
                        print(f"    {' '.join(highlight(why.match).split())[:300]}")
    return 0


def cmd_schema(args: argparse.Namespace, app: App) -> int:
    sys.stdout.write(schema_json())
    return 0
