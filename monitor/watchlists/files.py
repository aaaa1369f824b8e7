"""Watchlist files on disk: read YAML 1.2 with line numbers (ruamel.yaml), validate, and load
the folder (`<id>.yaml` per watchlist, `aliases.yaml` shared, `sources.yaml` reserved)."""

from __future__ import annotations

import hashlib
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from monitor.logs import get_logger
from monitor.model import AlertSpec, Watchlist
from monitor.query import syntax as q
from monitor.query.evaluate import Compiler
from monitor.query.matcher import compile_watchlist
from monitor.relevance.examples import read_examples
from monitor.textnorm import fold_term
from monitor.watchlists.errors import WatchlistError
from monitor.watchlists.validation import ID_RE, WatchlistModel, describe_error, query_error_at
from monitor.yamlfile import line_of as _line_of

RESERVED = ("sources.yaml", "aliases.yaml")
ALIASES_FILE = "aliases.yaml"
SCHEMA_FILE = "watchlist.schema.json"
SCHEMA_COMMENT = f"# yaml-language-server: $schema=./{SCHEMA_FILE}"

log = get_logger(__name__)


def regular_file_problem(path: Path) -> str | None:
    """Why `path` is not a regular file to read (following symlinks), or None when it is.

    A Kubernetes ConfigMap swap leaves dangling `*.yaml` symlinks for a moment; a FIFO or a
    folder named `x.yaml` would block or fail the read. Such names are skipped, never read.
    """
    try:
        mode = path.stat().st_mode  # follows symlinks
    except FileNotFoundError:
        return "a dangling symlink" if path.is_symlink() else "gone"
    except OSError as exc:
        return f"not readable ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def _skip_warning(path: Path, problem: str) -> None:
    log.warning("watchlist_file_skipped", file=str(path), reason=problem)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def _read_yaml(path: Path, label: str) -> tuple[Any, list[WatchlistError]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [WatchlistError(label, None, f"cannot read the file: {exc}")]
    return _parse_yaml(text, label)


def _parse_yaml(text: str, label: str) -> tuple[Any, list[WatchlistError]]:
    try:
        return _yaml().load(text), []
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        return None, [
            WatchlistError(label, line, f"YAML syntax: {problem} (check indentation and quoting)")
        ]
    except Exception as exc:  # ruamel raises a few unmarked errors (e.g. duplicate keys)
        return None, [WatchlistError(label, None, f"YAML syntax: {exc}")]


def load_aliases(path: Path) -> tuple[dict[str, tuple[str, ...]], list[WatchlistError]]:
    """aliases.yaml: `name: [phrase, …]`. Bad entries are reported and left out."""
    if not path.exists() and not path.is_symlink():
        return {}, []
    label = str(path)
    problem = regular_file_problem(path)
    if problem is not None:
        _skip_warning(path, problem)
        return {}, [WatchlistError(label, None, f"cannot read the file: it is {problem}")]
    data, errors = _read_yaml(path, label)
    if errors or data is None:
        return {}, errors
    if not isinstance(data, CommentedMap):
        return {}, [WatchlistError(label, 1, "write a mapping of alias name to a list of phrases")]
    out: dict[str, tuple[str, ...]] = {}
    for name, members in data.items():
        line = data.lc.key(name)[0] + 1
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]*", name):
            errors.append(
                WatchlistError(label, line, f"alias name {name!r}: use letters, digits, - and _")
            )
            continue
        if not isinstance(members, CommentedSeq) or not members:
            errors.append(
                WatchlistError(
                    label,
                    line,
                    f"alias '{name}': write a non-empty list of phrases, e.g. [North Korea, DPRK]",
                )
            )
            continue
        good: list[str] = []
        for i, member in enumerate(members):
            mline = members.lc.item(i)[0] + 1
            if not isinstance(member, str):
                errors.append(
                    WatchlistError(
                        label, mline, f"alias '{name}': {member!r} is not text; quote it"
                    )
                )
                continue
            stripped = member.strip()
            body = stripped[:-1] if stripped.endswith("*") else stripped
            if not body or "*" in body or not fold_term(body):
                errors.append(
                    WatchlistError(
                        label,
                        mline,
                        f"alias '{name}': {member!r} has no words (a * may only end it)",
                    )
                )
                continue
            good.append(stripped)
        if good:
            out[name] = tuple(good)
    return out, errors


def _yaml_names(directory: Path) -> list[Path]:
    """Every `*.yaml`/`*.yml` entry that is a regular file; others are skipped with a warning."""
    found = []
    for path in directory.iterdir():
        if path.suffix not in (".yaml", ".yml"):
            continue
        problem = regular_file_problem(path)
        if problem is None:
            found.append(path)
        elif path.name not in RESERVED:  # aliases.yaml is reported by load_aliases
            _skip_warning(path, problem)
    return sorted(found)


def _watchlist_files(directory: Path) -> list[Path]:
    return [p for p in _yaml_names(directory) if p.name not in RESERVED and p.stem != "sources"]


def load_watchlist_file(
    path: Path, aliases: Mapping[str, tuple[str, ...]], label: str | None = None
) -> tuple[Watchlist | None, list[WatchlistError]]:
    """Load one watchlist file (also a draft outside the folder) against an alias table."""
    label = label or str(path)
    data, errors = _read_yaml(path, label)
    if errors:
        return None, errors
    return _watchlist_from(data, path, aliases, label)


def load_watchlist_text(
    text: str, path: Path, aliases: Mapping[str, tuple[str, ...]], label: str | None = None
) -> tuple[Watchlist | None, list[WatchlistError]]:
    """Validate a draft as if it were saved at `path` (its id is the file name, `examples:`
    resolves beside it), without writing anything: the console checks drafts as they are typed."""
    label = label or str(path)
    data, errors = _parse_yaml(text, label)
    if errors:
        return None, errors
    return _watchlist_from(data, path, aliases, label)


def _watchlist_from(
    data: Any, path: Path, aliases: Mapping[str, tuple[str, ...]], label: str
) -> tuple[Watchlist | None, list[WatchlistError]]:
    wid = path.stem
    if not isinstance(data, CommentedMap):
        return None, [
            WatchlistError(label, 1, "a watchlist file is a mapping; start with query: …")
        ]
    if not ID_RE.match(wid):
        return None, [
            WatchlistError(
                label,
                1,
                f"file name '{path.name}': rename it to lower-case letters, digits, - and _",
            )
        ]
    try:
        model = WatchlistModel.model_validate(dict(data))
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            if loc and loc[0] in ("query", "exclude") and err["type"] == "value_error":
                cause = err.get("ctx", {}).get("error")
                if not isinstance(cause, q.QueryError):
                    cause = q.QueryError(str(err["msg"]).removeprefix("Value error, "))
                line, message = query_error_at(data, str(loc[0]), cause)
                out.append(WatchlistError(label, line, message))
            else:
                out.append(WatchlistError(label, _line_of(data, loc), describe_error(err)))
        return None, out
    mode = model.alert.mode
    if model.alert.digest is not None and mode != "digest":
        return None, [
            WatchlistError(
                label,
                _line_of(data, ("alert", "digest")),
                "alert.digest needs mode: digest (or remove digest)",
            )
        ]
    watchlist = Watchlist(
        id=wid,
        name=model.name or wid,
        description=model.description,
        query=model.query,
        exclude=model.exclude,
        min_score=model.min_score,
        sources=tuple(model.sources),
        alert=AlertSpec(
            slack=tuple(model.alert.slack),
            email=tuple(model.alert.email),
            mode=mode,
            digest=(model.alert.digest or "daily 08:00 UTC") if mode == "digest" else None,
        ),
        path=path,
        aliases=aliases,
        examples=path.parent / model.examples if model.examples else None,
        min_confidence=model.min_confidence,
        signals=tuple(model.signals.items()),
    )
    problems = _signal_and_example_problems(watchlist, data, label)
    if problems:
        return None, problems
    try:
        compile_watchlist(watchlist, aliases, Compiler(aliases))
    except q.QueryError as exc:
        key = "query"
        if watchlist.exclude is not None:
            try:
                Compiler(aliases).compile(q.parse(watchlist.query))
            except q.QueryError:
                pass
            else:
                key = "exclude"
        line, message = query_error_at(data, key, exc)
        return None, [WatchlistError(label, line, message)]
    return watchlist, []


def _signal_and_example_problems(
    watchlist: Watchlist, data: CommentedMap, label: str
) -> list[WatchlistError]:
    """Signals that do not compile (an unknown @alias) and every bad line of the examples
    file, each with its own file and line."""
    out: list[WatchlistError] = []
    compiler = Compiler(watchlist.aliases)
    for name, text in watchlist.signals:
        try:
            compiler.compile(q.parse(text))
        except q.QueryError as exc:
            line = _line_of(data, ("signals", name))
            out.append(WatchlistError(label, line, f"signals.{name}: {exc.message}"))
    if watchlist.examples is not None:
        examples_label = str(watchlist.examples)
        problem = regular_file_problem(watchlist.examples)
        if problem is not None:
            line = _line_of(data, ("examples",))
            out.append(
                WatchlistError(
                    label, line, f"examples: {watchlist.examples.name} is {problem}; "
                    "create it beside the watchlist or remove the examples: key"
                )
            )
            return out
        found, bad = read_examples(watchlist.examples)
        out.extend(WatchlistError(examples_label, p.line, p.message) for p in bad)
        if not bad and not found:
            out.append(WatchlistError(examples_label, None, "no examples in the file"))
    return out


def load_watchlists(directory: Path) -> tuple[dict[str, Watchlist], list[WatchlistError]]:
    """Every watchlist in the folder; a broken file gives errors and is left out."""
    if not directory.is_dir():
        return {}, [
            WatchlistError(
                str(directory), None, "watchlist folder not found (set MONITOR_WATCHLISTS_DIR)"
            )
        ]
    aliases, errors = load_aliases(directory / ALIASES_FILE)
    found: dict[str, Watchlist] = {}
    for path in _watchlist_files(directory):
        watchlist, problems = load_watchlist_file(path, aliases)
        errors.extend(problems)
        if watchlist is not None:
            if watchlist.id in found:
                errors.append(
                    WatchlistError(
                        str(path),
                        1,
                        f"id '{watchlist.id}' is taken by {found[watchlist.id].path.name}",
                    )
                )
                continue
            found[watchlist.id] = watchlist
    return found, errors


def config_hash(directory: Path) -> str:
    """A short hash of every watchlist and alias file, to see when replicas disagree."""
    digest = hashlib.sha256()
    if directory.is_dir():
        for path in sorted([*directory.glob("*.y*ml"), *directory.glob("*.jsonl")]):
            if path.name == "sources.yaml" or regular_file_problem(path) is not None:
                continue
            try:
                content = path.read_bytes()
            except OSError:  # replaced or removed since it was listed: hash what is there
                continue
            digest.update(path.name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()[:12]
