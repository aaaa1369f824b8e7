"""The article aggregate: insert once (ON CONFLICT DO NOTHING), link copies, record revisions.

Functions take a `Session` and never commit (the caller owns the transaction: a poll writes its
articles in its short fenced transactions); `read_articles` and `entries_to_write` run in a
transaction of their own.

An edit is recorded only when it changes the entry in substance (`monitor.normalize.is_edit`:
not for a view counter in the description), and each article keeps its last `KEEP_REVISIONS`
revisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import Engine, Table, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlmodel import col

from monitor.clock import as_utc_or_none
from monitor.model import Article
from monitor.normalize import is_edit
from monitor.store.tables import ArticleCopyRow, ArticleRevisionRow, ArticleRow

#: Revisions kept per article (the newest ones; older rows are deleted as new ones arrive).
#: Follow-ups only need the newest text; the rest is a short audit trail, not an archive.
KEEP_REVISIONS = 10


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


_ARTICLE = cast(Table, ArticleRow.__table__)  # type: ignore[attr-defined]
_COPY = cast(Table, ArticleCopyRow.__table__)  # type: ignore[attr-defined]
# Built once and run on the session's Core connection: building a select and the ORM's
# execution path cost more per poll than the indexed look-ups themselves.
_KNOWN = select(
    _ARTICLE.c.id, _ARTICLE.c.entry_key, _ARTICLE.c.content_hash, _ARTICLE.c.revision
).where(
    _ARTICLE.c.source_id == bindparam("source"),
    _ARTICLE.c.entry_key.in_(bindparam("keys", expanding=True)),
)
_KNOWN_COPIES = select(_COPY.c.article_id, _COPY.c.entry_key).where(
    _COPY.c.source_id == bindparam("source"),
    _COPY.c.entry_key.in_(bindparam("keys", expanding=True)),
)
_BY_HASH = (
    select(func.min(_ARTICLE.c.id), _ARTICLE.c.content_hash)
    .where(_ARTICLE.c.content_hash.in_(bindparam("hashes", expanding=True)))
    .group_by(_ARTICLE.c.content_hash)
)


def known_entries(session: Session, source_id: str, keys: Sequence[str]) -> dict[str, KnownEntry]:
    """Entries of this source already stored (as articles) or linked (as copies)."""
    found: dict[str, KnownEntry] = {}
    conn = session.connection()
    for chunk in _chunks(keys, 500):
        params = {"source": source_id, "keys": chunk}
        for row_id, key, digest, revision in conn.execute(_KNOWN, params):
            found[key] = KnownEntry(int(row_id or 0), digest, revision)
        for article_id, key in conn.execute(_KNOWN_COPIES, params):
            # A copy never produces updates of its own: its hash is the original's by definition.
            found.setdefault(key, KnownEntry(article_id, "", 0))
    return found


def _stored_texts(session: Session, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """Title and text of stored articles, by id."""
    found: dict[int, tuple[str, str]] = {}
    for chunk in _chunks(ids, 500):
        for row_id, title, summary in session.execute(
            select(col(ArticleRow.id), col(ArticleRow.title), col(ArticleRow.summary)).where(
                col(ArticleRow.id).in_(chunk)
            )
        ):
            found[int(row_id or 0)] = (str(title or ""), str(summary or ""))
    return found


def edited_keys(
    session: Session, known: Mapping[str, KnownEntry], articles: Iterable[Article]
) -> set[str]:
    """Keys of known articles whose new version is an edit worth a revision: another content
    hash, and another substance (`is_edit`; the stored text is read only for changed hashes)."""
    changed = [
        a
        for a in articles
        if (k := known.get(a.entry_key)) is not None
        and k.content_hash
        and k.content_hash != a.content_hash
    ]
    if not changed:
        return set()
    texts = _stored_texts(session, [known[a.entry_key].article_id for a in changed])
    return {
        a.entry_key
        for a in changed
        if is_edit(*texts.get(known[a.entry_key].article_id, ("", "")), a)
    }


def entries_to_write(engine: Engine, source_id: str, articles: Sequence[Article]) -> list[Article]:
    """The articles a poll has to write: keys this source never stored, and stored ones edited
    in substance. A short read of its own, before any work is prepared (most entries of most
    polls are known and need nothing); `store_entries` decides again inside the write."""
    with Session(engine) as session:
        known = known_entries(session, source_id, [a.entry_key for a in articles])
        edited = edited_keys(session, known, articles)
    return [a for a in articles if a.entry_key not in known or a.entry_key in edited]


def articles_by_hash(session: Session, hashes: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    conn = session.connection()
    for chunk in _chunks(hashes, 500):
        for row_id, digest in conn.execute(_BY_HASH, {"hashes": chunk}):
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
    """Apply an edit (same key, new content) and keep the new text as a revision; revisions
    older than the last `KEEP_REVISIONS` of the article are deleted."""
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
    session.execute(
        delete(ArticleRevisionRow)
        .where(
            col(ArticleRevisionRow.article_id) == known.article_id,
            col(ArticleRevisionRow.revision) <= revision - KEEP_REVISIONS,
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
    return [_to_stored(row) for row in session.scalars(stmt)]


def read_articles(
    engine: Engine,
    *,
    since: datetime | None,
    source_id: str | None = None,
    limit: int | None = None,
) -> list[StoredArticle]:
    """`list_articles` in a session of its own."""
    with Session(engine) as session:
        return list_articles(session, since=since, source_id=source_id, limit=limit)



def _to_stored(row: ArticleRow) -> StoredArticle:
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


def _chunks(items: Sequence[str] | Sequence[int], size: int) -> Iterable[list]:  # type: ignore[type-arg]
    seq = list(items)
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


__all__ = [
    "KEEP_REVISIONS",
    "KnownEntry",
    "StoredArticle",
    "articles_by_hash",
    "edited_keys",
    "entries_to_write",
    "insert_article",
    "insert_articles",
    "insert_copy",
    "known_entries",
    "list_articles",
    "read_articles",
    "record_revision",
]


class Sighting(StrEnum):
    NEW = "new"  # stored for the first time
    COPY = "copy"  # the same text as an article already stored (from another outlet)
    REVISION = "revision"  # an edited entry: same key, new content


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One entry of a poll after storing: what it turned out to be, and the article it names
    (its own id, or for a copy the id of the original)."""

    sighting: Sighting
    article_id: int
    article: Article


def store_entries(
    session: Session, source_id: str, articles: Sequence[Article], *, now: datetime, catchup: bool
) -> list[StoredEntry]:
    """Store one poll's entries once: new ones inserted, same-text ones linked as copies of the
    first, edited ones recorded as revisions; unchanged entries (numbers-only changes included,
    see `edited_keys`) and rows another replica stored meanwhile are left out. Entry order is
    kept (alerts follow the feed's order)."""
    unique: dict[str, Article] = {}
    for article in articles:
        unique.setdefault(article.entry_key, article)
    known = known_entries(session, source_id, list(unique))
    edited = edited_keys(session, known, unique.values())
    fresh = [a for key, a in unique.items() if key not in known]
    by_hash = articles_by_hash(session, [a.content_hash for a in fresh])
    # Same text twice among the fresh ones (or already stored): the later ones are copies.
    to_insert: dict[str, Article] = {}
    for article in fresh:
        if article.content_hash not in by_hash:
            to_insert.setdefault(article.content_hash, article)
    inserted = insert_articles(session, list(to_insert.values()), now=now, catchup=catchup)
    for article in to_insert.values():
        if article.entry_key in inserted:
            by_hash[article.content_hash] = inserted[article.entry_key]
    out: list[StoredEntry] = []
    for key, article in unique.items():
        entry = known.get(key)
        if entry is None:
            article_id = inserted.get(key)
            if article_id is not None and to_insert.get(article.content_hash) is article:
                out.append(StoredEntry(Sighting.NEW, article_id, article))
                continue
            original = by_hash.get(article.content_hash)
            if original is not None and insert_copy(session, original, article, now=now):
                out.append(StoredEntry(Sighting.COPY, original, article))
            # else: stored meanwhile by another replica
        elif key in edited:
            record_revision(session, entry, article, now=now)
            out.append(StoredEntry(Sighting.REVISION, entry.article_id, article))
    return out
