"""`monitor watchlists check|test|eval|train|status|schema`: the tools an admin needs to trust
a watchlist."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from monitor.corpus import CorpusItem, InputError, read_articles, read_labels
from monitor.evaluation import evaluate, label_key
from monitor.model import Match, Watchlist
from monitor.query.matcher import compile_matcher
from monitor.render import console_safe
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
    from monitor.relevance.models import RelevanceModels, VectorCache

EMBED_BATCH = 64  # articles per embedding call: the progress bar moves, the batches stay big


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

    ev = area.add_parser(
        "eval",
        help="Precision, recall and F1: cross-validated over each watchlist's examples, or "
        "against labelled articles (--articles and --labels).",
    )
    ev.add_argument("--articles", type=Path, help="JSONL file of articles (with --labels).")
    ev.add_argument("--labels", type=Path, help="JSONL labels {id, <watchlist>: bool}.")
    ev.add_argument("--watchlist", action="append", help="Only this watchlist id (repeatable).")
    ev.add_argument("--folds", type=int, default=5, help="Cross-validation folds (default 5).")
    ev.add_argument("--quiet", action="store_true", help="Only the table, no misses/false alarms.")
    _dir_arg(ev)
    ev.set_defaults(func=cmd_eval)

    tr = area.add_parser(
        "train", help="Fit the models of watchlists with examples and report how they do."
    )
    tr.add_argument("target", nargs="?", help="A watchlist id (default: all with examples).")
    _dir_arg(tr)
    tr.set_defaults(func=cmd_train)

    st = area.add_parser(
        "status",
        help="Each watchlist's examples, desk labels and precision as judged by the desk "
        "over the last 7 / 30 days.",
    )
    st.add_argument("target", nargs="?", help="A watchlist id (default: all).")
    st.add_argument("--format", choices=("text", "jsonl"), default="text")
    _dir_arg(st)
    st.set_defaults(func=cmd_status)

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


def _cache(app: App) -> VectorCache:
    """The database's vectors when its schema is current (backtests then never re-embed),
    else vectors in memory for this run."""
    from monitor.commands.core import _settings
    from monitor.relevance.models import MemoryCache

    _settings(app, logs_to_stderr=True)  # training logs to stderr: stdout is the output
    try:
        from monitor.store import db

        if db.schema_is_current(app.engine):
            return app.vectors
    except Exception:  # no database here: still useful, only slower
        pass
    return MemoryCache()


def _models(app: App, selected: list[Watchlist], cache: VectorCache) -> RelevanceModels:
    from monitor import progress
    from monitor.relevance.models import RelevanceModels, train_models

    with_examples = [w for w in selected if app.has_examples(w)]
    if not with_examples:
        return RelevanceModels()
    with progress.phase(f"training {len(with_examples)} watchlist model(s) on their examples"):
        return train_models(with_examples, app.embedder, cache, source=app.examples)


def _judged(
    app: App, selected: list[Watchlist], items: list[CorpusItem]
) -> tuple[list[list[Match]], RelevanceModels]:
    """Gate then judge every item, as ingest does: each item's matches with judgements."""
    from monitor import progress
    from monitor.relevance.models import embed_articles

    cache = _cache(app)
    models = _models(app, selected, cache)
    for wid, problem in models.problems.items():
        print(f"{wid}: model not trained, the query alone decides: {problem}", file=sys.stderr)
    matcher = compile_matcher(selected)
    found = [matcher.match(item.article) for item in progress.track(items, "matching articles")]
    if models.embedder is None:
        return found, models
    wanted = [i for i, matches in enumerate(found) if models.wants_vector(matches)]
    vectors = []
    batches = [wanted[n : n + EMBED_BATCH] for n in range(0, len(wanted), EMBED_BATCH)]
    with progress.counter("embedding what passed a gate", len(wanted)) as advance:
        for batch in batches:
            embedder = models.embedder
            vectors += embed_articles(embedder, cache, [items[i].article for i in batch])
            advance(len(batch))
    by_index = dict(zip(wanted, vectors, strict=True))
    return [
        models.judge(item.article, by_index.get(i), matches)
        for i, (item, matches) in enumerate(zip(items, found, strict=True))
    ], models


def _match_json(match: Match) -> dict[str, Any]:
    """One match in `watchlists test --format jsonl`; `alert` and `model` only where a model
    judged (a watchlist without examples prints exactly what it always did)."""
    row: dict[str, Any] = {
        "watchlist": match.watchlist_id,
        "score": match.score,
        "terms": list(match.terms),
    }
    j = match.judgement
    if j is None:
        return row
    row["alert"] = j.relevant
    row["model"] = {
        "relevant": j.relevant,
        "confidence": j.confidence,
        "min_confidence": j.threshold,
        "signals": list(j.signals),
        "like": list(j.like),
        "unlike": list(j.unlike),
    }
    return row


def cmd_test(args: argparse.Namespace, app: App) -> int:
    selected, errors = _select(args, app)
    if not selected:
        _print_errors(errors)
        return 1 if errors else 0
    try:
        items = read_articles(args.articles) if args.articles else _stored_items(app, args.since)
    except InputError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    judged, _ = _judged(app, selected, items)
    matched = rejected = 0
    for item, matches in zip(items, judged, strict=True):
        alerts = [m for m in matches if m.judgement is None or m.judgement.relevant]
        matched += bool(alerts)
        rejected += bool(matches) and not alerts
        if args.format == "jsonl":
            row = {
                "id": item.id,
                "matches": [_match_json(m) for m in matches],
            }
            print(json.dumps(row, ensure_ascii=False))
        elif matches:
            print(console_safe(f"{item.id}  {item.article.title}"))
            for m in matches:
                verdict = "" if m in alerts else "  (no alert: the model says not relevant)"
                line = f"  [{m.watchlist_id}] score {m.score:g}  terms: {', '.join(m.terms)}"
                print(console_safe(line + verdict))
                if m.judgement is not None:
                    print(console_safe(f"    {m.judgement.reason}"))
                print(console_safe(f"    {' '.join(highlight(m).split())}"))
    if args.format == "text":
        names = ", ".join(wl.id for wl in selected)
        note = f"; {rejected} more passed a gate, judged not relevant" if rejected else ""
        print(f"{matched} of {len(items)} articles matched ({names}){note}")
    if errors:
        _print_errors(errors)
    return 0


def cmd_train(args: argparse.Namespace, app: App) -> int:
    from monitor.relevance.classifier import TrainingError
    from monitor.relevance.crossval import cross_validate
    from monitor.relevance.models import fit, prepare

    selected, errors = _select(args, app)
    if errors:
        _print_errors(errors)
    chosen = [w for w in selected if app.has_examples(w)]
    if not chosen:
        print("no watchlist with examples: add examples: <id>.examples.jsonl", file=sys.stderr)
        return 1 if errors or args.target else 0
    cache = _cache(app)
    failed = 0
    for wl in chosen:
        started = time.perf_counter()
        try:
            prepared = prepare(wl, app.examples(wl), app.embedder, cache)
            model = fit(wl, prepared)
            seconds = time.perf_counter() - started
            report = cross_validate(wl, prepared)
        except TrainingError as exc:
            print(f"{wl.id}: cannot train: {exc}", file=sys.stderr)
            failed += 1
            continue
        s, cv = model.stats, report.at_threshold
        print(
            f"{wl.id}: trained in {seconds:.1f} s on the {s.trained_on} of {s.examples} "
            f"examples that pass the query ({s.trained_relevant} of {s.relevant} relevant; "
            f"gate recall {report.gate_recall:.2f}); cross-validated at min_confidence "
            f"{wl.min_confidence:.2f}: precision {cv.precision:.2f}, recall {cv.recall:.2f}, "
            f"F1 {cv.f1:.2f} ({app.embedder.name})"
        )
    return 1 if failed or errors else 0


def cmd_eval(args: argparse.Namespace, app: App) -> int:
    directory = _directory(args, app)
    watchlists, errors = load_watchlists(directory)
    if errors:
        _print_errors(errors)
    if (args.articles is None) != (args.labels is None):
        print("give both --articles and --labels, or neither (cross-validation)", file=sys.stderr)
        return 2
    if args.articles is None:
        return _cross_validated(args, app, watchlists)
    try:
        labels = read_labels(args.labels)
        items = read_articles(args.articles)
    except InputError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    sample = next(iter(labels.values()), {})
    wanted = args.watchlist or [w for w in sorted(watchlists) if label_key(w, sample) is not None]
    unknown = [w for w in wanted if w not in watchlists]
    if unknown:
        print(f"unknown watchlist(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    if not wanted:
        print("no watchlist has labels in this file (keys such as un_mission)", file=sys.stderr)
        return 2
    selected = [watchlists[w] for w in wanted]
    seen = _example_keys(app, selected)
    kept = [i for i in items if i.id not in seen and i.article.content_hash not in seen]
    if len(kept) < len(items):
        print(
            f"left out {len(items) - len(kept)} article(s) that are examples of these "
            "watchlists (a model is never measured on what it learned from)"
        )
    judged, _ = _judged(app, selected, kept)
    matcher = compile_matcher(selected)
    outcomes = evaluate(
        matcher, wanted, kept, labels, judged={i.id: j for i, j in zip(kept, judged, strict=True)}
    )
    print(
        f"{'watchlist':<24} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>9} {'recall':>7} {'f1':>6}"
    )
    for o in outcomes:
        sc = o.score
        print(
            f"{sc.watchlist:<24} {sc.tp:>4} {sc.fp:>4} {sc.fn:>4} "
            f"{sc.precision:>9.3f} {sc.recall:>7.3f} {sc.f1:>6.3f}"
        )
    if not args.quiet:
        for o in outcomes:
            for title, rows in (("misses", o.misses), ("false alarms", o.false_alarms)):
                if rows:
                    print(f"\n{o.score.watchlist}: {title} ({len(rows)})")
                for item, why in rows:
                    print(console_safe(f"  {item.id}  {item.article.title[:100]}"))
                    print(console_safe(f"    {why.reason}"))
                    if why.match is not None:
                        print(console_safe(f"    {' '.join(highlight(why.match).split())[:300]}"))
    return 0


def _example_keys(app: App, selected: list[Watchlist]) -> set[str]:
    keys: set[str] = set()
    for wl in selected:
        for example in app.examples(wl):
            keys.update((example.id, example.article.content_hash))
    return keys


def _cross_validated(args: argparse.Namespace, app: App, watchlists: dict[str, Watchlist]) -> int:
    from monitor import progress
    from monitor.relevance.classifier import TrainingError
    from monitor.relevance.crossval import cross_validate
    from monitor.relevance.models import prepare

    wanted = args.watchlist or sorted(w for w, wl in watchlists.items() if app.has_examples(wl))
    unknown = [w for w in wanted if w not in watchlists]
    if unknown:
        print(f"unknown watchlist(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    bare = [w for w in wanted if w in watchlists and not app.has_examples(watchlists[w])]
    if bare or not wanted:
        print(
            f"no examples for {', '.join(bare) or 'any watchlist'}: add examples: "
            "<id>.examples.jsonl, or give --articles and --labels",
            file=sys.stderr,
        )
        return 2
    cache = _cache(app)
    print(
        f"{args.folds}-fold cross-validation over each watchlist's examples "
        f"({app.embedder.name}); every figure is measured on examples the fold's model was "
        "not trained on"
    )
    print(
        f"{'watchlist':<24} {'examples':>8} {'relevant':>8} {'gate rec':>8} {'precision':>9} "
        f"{'recall':>7} {'f1':>6}  {'P over folds':>12} {'R over folds':>12}  query alone P/R"
    )
    reports = []
    for wid in progress.track(wanted, "cross-validating"):
        wl = watchlists[wid]
        try:
            report = cross_validate(
                wl, prepare(wl, app.examples(wl), app.embedder, cache), folds=args.folds
            )
        except TrainingError as exc:
            print(f"{wid}: cannot cross-validate: {exc}", file=sys.stderr)
            return 1
        reports.append(report)
        cv, qo = report.at_threshold, report.query_only
        p_lo, p_hi, r_lo, r_hi = report.spread
        print(
            f"{wid:<24} {report.examples:>8} {report.relevant:>8} {report.gate_recall:>8.3f} "
            f"{cv.precision:>9.3f} {cv.recall:>7.3f} {cv.f1:>6.3f}  "
            f"{p_lo:>5.2f}–{p_hi:<6.2f} {r_lo:>5.2f}–{r_hi:<6.2f}  "
            f"{qo.precision:.2f}/{qo.recall:.2f}"
        )
    if not args.quiet:
        for report in reports:
            print(f"\n{report.watchlist_id}: threshold curve (min_confidence → P / R / F1)")
            for pt in report.curve:
                mark = (
                    "  ← min_confidence"
                    if abs(pt.threshold - watchlists[report.watchlist_id].min_confidence) < 1e-9
                    else ""
                )
                print(
                    f"  {pt.threshold:.2f}  {pt.precision:.3f} / {pt.recall:.3f} / {pt.f1:.3f}"
                    f"  (tp {pt.tp}, fp {pt.fp}, fn {pt.fn}){mark}"
                )
    return 0


def cmd_status(args: argparse.Namespace, app: App) -> int:
    """What the desk thinks of each watchlist: the examples it learns from, the desk labels in
    effect, and the share of judged alerts the desk called relevant (7 and 30 days)."""
    from monitor.clock import utcnow
    from monitor.commands.feedback import precision_line
    from monitor.relevance.examples import read_examples
    from monitor.store import feedback
    from monitor.store.feedback import DESK_WINDOWS, DeskJudgement

    selected, errors = _select(args, app)
    _print_errors(errors)
    if not selected:
        return 1
    desk = feedback.desk_precision(app.engine, utcnow())
    labels = feedback.labelled_watchlists(app.engine)
    if args.format == "text":
        print(
            f"{'watchlist':<24} {'examples':>8} {'relevant':>8} {'desk labels':>11}  "
            + "  ".join(f"{f'desk precision {d}d':<34}" for d in DESK_WINDOWS).rstrip()
        )
    for wl in sorted(selected, key=lambda w: w.id):
        examples = read_examples(wl.examples)[0] if wl.examples is not None else []
        windows = {d: desk.get(wl.id, {}).get(d, DeskJudgement()) for d in DESK_WINDOWS}
        if args.format == "jsonl":
            row = {
                "watchlist": wl.id,
                "name": wl.name,
                "examples": len(examples),
                "examples_relevant": sum(e.relevant for e in examples),
                "desk_labels": labels.get(wl.id, 0),
                "desk_precision": {f"{d}d": j.as_json() for d, j in windows.items()},
            }
            print(json.dumps(row, ensure_ascii=False))
            continue
        print(
            console_safe(
                f"{wl.id:<24} {len(examples):>8} {sum(e.relevant for e in examples):>8} "
                f"{labels.get(wl.id, 0):>11}  "
                + "  ".join(f"{precision_line(j):<34}" for j in windows.values()).rstrip()
            )
        )
    return 1 if errors else 0


def cmd_schema(args: argparse.Namespace, app: App) -> int:
    sys.stdout.write(schema_json())
    return 0
