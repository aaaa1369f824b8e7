"""Frozen values passed between pipeline stages.

Nothing here does I/O; SQLModel rows never leave `monitor/store/` and feedparser dicts never
leave `monitor/parse/`, so every stage can be tested with plain values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol


class SourceKind(StrEnum):
    """What a source's document is: a feed (RSS/Atom/RDF/JSON Feed) or an HTML section page."""

    FEED = "feed"
    HTML = "html"


class PollStatus(StrEnum):
    """The outcome of one poll of one source (`PollReport.status`).

    A failed poll is `ERROR` with the classified kind beside it (`PollReport.error_kind`); its
    label on the CLI and in logs stays `error:<kind>`.
    """

    OK = "ok"
    NOT_MODIFIED = "not_modified"
    UNCHANGED = "unchanged"
    ERROR = "error"
    LOST_LEASE = "lost_lease"
    DRY_RUN = "dry_run"


class AlertStatus(StrEnum):
    """Where an outbox row is: `pending → sending → sent | retry | dead`; digest entries wait
    as `held` until their period ends and then become `digested`."""

    HELD = "held"
    PENDING = "pending"
    SENDING = "sending"
    RETRY = "retry"
    SENT = "sent"
    DEAD = "dead"
    DIGESTED = "digested"


# Every state, in the order the CLI and the metrics list them.
ALERT_STATES: tuple[AlertStatus, ...] = tuple(AlertStatus)
# Not delivered yet and not given up on: what the outbox depth and its oldest age count.
WAITING: tuple[AlertStatus, ...] = (AlertStatus.PENDING, AlertStatus.SENDING, AlertStatus.RETRY)
# Queued for an attempt at `next_attempt_at` (a `sending` row is only taken over once its
# lease expired, which the claim checks separately).
QUEUED: tuple[AlertStatus, ...] = (AlertStatus.PENDING, AlertStatus.RETRY)
# A parent in one of these states no longer holds back its follow-ups.
SETTLED: tuple[AlertStatus, ...] = (AlertStatus.SENT, AlertStatus.DEAD, AlertStatus.DIGESTED)


class AlertKind(StrEnum):
    """What an outbox row (and the message rendered from it) is."""

    ALERT = "alert"  # a top-level alert
    UPDATE = "update"  # an edited article, in the thread of its alert
    ALSO = "also"  # another outlet with the same story, in the thread of its alert
    SUMMARY = "summary"  # the flood guard's one message for many alerts
    DIGEST = "digest"  # a digest watchlist's message for one period


class FeedbackAction(StrEnum):
    """What a desk editor said about an alert (desk feedback, monitor.feedback)."""

    RELEVANT = "relevant"
    NOT_RELEVANT = "not_relevant"
    MUTE = "mute"  # no more thread updates or copies of this story in this channel

    @property
    def is_label(self) -> bool:
        return self is not FeedbackAction.MUTE


class Channel(StrEnum):
    SLACK = "slack"
    EMAIL = "email"
    CONSOLE = "console"


@dataclass(frozen=True, slots=True)
class HtmlSelectors:
    """CSS selectors that turn a section page without a feed into entries."""

    item: str
    title: str
    link: str
    summary: str | None = None
    date: str | None = None


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One entry of `sources.yaml`, validated."""

    id: str
    name: str
    url: str
    every_seconds: int = 900
    kind: SourceKind = SourceKind.FEED
    selectors: HtmlSelectors | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """What the fetcher needs to poll one source (conditional GET validators verbatim)."""

    source_id: str
    url: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A completed HTTP exchange: 200 with a body, or 304 with none."""

    source_id: str
    url: str  # final URL after redirects
    status: int
    body: bytes | None
    headers: dict[str, str]  # lower-cased names
    etag: str | None
    last_modified: str | None
    max_age_seconds: float | None  # Cache-Control max-age, a lower bound on the interval
    elapsed_seconds: float
    # Set when every redirect from the configured URL was permanent (301/308): where the
    # feed lives now, for the admin to put into sources.yaml.
    moved_to: str | None = None


ErrorKind = Literal[
    "timeout",
    "connect",
    "dns",
    "tls",
    "http_4xx",
    "http_5xx",
    "rate_limited",
    "gone",
    "too_large",
    "too_many_redirects",
    "blocked_ssrf",
    "bad_url",
    "parse_error",
    "rejected_entities",
    "too_complex",
    "protocol",
]


@dataclass(frozen=True, slots=True)
class FetchError:
    """A classified failure; `transient` decides between backoff and a clear stop."""

    source_id: str
    kind: ErrorKind
    transient: bool
    message: str
    status: int | None = None
    retry_after_seconds: float | None = None
    elapsed_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    """One feed item as the parser saw it; text fields may still hold HTML."""

    guid: str | None
    link: str | None
    title: str
    summary: str
    published: datetime | None
    author: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    entries: tuple[ParsedEntry, ...]
    title: str | None = None
    ttl_seconds: int | None = None  # RSS <ttl>, a lower bound on the interval
    warning: str | None = None  # non-fatal parser complaint (bozo with entries)


@dataclass(frozen=True, slots=True)
class Article:
    """A normalized entry: the unit that is stored, grouped into stories and matched."""

    source_id: str
    entry_key: str
    url: str  # canonical URL ("" when the entry has no link)
    title: str  # plain text
    text: str  # plain text of the summary/content
    published: datetime | None
    content_hash: str
    link: str = ""  # the link exactly as published


@dataclass(frozen=True, slots=True)
class Span:
    """A highlighted [start, end) range inside a snippet."""

    start: int
    end: int


class Evidence(Protocol):
    """What a match found, worked out only when asked: the matcher's gate decides first, and
    most matches are never scored (no model) or shown (rejected by the model, a catch-up)."""

    def scored(self) -> tuple[float, tuple[str, ...]]:
        """The score and the terms credited."""
        ...

    def shown(self) -> tuple[str, tuple[Span, ...]]:
        """The snippet and its highlights."""
        ...


_SCORED = frozenset({"score", "terms"})
_SHOWN = frozenset({"snippet", "highlights"})


@dataclass(frozen=True, slots=True)
class Match:
    """One watchlist matching one article, with its evidence.

    A match from `Match.pending` leaves score, terms, snippet and highlights unset until first
    read (then `Evidence` fills them in, once); equality, repr and `replace` read them, so a
    pending match is indistinguishable from one built with its values.
    """

    watchlist_id: str
    watchlist_name: str
    score: float
    terms: tuple[str, ...]
    snippet: str = ""
    highlights: tuple[Span, ...] = field(default_factory=tuple)
    judgement: Judgement | None = None  # the watchlist's model, when it has examples
    _evidence: Evidence | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def pending(
        cls,
        watchlist_id: str,
        watchlist_name: str,
        evidence: Evidence,
        judgement: Judgement | None = None,
    ) -> Match:
        """A match whose evidence is worked out on first read."""
        match = object.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(match, "watchlist_id", watchlist_id)
        setattr_(match, "watchlist_name", watchlist_name)
        setattr_(match, "judgement", judgement)
        setattr_(match, "_evidence", evidence)
        return match

    def with_judgement(self, judgement: Judgement) -> Match:
        """This match with a model's judgement, its evidence still unread if it was."""
        evidence = self._evidence
        if evidence is None:
            return replace(self, judgement=judgement)
        return Match.pending(self.watchlist_id, self.watchlist_name, evidence, judgement)

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> object:
            # Called only for a slot left unset by `pending`.
            evidence = object.__getattribute__(self, "_evidence")
            if evidence is None or name not in _SCORED | _SHOWN:
                raise AttributeError(name)
            if name in _SCORED:
                score, terms = evidence.scored()
                object.__setattr__(self, "score", score)
                object.__setattr__(self, "terms", terms)
                return score if name == "score" else terms
            snippet, highlights = evidence.shown()
            object.__setattr__(self, "snippet", snippet)
            object.__setattr__(self, "highlights", highlights)
            return snippet if name == "snippet" else highlights

        def __getstate__(self) -> list[object]:
            """Pickled with its evidence read (the article's index stays behind)."""
            return [getattr(self, f.name) if f.name != "_evidence" else None for f in fields(self)]

        def __setstate__(self, state: list[object]) -> None:
            for f, value in zip(fields(self), state, strict=True):
                object.__setattr__(self, f.name, value)


@dataclass(frozen=True, slots=True)
class Judgement:
    """A watchlist model's decision on an article that passed the query gate, and why."""

    relevant: bool
    confidence: float  # the model's probability that the desk wants this article
    threshold: float  # the watchlist's min_confidence
    like: tuple[str, ...] = ()  # titles of the nearest relevant examples
    unlike: tuple[str, ...] = ()  # titles of the nearest not-relevant examples
    signals: tuple[str, ...] = ()  # the watchlist's named signals that matched

    @property
    def reason(self) -> str:
        """One line for alerts and `watchlists test`: confidence, signals, nearest examples."""
        verdict = "relevant" if self.relevant else "not relevant"
        parts = [f"model {self.confidence:.2f} (min {self.threshold:.2f}): {verdict}"]
        if self.signals:
            parts.append("signals: " + ", ".join(self.signals))
        if self.like:
            parts.append("like: " + " | ".join(t[:80] for t in self.like))
        if self.unlike:
            parts.append("unlike: " + " | ".join(t[:80] for t in self.unlike))
        return " · ".join(parts)


@dataclass(frozen=True, slots=True)
class StoryAssignment:
    """Which story an article joined; `is_new` is False for a later copy of a known story."""

    story_id: int
    story_key: str
    is_new: bool
    first_article_id: int


@dataclass(frozen=True, slots=True)
class IngestedItem:
    """One stored article of a poll, with what downstream needs to decide on alerts.

    `change` is "new" for a first sighting and "update" for an edited entry (same key, new
    content hash); `catchup` is True for a new source's first poll, whose items never alert.
    """

    article_id: int
    article: Article
    change: Literal["new", "update"]
    matches: tuple[Match, ...]
    story: StoryAssignment | None
    catchup: bool


@dataclass(frozen=True, slots=True)
class AlertSpec:
    slack: tuple[str, ...] = ()
    email: tuple[str, ...] = ()
    mode: Literal["immediate", "digest"] = "immediate"
    digest: str | None = None  # schedule text for mode "digest", see next_digest_at


@dataclass(frozen=True, slots=True)
class Watchlist:
    id: str
    name: str
    description: str
    query: str
    exclude: str | None
    min_score: float
    sources: tuple[str, ...]
    alert: AlertSpec
    path: Path
    # The alias table the query was validated against (so it compiles the same way later).
    aliases: Mapping[str, tuple[str, ...]] = field(
        default_factory=dict, compare=False, repr=False, hash=False
    )
    examples: Path | None = None  # labelled examples (JSONL) the watchlist's model learns from
    min_confidence: float = 0.5  # least model confidence to alert (with examples only)
    signals: tuple[tuple[str, str], ...] = ()  # (name, query): features the model weighs
