"""Strict validation of one watchlist document (pydantic), with messages that say what to
write instead, and the JSON Schema editors use for completion."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    field_validator,
)
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from monitor.query import syntax as q
from monitor.watchlists.digest import parse_digest

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


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
    examples: StrictStr | None = Field(
        None,
        description="Labelled examples the watchlist's model learns from: a JSONL file beside "
        "this one (e.g. missile-tests.examples.jsonl), one article per line with "
        '"relevant": true|false. Without it the query alone decides.',
    )
    min_confidence: float = Field(
        0.5,
        ge=0,
        le=1,
        description="With examples: least model confidence (0-1) to alert. Lower it to miss "
        "less, raise it for fewer false alarms; `monitor watchlists eval` shows the curve.",
    )
    signals: dict[StrictStr, StrictStr] = Field(
        default_factory=dict,
        description="With examples: named queries the model weighs as yes/no features (the "
        "precise wording of the event), e.g. {launch: 'missile NEAR/5 fired'}.",
    )

    @field_validator("examples")
    @classmethod
    def _examples(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.endswith(".jsonl") or "/" in value or "\\" in value or value.startswith(".")
        ):
            raise ValueError(
                f"{value!r}: name a .jsonl file in the watchlist folder, "
                "e.g. missile-tests.examples.jsonl"
            )
        return value

    @field_validator("signals")
    @classmethod
    def _signals(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", name):
                raise ValueError(f"signal name {name!r}: use lower-case letters, digits, - and _")
            try:
                q.parse(text)
            except q.QueryError as exc:
                raise ValueError(f"signal '{name}': {exc}") from exc
        return value

    @field_validator("min_score", "min_confidence", mode="before")
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


def query_error_at(data: CommentedMap, key: str, exc: q.QueryError) -> tuple[int, str]:
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


def describe_error(err: Mapping[str, Any]) -> str:
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
