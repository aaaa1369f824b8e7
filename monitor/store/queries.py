"""Small storage functions taking a Session; they never commit (the caller owns the transaction).

Claims use `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING` so several
replicas on PostgreSQL share the sources; SQLite drops the locking clause and stays single-replica.
Completions are fenced by `lease_epoch`: a replica that lost its lease writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlmodel import col

from monitor.clock import as_utc_or_none, utcnow
from monitor.model import Article, HtmlSelectors, SourceConfig
from monitor.store.tables import (
    ArticleCopyRow,
    ArticleRevisionRow,
    ArticleRow,
    SourceRow,
)


@dataclass(frozen=True, slots=True)
class ClaimedSource:
    """A source this replica holds a lease on, with what polling it needs."""

    id: str
    name: str
    url: str
    kind: str
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
class StoredArticle:
    id: int
    article: Article
    first_seen: datetime
    source_id: str
    story_id: int | None
    catchup: bool


@dataclass(frozen=True, slots=True)
class KnownEntry:
    article_id: int
    content_hash: str
    revision: int


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


def sync_sources(session: Session, configs: Sequence[SourceConfig], now: datetime) -> None:
    """Make the source table follow the file: add, update, and disable what was removed."""
    rows = {row.id: row for row in session.scalars(select(SourceRow))}
    wanted = {cfg.id for cfg in configs}
    for cfg in configs:
        row = rows.get(cfg.id)
        selectors = _selectors_json(cfg.selectors)
        if row is None:
            session.add(
                SourceRow(
                    id=cfg.id,
                    name=cfg.name,
                    url=cfg.url,
                    kind=cfg.kind,
                    every_seconds=cfg.every_seconds,
                    selectors_json=selectors,
                    enabled=cfg.enabled,
                    next_poll_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
            continue
        changed = (row.name, row.url, row.kind, row.every_seconds, row.selectors_json, row.enabled)
        if changed == (cfg.name, cfg.url, cfg.kind, cfg.every_seconds, selectors, cfg.enabled):
            continue
        if row.url != cfg.url:
            # Another document: forget validators and treat the next poll as a catch-up.
            row.etag = row.last_modified = row.body_hash = None
            row.first_poll_done = False
            row.disabled_reason = row.moved_to = None
            row.failures = 0
            row.next_poll_at = now
        if cfg.every_seconds < row.every_seconds:
            row.next_poll_at = min(row.next_poll_at, now + timedelta(seconds=cfg.every_seconds))
        row.name, row.url, row.kind = cfg.name, cfg.url, cfg.kind
        row.every_seconds, row.selectors_json, row.enabled = (
            cfg.every_seconds,
            selectors,
            cfg.enabled,
        )
        row.updated_at = now
        session.add(row)
    for row_id, row in rows.items():
        if row_id not in wanted and row.enabled:
            row.enabled = False
            row.updated_at = now
            session.add(row)


def claim_sources(
    session: Session,
    *,
    owner: str,
    now: datetime,
    lease_seconds: float,
    limit: int,
    force: bool = False,
    only: Iterable[str] | None = None,
) -> list[ClaimedSource]:
    """Lease up to `limit` due sources (all enabled ones with `force`) to `owner`."""
    lease_free = or_(col(SourceRow.lease_until).is_(None), col(SourceRow.lease_until) < now)
    conditions = [col(SourceRow.enabled), col(SourceRow.disabled_reason).is_(None), lease_free]
    if not force:
        conditions.append(col(SourceRow.next_poll_at) <= now)
    ids = list(only or [])
    if ids:
        conditions.append(col(SourceRow.id).in_(ids))
    inner = (
        select(col(SourceRow.id))
        .where(and_(*conditions))
        .order_by(col(SourceRow.next_poll_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(SourceRow)
        .where(col(SourceRow.id).in_(inner.scalar_subquery()))
        .values(
            lease_owner=owner,
            lease_until=now + timedelta(seconds=lease_seconds),
            lease_epoch=col(SourceRow.lease_epoch) + 1,
        )
        .returning(SourceRow)
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(stmt).scalars().all()
    return [
        ClaimedSource(
            id=row.id,
            name=row.name,
            url=row.url,
            kind=row.kind,
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


def complete_source(
    session: Session, claim: ClaimedSource, *, owner: str, values: dict[str, object]
) -> bool:
    """Write a poll's outcome, and count the poll, only if our lease still holds (fencing);
    False means we lost it."""
    stmt = (
        update(SourceRow)
        .where(
            col(SourceRow.id) == claim.id,
            col(SourceRow.lease_owner) == owner,
            col(SourceRow.lease_epoch) == claim.lease_epoch,
        )
        .values(lease_owner=None, lease_until=None, polls=col(SourceRow.polls) + 1, **values)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount == 1  # type: ignore[attr-defined, no-any-return]


def complete_sources(
    session: Session,
    owner: str,
    outcomes: Sequence[tuple[ClaimedSource, dict[str, object]]],
) -> list[str]:
    """`complete_source` for many sources at once; returns the ids whose lease was lost.

    One executemany per set of columns instead of one statement per source: 1,000 unchanged
    sources take milliseconds, not a second. The batch runs in a savepoint and is trusted only
    when every row matched its fence; otherwise (a lease lost meanwhile, which is rare) it is
    undone and written row by row to learn which ones were fenced off.
    """
    table = SourceRow.__table__  # type: ignore[attr-defined]
    groups: dict[tuple[str, ...], list[tuple[ClaimedSource, dict[str, object]]]] = {}
    for claim, values in outcomes:
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
            if not complete_source(session, claim, owner=owner, values=values):
                lost.append(claim.id)
    return lost


def release_sources(session: Session, owner: str, ids: Iterable[str] | None = None) -> int:
    """Give back unfinished claims at shutdown so other replicas take them at once."""
    stmt = update(SourceRow).where(col(SourceRow.lease_owner) == owner)
    id_list = list(ids or [])
    if id_list:
        stmt = stmt.where(col(SourceRow.id).in_(id_list))
    stmt = stmt.values(lease_owner=None, lease_until=None).execution_options(
        synchronize_session=False
    )
    return session.execute(stmt).rowcount  # type: ignore[attr-defined, no-any-return]


# --- articles ----------------------------------------------------------------------------------


def known_entries(session: Session, source_id: str, keys: Sequence[str]) -> dict[str, KnownEntry]:
    """Entries of this source already stored (as articles) or linked (as copies)."""
    found: dict[str, KnownEntry] = {}
    for chunk in _chunks(keys, 500):
        for row_id, key, digest, revision in session.execute(
            select(
                col(ArticleRow.id),
                col(ArticleRow.entry_key),
                col(ArticleRow.content_hash),
                col(ArticleRow.revision),
            ).where(col(ArticleRow.source_id) == source_id, col(ArticleRow.entry_key).in_(chunk))
        ):
            found[key] = KnownEntry(int(row_id or 0), digest, revision)
        for article_id, key in session.execute(
            select(col(ArticleCopyRow.article_id), col(ArticleCopyRow.entry_key)).where(
                col(ArticleCopyRow.source_id) == source_id,
                col(ArticleCopyRow.entry_key).in_(chunk),
            )
        ):
            # A copy never produces updates of its own: its hash is the original's by definition.
            found.setdefault(key, KnownEntry(article_id, "", 0))
    return found


def articles_by_hash(session: Session, hashes: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(hashes, 500):
        for row_id, digest in session.execute(
            select(func.min(col(ArticleRow.id)), col(ArticleRow.content_hash))
            .where(col(ArticleRow.content_hash).in_(chunk))
            .group_by(col(ArticleRow.content_hash))
        ):
            found[digest] = int(row_id or 0)
    return found


def _insert(session: Session, table: type, values: dict[str, object]) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id, on SQLite and PostgreSQL alike."""
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table).values(**values).on_conflict_do_nothing().returning(table.id)  # type: ignore[attr-defined]
    return session.execute(stmt).scalar_one_or_none()


def insert_article(
    session: Session, article: Article, *, now: datetime, catchup: bool
) -> int | None:
    """Store a new article; None when another writer stored the same (source, key) first."""
    return _insert(
        session,
        ArticleRow,
        {
            "source_id": article.source_id,
            "entry_key": article.entry_key,
            "url": article.url,
            "link": article.link,
            "title": article.title,
            "summary": article.text,
            "published": as_utc_or_none(article.published),
            "first_seen": now,
            "content_hash": article.content_hash,
            "catchup": catchup,
        },
    )


def insert_articles(
    session: Session, articles: Sequence[Article], *, now: datetime, catchup: bool
) -> dict[str, int]:
    """Store new articles in one statement; returns entry_key → id for the rows WE inserted.

    One multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING` instead of a round trip per row:
    rows another replica stored first are simply absent from the answer.
    """
    if not articles:
        return {}
    table = ArticleRow.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    rows = [
        {
            "source_id": a.source_id,
            "entry_key": a.entry_key,
            "url": a.url,
            "link": a.link,
            "title": a.title,
            "summary": a.text,
            "published": as_utc_or_none(a.published),
            "first_seen": now,
            "content_hash": a.content_hash,
            "catchup": catchup,
            "revision": 1,
        }
        for a in articles
    ]
    stmt = module.insert(table).on_conflict_do_nothing().returning(table.c.id, table.c.entry_key)
    found: dict[str, int] = {}
    for chunk in _chunks(rows, 200):  # type: ignore[arg-type]
        for row_id, key in session.execute(stmt, chunk):
            found[key] = int(row_id)
    return found


def insert_copy(session: Session, article_id: int, article: Article, *, now: datetime) -> bool:
    return (
        _insert(
            session,
            ArticleCopyRow,
            {
                "article_id": article_id,
                "source_id": article.source_id,
                "entry_key": article.entry_key,
                "url": article.url,
                "seen_at": now,
            },
        )
        is not None
    )


def record_revision(session: Session, known: KnownEntry, article: Article, *, now: datetime) -> int:
    """Apply an edit (same key, new content) and keep the new text as a revision."""
    revision = known.revision + 1
    session.add(
        ArticleRevisionRow(
            article_id=known.article_id,
            revision=revision,
            title=article.title,
            summary=article.text,
            content_hash=article.content_hash,
            seen_at=now,
        )
    )
    session.execute(
        update(ArticleRow)
        .where(col(ArticleRow.id) == known.article_id)
        .values(
            title=article.title,
            summary=article.text,
            url=article.url,
            content_hash=article.content_hash,
            revision=revision,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return revision


def list_articles(
    session: Session,
    *,
    since: datetime | None,
    source_id: str | None = None,
    limit: int | None = None,
) -> list[StoredArticle]:
    """Stored articles, newest first."""
    stmt = select(ArticleRow).order_by(col(ArticleRow.first_seen).desc(), col(ArticleRow.id).desc())
    if since is not None:
        stmt = stmt.where(col(ArticleRow.first_seen) >= as_utc_or_none(since))
    if source_id:
        stmt = stmt.where(col(ArticleRow.source_id) == source_id)
    if limit:
        stmt = stmt.limit(limit)
    return [to_stored(row) for row in session.scalars(stmt)]


def get_articles(session: Session, ids: Iterable[int]) -> dict[int, StoredArticle]:
    found: dict[int, StoredArticle] = {}
    for chunk in _chunks(list(ids), 500):
        for row in session.scalars(select(ArticleRow).where(col(ArticleRow.id).in_(chunk))):
            found[int(row.id or 0)] = to_stored(row)
    return found


def to_stored(row: ArticleRow) -> StoredArticle:
    return StoredArticle(
        id=int(row.id or 0),
        article=Article(
            source_id=row.source_id,
            entry_key=row.entry_key,
            url=row.url,
            title=row.title,
            text=row.summary,
            published=row.published,
            content_hash=row.content_hash,
            link=row.link,
        ),
        first_seen=row.first_seen,
        source_id=row.source_id,
        story_id=row.story_id,
        catchup=row.catchup,
    )


def list_sources(session: Session) -> list[SourceRow]:
    return list(session.scalars(select(SourceRow).order_by(col(SourceRow.id))))


def _chunks(items: Sequence[str] | Sequence[int], size: int) -> Iterable[list]:  # type: ignore[type-arg]
    seq = list(items)
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


__all__ = [
    "ClaimedSource",
    "KnownEntry",
    "StoredArticle",
    "articles_by_hash",
    "claim_sources",
    "complete_source",
    "get_articles",
    "insert_article",
    "insert_copy",
    "known_entries",
    "list_articles",
    "list_sources",
    "record_revision",
    "release_sources",
    "sync_sources",
    "to_stored",
    "utcnow",
]
