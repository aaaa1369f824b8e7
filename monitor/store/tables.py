"""The SQLModel tables: the only ORM classes of the project.

Times are timezone-aware UTC in Python (SQLModel's UTCDateTime refuses naive values); SQLite
stores them as UTC text without offset and PostgreSQL as timestamptz, so both compare alike.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from monitor.clock import utcnow

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}



class SourceRow(SQLModel, table=True):
    """A polled source: its config (synced from sources.yaml) and its polling state."""

    __tablename__ = "source"

    id: str = Field(primary_key=True, max_length=100)
    name: str = Field(default="", max_length=300)
    url: str = Field(max_length=2048)
    kind: str = Field(default="feed", max_length=10)
    every_seconds: int = Field(default=900)
    selectors_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    enabled: bool = Field(default=True)  # present in sources.yaml
    disabled_reason: str | None = Field(default=None, max_length=500)  # e.g. 410 Gone
    moved_to: str | None = Field(default=None, max_length=2048)  # 301/308 target, for the admin
    etag: str | None = Field(default=None, max_length=1024)
    last_modified: str | None = Field(default=None, max_length=200)
    body_hash: str | None = Field(default=None, max_length=64)
    last_status: str = Field(default="new", max_length=40)
    last_http_status: int | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error_transient: bool | None = None
    failures: int = Field(default=0)
    polls: int = Field(default=0)
    last_polled_at: datetime | None = None
    last_success_at: datetime | None = None
    last_new_entries: int = Field(default=0)
    next_poll_at: datetime = Field(default_factory=utcnow, index=True)
    first_poll_done: bool = Field(default=False)
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = None
    lease_epoch: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ArticleRow(SQLModel, table=True):
    """One article, stored once per (source, entry_key)."""

    __tablename__ = "article"
    __table_args__ = (
        UniqueConstraint("source_id", "entry_key", name="uq_article_source_entry"),
        Index("ix_article_first_seen", "first_seen"),
        Index("ix_article_source_recent", "source_id", "first_seen"),  # a source's newest
    )

    id: int | None = Field(default=None, primary_key=True)
    source_id: str = Field(max_length=100, index=True)
    entry_key: str = Field(max_length=600)
    url: str = Field(default="", max_length=2048)
    link: str = Field(default="", max_length=2048)
    title: str = Field(default="", sa_column=Column(Text, nullable=False))
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    published: datetime | None = None
    first_seen: datetime = Field(default_factory=utcnow)
    updated_at: datetime | None = None
    content_hash: str = Field(max_length=64, index=True)
    revision: int = Field(default=1)
    catchup: bool = Field(default=False)
    story_id: int | None = Field(default=None, index=True)


class ArticleCopyRow(SQLModel, table=True):
    """The same content seen again under another source or key: linked, not stored twice."""

    __tablename__ = "article_copy"
    __table_args__ = (
        UniqueConstraint("source_id", "entry_key", name="uq_article_copy_source_entry"),
    )

    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(index=True)
    source_id: str = Field(max_length=100)
    entry_key: str = Field(max_length=600)
    url: str = Field(default="", max_length=2048)
    seen_at: datetime = Field(default_factory=utcnow)


class ArticleRevisionRow(SQLModel, table=True):
    """An edit of a stored entry (same key, new content hash), kept for follow-ups and audit."""

    __tablename__ = "article_revision"

    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(index=True)
    revision: int
    title: str = Field(default="", sa_column=Column(Text, nullable=False))
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    content_hash: str = Field(max_length=64)
    seen_at: datetime = Field(default_factory=utcnow)


class Story(SQLModel, table=True):
    """A group of near-duplicate articles across outlets (owned by monitor.store.stories)."""

    __tablename__ = "story"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True)
    first_article_id: int
    title: str = Field(default="", sa_column=Column(Text, nullable=False))
    article_count: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    last_seen_at: datetime = Field(default_factory=utcnow)


class StoryBand(SQLModel, table=True):
    """One LSH band hash of an article, indexed so candidates are found in the database.

    `created_at` is the article's time (published, else first seen), the window's clock. The
    band index covers every column the candidate query reads: without it each key costs a
    table lookup per row (measured 2.0 ms vs 0.2 ms per article at 100k articles on SQLite).
    """

    __tablename__ = "story_band"
    __table_args__ = (Index("ix_story_band_band", "band", "created_at", "article_id", "story_id"),)

    id: int | None = Field(default=None, primary_key=True)
    band: int = Field(sa_column=Column(BigInteger, nullable=False))
    article_id: int = Field(index=True)
    story_id: int
    created_at: datetime = Field(default_factory=utcnow)


class StoryVector(SQLModel, table=True):
    """The vector signal of one article for story grouping: its text vector (float32,
    little-endian, under `model`) and language, kept in the database so every replica and a
    restart verify candidates alike. Only articles that got a vector (MONITOR_STORY_VECTORS)."""

    __tablename__ = "story_vector"

    article_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    story_id: int = Field(index=True)
    model: str = Field(max_length=60)
    language: str = Field(max_length=8)
    vector: bytes
    created_at: datetime = Field(default_factory=utcnow)


class StoryVectorBand(SQLModel, table=True):
    """One SimHash band key of an article's vector: the nearest-neighbour index of the story
    window, beside the MinHash bands and covered the same way (band, time, article, story)."""

    __tablename__ = "story_vector_band"
    __table_args__ = (
        Index("ix_story_vector_band_band", "band", "created_at", "article_id", "story_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    band: int = Field(sa_column=Column(BigInteger, nullable=False))
    article_id: int = Field(index=True)
    story_id: int
    created_at: datetime = Field(default_factory=utcnow)


class AlertRow(SQLModel, table=True):
    """The transactional outbox: one row per (alert, destination), written with the article."""

    __tablename__ = "alert"
    # The console lists a watchlist's newest alerts: without it, a rare watchlist's page scans
    # the outbox backwards.
    __table_args__ = (
        Index("ix_alert_watchlist_recent", "watchlist_id", "id"),
        # Covering indexes for the counts of /metrics, /status and the console: a table scan
        # would read every payload.
        Index("ix_alert_channel_status", "channel", "status"),
        Index("ix_alert_created_watchlist", "created_at", "watchlist_id", "kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dedup_key: str = Field(max_length=400, unique=True)
    kind: str = Field(default="alert", max_length=20)  # an AlertKind (monitor.model)
    article_id: int | None = Field(default=None, index=True)
    story_id: int | None = Field(default=None, index=True)
    source_id: str | None = Field(default=None, max_length=100)
    watchlist_id: str = Field(max_length=200)
    channel: str = Field(max_length=20)  # a Channel (monitor.model): slack, email, console
    destination: str = Field(max_length=400)  # Slack channel, email address, "console"
    status: str = Field(default="pending", max_length=20, index=True)
    payload_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    parent_alert_id: int | None = None
    digest_at: datetime | None = None
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True)
    # When it first became due (its digest period's end for held entries): the retry horizon
    # counts from here, and `monitor alerts retry` starts it afresh. None only on rows from
    # before migration 0003 (read as created_at).
    first_due_at: datetime | None = None
    attempt_started_at: datetime | None = None
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = None
    lease_epoch: int = Field(default=0)
    provider_ref: str | None = Field(default=None, max_length=400)
    thread_ref: str | None = Field(default=None, max_length=400)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    dead_at: datetime | None = None  # when it was given up on (/status shows the newest)


class DestinationRow(SQLModel, table=True):
    """Per-destination pacing shared by all replicas (Slack: about one message per second)."""

    __tablename__ = "destination"

    key: str = Field(primary_key=True, max_length=400)  # "slack:#channel"
    not_before: datetime = Field(default_factory=utcnow)
    channel_ref: str | None = Field(default=None, max_length=100)  # Slack channel id, once known
    updated_at: datetime = Field(default_factory=utcnow)


class BreakerRow(SQLModel, table=True):
    """The circuit breaker of one delivery target (a Slack API host, an SMTP server), shared
    by replicas: while `open_until` is ahead nothing is sent there; when it passes, one claim
    takes a single row as the probe and moves `open_until` a lease ahead, so only one probe is
    in flight. A probe that gets an answer closes it (`open_until` NULL)."""

    __tablename__ = "breaker"

    key: str = Field(primary_key=True, max_length=400)  # "slack:slack.com", "smtp:host:587"
    channel: str = Field(max_length=20)  # a Channel: whose rows it holds back
    failures: int = Field(default=0)  # consecutive failed rounds (the probe backoff's exponent)
    open_until: datetime | None = None
    opened_at: datetime | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_at: datetime = Field(default_factory=utcnow)


class PollEventRow(SQLModel, table=True):
    """One poll worth remembering of one source: every poll that fetched a body or failed, and
    the first quiet one after failures (the recovery). Quiet 304/unchanged polls are only
    counted on the source row. The newest `POLL_EVENTS_KEPT` per source are kept, so the
    console can show a source's recent history of polls and errors."""

    __tablename__ = "poll_event"
    __table_args__ = (Index("ix_poll_event_source_recent", "source_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    source_id: str = Field(max_length=100)
    polled_at: datetime = Field(default_factory=utcnow)
    status: str = Field(max_length=40)  # the source's last_status after this poll
    http_status: int | None = None
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # redacted
    new_entries: int | None = None
    failures: int = Field(default=0)  # consecutive failures after this poll


class ReplicaRow(SQLModel, table=True):
    """Heartbeats of running replicas, for /status and diagnosis."""

    __tablename__ = "replica"

    name: str = Field(primary_key=True, max_length=200)
    started_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    version: str = Field(default="", max_length=40)


class TextVectorRow(SQLModel, table=True):
    """One text's embedding under one model (articles and watchlist examples alike), so
    restarts, replicas and backtests never embed a text twice. Keyed by a hash of the model
    name and the embedded text, so an edited article gets a new vector and the old one stays
    valid for whatever still has that text."""

    __tablename__ = "text_vector"

    model: str = Field(primary_key=True, max_length=60)
    key: str = Field(primary_key=True, max_length=32)
    dim: int
    vector: bytes  # float32, little-endian
    created_at: datetime = Field(default_factory=utcnow)


class FeedbackRow(SQLModel, table=True):
    """What the desk said about one alert: a label (relevant / not relevant) or a story mute.

    `request_key` is unique per click or link use (Slack's retries, and two replicas handed the
    same click, write one row); `active_key` is set while the item is in effect and unique, so
    one alert holds at most one label and one mute whoever clicks and wherever; undo and reject
    clear it (NULLs never collide), and the row stays for the record.
    """

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_watchlist_created", "watchlist_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(index=True)
    watchlist_id: str = Field(max_length=200)
    article_id: int | None = None
    story_id: int | None = Field(default=None, index=True)
    action: str = Field(max_length=20)  # a FeedbackAction (monitor.model)
    user_id: str = Field(default="", max_length=100)
    user_name: str = Field(default="", max_length=200)
    via: str = Field(max_length=20)  # slack, socket, email, cli
    channel: str = Field(max_length=20)  # the alert's Channel
    destination: str = Field(max_length=400)  # the alert's Slack channel or email address
    request_key: str = Field(max_length=200, unique=True)
    active_key: str | None = Field(default=None, max_length=600, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    undone_at: datetime | None = None
    undone_by: str | None = Field(default=None, max_length=200)
    rejected_at: datetime | None = None
    rejected_by: str | None = Field(default=None, max_length=200)


class SyncedFileRow(SQLModel, table=True):
    """The digest of a configuration file as last synced into the database (`sources`: the
    sources file), so a run whose file did not change skips parsing and syncing it."""

    __tablename__ = "synced_file"

    name: str = Field(primary_key=True, max_length=100)
    digest: str = Field(max_length=64)
    synced_at: datetime = Field(default_factory=utcnow)
