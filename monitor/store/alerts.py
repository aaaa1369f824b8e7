"""The alert aggregate, the outbox: enqueue in the ingest transaction, claim with leases,
complete fenced.

States: `pending → sending → sent | retry (at next_attempt_at) | dead`; digest entries wait as
`held` until their period ends and then become `digested` (listed in one `digest` row).

A row whose earlier attempt may have reached the provider keeps `attempt_started_at` (the
earliest such attempt: a later claim never moves it); the next claim hands that time to the
dispatcher, which reconciles before sending again. A definite failure clears it. Slack pacing is
a `destination` row per channel whose `not_before` is claimed with `FOR UPDATE SKIP LOCKED`, so
all replicas together send about one message per second per channel.

A `breaker` row per delivery target (a Slack API host, an SMTP server) holds a channel's rows back
while the target is known to be down: nothing is claimed before its `open_until`; then one claim
takes a single row as the probe and moves `open_until` a lease ahead, so one probe at a time is in
flight across replicas. The dispatcher opens, extends and closes it from each outcome.

Functions taking a `Session` never commit (the caller owns the transaction: a poll enqueues in
its one fenced transaction); those taking an `Engine` run in a transaction of their own, which is
how the dispatcher records each outcome.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlmodel import col

from monitor.clock import as_utc_or_none
from monitor.model import QUEUED, SETTLED, AlertKind, AlertStatus, Channel
from monitor.store.tables import AlertRow, BreakerRow, DestinationRow


@dataclass(frozen=True, slots=True)
class NewAlert:
    """An outbox row to write (insert ON CONFLICT (dedup_key) DO NOTHING)."""

    dedup_key: str
    kind: AlertKind
    watchlist_id: str
    channel: str  # a Channel
    destination: str
    payload_json: str
    article_id: int | None = None
    story_id: int | None = None
    source_id: str | None = None
    parent_alert_id: int | None = None
    status: AlertStatus = AlertStatus.PENDING
    digest_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClaimedAlert:
    """A row this replica leased for sending; `reconcile_since` set means: look first.

    `probe` marks the one row sent to a target whose breaker is open, to learn whether it is
    back; `due_since` is when the alert first became due (the retry horizon's start).
    """

    id: int
    dedup_key: str
    kind: str  # an AlertKind, as stored
    channel: str  # a Channel, as stored
    destination: str
    payload_json: str
    attempts: int
    lease_epoch: int
    reconcile_since: datetime | None
    parent_ref: str | None  # provider_ref of the parent (thread), if it was sent
    watchlist_id: str = ""
    due_since: datetime | None = None
    probe: bool = False


@dataclass(frozen=True, slots=True)
class AlertView:
    id: int
    kind: str  # an AlertKind, as stored
    watchlist_id: str
    channel: str  # a Channel, as stored
    destination: str
    status: AlertStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None
    title: str
    parent_alert_id: int | None


def short_hash(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:24]


def destination_key(channel: str, destination: str) -> str:
    return f"{channel}:{destination}"[:400]


def _insert(session: Session, table: type, values: dict[str, object], returning: bool) -> object:
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table).values(**values).on_conflict_do_nothing()
    if returning:
        return session.execute(stmt.returning(table.id)).scalar_one_or_none()  # type: ignore[attr-defined]
    session.execute(stmt)
    return None


# --------------------------------------------------------------------------- enqueue


def enqueue(session: Session, alert: NewAlert, *, now: datetime) -> int | None:
    """Write one row; None when its dedup_key exists already (a re-run never doubles)."""
    values: dict[str, object] = {
        "dedup_key": alert.dedup_key[:400],
        "kind": alert.kind,
        "article_id": alert.article_id,
        "story_id": alert.story_id,
        "source_id": alert.source_id,
        "watchlist_id": alert.watchlist_id[:200],
        "channel": alert.channel,
        "destination": alert.destination[:400],
        "status": alert.status,
        "payload_json": alert.payload_json,
        "parent_alert_id": alert.parent_alert_id,
        "digest_at": alert.digest_at,
        "attempts": 0,
        "next_attempt_at": alert.digest_at or now,
        "first_due_at": alert.digest_at or now,
        "lease_epoch": 0,
        "created_at": now,
    }
    row_id = _insert(session, AlertRow, values, returning=True)
    if alert.channel == Channel.SLACK:
        ensure_destination(session, destination_key(alert.channel, alert.destination), now)
    return int(row_id) if isinstance(row_id, int) else None


def ensure_destination(session: Session, key: str, now: datetime) -> None:
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    session.execute(
        module.insert(DestinationRow)
        .values(key=key, not_before=now, updated_at=now)
        .on_conflict_do_nothing()
    )


def find_first_alert(
    session: Session,
    *,
    watchlist_id: str,
    channel: str,
    destination: str,
    article_id: int | None = None,
    story_id: int | None = None,
) -> int | None:
    """The top-level alert a follow-up belongs under (by article, else by story)."""
    if article_id is None and story_id is None:
        return None
    where = [
        col(AlertRow.watchlist_id) == watchlist_id,
        col(AlertRow.channel) == channel,
        col(AlertRow.destination) == destination,
        col(AlertRow.kind) == AlertKind.ALERT,
    ]
    if article_id is not None:
        where.append(col(AlertRow.article_id) == article_id)
    else:
        where.append(col(AlertRow.story_id) == story_id)
    found = session.scalar(select(col(AlertRow.id)).where(*where).order_by(col(AlertRow.id)))
    return int(found) if found is not None else None


def story_alerted(session: Session, *, watchlist_id: str, story_id: int) -> bool:
    """Did this story already alert (or enter a digest) for this watchlist, anywhere?"""
    found = session.scalar(
        select(col(AlertRow.id))
        .where(
            col(AlertRow.watchlist_id) == watchlist_id,
            col(AlertRow.story_id) == story_id,
            col(AlertRow.kind) == AlertKind.ALERT,
        )
        .limit(1)
    )
    return found is not None


# --------------------------------------------------------------------------- claim / complete


def _due(now: datetime) -> Any:
    return or_(
        and_(col(AlertRow.status).in_(QUEUED), col(AlertRow.next_attempt_at) <= now),
        and_(col(AlertRow.status) == AlertStatus.SENDING, col(AlertRow.lease_until) < now),
    )


def _candidates(session: Session, where: Sequence[Any], limit: int) -> list[Any]:
    return list(
        session.execute(
            select(
                col(AlertRow.id),
                col(AlertRow.parent_alert_id),
                col(AlertRow.attempt_started_at),
            )
            .where(*where)
            .order_by(col(AlertRow.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
    )


def _eligible(session: Session, rows: Sequence[Any], skip: set[int]) -> list[Pick]:
    """Rows ready to go: not in flight here, and any parent (the thread) already sent."""
    rows = [r for r in rows if int(r[0] or 0) not in skip]
    parents = {int(r[1]) for r in rows if r[1] is not None}
    state: dict[int, tuple[str, str | None]] = {}
    if parents:
        for pid, status, ref in session.execute(
            select(col(AlertRow.id), col(AlertRow.status), col(AlertRow.provider_ref)).where(
                col(AlertRow.id).in_(parents)
            )
        ):
            state[int(pid or 0)] = (str(status), ref)
    out = []
    for row_id, parent_id, started in rows:
        ref = None
        if parent_id is not None:
            status, ref = state.get(int(parent_id), (AlertStatus.DEAD, None))
            if status not in SETTLED:
                continue  # the thread does not exist yet
        out.append((int(row_id or 0), as_utc_or_none(started), ref))
    return out


Pick = tuple[int, datetime | None, str | None]  # (row id, maybe-sent since, parent's ref)


def claim(
    session: Session,
    *,
    owner: str,
    now: datetime,
    lease_seconds: float,
    limit: int,
    slack_interval: float = 1.0,
    exclude: Iterable[int] = (),
    breakers: Mapping[str, str] | None = None,
) -> list[ClaimedAlert]:
    """Lease due rows: waiting ones whose time came, and `sending` ones whose lease expired.

    Slack rows are paced per channel: the channel's `destination` row is locked with SKIP
    LOCKED and moved `slack_interval` ahead, so replicas together send about one message per
    interval per channel, and a backlog in one channel never holds up another. Follow-ups wait
    until their parent is sent. `breakers` maps a channel to its target's breaker key: while
    that breaker is open the channel's rows stay where they are, and when its probe time came
    exactly one of them is claimed, as the probe.
    """
    skip = set(exclude)
    due = _due(now)
    gates = dict(breakers or {})
    blocked, probing = _gated_channels(session, gates, now)
    paced = slack_interval > 0
    where = [due]
    if paced:
        where.append(col(AlertRow.channel) != Channel.SLACK)
    if blocked | probing:
        where.append(col(AlertRow.channel).not_in(sorted(blocked | probing)))
    chosen: list[Pick] = _eligible(session, _candidates(session, where, limit * 2), skip)[:limit]
    probes: set[int] = set()
    for channel in sorted(probing):
        if len(chosen) >= limit or (paced and channel == Channel.SLACK):
            continue  # paced Slack probes through its channels below
        ready = _eligible(
            session, _candidates(session, [due, col(AlertRow.channel) == channel], 20), skip
        )
        if ready and _take_probe(session, gates[channel], now, lease_seconds):
            chosen.append(ready[0])
            probes.add(ready[0][0])
    if paced and Channel.SLACK not in blocked and len(chosen) < limit:
        probe = Channel.SLACK in probing
        destinations = sorted(
            set(
                session.scalars(
                    select(col(AlertRow.destination))
                    .where(due, col(AlertRow.channel) == Channel.SLACK)
                    .distinct()
                )
            )
        )
        for destination in destinations:
            if len(chosen) >= limit:
                break
            key = destination_key(Channel.SLACK, destination)
            if not _existing_destinations(session, [key]):
                ensure_destination(session, key, now)
            free = session.scalar(
                select(col(DestinationRow.key))
                .where(col(DestinationRow.key) == key, col(DestinationRow.not_before) <= now)
                .with_for_update(skip_locked=True)
            )
            if free is None:
                continue  # paced, or another replica is claiming this channel right now
            rows = _candidates(
                session,
                [
                    due,
                    col(AlertRow.channel) == Channel.SLACK,
                    col(AlertRow.destination) == destination,
                ],
                20,
            )
            ready = _eligible(session, rows, skip)
            if not ready:
                continue
            if probe and not _take_probe(session, gates[Channel.SLACK], now, lease_seconds):
                break  # another replica is probing Slack right now
            chosen.append(ready[0])
            session.execute(
                update(DestinationRow)
                .where(col(DestinationRow.key) == key)
                .values(not_before=now + timedelta(seconds=slack_interval), updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if probe:
                probes.add(ready[0][0])
                break  # one probe, then wait for its answer
    if not chosen:
        return []
    ids = [c[0] for c in chosen]
    claimed = session.execute(
        update(AlertRow)
        .where(col(AlertRow.id).in_(ids))
        .values(
            status=AlertStatus.SENDING,
            attempts=col(AlertRow.attempts) + 1,
            # The earliest attempt that may have landed stays: reconciliation looks from there.
            attempt_started_at=func.coalesce(col(AlertRow.attempt_started_at), now),
            lease_owner=owner,
            lease_until=now + timedelta(seconds=lease_seconds),
            lease_epoch=col(AlertRow.lease_epoch) + 1,
        )
        .returning(
            col(AlertRow.id),
            col(AlertRow.dedup_key),
            col(AlertRow.kind),
            col(AlertRow.channel),
            col(AlertRow.destination),
            col(AlertRow.payload_json),
            col(AlertRow.attempts),
            col(AlertRow.lease_epoch),
            col(AlertRow.watchlist_id),
            col(AlertRow.first_due_at),
            col(AlertRow.created_at),
        )
        .execution_options(synchronize_session=False)
    ).all()
    extra = {c[0]: c for c in chosen}
    out = [
        ClaimedAlert(
            id=int(r[0] or 0),
            dedup_key=str(r[1]),
            kind=str(r[2]),
            channel=str(r[3]),
            destination=str(r[4]),
            payload_json=str(r[5]),
            attempts=int(r[6]),
            lease_epoch=int(r[7]),
            reconcile_since=extra[int(r[0] or 0)][1],
            parent_ref=extra[int(r[0] or 0)][2],
            watchlist_id=str(r[8]),
            due_since=as_utc_or_none(r[9] or r[10]),
            probe=int(r[0] or 0) in probes,
        )
        for r in claimed
    ]
    return sorted(out, key=lambda c: c.id)


def _gated_channels(
    session: Session, breakers: Mapping[str, str], now: datetime
) -> tuple[set[str], set[str]]:
    """Channels whose breaker is open: (not yet due for a probe, due for one)."""
    if not breakers:
        return set(), set()
    until = {
        str(key): as_utc_or_none(at)
        for key, at in session.execute(
            select(col(BreakerRow.key), col(BreakerRow.open_until)).where(
                col(BreakerRow.key).in_(sorted(set(breakers.values())))
            )
        )
    }
    blocked: set[str] = set()
    probing: set[str] = set()
    for channel, key in breakers.items():
        at = until.get(key)
        if at is None:
            continue
        (blocked if at > now else probing).add(channel)
    return blocked, probing


def _take_probe(session: Session, key: str, now: datetime, lease_seconds: float) -> bool:
    """Win the one probe of an open breaker: nobody else probes until our lease runs out."""
    result = session.execute(
        update(BreakerRow)
        .where(
            col(BreakerRow.key) == key,
            col(BreakerRow.open_until).is_not(None),
            col(BreakerRow.open_until) <= now,
        )
        .values(open_until=now + timedelta(seconds=lease_seconds), updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def _existing_destinations(session: Session, wanted: Iterable[str]) -> set[str]:
    return set(
        session.scalars(select(col(DestinationRow.key)).where(col(DestinationRow.key).in_(wanted)))
    )


def _fenced(alert: ClaimedAlert, owner: str) -> list[object]:
    return [
        col(AlertRow.id) == alert.id,
        col(AlertRow.lease_owner) == owner,
        col(AlertRow.lease_epoch) == alert.lease_epoch,
        col(AlertRow.status) == AlertStatus.SENDING,
    ]


def complete_sent(
    session: Session, alert: ClaimedAlert, *, owner: str, provider_ref: str, now: datetime
) -> bool:
    """Mark sent if our lease still holds; False means another replica owns the row now."""
    result = session.execute(
        update(AlertRow)
        .where(*_fenced(alert, owner))  # type: ignore[arg-type]
        .values(
            status=AlertStatus.SENT,
            provider_ref=provider_ref[:400],
            thread_ref=alert.parent_ref,
            sent_at=now,
            lease_owner=None,
            lease_until=None,
            attempt_started_at=None,
            last_error=None,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def complete_retry(
    session: Session,
    alert: ClaimedAlert,
    *,
    owner: str,
    at: datetime,
    error: str,
    maybe_sent: bool,
    count_attempt: bool = True,
) -> bool:
    """Put the row back for a later attempt; `maybe_sent` keeps it marked for reconciliation."""
    values: dict[str, object] = {
        "status": AlertStatus.RETRY,
        "next_attempt_at": at,
        "last_error": error[:2000],
        "lease_owner": None,
        "lease_until": None,
    }
    if not maybe_sent:
        values["attempt_started_at"] = None
    if not count_attempt:
        values["attempts"] = col(AlertRow.attempts) - 1
    result = session.execute(
        update(AlertRow)
        .where(*_fenced(alert, owner))  # type: ignore[arg-type]
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def complete_dead(
    session: Session, alert: ClaimedAlert, *, owner: str, error: str, now: datetime
) -> bool:
    result = session.execute(
        update(AlertRow)
        .where(*_fenced(alert, owner))  # type: ignore[arg-type]
        .values(
            status=AlertStatus.DEAD,
            dead_at=now,
            last_error=error[:2000],
            lease_owner=None,
            lease_until=None,
            attempt_started_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def hold_destination(session: Session, channel: str, destination: str, until: datetime) -> None:
    """Persist a provider's Retry-After for the whole channel (shared by replicas)."""
    key = destination_key(channel, destination)
    ensure_destination(session, key, until)
    session.execute(
        update(DestinationRow)
        .where(col(DestinationRow.key) == key, col(DestinationRow.not_before) < until)
        .values(not_before=until, updated_at=until)
        .execution_options(synchronize_session=False)
    )


def release(
    session: Session, owner: str, ids: Iterable[int] | None = None, *, now: datetime
) -> int:
    """Give rows back at shutdown; `attempt_started_at` stays, so they are reconciled first."""
    stmt = update(AlertRow).where(
        col(AlertRow.lease_owner) == owner, col(AlertRow.status) == AlertStatus.SENDING
    )
    id_list = list(ids or [])
    if id_list:
        stmt = stmt.where(col(AlertRow.id).in_(id_list))
    result = session.execute(
        stmt.values(
            status=AlertStatus.RETRY, next_attempt_at=now, lease_owner=None, lease_until=None
        ).execution_options(synchronize_session=False)
    )
    return result.rowcount  # type: ignore[attr-defined, no-any-return]


def unclaim(session: Session, claims: Sequence[ClaimedAlert], *, owner: str, now: datetime) -> int:
    """Give back rows that were claimed but never sent, exactly as they were."""
    done = 0
    for alert in claims:
        result = session.execute(
            update(AlertRow)
            .where(*_fenced(alert, owner))  # type: ignore[arg-type]
            .values(
                status=AlertStatus.RETRY,
                next_attempt_at=now,
                attempt_started_at=alert.reconcile_since,
                attempts=col(AlertRow.attempts) - 1,
                lease_owner=None,
                lease_until=None,
            )
            .execution_options(synchronize_session=False)
        )
        done += result.rowcount  # type: ignore[attr-defined]
    return done


# --------------------------------------------------------------------------- digests


@dataclass(frozen=True, slots=True)
class HeldItem:
    id: int
    watchlist_id: str
    channel: str
    destination: str
    digest_at: datetime
    payload_json: str


def due_digest_items(session: Session, now: datetime, limit: int = 5000) -> list[HeldItem]:
    rows = session.execute(
        select(
            col(AlertRow.id),
            col(AlertRow.watchlist_id),
            col(AlertRow.channel),
            col(AlertRow.destination),
            col(AlertRow.digest_at),
            col(AlertRow.payload_json),
        )
        .where(col(AlertRow.status) == AlertStatus.HELD, col(AlertRow.digest_at) <= now)
        .order_by(col(AlertRow.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [
        HeldItem(
            int(r[0] or 0), str(r[1]), str(r[2]), str(r[3]), as_utc_or_none(r[4]) or now, str(r[5])
        )
        for r in rows
    ]


def mark_digested(session: Session, ids: Sequence[int], digest_id: int) -> None:
    session.execute(
        update(AlertRow)
        .where(col(AlertRow.id).in_(list(ids)), col(AlertRow.status) == AlertStatus.HELD)
        .values(status=AlertStatus.DIGESTED, parent_alert_id=digest_id)
        .execution_options(synchronize_session=False)
    )


# --------------------------------------------------------------------------- inspection


@dataclass(frozen=True, slots=True)
class PlannedRow:
    channel: str
    destination: str
    status: AlertStatus
    payload_json: str


def rows_for_poll(session: Session, *, source_id: str, created_at: datetime) -> list[PlannedRow]:
    """The rows one poll wrote (same source, same transaction time)."""
    return [
        PlannedRow(str(r[0]), str(r[1]), AlertStatus(r[2]), str(r[3]))
        for r in session.execute(
            select(
                col(AlertRow.channel),
                col(AlertRow.destination),
                col(AlertRow.status),
                col(AlertRow.payload_json),
            )
            .where(col(AlertRow.source_id) == source_id, col(AlertRow.created_at) == created_at)
            .order_by(col(AlertRow.id))
        )
    ]


def list_alerts(
    session: Session, *, statuses: Sequence[AlertStatus | str] = (), limit: int = 50
) -> list[AlertView]:
    stmt = select(AlertRow).order_by(col(AlertRow.id).desc()).limit(limit)
    if statuses:
        stmt = stmt.where(col(AlertRow.status).in_(list(statuses)))
    out = []
    for row in session.scalars(stmt):
        try:
            title = str(json.loads(row.payload_json).get("title") or "")
        except (ValueError, AttributeError):
            title = ""
        out.append(
            AlertView(
                id=int(row.id or 0),
                kind=row.kind,
                watchlist_id=row.watchlist_id,
                channel=row.channel,
                destination=row.destination,
                status=AlertStatus(row.status),
                attempts=row.attempts,
                created_at=as_utc_or_none(row.created_at) or row.created_at,
                next_attempt_at=as_utc_or_none(row.next_attempt_at) or row.next_attempt_at,
                sent_at=as_utc_or_none(row.sent_at),
                last_error=row.last_error,
                title=title,
                parent_alert_id=row.parent_alert_id,
            )
        )
    return out


def retry_alerts(
    session: Session, *, ids: Sequence[int] = (), dead: bool = False, now: datetime
) -> int:
    """Send again: dead rows (all with `dead`, or the given ids whatever their final state)."""
    stmt = update(AlertRow)
    if dead:
        stmt = stmt.where(col(AlertRow.status) == AlertStatus.DEAD)
    else:
        stmt = stmt.where(
            col(AlertRow.id).in_(list(ids)),
            col(AlertRow.status).in_((AlertStatus.DEAD, AlertStatus.SENT, AlertStatus.RETRY)),
        )
    result = session.execute(
        stmt.values(
            status=AlertStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            first_due_at=now,  # a fresh retry horizon
            dead_at=None,
            attempt_started_at=None,
            last_error=None,
            lease_owner=None,
            lease_until=None,
        ).execution_options(synchronize_session=False)
    )
    return result.rowcount  # type: ignore[attr-defined, no-any-return]


# --------------------------------------------------------------------------- a poll's rows


def enqueue_thread(
    session: Session,
    top: NewAlert,
    followups: Sequence[NewAlert],
    *,
    now: datetime,
) -> int:
    """Write a top-level alert and the follow-ups that go under it (same-poll copies of its
    story); returns how many rows were written. When the top-level row exists already (an
    earlier run of this poll wrote it), the follow-ups go under that one."""
    row_id = enqueue(session, top, now=now)
    written = 1
    if row_id is None:
        row_id = find_first_alert(
            session,
            watchlist_id=top.watchlist_id,
            channel=top.channel,
            destination=top.destination,
            article_id=top.article_id,
        )
        written = 0
    for followup in followups:
        written += enqueue(session, replace(followup, parent_alert_id=row_id), now=now) is not None
    return written


# --------------------------------------------------------------------------- the dispatcher
# Each in a short transaction of its own, fenced by the lease where it completes a claim.


@dataclass(frozen=True, slots=True)
class DueAlert:
    """A queued row whose time came (what a dry run shows)."""

    id: int
    channel: str
    destination: str
    payload_json: str


def claim_due(
    engine: Engine,
    *,
    owner: str,
    now: datetime,
    lease_seconds: float,
    limit: int,
    slack_interval: float = 1.0,
    exclude: Iterable[int] = (),
    breakers: Mapping[str, str] | None = None,
) -> list[ClaimedAlert]:
    """`claim` in its own transaction."""
    with Session(engine) as session, session.begin():
        return claim(
            session,
            owner=owner,
            now=now,
            lease_seconds=lease_seconds,
            limit=limit,
            slack_interval=slack_interval,
            exclude=exclude,
            breakers=breakers,
        )


def channel_ref(engine: Engine, destination: str) -> str | None:
    """The Slack channel id learned from an earlier post to `destination`, if any."""
    key = destination_key(Channel.SLACK, destination)
    with Session(engine) as session:
        return session.scalar(
            select(col(DestinationRow.channel_ref)).where(col(DestinationRow.key) == key)
        )


def mark_sent(
    engine: Engine, alert: ClaimedAlert, *, owner: str, provider_ref: str, now: datetime
) -> bool:
    """`complete_sent`; a Slack reference ("<channel id> <ts>") also teaches the destination
    its channel id, for later lookups."""
    with Session(engine) as session, session.begin():
        ok = complete_sent(session, alert, owner=owner, provider_ref=provider_ref, now=now)
        if ok and alert.channel == Channel.SLACK and " " in provider_ref:
            channel_id = provider_ref.split(" ", 1)[0]
            session.execute(
                update(DestinationRow)
                .where(
                    col(DestinationRow.key) == destination_key(Channel.SLACK, alert.destination),
                    col(DestinationRow.channel_ref).is_(None),
                )
                .values(channel_ref=channel_id[:100])
                .execution_options(synchronize_session=False)
            )
    return ok


def sent_ref(engine: Engine, alert_id: int) -> str | None:
    """The provider reference of a row recorded as sent, else None: whether an earlier attempt
    to record a completion committed after all (its error came after the COMMIT)."""
    with Session(engine) as session:
        return session.scalar(
            select(col(AlertRow.provider_ref)).where(
                col(AlertRow.id) == alert_id, col(AlertRow.status) == AlertStatus.SENT
            )
        )


def retry_later(
    engine: Engine,
    alert: ClaimedAlert,
    *,
    owner: str,
    at: datetime,
    error: str,
    maybe_sent: bool,
    count_attempt: bool = True,
    hold_channel: bool = False,
) -> bool:
    """`complete_retry`; with `hold_channel` the whole destination also waits until `at` (a
    provider's Retry-After, shared by replicas)."""
    with Session(engine) as session, session.begin():
        if hold_channel:
            hold_destination(session, alert.channel, alert.destination, at)
        return complete_retry(
            session,
            alert,
            owner=owner,
            at=at,
            error=error,
            maybe_sent=maybe_sent,
            count_attempt=count_attempt,
        )


def mark_dead(
    engine: Engine, alert: ClaimedAlert, *, owner: str, error: str, now: datetime
) -> bool:
    with Session(engine) as session, session.begin():
        return complete_dead(session, alert, owner=owner, error=error, now=now)


def give_back(
    engine: Engine, claims: Sequence[ClaimedAlert], *, owner: str, now: datetime
) -> int:
    """`unclaim` in its own transaction."""
    with Session(engine) as session, session.begin():
        return unclaim(session, claims, owner=owner, now=now)


def release_claims(
    engine: Engine, owner: str, ids: Iterable[int] | None = None, *, now: datetime
) -> int:
    """`release` in its own transaction (every row `owner` is sending without `ids`)."""
    with Session(engine) as session, session.begin():
        return release(session, owner, ids, now=now)


# --------------------------------------------------------------------------- breakers


@dataclass(frozen=True, slots=True)
class BreakerState:
    """A target's breaker; `changed` says this failure opened it or counted as a failed probe."""

    key: str
    channel: str
    failures: int
    open_until: datetime | None
    opened_at: datetime | None
    last_error: str | None
    changed: bool = False


def breaker_failed(
    engine: Engine,
    key: str,
    *,
    channel: str,
    probe: bool,
    now: datetime,
    error: str,
    delay: Callable[[int], float],
) -> BreakerState:
    """Record that `key` looked down: a closed breaker opens (`delay(1)` seconds), a failed
    probe keeps it open `delay(failures)` longer; a send claimed before it opened (not the
    probe) changes nothing, so a batch failing at once counts as one failure."""
    with Session(engine) as session, session.begin():
        _insert(
            session,
            BreakerRow,
            {"key": key[:400], "channel": channel, "failures": 0, "updated_at": now},
            returning=False,
        )
        failures, open_until, opened_at, last_error = session.execute(
            select(
                col(BreakerRow.failures),
                col(BreakerRow.open_until),
                col(BreakerRow.opened_at),
                col(BreakerRow.last_error),
            )
            .where(col(BreakerRow.key) == key[:400])
            .with_for_update()
        ).one()
        is_open = open_until is not None
        if is_open and not probe:
            return BreakerState(
                key,
                channel,
                int(failures),
                as_utc_or_none(open_until),
                as_utc_or_none(opened_at),
                last_error,
            )
        count = int(failures) + 1 if is_open else 1
        until = now + timedelta(seconds=max(0.0, delay(count)))
        since = as_utc_or_none(opened_at) if is_open else now
        session.execute(
            update(BreakerRow)
            .where(col(BreakerRow.key) == key[:400])
            .values(
                failures=count,
                open_until=until,
                opened_at=since,
                last_error=error[:2000],
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    return BreakerState(key, channel, count, until, since, error, changed=True)


def close_breaker(engine: Engine, key: str, *, now: datetime) -> BreakerState | None:
    """The target answered: close its breaker; returns what it was, None when it was closed."""
    with Session(engine) as session, session.begin():
        found = session.execute(
            select(
                col(BreakerRow.channel),
                col(BreakerRow.failures),
                col(BreakerRow.open_until),
                col(BreakerRow.opened_at),
                col(BreakerRow.last_error),
            )
            .where(
                col(BreakerRow.key) == key[:400],
                or_(col(BreakerRow.open_until).is_not(None), col(BreakerRow.failures) > 0),
            )
            .with_for_update()
        ).first()
        if found is None:
            return None
        session.execute(
            update(BreakerRow)
            .where(col(BreakerRow.key) == key[:400])
            .values(failures=0, open_until=None, opened_at=None, last_error=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    channel, failures, open_until, opened_at, last_error = found
    return BreakerState(
        key,
        str(channel),
        int(failures),
        as_utc_or_none(open_until),
        as_utc_or_none(opened_at),
        last_error,
    )


def forget_breakers(engine: Engine, current: Mapping[str, str]) -> list[str]:
    """Drop the breakers of `current`'s channels whose key is not the current one (the
    configuration moved to another SMTP server or Slack URL); returns their keys."""
    if not current:
        return []
    with Session(engine) as session, session.begin():
        stale = [
            str(key)
            for key, channel in session.execute(
                select(col(BreakerRow.key), col(BreakerRow.channel)).where(
                    col(BreakerRow.channel).in_(sorted(current))
                )
            )
            if current.get(str(channel)) != key
        ]
        if stale:
            session.execute(
                delete(BreakerRow)
                .where(col(BreakerRow.key).in_(stale))
                .execution_options(synchronize_session=False)
            )
    return stale


@dataclass(frozen=True, slots=True)
class ExpiredAlert:
    """A waiting row given up on because its retry horizon passed while its target was down."""

    id: int
    watchlist_id: str
    channel: str
    destination: str
    error: str


def expire_waiting(
    engine: Engine,
    channel: str,
    *,
    due_before: datetime,
    now: datetime,
    error: str,
    limit: int = 200,
) -> list[ExpiredAlert]:
    """Mark dead the waiting rows of `channel` first due before `due_before` (at most `limit`
    per call): a breaker holds them back, so no attempt of their own would ever say so."""
    due_since = func.coalesce(col(AlertRow.first_due_at), col(AlertRow.created_at))
    with Session(engine) as session, session.begin():
        ids = list(
            session.scalars(
                select(col(AlertRow.id))
                .where(
                    col(AlertRow.channel) == channel,
                    col(AlertRow.status).in_(QUEUED),
                    due_since <= due_before,
                )
                .order_by(col(AlertRow.id))
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if not ids:
            return []
        found = session.execute(
            update(AlertRow)
            .where(col(AlertRow.id).in_(ids), col(AlertRow.status).in_(QUEUED))
            .values(
                status=AlertStatus.DEAD,
                dead_at=now,
                last_error=error[:2000],
                attempt_started_at=None,
                lease_owner=None,
                lease_until=None,
            )
            .returning(col(AlertRow.id), col(AlertRow.watchlist_id), col(AlertRow.destination))
            .execution_options(synchronize_session=False)
        ).all()
    return sorted(
        (ExpiredAlert(int(r[0] or 0), str(r[1]), channel, str(r[2]), error) for r in found),
        key=lambda e: e.id,
    )


DigestPlan = Callable[[Sequence[HeldItem]], Sequence[tuple[NewAlert, Sequence[int]]]]


def build_digests(engine: Engine, now: datetime, plan: DigestPlan) -> int:
    """Fold the held entries whose period ended into digest rows, in one transaction.

    `plan` (pure) turns the due entries into digest rows, each with the ids of the entries it
    lists; every digest written marks its entries `digested`. Returns how many were written.
    """
    built = 0
    with Session(engine) as session, session.begin():
        items = due_digest_items(session, now)
        for digest, members in plan(items):
            digest_id = enqueue(session, digest, now=now)
            if digest_id is not None:
                mark_digested(session, members, digest_id)
                built += 1
    return built


def due_alerts(engine: Engine, now: datetime, limit: int) -> list[DueAlert]:
    """Queued rows whose time came, oldest first, read without claiming anything."""
    with Session(engine) as session:
        rows = session.execute(
            select(
                col(AlertRow.id),
                col(AlertRow.channel),
                col(AlertRow.destination),
                col(AlertRow.payload_json),
            )
            .where(col(AlertRow.status).in_(QUEUED), col(AlertRow.next_attempt_at) <= now)
            .order_by(col(AlertRow.id))
            .limit(limit)
        ).all()
    return [DueAlert(int(r[0] or 0), str(r[1]), str(r[2]), str(r[3])) for r in rows]


# --------------------------------------------------------------------------- the CLI


def read_alerts(
    engine: Engine, *, statuses: Sequence[AlertStatus | str] = (), limit: int = 50
) -> list[AlertView]:
    """`list_alerts` in a session of its own."""
    with Session(engine) as session:
        return list_alerts(session, statuses=statuses, limit=limit)


def requeue(engine: Engine, *, ids: Sequence[int] = (), dead: bool = False, now: datetime) -> int:
    """`retry_alerts` in its own transaction."""
    with Session(engine) as session, session.begin():
        return retry_alerts(session, ids=ids, dead=dead, now=now)


__all__ = [
    "AlertView",
    "BreakerState",
    "ClaimedAlert",
    "DigestPlan",
    "DueAlert",
    "ExpiredAlert",
    "HeldItem",
    "NewAlert",
    "PlannedRow",
    "breaker_failed",
    "build_digests",
    "channel_ref",
    "claim",
    "claim_due",
    "close_breaker",
    "complete_dead",
    "complete_retry",
    "complete_sent",
    "destination_key",
    "due_alerts",
    "due_digest_items",
    "enqueue",
    "enqueue_thread",
    "ensure_destination",
    "expire_waiting",
    "find_first_alert",
    "forget_breakers",
    "give_back",
    "hold_destination",
    "list_alerts",
    "mark_dead",
    "mark_digested",
    "mark_sent",
    "read_alerts",
    "release",
    "release_claims",
    "requeue",
    "retry_alerts",
    "retry_later",
    "rows_for_poll",
    "sent_ref",
    "short_hash",
    "story_alerted",
    "unclaim",
]
