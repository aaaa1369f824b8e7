"""Read models of the shared database: the store state behind `/metrics`, the `/status` page
and `monitor sources list`. Each reads in a session of its own and returns frozen values.

These values exist to be shown, so URLs and error texts leave here redacted (`monitor.redact`),
rows written before redaction was stored included."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from monitor.clock import as_utc
from monitor.model import WAITING, AlertStatus
from monitor.redact import redact_text, redact_url
from monitor.store.tables import AlertRow, ArticleRow, BreakerRow, ReplicaRow, SourceRow

REPLICA_ALIVE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class StoreState:
    """Counts read from the shared database at scrape time."""

    alerts_by_state: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, status)
    oldest_waiting_age: dict[str, float] = field(default_factory=dict)  # channel -> seconds
    sources_total: int = 0
    sources_failing: int = 0
    sources_leased: int = 0
    sources_overdue: int = 0
    replicas_alive: int = 0
    breakers_open: dict[str, int] = field(default_factory=dict)  # channel -> open breakers


def read_store_state(engine: Engine, now: datetime | None = None) -> StoreState:
    """A few aggregate queries; no per-row data leaves the database."""
    now = now or datetime.now(UTC)
    with Session(engine) as session:
        by_state: dict[tuple[str, str], int] = {}
        for channel, status, count in session.execute(
            select(col(AlertRow.channel), col(AlertRow.status), func.count()).group_by(
                col(AlertRow.channel), col(AlertRow.status)
            )
        ):
            by_state[(str(channel), str(status))] = int(count)
        oldest: dict[str, float] = {}
        for channel, created in session.execute(
            select(col(AlertRow.channel), func.min(col(AlertRow.created_at)))
            .where(col(AlertRow.status).in_(WAITING))
            .group_by(col(AlertRow.channel))
        ):
            if created is not None:
                oldest[str(channel)] = max(0.0, (now - as_utc(created)).total_seconds())
        # One pass over the sources table instead of four counts: this read is shared by
        # `/metrics`, `/status` and the console overview, so its cost is paid on every page.
        enabled = col(SourceRow.enabled).is_(True)
        overdue_cut = now - timedelta(seconds=60)
        row = session.execute(
            select(
                func.count(),
                func.count().filter(col(SourceRow.failures) > 0),
                func.count().filter(col(SourceRow.lease_until) > now),
                # Overdue: due for more than a minute and nobody holds it. Growing means too few
                # replicas.
                func.count().filter(
                    col(SourceRow.disabled_reason).is_(None),
                    col(SourceRow.next_poll_at) < overdue_cut,
                ),
            )
            .select_from(SourceRow)
            .where(enabled)
        ).one()
        total, failing, leased, overdue = (int(v or 0) for v in row)
        alive = (
            session.scalar(
                select(func.count())
                .select_from(ReplicaRow)
                .where(
                    col(ReplicaRow.last_seen_at) > now - timedelta(seconds=REPLICA_ALIVE_SECONDS)
                )
            )
            or 0
        )
        breakers = {
            str(channel): int(count)
            for channel, count in session.execute(
                select(col(BreakerRow.channel), func.count())
                .where(col(BreakerRow.open_until).is_not(None))
                .group_by(col(BreakerRow.channel))
            )
        }
    return StoreState(
        alerts_by_state=by_state,
        oldest_waiting_age=oldest,
        sources_total=int(total),
        sources_failing=int(failing),
        sources_leased=int(leased),
        sources_overdue=int(overdue),
        replicas_alive=int(alive),
        breakers_open=breakers,
    )


# --- /status -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """One enabled source on `/status`; `lease_owner` only while the lease holds; `url`,
    `error` and `moved_to` redacted."""

    id: str
    name: str
    url: str
    status: str
    http_status: int | None
    failures: int
    error: str | None
    last_polled_at: datetime | None
    last_success_at: datetime | None
    next_poll_at: datetime
    polls: int
    lease_owner: str | None
    disabled_reason: str | None
    moved_to: str | None


@dataclass(frozen=True, slots=True)
class RecentAlert:
    id: int
    kind: str
    watchlist_id: str
    channel: str
    destination: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    error: str | None
    source_id: str | None
    title: str  # the article's title ("" for summaries and digests)
    dead_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class BreakerView:
    """An open circuit breaker: a delivery target known to be down, and when it is tried next."""

    key: str
    channel: str
    failures: int
    opened_at: datetime | None
    next_probe_at: datetime
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ReplicaBeat:
    name: str
    version: str
    started_at: datetime
    last_seen_at: datetime
    alive: bool


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Everything `/status` shows from the database, read at `now`."""

    now: datetime
    state: StoreState
    sources: tuple[SourceHealth, ...]
    alerts: tuple[RecentAlert, ...]
    replicas: tuple[ReplicaBeat, ...]
    newest_dead: RecentAlert | None = None  # the alert given up on last
    breakers: tuple[BreakerView, ...] = ()


def _alert_columns() -> tuple[Any, ...]:
    return (
        col(AlertRow.id),
        col(AlertRow.kind),
        col(AlertRow.watchlist_id),
        col(AlertRow.channel),
        col(AlertRow.destination),
        col(AlertRow.status),
        col(AlertRow.attempts),
        col(AlertRow.created_at),
        col(AlertRow.sent_at),
        col(AlertRow.last_error),
        col(AlertRow.source_id),
        col(ArticleRow.title),
        col(AlertRow.dead_at),
    )


def _recent(r: Any) -> RecentAlert:
    return RecentAlert(
        id=int(r[0] or 0),
        kind=r[1],
        watchlist_id=r[2],
        channel=r[3],
        destination=r[4],
        status=r[5],
        attempts=r[6],
        created_at=r[7],
        sent_at=r[8],
        error=r[9],
        source_id=r[10],
        title=r[11] or "",
        dead_at=r[12],
    )


def read_status(engine: Engine, *, sources_limit: int, alerts_limit: int) -> StatusSnapshot:
    """Sources' health (failing first), recent alerts, the newest dead alert, open breakers,
    the store state and replicas."""
    now = datetime.now(UTC)
    state = read_store_state(engine, now)
    with Session(engine) as session:
        sources = tuple(
            SourceHealth(
                id=r[0],
                name=r[1],
                url=redact_url(r[2]),
                status=r[3],
                http_status=r[4],
                failures=r[5],
                error=redact_text(r[6]) if r[6] else None,
                last_polled_at=r[7],
                last_success_at=r[8],
                next_poll_at=r[9],
                polls=r[10],
                lease_owner=r[11] if r[12] is not None and as_utc(r[12]) > now else None,
                disabled_reason=r[13],
                moved_to=redact_url(r[14]) if r[14] else None,
            )
            for r in session.execute(
                select(
                    col(SourceRow.id),
                    col(SourceRow.name),
                    col(SourceRow.url),
                    col(SourceRow.last_status),
                    col(SourceRow.last_http_status),
                    col(SourceRow.failures),
                    col(SourceRow.last_error),
                    col(SourceRow.last_polled_at),
                    col(SourceRow.last_success_at),
                    col(SourceRow.next_poll_at),
                    col(SourceRow.polls),
                    col(SourceRow.lease_owner),
                    col(SourceRow.lease_until),
                    col(SourceRow.disabled_reason),
                    col(SourceRow.moved_to),
                )
                .where(col(SourceRow.enabled).is_(True))
                .order_by(col(SourceRow.failures).desc(), col(SourceRow.id))
                .limit(sources_limit)
            )
        )
        alerts = tuple(
            _recent(r)
            for r in session.execute(
                select(*_alert_columns())
                .outerjoin(ArticleRow, col(ArticleRow.id) == col(AlertRow.article_id))
                .order_by(col(AlertRow.id).desc())
                .limit(alerts_limit)
            )
        )
        dead = session.execute(
            select(*_alert_columns())
            .outerjoin(ArticleRow, col(ArticleRow.id) == col(AlertRow.article_id))
            .where(col(AlertRow.status) == AlertStatus.DEAD)
            .order_by(
                func.coalesce(col(AlertRow.dead_at), col(AlertRow.created_at)).desc(),
                col(AlertRow.id).desc(),
            )
            .limit(1)
        ).first()
        breakers = tuple(
            BreakerView(
                key=str(key),
                channel=str(channel),
                failures=int(failures),
                opened_at=opened,
                next_probe_at=as_utc(until) if until is not None else now,
                last_error=error,
            )
            for key, channel, failures, opened, until, error in session.execute(
                select(
                    col(BreakerRow.key),
                    col(BreakerRow.channel),
                    col(BreakerRow.failures),
                    col(BreakerRow.opened_at),
                    col(BreakerRow.open_until),
                    col(BreakerRow.last_error),
                )
                .where(col(BreakerRow.open_until).is_not(None))
                .order_by(col(BreakerRow.key))
            )
        )
        replicas = tuple(
            ReplicaBeat(
                name=r[0],
                version=r[1],
                started_at=r[2],
                last_seen_at=r[3],
                alive=(now - as_utc(r[3])).total_seconds() < REPLICA_ALIVE_SECONDS,
            )
            for r in session.execute(
                select(
                    col(ReplicaRow.name),
                    col(ReplicaRow.version),
                    col(ReplicaRow.started_at),
                    col(ReplicaRow.last_seen_at),
                ).order_by(col(ReplicaRow.name))
            )
        )
    return StatusSnapshot(
        now,
        state,
        sources,
        alerts,
        replicas,
        newest_dead=_recent(dead) if dead is not None else None,
        breakers=breakers,
    )


# --- monitor sources list ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceListing:
    """One source row as `monitor sources list` shows it (removed ones too), `last_error` and
    `moved_to` redacted."""

    id: str
    enabled: bool
    last_status: str
    failures: int
    last_polled_at: datetime | None
    next_poll_at: datetime
    last_error: str | None
    disabled_reason: str | None
    moved_to: str | None


def list_sources(engine: Engine) -> list[SourceListing]:
    """Every source in the database, by id."""
    with Session(engine) as session:
        return [
            SourceListing(
                id=row.id,
                enabled=row.enabled,
                last_status=row.last_status,
                failures=row.failures,
                last_polled_at=row.last_polled_at,
                next_poll_at=row.next_poll_at,
                last_error=redact_text(row.last_error) if row.last_error else None,
                disabled_reason=row.disabled_reason,
                moved_to=redact_url(row.moved_to) if row.moved_to else None,
            )
            for row in session.scalars(select(SourceRow).order_by(col(SourceRow.id)))
        ]


__all__ = [
    "REPLICA_ALIVE_SECONDS",
    "BreakerView",
    "RecentAlert",
    "ReplicaBeat",
    "SourceHealth",
    "SourceListing",
    "StatusSnapshot",
    "StoreState",
    "list_sources",
    "read_status",
    "read_store_state",
]
