"""Article files in the corpus JSONL format: the `--articles`, `--labels` and `--pairs` inputs of
`watchlists test|eval` and `stories test|eval`, read one way with `file:line` errors.

An article line is `{"id", "source", "url", "title", "summary", "published"}` (the format of
`monitor articles list --format jsonl`); title and summary may hold HTML, which becomes plain
text exactly as ingest makes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from monitor.clock import as_utc
from monitor.model import Article
from monitor.normalize import html_to_text


class InputError(Exception):
    """A bad input file; the message names the file and line and says what to write."""


@dataclass(frozen=True, slots=True)
class CorpusItem:
    id: str
    line: int
    article: Article

    @property
    def title(self) -> str:
        return self.article.title

    @property
    def text(self) -> str:
        return self.article.text

    @property
    def source(self) -> str:
        return self.article.source_id

    @property
    def published(self) -> datetime | None:
        return self.article.published


def _lines(path: Path) -> list[tuple[str, Any]]:
    """(where, parsed object) per non-blank line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    out: list[tuple[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            out.append((where, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: invalid JSON ({exc.msg}); one object per line") from exc
    return out


def _published(value: object, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InputError(f"{where}: 'published' must be an ISO 8601 string")
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError as exc:
        raise InputError(
            f"{where}: 'published' {value!r} is not ISO 8601 (e.g. 2023-11-21T14:42:32+00:00)"
        ) from exc


def article_from(obj: dict[str, Any], where: str) -> Article:
    """One corpus-format object as the `Article` ingest would have made of it."""
    title, summary = obj.get("title") or "", obj.get("summary") or ""
    if not isinstance(title, str) or not isinstance(summary, str):
        raise InputError(f'{where}: "title" and "summary" must be strings')
    title, text = html_to_text(title), html_to_text(summary)
    url = str(obj.get("url") or "")
    return Article(
        source_id=str(obj.get("source") or ""),
        entry_key=str(obj["id"]),
        url=url,
        title=title,
        text=text,
        published=_published(obj.get("published"), where),
        content_hash=hashlib.sha256(f"{title}\n{text}".encode()).hexdigest(),
        link=url,
    )


def read_articles(path: Path) -> list[CorpusItem]:
    found: list[CorpusItem] = []
    seen: set[str] = set()
    for where, obj in _lines(path):
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
            raise InputError(f'{where}: each line needs a non-empty string "id"')
        if obj["id"] in seen:
            raise InputError(f"{where}: duplicate id {obj['id']!r}")
        seen.add(obj["id"])
        found.append(CorpusItem(obj["id"], int(where.rsplit(":", 1)[1]), article_from(obj, where)))
    return found


def read_labels(path: Path) -> dict[str, dict[str, Any]]:
    """`{"id", "<watchlist>": true|false, …}` per line, by id."""
    labels: dict[str, dict[str, Any]] = {}
    for where, obj in _lines(path):
        if not isinstance(obj, dict) or "id" not in obj:
            raise InputError(f'{where}: write {{"id": …, "<watchlist>": true|false}}')
        labels[str(obj["id"])] = obj
    return labels


def read_pairs(path: Path, known: set[str]) -> list[tuple[str, str, bool]]:
    """`{"a", "b", "same_story"}` per line; both ids must be articles of the same run."""
    pairs: list[tuple[str, str, bool]] = []
    for where, obj in _lines(path):
        if not isinstance(obj, dict) or not isinstance(obj.get("same_story"), bool):
            raise InputError(f'{where}: each pair needs "a", "b" and a boolean "same_story"')
        for side in ("a", "b"):
            if obj.get(side) not in known:
                raise InputError(f"{where}: {side}={obj.get(side)!r} is not an id of the articles")
        pairs.append((obj["a"], obj["b"], obj["same_story"]))
    return pairs
