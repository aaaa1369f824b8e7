"""Watchlist files: load, validate with `file:line` errors, and hot-reload keeping the last good.

One YAML file per watchlist (`watchlists/<id>.yaml`), read with ruamel.yaml (YAML 1.2, so `no`
stays a string) and validated strictly with pydantic. `aliases.yaml` holds named term lists shared
by all watchlists; `sources.yaml` belongs to the sources loader. Both names are reserved.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    field_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from monitor.model import AlertSpec, Watchlist
from monitor.query import syntax as q
from monitor.query.evaluate import Compiler
from monitor.query.matcher import Matcher, compile_matcher, compile_watchlist
from monitor.textnorm import fold_term
from monitor.yamlfile import line_of as _line_of

log = structlog.get_logger(__name__)

RESERVED = ("sources.yaml", "aliases.yaml")
ALIASES_FILE = "aliases.yaml"
SCHEMA_FILE = "watchlist.schema.json"
SCHEMA_COMMENT = f"# yaml-language-server: $schema=./{SCHEMA_FILE}"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class WatchlistError(Exception):
    """One problem in one file, printed as "file:line: message"."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.message}"
            if self.line
            else f"{self.file}: {self.message}"
        )

    def __repr__(self) -> str:
        return f"WatchlistError({str(self)!r})"


# ------------------------------------------------------------------------------ digests


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    every: Literal["hourly", "daily", "weekly"]
    at: dtime
    weekday: int | None
    tz: ZoneInfo


def parse_digest(spec: str) -> DigestSchedule:
    """'hourly', 'daily 08:00 Asia/Seoul', 'weekly monday 09:30 UTC' (zone defaults to UTC)."""
    hint = (
        "write 'hourly', 'daily 08:00 Asia/Seoul' or 'weekly monday 09:00 Europe/Warsaw' "
        "(24-hour time, an IANA time zone, UTC if left out)"
    )
    parts = spec.split()
    if not parts:
        raise ValueError(f"empty digest schedule: {hint}")
    kind = parts[0].lower()
    if kind == "hourly":
        if len(parts) != 1:
            raise ValueError(f"'hourly' takes nothing after it: {hint}")
        return DigestSchedule("hourly", dtime(0, 0), None, ZoneInfo("UTC"))
    if kind not in ("daily", "weekly"):
        raise ValueError(f"unknown digest schedule {spec!r}: {hint}")
    rest = parts[1:]
    weekday = None
    if kind == "weekly":
        if not rest or rest[0].lower()[:3] not in [d[:3] for d in _DAYS]:
            raise ValueError(f"'weekly' needs a day such as monday: {hint}")
        weekday = [d[:3] for d in _DAYS].index(rest[0].lower()[:3])
        rest = rest[1:]
    if not rest or len(rest) > 2 or not re.fullmatch(r"\d{1,2}:\d{2}", rest[0]):
        raise ValueError(f"bad digest schedule {spec!r}: {hint}")
    hour, minute = (int(x) for x in rest[0].split(":"))
    if hour > 23 or minute > 59:
        raise ValueError(f"{rest[0]} is not a time of day: {hint}")
    zone = rest[1] if len(rest) == 2 else "UTC"
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {zone!r}: {hint}") from exc
    return DigestSchedule(kind, dtime(hour, minute), weekday, tz)  # type: ignore[arg-type]


def next_digest_at(spec: str, after: datetime) -> datetime:
    """The first digest time strictly after `after` (naive means UTC), as an aware UTC datetime."""
    sched = parse_digest(spec)
    if after.tzinfo is None:
        after = after.replace(tzinfo=UTC)
    if sched.every == "hourly":
        base = after.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return base + timedelta(hours=1)
    local = after.astimezone(sched.tz)
    day = local.date()
    for _ in range(16):
        if sched.weekday is None or day.weekday() == sched.weekday:
            # Round-trip through UTC so a wall time skipped by DST lands just after the gap.
            wall = datetime.combine(day, sched.at, tzinfo=sched.tz)
            candidate = wall.astimezone(UTC)
            if candidate > after:
                return candidate
        day += timedelta(days=1)
    raise AssertionError("unreachable: a weekly schedule recurs within 8 days")


# ------------------------------------------------------------------------------- values


# ------------------------------------------------------------------------------- models


def _channel(channel: str) -> str:
    if not re.fullmatch(r"#?[A-Za-z0-9][A-Za-z0-9._-]{0,79}", channel):
        raise ValueError(
            f"{channel!r} is not a Slack channel: write '#name' (lower-case, - and _) "
            "or a channel id such as C0123ABCD"
        )
    return channel


def _email(address: str) -> str:
    if not _EMAIL_RE.match(address):
        raise ValueError(f"{address!r} is not an email address: write name@example.org")
    return address


class AlertModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, title="Alert")

    slack: list[Annotated[StrictStr, AfterValidator(_channel)]] = Field(
        default_factory=list, description='Slack channels, e.g. ["#nk-desk"] or channel ids.'
    )
    email: list[Annotated[StrictStr, AfterValidator(_email)]] = Field(
        default_factory=list, description="Email addresses that receive the alerts."
    )
    mode: Literal["immediate", "digest"] = Field(
        "immediate", description="immediate: one alert per article; digest: a periodic summary."
    )
    digest: StrictStr | None = Field(
        None,
        description="Digest schedule for mode digest: 'hourly', 'daily 08:00 Asia/Seoul', "
        "'weekly monday 09:00 UTC'. Defaults to 'daily 08:00 UTC'.",
    )

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None:
            parse_digest(value)
        return value


def _check_query(value: str | None) -> str | None:
    if value is not None:
        q.parse(value)  # QueryError is a ValueError: pydantic reports it with the key
    return value


class WatchlistModel(BaseModel):
    """One watchlist file. Only `query` is required."""

    model_config = ConfigDict(extra="forbid", strict=True, title="Watchlist")

    name: StrictStr | None = Field(None, description="Display name in alerts (default: file name).")
    description: StrictStr = Field("", description="What the desk wants from this watchlist.")
    query: StrictStr = Field(
        description='Query: words, "phrases", AND/OR/NOT, -word, (groups), launch*, '
        '"a b"~10, a NEAR/10 b, title:/summary:/source:/url:, @alias, /re2 regex/.'
    )
    exclude: StrictStr | None = Field(
        None, description="A query whose match vetoes an alert (same syntax as query)."
    )
    min_score: float = Field(
        0.0,
        ge=0,
        description="Least score to alert: a matched term adds 2 in the title, 1 in the summary.",
    )
    sources: list[StrictStr] = Field(
        default_factory=list, description="Limit to these source ids (from sources.yaml)."
    )
    alert: AlertModel = Field(default_factory=AlertModel, description="Where alerts go.")

    @field_validator("min_score", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("write a number such as 1 or 2.5")
        return float(value)

    @field_validator("query", "exclude")
    @classmethod
    def _query(cls, value: str | None) -> str | None:
        return _check_query(value)


def schema_json() -> str:
    """The JSON Schema (draft 7 layout) committed as watchlists/watchlist.schema.json."""
    schema = WatchlistModel.model_json_schema(ref_template="#/definitions/{model}")
    if "$defs" in schema:
        schema["definitions"] = schema.pop("$defs")
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["$id"] = "watchlist.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------ loading


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def _read_yaml(path: Path, label: str) -> tuple[Any, list[WatchlistError]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [WatchlistError(label, None, f"cannot read the file: {exc}")]
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


def _query_error(data: CommentedMap, key: str, exc: q.QueryError) -> tuple[int, str]:
    """File line and message of a query error, inside a multi-line block scalar too."""
    value = str(data[key])
    line = int(data.lc.value(key)[0]) + 1
    position = exc.position
    if position is None:
        return line + (1 if "\n" in value.rstrip() else 0), f"{key}: {exc.message}"
    position = min(position, len(value.rstrip()))
    column = position - (value.rfind("\n", 0, position) + 1) + 1
    if isinstance(data[key], LiteralScalarString):
        line += 1 + value[:position].count("\n")
    elif isinstance(data[key], FoldedScalarString):
        line += 1
    return line, f"{key}: column {column}: {exc.message}"


_HINTS = {
    "missing": "add it",
    "string_type": 'write text (quote it: "…")',
    "list_type": "write a list, e.g. [a, b] or one '- item' per line",
    "bool_type": "write true or false",
}


def _message(err: Mapping[str, Any]) -> str:
    loc = ".".join(str(x) for x in err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        allowed = (
            list(AlertModel.model_fields)
            if err["loc"][0] == "alert"
            else list(WatchlistModel.model_fields)
        )
        close = difflib.get_close_matches(key, allowed, n=1)
        guess = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown key '{loc}': {guess}allowed keys are {', '.join(allowed)}"
    if kind == "missing":
        return f"'{loc}' is required: add {loc}: …"
    if kind == "literal_error":
        return f"{loc}: {err['msg']}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    hint = _HINTS.get(kind)
    return f"{loc}: {msg}" + (f" ({hint})" if hint else "")


def load_aliases(path: Path) -> tuple[dict[str, tuple[str, ...]], list[WatchlistError]]:
    """aliases.yaml: `name: [phrase, …]`. Bad entries are reported and left out."""
    if not path.exists():
        return {}, []
    label = str(path)
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


def _watchlist_files(directory: Path) -> list[Path]:
    files = [p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()]
    return sorted(p for p in files if p.name not in RESERVED and p.stem != "sources")


def load_watchlist_file(
    path: Path, aliases: Mapping[str, tuple[str, ...]], label: str | None = None
) -> tuple[Watchlist | None, list[WatchlistError]]:
    """Load one watchlist file (also a draft outside the folder) against an alias table."""
    label = label or str(path)
    wid = path.stem
    data, errors = _read_yaml(path, label)
    if errors:
        return None, errors
    if not isinstance(data, CommentedMap):
        return None, [
            WatchlistError(label, 1, "a watchlist file is a mapping; start with query: …")
        ]
    if not _ID_RE.match(wid):
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
                line, message = _query_error(data, str(loc[0]), cause)
                out.append(WatchlistError(label, line, message))
            else:
                out.append(WatchlistError(label, _line_of(data, loc), _message(err)))
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
    )
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
        line, message = _query_error(data, key, exc)
        return None, [WatchlistError(label, line, message)]
    return watchlist, []


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
        for path in sorted(directory.glob("*.y*ml")):
            if path.name != "sources.yaml":
                digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


# ----------------------------------------------------------------------------- registry


class WatchlistRegistry:
    """The live watchlist set: swapped atomically on reload, last good kept per broken file."""

    def __init__(self, directory: Path, *, safety_reload_seconds: float = 300.0) -> None:
        self.directory = directory
        self.safety_reload_seconds = safety_reload_seconds
        self._state: tuple[dict[str, Watchlist], Matcher] = ({}, compile_matcher([]))
        self.loaded = False
        self.reloads_ok = 0
        self.reloads_error = 0
        self.last_success: float | None = None
        self.last_errors: list[WatchlistError] = []
        self.config_hash = ""

    @property
    def watchlists(self) -> dict[str, Watchlist]:
        return self._state[0]

    @property
    def matcher(self) -> Matcher:
        return self._state[1]

    def reload(self) -> list[WatchlistError]:
        """Re-read every file; keep the previous version of a watchlist whose file broke."""
        loaded, errors = load_watchlists(self.directory)
        previous = self._state[0]
        merged = dict(loaded)
        for err in errors:
            path = Path(err.file)
            wid = path.stem
            if (
                wid in previous
                and wid not in merged
                and path.exists()
                and path.parent == self.directory
            ):
                merged[wid] = previous[wid]
        if not self.directory.is_dir():
            merged = dict(previous)
        try:
            matcher = compile_matcher(merged.values())
        except q.QueryError as exc:  # cannot happen for validated files; keep serving
            errors.append(WatchlistError(str(self.directory), None, f"compile failed: {exc}"))
            matcher = self._state[1]
            merged = dict(previous)
        self._state = (merged, matcher)
        self.config_hash = config_hash(self.directory)
        self.last_errors = errors
        if errors:
            self.reloads_error += 1
            for err in errors:
                log.error("watchlist_invalid", error=str(err), file=err.file, line=err.line)
        else:
            self.reloads_ok += 1
            self.loaded = True
            self.last_success = time.time()
        log.info(
            "watchlists_loaded",
            count=len(merged),
            errors=len(errors),
            config_hash=self.config_hash,
            ids=sorted(merged),
        )
        return errors

    async def watch(self, stop: asyncio.Event, *, force_polling: bool | None = None) -> None:
        """Reload on file changes (watching the folder: editors replace files by rename)."""
        from watchfiles import awatch

        async def safety_net() -> None:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), self.safety_reload_seconds)
                except TimeoutError:
                    await asyncio.to_thread(self.reload)

        net = asyncio.create_task(safety_net())
        try:
            async for changes in awatch(
                self.directory,
                stop_event=stop,
                debounce=400,
                step=50,
                force_polling=force_polling,
                recursive=False,
            ):
                names = {Path(path).name for _, path in changes}
                if any(n.endswith((".yaml", ".yml")) and n != "sources.yaml" for n in names):
                    await asyncio.to_thread(self.reload)
        finally:
            net.cancel()
