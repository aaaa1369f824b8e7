"""`monitor stories …`: list and show stored stories; group or evaluate a JSONL file offline."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.corpus import CorpusItem, InputError, read_articles, read_pairs
from monitor.dedup import Embedding
from monitor.evaluation import group, score_pairs
from monitor.timeparse import duration_arg

if TYPE_CHECKING:
    from monitor.app import App

# --- handlers -----------------------------------------------------------------------------------


def _window(args: argparse.Namespace, app: App) -> float:
    if args.window_hours is not None:
        return float(args.window_hours)
    return app.settings.story_window_hours


def _embedder_name(args: argparse.Namespace, app: App) -> str:
    """`--embedder`, else MONITOR_EMBEDDER (none when MONITOR_STORY_VECTORS=off)."""
    if args.embedder is not None:
        return str(args.embedder)
    return "none" if app.settings.story_vectors == "off" else app.settings.embedder


def _embeddings(
    args: argparse.Namespace, app: App, articles: list[CorpusItem]
) -> dict[str, Any] | None:
    """Every article's vector and language under the chosen embedder (None: MinHash alone).

    In a file every article stands for one that could alert, so all are embedded."""
    name = _embedder_name(args, app)
    if name == "none":
        return None
    from monitor import progress, storyvec
    from monitor.relevance.embed import make_embedder

    embedder = make_embedder(name)
    out: dict[str, Any] = {}
    batch = storyvec.BATCH
    with progress.counter(f"embedding articles ({embedder.name})", len(articles)) as advance:
        for start in range(0, len(articles), batch):
            chunk = articles[start : start + batch]
            made = storyvec.embeddings(embedder, [a.article for a in chunk])
            out.update((a.id, e) for a, e in zip(chunk, made, strict=True))
            advance(len(chunk))
    return out


def _cmd_test(args: argparse.Namespace, app: App) -> int:
    try:
        articles = read_articles(Path(args.articles))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from monitor import progress

    with progress.counter("grouping articles", len(articles)) as advance:
        stories = group(
            articles,
            _window(args, app),
            on_item=lambda: advance(1),
            embeddings=_embeddings(args, app, articles),
        )
    out = sys.stdout
    if args.format == "jsonl":
        for art in articles:
            out.write(json.dumps({"id": art.id, "story": stories[art.id]}) + "\n")
        return 0
    by_story: dict[str, list[CorpusItem]] = {}
    for art in articles:
        by_story.setdefault(stories[art.id], []).append(art)
    for key, members in by_story.items():
        if len(members) > 1 or args.all:
            out.write(f"{key}  ({len(members)} articles)\n")
            for art in members:
                source, title = art.article.source_id, art.article.title
                out.write(f"  {art.id}  {source[:24]:24}  {title[:90]}\n")
    return 0


def _cmd_eval(args: argparse.Namespace, app: App) -> int:
    try:
        articles = read_articles(Path(args.articles))
        pairs = read_pairs(Path(args.pairs), {a.id for a in articles})
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    grouped = group(articles, _window(args, app), embeddings=_embeddings(args, app, articles))
    result = score_pairs(grouped, pairs)
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


@dataclass(frozen=True, slots=True)
class _Side:
    """One article of `explain`, from the database or a file."""

    ref: str
    source: str
    title: str
    text: str
    when: datetime | None
    story: str
    embedding: Embedding | None


def _explain_sides(args: argparse.Namespace, app: App) -> tuple[_Side, _Side] | str:
    """The two articles of `explain` with their vectors, or what is wrong."""
    from monitor import storyvec
    from monitor.model import Article
    from monitor.relevance.embed import make_embedder

    name = _embedder_name(args, app)
    embedder = make_embedder(name) if name != "none" else None

    def embed(title: str, text: str) -> Embedding | None:
        if embedder is None:
            return None
        article = Article("", "", "", title, text, None, "")
        return storyvec.embeddings(embedder, [article])[0]

    if args.articles:
        try:
            items = {a.id: a for a in read_articles(Path(args.articles))}
        except InputError as exc:
            return str(exc)
        sides = []
        for ref in (args.a, args.b):
            item = items.get(ref)
            if item is None:
                return f"no article {ref!r} in {args.articles}"
            art = item.article
            sides.append(
                _Side(ref, art.source_id, art.title, art.text, art.published, "",
                      embed(art.title, art.text))
            )
        return sides[0], sides[1]
    from monitor.store import stories

    if not (args.a.isdigit() and args.b.isdigit()):
        return "give two stored article ids (see `monitor articles list`), or --articles FILE"
    found = stories.read_article_signals(app.engine, [int(args.a), int(args.b)])
    out = []
    for ref in (args.a, args.b):
        row = found.get(int(ref))
        if row is None:
            return f"no stored article {ref}"
        vector = None
        if embedder is not None:
            if row.vector is not None and row.vector[0] == embedder.name:
                vector = row.vector[1]
            else:  # not embedded at ingest (not gated, or another model): embed it now
                vector = embed(row.title, row.text)
        story = f"story {row.story_id}" if row.story_id is not None else "no story"
        out.append(_Side(ref, row.source_id, row.title, row.text, row.when, story, vector))
    return out[0], out[1]


def _cmd_explain(args: argparse.Namespace, app: App) -> int:
    from monitor import dedup
    from monitor.languages import guess

    sides = _explain_sides(args, app)
    if isinstance(sides, str):
        print(f"error: {sides}", file=sys.stderr)
        return 2
    a, b = sides
    window = timedelta(hours=_window(args, app))
    fa = dedup.fingerprint(a.title, a.text, a.when)
    fb = dedup.fingerprint(b.title, b.text, b.when)
    ex = dedup.explain_pair(fa, fb, window, a.embedding, b.embedding)
    if args.format == "json":
        print(json.dumps({"a": a.ref, "b": b.ref, **ex.as_dict()}))
        return 0
    for label, side in (("A", a), ("B", b)):
        when = f"{side.when:%Y-%m-%d %H:%M} UTC" if side.when else "no date"
        lang = side.embedding.language if side.embedding else guess(side.title, side.text)
        extra = f"  {side.story}" if side.story else ""
        print(f"{label}  {side.ref}  {side.source[:30]}  {when}  language {lang}{extra}")
        print(f"   {side.title[:110]}")
    hours = "unknown" if ex.hours_apart is None else f"{ex.hours_apart:.1f} h"
    print(f"time: {hours} apart (window {ex.window_hours:g} h)")
    print(
        f"text (MinHash): headline Jaccard {ex.title_jaccard:.2f}, containment "
        f"{ex.title_containment:.2f}; words {ex.words_containment:.2f}; word trigrams "
        f"{ex.shingles_containment:.2f}; band keys shared {ex.bands_shared} of "
        f"{ex.bands_total} (candidates need {dedup.MIN_SHARED}) -> "
        f"{'same' if ex.text.same else 'different'} ({ex.text.reason}, score {ex.text.score:.2f})"
    )

    def both(pair: tuple[tuple[str, ...], tuple[str, ...]]) -> str:
        return " / ".join(", ".join(x) or "-" for x in pair)

    print(f"guards: headline numbers {both(ex.numbers)}; dates {both(ex.dates)}; "
          f"names the other lacks {both(ex.names_missing)}")
    if ex.vector is None or ex.cosine is None:
        print("vector: no vector for one side (--embedder none, or MONITOR_STORY_VECTORS=off)")
    else:
        langs = "/".join(ex.languages)
        print(
            f"vector: cosine {ex.cosine:.3f} (needed {ex.cosine_needed:.3f}, languages {langs}); "
            f"SimHash keys shared {ex.vector_bands_shared} of {dedup.VECTOR_BANDS} -> "
            f"{'same' if ex.vector.same else 'different'} ({ex.vector.reason})"
        )
    verdict = "ONE STORY" if ex.decision.same else "NOT ONE STORY"
    print(f"decision: {verdict} ({ex.decision.reason})")
    if a.story and b.story:
        stored = "the same story" if a.story == b.story else "different stories"
        print(f"stored: {stored} ({a.story}, {b.story})")
    print(
        "note: this is the pair alone; in a story, a conflict with another of its members also "
        "vetoes, and of several translations only the closest joins"
    )
    return 0


def _cmd_list(args: argparse.Namespace, app: App) -> int:
    from monitor.store import stories

    since = datetime.now(UTC) - args.since
    rows = stories.read_stories(app.engine, since, limit=args.limit)
    for s in rows:
        print(
            f"{s.id:>7}  {s.key}  {s.article_count:>3}  "
            f"{s.last_seen_at:%Y-%m-%d %H:%M}  {s.title[:80]}"
        )
    if not rows:
        print(f"no stories seen in the last {args.since}", file=sys.stderr)
    return 0


def _cmd_show(args: argparse.Namespace, app: App) -> int:
    from monitor.store import stories

    found = stories.read_story(app.engine, args.id)
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


def _cmd_reconcile(args: argparse.Namespace, app: App) -> int:
    from monitor.store import stories

    window = app.settings.story_window_hours
    now = datetime.now(UTC)
    merged, pruned = stories.reconcile_and_prune(app.engine, now, window, args.lookback)
    print(f"merged {merged} stories; pruned {pruned} band rows older than {2 * window:g} h")
    return 0


def _cmd_rebuild(args: argparse.Namespace, app: App) -> int:
    from monitor.store import stories

    count = stories.rebuild_index(app.engine, datetime.now(UTC) - args.since)
    print(f"re-indexed {count} articles")
    return 0


def _embedder_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--embedder",
        choices=("use", "hashing", "none"),
        default=None,
        help="text model of the vector signal (default: MONITOR_EMBEDDER; none: MinHash alone)",
    )


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `monitor stories list|show|test|eval|explain|reconcile|rebuild-index`."""
    parser = sub.add_parser("stories", help="near-duplicate stories across outlets")
    cmds = parser.add_subparsers(dest="stories_command", metavar="SUBCOMMAND", required=True)

    p = cmds.add_parser("list", help="stories seen recently")
    p.add_argument("--since", type=duration_arg, default=timedelta(days=1), help="e.g. 12h, 1d")
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
    _embedder_arg(p)
    p.set_defaults(func=_cmd_test)

    p = cmds.add_parser("eval", help="pair precision and recall against labelled pairs")
    p.add_argument("--articles", required=True, help="corpus-format JSONL")
    p.add_argument("--pairs", required=True, help='JSONL of {"a","b","same_story"}')
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--window-hours", type=float, default=None)
    _embedder_arg(p)
    p.set_defaults(func=_cmd_eval)

    p = cmds.add_parser("explain", help="why two articles are or are not one story")
    p.add_argument("a", help="article id (stored, or in --articles)")
    p.add_argument("b", help="article id (stored, or in --articles)")
    p.add_argument("--articles", help="corpus-format JSONL holding both ids (no database)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--window-hours", type=float, default=None)
    _embedder_arg(p)
    p.set_defaults(func=_cmd_explain)

    p = cmds.add_parser(
        "reconcile", help="merge stories replicas started concurrently; prune old band rows"
    )
    p.add_argument("--lookback", type=duration_arg, default=timedelta(hours=1))
    p.set_defaults(func=_cmd_reconcile)

    p = cmds.add_parser(
        "rebuild-index", help="recompute band rows (after changing the band parameters)"
    )
    p.add_argument("--since", type=duration_arg, default=timedelta(days=7))
    p.set_defaults(func=_cmd_rebuild)
