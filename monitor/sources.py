"""Load and validate `sources.yaml` (ruamel.yaml, YAML 1.2) with `file:line` errors.

The file is configuration reviewed in git; the database only holds polling state, synced from
this file at start and on every poll tick.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError

from monitor.model import HtmlSelectors, SourceConfig, SourceKind
from monitor.redact import redact_url
from monitor.timeparse import duration_seconds
from monitor.yamlfile import line_of as _line_of

MIN_EVERY_SECONDS = 10
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


class SourcesError(Exception):
    """The sources file is invalid; `errors` are "file:line: message" lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class SelectorsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    item: str = Field(description="CSS selector of one listing item")
    title: str = Field(description="CSS selector of the headline inside an item")
    link: str = Field(description="CSS selector of the <a> (its href) inside an item")
    summary: str | None = Field(None, description="CSS selector of the standfirst")
    date: str | None = Field(None, description="CSS selector of the date text or <time>")


class SourceModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(description="Unique slug: lower-case letters, digits, - and _")
    name: str = Field(description="Human name shown in alerts")
    url: str = Field(description="http(s) URL of the feed or section page")
    every: str | int = Field("15m", description="Poll interval, e.g. 10m, 1h; at least 10s")
    kind: Literal["feed", "html"] = Field("feed", description="feed (RSS/Atom/JSON) or html")
    selectors: SelectorsModel | None = Field(None, description="Required for kind: html")
    enabled: bool = Field(True, description="false pauses polling without deleting state")

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(
                f"{value!r} is not a slug: use lower-case letters, digits, - and _ (e.g. nk-news)"
            )
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(
                f"{redact_url(value)!r} is not an http(s) URL: write e.g. https://example.org/feed"
            )
        return value

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | int) -> str | int:
        seconds = value if isinstance(value, int) else duration_seconds(value)
        if seconds < MIN_EVERY_SECONDS:
            raise ValueError(f"interval {value!r} is below the minimum of {MIN_EVERY_SECONDS}s")
        return value

    def to_config(self) -> SourceConfig:
        seconds = self.every if isinstance(self.every, int) else duration_seconds(self.every)
        selectors = HtmlSelectors(**self.selectors.model_dump()) if self.selectors else None
        return SourceConfig(
            id=self.id,
            name=self.name,
            url=self.url,
            every_seconds=seconds,
            kind=SourceKind(self.kind),
            selectors=selectors,
            enabled=self.enabled,
        )


class SourcesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    sources: list[SourceModel] = Field(description="The polled sources")


def load_sources(path: Path) -> list[SourceConfig]:
    """Read the sources file; raise SourcesError listing every problem with its line."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SourcesError([f"{name}:1: file not found (set MONITOR_SOURCES_FILE)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourcesError([f"{name}:1: cannot read: {exc}"]) from None
    try:
        data = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise SourcesError([f"{name}:{line}: YAML syntax error: {exc.problem}"]) from None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise SourcesError([f"{name}:1: expected a mapping with a 'sources:' list"])
    try:
        parsed = SourcesFile.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc)
            errors.append(f"{name}:{_line_of(data, loc) or 1}: {where}: {err['msg']}")
        raise SourcesError(errors) from None
    errors = []
    seen: dict[str, int] = {}
    for index, source in enumerate(parsed.sources):
        line = _line_of(data, ("sources", index)) or 1
        if source.id in seen:
            errors.append(
                f"{name}:{line}: duplicate source id {source.id!r} (first on line "
                f"{seen[source.id]}): give each source its own id"
            )
        seen.setdefault(source.id, line)
        if source.kind == "html" and source.selectors is None:
            errors.append(
                f"{name}:{line}: source {source.id!r} is kind: html but has no selectors: "
                "add selectors: {item, title, link} (summary and date optional)"
            )
    if errors:
        raise SourcesError(errors)
    return [source.to_config() for source in parsed.sources]

