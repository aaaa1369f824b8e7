"""The source aggregate: sync from the sources file, claim with leases, complete fenced.

Claims use `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING` so several
replicas on PostgreSQL share the sources; SQLite drops the locking clause and stays single-replica.
Completions are fenced by `lease_epoch`: a replica that lost its lease writes nothing.

Functions taking a `Session` never commit (the caller owns the transaction); those taking an
`Engine` run in a transaction of their own.

Statements go through the Core tables of `coretables.py` (no SQLModel, no ORM classes): they are
what every `monitor poll --once` runs, and SQLModel's table classes take longer to import than a
poll of hundreds of unchanged feeds takes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from monitor.model import ErrorKind, HtmlSelectors, PollStatus, SourceConfig, SourceKind
from monitor.redact import redact_text, redact_url
from monitor.store.coretables import poll_event as events_table
from monitor.store.coretables import source as table
from monitor.store.coretables import synced_file

#: Poll events kept per source (older ones are deleted as new ones are written).
POLL_EVENTS_KEPT = 100


@dataclass(frozen=True, slots=True)
class ClaimedSource:
    """A source this replica holds a lease on, with what polling it needs."""

    id: str
    name: str
    url: str
    kind: SourceKind
    selectors: HtmlSelectors | None
    every_seconds: int
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    failures: int
    first_poll_done: bool
    lease_epoch: int
    moved_to: str | None = None


@dataclass(frozen=True, slots=True)
class Validators:
    """The conditional-GET validators a 200 answer came with (None: the server sent none)."""

    etag: str | None
    last_modified: str | None


@dataclass(frozen=True, slots=True)
class SourceUpdate:
    """What one poll learned about its source, written by the fenced completion.

    Fields left at their default keep the stored value: `validators` None (a 304 confirms the
    stored ones), `disabled_reason` None, `body_hash` None, `first_poll_done` False and
    `last_new_entries` None. A success (`succeeded`) also sets `last_success_at` and `moved_to`.
    """

    status: PollStatus
    polled_at: datetime
    next_poll_at: datetime
    failures: int
    http_status: int | None = None
    error_kind: ErrorKind | None = None  # with status ERROR: what is stored as the last status
    error: str | None = None  # last_error: the failure, or a parser warning on success
    error_transient: bool | None = None
    succeeded: bool = False
    moved_to: str | None = None
    validators: Validators | None = None
    disabled_reason: str | None = None
    body_hash: str | None = None
    first_poll_done: bool = False
    last_new_entries: int | None = None

    @property
    def last_status(self) -> str:
        """The `last_status` column: the outcome, or the error kind for a failed poll."""
        if self.status == PollStatus.ERROR and self.error_kind is not None:
            return self.error_kind
        return str(self.status)


def _columns(change: SourceUpdate) -> dict[str, object]:
    """The columns of a completion. `last_error` and `moved_to` are stored redacted, whoever
    the caller: they are only ever shown, and polling uses the configured URL, never the move."""
    values: dict[str, object] = {
        "last_status": change.last_status,
        "last_http_status": change.http_status,
        "last_error": redact_text(change.error) if change.error else change.error,
        "error_transient": change.error_transient,
        "failures": change.failures,
        "last_polled_at": change.polled_at,
        "next_poll_at": change.next_poll_at,
        "updated_at": change.polled_at,
    }
    if change.succeeded:
        values["last_success_at"] = change.polled_at
        values["moved_to"] = redact_url(change.moved_to) if change.moved_to else None
    if change.validators is not None:
        values["etag"] = change.validators.etag
        values["last_modified"] = change.validators.last_modified
    if change.disabled_reason is not None:
        values["disabled_reason"] = change.disabled_reason
    if change.body_hash is not None:
        values["body_hash"] = change.body_hash
    if change.first_poll_done:
        values["first_poll_done"] = True
    if change.last_new_entries is not None:
        values["last_new_entries"] = change.last_new_entries
    return values


def _selectors_json(selectors: HtmlSelectors | None) -> str | None:
    if selectors is None:
        return None
    return json.dumps(
        {
            "item": selectors.item,
            "title": selectors.title,
            "link": selectors.link,
            "summary": selectors.summary,
            "date": selectors.date,
        },
        sort_keys=True,
    )


def _selectors(raw: str | None) -> HtmlSelectors | None:
    return HtmlSelectors(**json.loads(raw)) if raw else None


# --- sync from the sources file ----------------------------------------------------------------


def sync_sources(session: Session, configs: Sequence[SourceConfig], now: datetime) -> None:
    """Make the source table follow the file: add, update, and disable what was removed.

    One read of the table, then statements only for what differs (a file that did not change
    since the last run writes nothing)."""
    c = table.c
    rows = {row.id: row for row in session.execute(select(table))}
    wanted = {cfg.id for cfg in configs}
    added: list[dict[str, object]] = []
    for cfg in configs:
        row = rows.get(cfg.id)
        selectors = _selectors_json(cfg.selectors)
        kind = str(cfg.kind)
        if row is None:
            added.append(
                {
                    "id": cfg.id,
                    "name": cfg.name,
                    "url": cfg.url,
                    "kind": kind,
                    "every_seconds": cfg.every_seconds,
                    "selectors_json": selectors,
                    "enabled": cfg.enabled,
                    "next_poll_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            continue
        changed = (row.name, row.url, row.kind, row.every_seconds, row.selectors_json, row.enabled)
        if changed == (cfg.name, cfg.url, kind, cfg.every_seconds, selectors, cfg.enabled):
            continue
        values: dict[str, object] = {
            "name": cfg.name,
            "url": cfg.url,
            "kind": kind,
            "every_seconds": cfg.every_seconds,
            "selectors_json": selectors,
            "enabled": cfg.enabled,
            "updated_at": now,
        }
        next_poll = row.next_poll_at
        if row.url != cfg.url:
            # Another document: forget validators and treat the next poll as a catch-up.
            values |= {
                "etag": None,
                "last_modified": None,
                "body_hash": None,
                "first_poll_done": False,
                "disabled_reason": None,
                "moved_to": None,
                "failures": 0,
            }
            next_poll = now
        if cfg.every_seconds < row.every_seconds:
            next_poll = min(next_poll, now + timedelta(seconds=cfg.every_seconds))
        if next_poll != row.next_poll_at:
            values["next_poll_at"] = next_poll
        session.execute(update(table).where(c.id == cfg.id).values(values))
    if added:
        session.execute(insert(table), added)
    gone = [row_id for row_id, row in rows.items() if row_id not in wanted and row.enabled]
    if gone:
        session.execute(update(table).where(c.id.in_(gone)).values(enabled=False, updated_at=now))


def sync_from_config(
    engine: Engine,
    configs: Sequence[SourceConfig],
    now: datetime,
    *,
    attempts: int = 3,
    digest: str | None = None,
) -> None:
    """`sync_sources` in its own transaction; replicas starting together insert the same new
    sources, so a conflict is read again (up to `attempts` times). `digest` (of the file the
    configs came from) is recorded in the same transaction, for `synced_digest`."""
    for attempt in range(attempts):
        try:
            with Session(engine) as session, session.begin():
                sync_sources(session, configs, now)
                if digest is not None:
                    _record_digest(session, SOURCES_FILE, digest, now)
            return
        except IntegrityError:
            if attempt == attempts - 1:
                raise


#: The `synced_file` row of the sources file.
SOURCES_FILE = "sources"
#: Part of the recorded digest: bump it when `monitor/sources.py` or `sync_sources` maps the
#: same file to other rows, so databases synced by the old rules sync again.
SYNC_RULES = 1


def synced_digest(engine: Engine, name: str = SOURCES_FILE) -> str | None:
    """The digest recorded by the last sync of file `name` (None: never synced this way)."""
    with engine.connect() as conn:
        found = conn.execute(
            select(synced_file.c.digest).where(synced_file.c.name == name)
        ).scalar()
        return None if found is None else str(found)


def _record_digest(session: Session, name: str, digest: str, now: datetime) -> None:
    c = synced_file.c
    done = session.execute(
        update(synced_file).where(c.name == name).values(digest=digest, synced_at=now)
    )
    if done.rowcount == 0:  # type: ignore[attr-defined]
        session.execute(insert(synced_file).values(name=name, digest=digest, synced_at=now))


def has_sources(engine: Engine) -> bool:
    with Session(engine) as session:
        return session.scalar(select(table.c.id).limit(1)) is not None


# --- claim / complete / release -----------------------------------------------------------------


def claim_sources(
    session: Session,
    *,
    owner: str,
    now: datetime,
    lease_seconds: float,
    limit: int,
    force: bool = False,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> list[ClaimedSource]:
    """Lease up to `limit` due sources (all enabled ones with `force`) to `owner`, leaving out
    `exclude` (those a one-shot poll already did)."""
    lease_free = or_(table.c.lease_until.is_(None), table.c.lease_until < now)
    conditions = [table.c.enabled, table.c.disabled_reason.is_(None), lease_free]
    if not force:
        conditions.append(table.c.next_poll_at <= now)
    ids = list(only or [])
    if ids:
        conditions.append(table.c.id.in_(ids))
    skip = list(exclude or [])
    if skip:
        conditions.append(table.c.id.not_in(skip))
    inner = (
        select(table.c.id)
        .where(and_(*conditions))
        .order_by(table.c.next_poll_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(table)
        .where(table.c.id.in_(inner.scalar_subquery()))
        .values(
            lease_owner=owner,
            lease_until=now + timedelta(seconds=lease_seconds),
            lease_epoch=table.c.lease_epoch + 1,
        )
        .returning(*table.c)
    )
    rows = session.execute(stmt).all()
    return [
        ClaimedSource(
            id=row.id,
            name=row.name,
            url=row.url,
            kind=SourceKind(row.kind),
            selectors=_selectors(row.selectors_json),
            every_seconds=row.every_seconds,
            etag=row.etag,
            last_modified=row.last_modified,
            body_hash=row.body_hash,
            failures=row.failures,
            first_poll_done=row.first_poll_done,
            lease_epoch=row.lease_epoch,
            moved_to=row.moved_to,
        )
        for row in sorted(rows, key=lambda r: r.next_poll_at)
    ]


def claim(
    engine: Engine,
    *,
    owner: str,
    now: datetime,
    lease_seconds: float,
    limit: int,
    force: bool = False,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> list[ClaimedSource]:
    """`claim_sources` in its own transaction."""
    with Session(engine) as session, session.begin():
        return claim_sources(
            session,
            owner=owner,
            now=now,
            lease_seconds=lease_seconds,
            limit=limit,
            force=force,
            only=only,
            exclude=exclude,
        )


def renew_lease(session: Session, claim: ClaimedSource, *, owner: str, until: datetime) -> bool:
    """Extend our lease to `until` if it still holds (same owner and fencing epoch); False
    means another replica took the source over. A poll written in several transactions calls
    it at the start of each but the last, which fences the chunk and, on PostgreSQL, locks the
    row until the chunk commits, so no replica can claim the source in the middle of one."""
    stmt = (
        update(table)
        .where(
            table.c.id == claim.id,
            table.c.lease_owner == owner,
            table.c.lease_epoch == claim.lease_epoch,
        )
        .values(lease_until=until)
    )
    return session.execute(stmt).rowcount == 1  # type: ignore[attr-defined, no-any-return]


def complete_source(
    session: Session, claim: ClaimedSource, *, owner: str, update: SourceUpdate
) -> bool:
    """Write a poll's outcome, and count the poll, only if our lease still holds (fencing);
    False means we lost it."""
    if not _complete(session, claim, owner, _columns(update)):
        return False
    _record_events(session, [(claim, update)])
    return True


_QUIET = (PollStatus.NOT_MODIFIED, PollStatus.UNCHANGED)


def _record_events(session: Session, done: Sequence[tuple[ClaimedSource, SourceUpdate]]) -> None:
    """The history the console shows: polls that fetched something or failed, and the first
    quiet poll after failures; quiet polls of a healthy source are only counted."""
    rows = [
        {
            "source_id": claim.id,
            "polled_at": change.polled_at,
            "status": change.last_status,
            "http_status": change.http_status,
            "error": redact_text(change.error) if change.error else None,
            "new_entries": change.last_new_entries,
            "failures": change.failures,
        }
        for claim, change in done
        if change.status not in _QUIET or claim.failures > 0
    ]
    if not rows:
        return
    session.execute(insert(events_table), rows)
    for source_id in {str(r["source_id"]) for r in rows}:
        oldest_kept = (
            select(events_table.c.id)
            .where(events_table.c.source_id == source_id)
            .order_by(events_table.c.id.desc())
            .offset(POLL_EVENTS_KEPT - 1)
            .limit(1)
            .scalar_subquery()
        )
        session.execute(
            delete(events_table).where(
                events_table.c.source_id == source_id, events_table.c.id < oldest_kept
            )
        )


def _complete(
    session: Session, claim: ClaimedSource, owner: str, values: dict[str, object]
) -> bool:
    stmt = (
        update(table)
        .where(
            table.c.id == claim.id,
            table.c.lease_owner == owner,
            table.c.lease_epoch == claim.lease_epoch,
        )
        .values(lease_owner=None, lease_until=None, polls=table.c.polls + 1, **values)
    )
    return session.execute(stmt).rowcount == 1  # type: ignore[attr-defined, no-any-return]


def complete(engine: Engine, claim: ClaimedSource, *, owner: str, update: SourceUpdate) -> bool:
    """`complete_source` in its own transaction."""
    with Session(engine) as session, session.begin():
        return complete_source(session, claim, owner=owner, update=update)


def complete_sources(
    session: Session,
    owner: str,
    outcomes: Sequence[tuple[ClaimedSource, SourceUpdate]],
) -> list[str]:
    """`complete_source` for many sources at once; returns the ids whose lease was lost.

    One executemany per set of columns instead of one statement per source: 1,000 unchanged
    sources take milliseconds, not a second. The batch runs in a savepoint and is trusted only
    when every row matched its fence; otherwise (a lease lost meanwhile, which is rare) it is
    undone and written row by row to learn which ones were fenced off.
    """
    groups: dict[tuple[str, ...], list[tuple[ClaimedSource, dict[str, object]]]] = {}
    for claim, change in outcomes:
        values = _columns(change)
        groups.setdefault(tuple(sorted(values)), []).append((claim, values))
    lost: list[str] = []
    for keys, items in groups.items():
        assigned: dict[str, Any] = {
            "lease_owner": None,
            "lease_until": None,
            "polls": table.c.polls + 1,
        } | {key: bindparam(f"v_{key}") for key in keys}
        stmt = (
            update(table)
            .where(
                table.c.id == bindparam("f_id"),
                table.c.lease_owner == owner,
                table.c.lease_epoch == bindparam("f_epoch"),
            )
            .values(assigned)
        )
        params = [
            {"f_id": claim.id, "f_epoch": claim.lease_epoch}
            | {f"v_{k}": v for k, v in values.items()}
            for claim, values in items
        ]
        savepoint = session.begin_nested()
        written = session.connection().execute(stmt, params).rowcount
        if written == len(items):
            savepoint.commit()
            continue
        savepoint.rollback()
        for claim, values in items:
            if not _complete(session, claim, owner, values):
                lost.append(claim.id)
    _record_events(session, [(c, u) for c, u in outcomes if c.id not in lost])
    return lost


def complete_many(
    engine: Engine, owner: str, outcomes: Sequence[tuple[ClaimedSource, SourceUpdate]]
) -> list[str]:
    """`complete_sources` in one transaction of its own."""
    with Session(engine) as session, session.begin():
        return complete_sources(session, owner, outcomes)


def release_sources(session: Session, owner: str, ids: Iterable[str] | None = None) -> int:
    """Give back unfinished claims at shutdown so other replicas take them at once."""
    stmt = update(table).where(table.c.lease_owner == owner)
    id_list = list(ids or [])
    if id_list:
        stmt = stmt.where(table.c.id.in_(id_list))
    stmt = stmt.values(lease_owner=None, lease_until=None)
    return session.execute(stmt).rowcount  # type: ignore[attr-defined, no-any-return]


def release(engine: Engine, owner: str, ids: Iterable[str] | None = None) -> int:
    """`release_sources` in its own transaction (every claim of `owner` without `ids`)."""
    with Session(engine) as session, session.begin():
        return release_sources(session, owner, ids)


__all__ = [
    "ClaimedSource",
    "SourceUpdate",
    "Validators",
    "claim",
    "claim_sources",
    "complete",
    "complete_many",
    "complete_source",
    "complete_sources",
    "has_sources",
    "release",
    "release_sources",
    "renew_lease",
    "sync_from_config",
    "sync_sources",
    "synced_digest",
]
