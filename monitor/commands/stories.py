"""`monitor stories …`: list and show stored stories; group or evaluate a JSONL file offline."""

from __future__ import annotations

import argparse
import html
import importlib
import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from monitor import dedup
from monitor.clock import as_utc


def _fallback_html_to_text(value: str) -> str:
    """Used only until monitor.normalize lands: markup out, entities decoded, spaces folded."""
    if "<" in value:
        from selectolax.lexbor import LexborHTMLParser

        value = LexborHTMLParser(value).text(separator=" ")
    return " ".join(html.unescape(value).split())


def _html_to_text() -> Callable[[str], str]:
    try:
        func = importlib.import_module("monitor.normalize").html_to_text
    except (ImportError, AttributeError):
        return _fallback_html_to_text
    return cast(Callable[[str], str], func)


class InputError(Exception):
    """Bad input file; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class FileArticle:
    id: str
    source: str
    title: str
    text: str
    published: datetime | None
    line: int


def _parse_time(value: object, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InputError(f"{where}: 'published' must be an ISO 8601 string")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(
            f"{where}: 'published' {value!r} is not ISO 8601 (e.g. 2023-11-21T14:42:32+00:00)"
        ) from exc
    return as_utc(when)


def read_articles(path: Path) -> list[FileArticle]:
    """Articles of a corpus-format JSONL file (id, source, url, title, summary, published)."""
    to_text = _html_to_text()
    found: list[FileArticle] = []
    seen: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: invalid JSON ({exc.msg}); one object per line") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
            raise InputError(f'{where}: each line needs a non-empty string "id"')
        if obj["id"] in seen:
            raise InputError(f"{where}: duplicate id {obj['id']!r}")
        seen.add(obj["id"])
        title, summary = obj.get("title") or "", obj.get("summary") or ""
        if not isinstance(title, str) or not isinstance(summary, str):
            raise InputError(f'{where}: "title" and "summary" must be strings')
        found.append(
            FileArticle(
                id=obj["id"],
                source=str(obj.get("source") or ""),
                title=to_text(title),
                text=to_text(summary),
                published=_parse_time(obj.get("published"), where),
                line=number,
            )
        )
    return found


def group(articles: Iterable[FileArticle], window_hours: float) -> dict[str, str]:
    """Article id → story key, assigning in publication order as ingest would."""
    ordered = sorted(
        articles, key=lambda a: (a.published or datetime.max.replace(tzinfo=UTC), a.line)
    )
    index = dedup.MemoryStoryIndex(timedelta(hours=window_hours))
    for art in ordered:
        index.assign(art.id, dedup.fingerprint(art.title, art.text, art.published))
    return {art.id: index.story_of(i) for i, art in enumerate(ordered)}


@dataclass(frozen=True, slots=True)
class PairScore:
    precision: float
    recall: float
    true_positive: int
    false_positive: int
    false_negative: int
    true_negative: int
    missed: tuple[tuple[str, str], ...]
    wrong: tuple[tuple[str, str], ...]


def read_pairs(path: Path, known: set[str]) -> list[tuple[str, str, bool]]:
    pairs: list[tuple[str, str, bool]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: invalid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("same_story"), bool):
            raise InputError(f'{where}: each pair needs "a", "b" and a boolean "same_story"')
        for side in ("a", "b"):
            if obj.get(side) not in known:
                raise InputError(f"{where}: {side}={obj.get(side)!r} is not an id of the articles")
        pairs.append((obj["a"], obj["b"], obj["same_story"]))
    return pairs


def score_pairs(stories: dict[str, str], pairs: Iterable[tuple[str, str, bool]]) -> PairScore:
    """Pair precision/recall: a pair is predicted same when both ids got one story key."""
    tp = fp = fn = tn = 0
    missed: list[tuple[str, str]] = []
    wrong: list[tuple[str, str]] = []
    for a, b, same in pairs:
        predicted = stories[a] == stories[b]
        if same and predicted:
            tp += 1
        elif same:
            fn += 1
            missed.append((a, b))
        elif predicted:
            fp += 1
            wrong.append((a, b))
        else:
            tn += 1
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return PairScore(precision, recall, tp, fp, fn, tn, tuple(missed), tuple(wrong))


# --- handlers -----------------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str) -> timedelta:
    match = _DURATION.match(value.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration such as 30m, 12h, 1d or 2w")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _window(args: argparse.Namespace) -> float:
    if args.window_hours is not None:
        return float(args.window_hours)
    from monitor.settings import get_settings

    return get_settings().story_window_hours


def _cmd_test(args: argparse.Namespace) -> int:
    try:
        articles = read_articles(Path(args.articles))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stories = group(articles, _window(args))
    out = sys.stdout
    if args.format == "jsonl":
        for art in articles:
            out.write(json.dumps({"id": art.id, "story": stories[art.id]}) + "\n")
        return 0
    by_story: dict[str, list[FileArticle]] = {}
    for art in articles:
        by_story.setdefault(stories[art.id], []).append(art)
    for key, members in by_story.items():
        if len(members) > 1 or args.all:
            out.write(f"{key}  ({len(members)} articles)\n")
            for art in members:
                out.write(f"  {art.id}  {art.source[:24]:24}  {art.title[:90]}\n")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    try:
        articles = read_articles(Path(args.articles))
        pairs = read_pairs(Path(args.pairs), {a.id for a in articles})
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = score_pairs(group(articles, _window(args)), pairs)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "precision": result.precision,
                    "recall": result.recall,
                    "tp": result.true_positive,
                    "fp": result.false_positive,
                    "fn": result.false_negative,
                    "tn": result.true_negative,
                    "missed": result.missed,
                    "wrong": result.wrong,
                }
            )
        )
        return 0
    print(f"pairs: {len(pairs)}")
    print(f"precision: {result.precision:.3f}")
    print(f"recall: {result.recall:.3f}")
    print(
        f"tp={result.true_positive} fp={result.false_positive} "
        f"fn={result.false_negative} tn={result.true_negative}"
    )
    for a, b in result.missed:
        print(f"missed (labelled same, grouped apart): {a} {b}")
    for a, b in result.wrong:
        print(f"wrong (labelled different, grouped together): {a} {b}")
    return 0


def _open_engine() -> Any:
    from monitor.settings import get_settings
    from monitor.store.db import open_engine

    return open_engine(get_settings())


def _cmd_list(args: argparse.Namespace) -> int:
    from monitor.store import stories

    since = datetime.now(UTC) - args.since
    rows = stories.read_stories(_open_engine(), since, limit=args.limit)
    for s in rows:
        print(
            f"{s.id:>7}  {s.key}  {s.article_count:>3}  "
            f"{s.last_seen_at:%Y-%m-%d %H:%M}  {s.title[:80]}"
        )
    if not rows:
        print(f"no stories seen in the last {args.since}", file=sys.stderr)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from monitor.store import stories

    found = stories.read_story(_open_engine(), args.id)
    if found is None:
        print(f"error: no story {args.id!r} (give a story id or key)", file=sys.stderr)
        return 1
    story, articles = found
    print(f"story {story.id}  {story.key}")
    print(f"title: {story.title}")
    print(f"articles: {story.article_count}  first seen {story.created_at:%Y-%m-%d %H:%M} UTC")
    for a in articles:
        when = a.published or a.first_seen
        print(f"  {a.id:>7}  {when:%Y-%m-%d %H:%M}  {a.source_id[:24]:24}  {a.title[:80]}")
        if a.url:
            print(f"           {a.url}")
    return 0


def _cmd_reconcile(args: argparse.Namespace) -> int:
    from monitor.settings import get_settings
    from monitor.store import stories

    window = get_settings().story_window_hours
    now = datetime.now(UTC)
    merged, pruned = stories.reconcile_and_prune(_open_engine(), now, window, args.lookback)
    print(f"merged {merged} stories; pruned {pruned} band rows older than {2 * window:g} h")
    return 0


def _cmd_rebuild(args: argparse.Namespace) -> int:
    from monitor.store import stories

    count = stories.rebuild_index(_open_engine(), datetime.now(UTC) - args.since)
    print(f"re-indexed {count} articles")
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `monitor stories list|show|test|eval|reconcile|rebuild-index`."""
    parser = sub.add_parser("stories", help="near-duplicate stories across outlets")
    cmds = parser.add_subparsers(dest="stories_command", metavar="SUBCOMMAND", required=True)

    p = cmds.add_parser("list", help="stories seen recently")
    p.add_argument("--since", type=parse_duration, default=timedelta(days=1), help="e.g. 12h, 1d")
    p.add_argument("--limit", type=int, default=200)
    p.set_defaults(func=_cmd_list)

    p = cmds.add_parser("show", help="one story and the outlets that reported it")
    p.add_argument("id", help="story id or key")
    p.set_defaults(func=_cmd_show)

    p = cmds.add_parser("test", help="group a JSONL file of articles (no database)")
    p.add_argument("--articles", required=True, help="corpus-format JSONL")
    p.add_argument("--format", choices=("jsonl", "text"), default="jsonl")
    p.add_argument("--all", action="store_true", help="text format: list single stories too")
    p.add_argument("--window-hours", type=float, default=None)
    p.set_defaults(func=_cmd_test)

    p = cmds.add_parser("eval", help="pair precision and recall against labelled pairs")
    p.add_argument("--articles", required=True, help="corpus-format JSONL")
    p.add_argument("--pairs", required=True, help='JSONL of {"a","b","same_story"}')
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--window-hours", type=float, default=None)
    p.set_defaults(func=_cmd_eval)

    p = cmds.add_parser(
        "reconcile", help="merge stories replicas started concurrently; prune old band rows"
    )
    p.add_argument("--lookback", type=parse_duration, default=timedelta(hours=1))
    p.set_defaults(func=_cmd_reconcile)

    p = cmds.add_parser(
        "rebuild-index", help="recompute band rows (after changing the band parameters)"
    )
    p.add_argument("--since", type=parse_duration, default=timedelta(days=7))
    p.set_defaults(func=_cmd_rebuild)
