"""Labelled example files: `<id>.examples.jsonl` beside a watchlist, one article per line in
the format of `monitor articles list --format jsonl` plus `"relevant": true|false` and an
optional `"note"`.

Examples from desk feedback will come from the database with the same shape (`Example`), so
the model never cares where an example came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.corpus import InputError, article_from
from monitor.model import Article

#: The most examples one file may hold: more would make start-up training slow.
MAX_EXAMPLES = 20_000


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled article; `origin` says where it came from ("file:line", later feedback)."""

    id: str
    article: Article
    relevant: bool
    note: str
    origin: str


@dataclass(frozen=True, slots=True)
class ExampleProblem:
    line: int | None
    message: str


def read_examples(path: Path) -> tuple[list[Example], list[ExampleProblem]]:
    """Every valid line of an examples file, and a problem (with its line) for each bad one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], [ExampleProblem(None, "examples file not found; check the examples: key")]
    except (OSError, UnicodeDecodeError) as exc:
        return [], [ExampleProblem(None, f"cannot read the examples file: {exc}")]
    found: list[Example] = []
    problems: list[ExampleProblem] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if len(found) >= MAX_EXAMPLES:
            problems.append(ExampleProblem(number, f"more than {MAX_EXAMPLES} examples"))
            break
        example, problem = _example(raw, number, path, seen)
        if problem is not None:
            problems.append(ExampleProblem(number, problem))
        elif example is not None:
            seen[example.id] = number
            found.append(example)
    return found, problems


def _example(
    raw: str, number: int, path: Path, seen: dict[str, int]
) -> tuple[Example | None, str | None]:
    try:
        obj: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg}); write one object per line"
    if not isinstance(obj, dict):
        return None, 'write an object such as {"id": …, "title": …, "relevant": true}'
    ident = obj.get("id")
    if not isinstance(ident, str | int) or isinstance(ident, bool) or str(ident) == "":
        return None, 'each example needs an "id" (text or number)'
    ident = str(ident)
    if ident in seen:
        return None, f"duplicate id {ident!r} (first on line {seen[ident]})"
    relevant = obj.get("relevant")
    if not isinstance(relevant, bool):
        return None, '"relevant" must be true or false'
    note = obj.get("note", "")
    if not isinstance(note, str):
        return None, '"note" must be text'
    if not (obj.get("title") or obj.get("summary")):
        return None, 'an example needs a "title" or a "summary" to learn from'
    try:
        article = article_from({**obj, "id": ident}, f"{path}:{number}")
    except InputError as exc:
        return None, str(exc).split(": ", 1)[-1]
    return Example(ident, article, relevant, note, f"{path.name}:{number}"), None
