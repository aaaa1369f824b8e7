"""The story aggregate, a database-backed index: every stored article joins a story (the pure
near-duplicate logic of monitor.dedup decides which).

The index is the `story_band` table: one row per LSH band key of each article, with the
article's time (published, else first seen) in `created_at`. Finding candidates is one indexed
`band IN (…)` query (for a poll's write chunk, one grouped query for all its articles:
`BandIndex`), so nothing is held in memory between transactions and every replica sees the
same index. Candidates are verified against their stored title and text (fingerprints of recently
seen articles are cached per process, keyed by id and checked against the text).

Several replicas (PostgreSQL): two transactions that store copies of one story at the same
moment cannot see each other's rows, so both may start a story. They converge by a
deterministic merge: whenever an article matches articles of several stories it joins the
lowest story id and moves the others into it, and `reconcile_stories` (run periodically, and by
`monitor stories reconcile`) re-checks the first article of every recent story against older
stories and merges the same way. A merged story keeps its row with `article_count = 0`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
from sqlalchemy import Connection, Engine, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from monitor import dedup
from monitor.clock import as_utc
from monitor.model import Article, StoryAssignment
from monitor.store.tables import ArticleRow, Story, StoryBand, StoryVector, StoryVectorBand

_STORY = cast(Table, Story.__table__)  # type: ignore[attr-defined]
_BAND = cast(Table, StoryBand.__table__)  # type: ignore[attr-defined]
_ARTICLE = cast(Table, ArticleRow.__table__)  # type: ignore[attr-defined]
_VECTOR = cast(Table, StoryVector.__table__)  # type: ignore[attr-defined]
_VBAND = cast(Table, StoryVectorBand.__table__)  # type: ignore[attr-defined]
TITLE_MAX = 500


class _FingerprintCache:
    """Fingerprints of recently matched articles, so hot stories are not re-tokenized."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: OrderedDict[int, tuple[str, str, dedup.Fingerprint]] = OrderedDict()

    def get(self, article_id: int, title: str, text: str, when: datetime) -> dedup.Fingerprint:
        hit = self._items.get(article_id)
        if hit is not None and hit[0] == title and hit[1] == text and hit[2].when == when:
            self._items.move_to_end(article_id)
            return hit[2]
        fp = dedup.fingerprint(title, text, when)
        self._items[article_id] = (title, text, fp)
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return fp

    def put(self, article_id: int, title: str, text: str, fp: dedup.Fingerprint) -> None:
        self._items[article_id] = (title, text, fp)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


# 2,048 recent articles: a catch-up of 15,000 new articles held every fingerprint (about 20 KB
# each with its token sequence) and peaked at 580 MB RSS; at 2,048 it peaks at 280 MB, and a
# near-duplicate arrives within the last few thousand articles or is re-read from its row.
_cache = _FingerprintCache(2048)


def article_time(published: datetime | None, seen: datetime) -> datetime:
    """When an article happened, for the window: its publication time, else when we saw it."""
    return as_utc(published) if published is not None else as_utc(seen)


# Statements are built once: constructing SQLAlchemy expressions per call costs more than
# running them on SQLite.
_SHARED = func.count().label("shared")
_FIND = (
    select(_BAND.c.article_id, _BAND.c.story_id, _SHARED)
    .where(
        _BAND.c.band.in_(bindparam("keys", expanding=True)),
        _BAND.c.created_at >= bindparam("lo"),
        _BAND.c.created_at <= bindparam("hi"),
        _BAND.c.article_id != bindparam("self_id"),
    )
    .group_by(_BAND.c.article_id, _BAND.c.story_id)
    .having(func.count() >= dedup.MIN_SHARED)
    .order_by(_SHARED.desc(), _BAND.c.article_id)
    .limit(dedup.MAX_CANDIDATES)
)
_VFIND = (
    select(_VBAND.c.article_id, _VBAND.c.story_id, _SHARED)
    .where(
        _VBAND.c.band.in_(bindparam("keys", expanding=True)),
        _VBAND.c.created_at >= bindparam("lo"),
        _VBAND.c.created_at <= bindparam("hi"),
        _VBAND.c.article_id != bindparam("self_id"),
    )
    .group_by(_VBAND.c.article_id, _VBAND.c.story_id)
    .having(func.count() >= dedup.MIN_SHARED)
    .order_by(_SHARED.desc(), _VBAND.c.article_id)
    .limit(dedup.MAX_CANDIDATES)
)
_VECTORS = select(
    _VECTOR.c.article_id, _VECTOR.c.model, _VECTOR.c.language, _VECTOR.c.vector
).where(_VECTOR.c.article_id.in_(bindparam("ids", expanding=True)))
_ADD_VBANDS_SQL = (
    "INSERT INTO story_vector_band (band, article_id, story_id, created_at) VALUES (?, ?, ?, ?)"
)
_TEXTS = select(
    _ARTICLE.c.id,
    _ARTICLE.c.title,
    _ARTICLE.c.summary,
    _ARTICLE.c.published,
    _ARTICLE.c.first_seen,
).where(_ARTICLE.c.id.in_(bindparam("ids", expanding=True)))
_NEW_STORY = insert(_STORY).returning(_STORY.c.id)
_JOIN_STORY = (
    update(_STORY)
    .where(_STORY.c.id == bindparam("sid"))
    .values(article_count=_STORY.c.article_count + 1, last_seen_at=bindparam("seen"))
    .returning(_STORY.c.key, _STORY.c.first_article_id)
)
_STORY_HEAD = select(_STORY.c.key, _STORY.c.first_article_id).where(_STORY.c.id == bindparam("sid"))
# Joins of a chunk, applied at its end in story order: two ingests joining the same stories in
# different orders deadlocked on PostgreSQL (4 concurrent catch-ups of copied feeds).
_COUNT_JOINS = (
    update(_STORY)
    .where(_STORY.c.id == bindparam("sid"))
    .values(article_count=_STORY.c.article_count + bindparam("n"), last_seen_at=bindparam("seen"))
)
_ADD_BANDS = insert(_BAND)
_ADD_BANDS_SQL = (
    "INSERT INTO story_band (band, article_id, story_id, created_at) VALUES (?, ?, ?, ?)"
)
_NEW_STORY_SQL = (
    "INSERT INTO story (key, first_article_id, title, article_count, created_at, last_seen_at)"
    " VALUES (?, ?, ?, ?, ?, ?) RETURNING id"
)
# One statement for any chunk: the keys come as one JSON array (a VALUES list would make a
# new prepared statement, kept in the driver's cache, for every chunk size).
_PREFETCH_SQL = (
    "WITH k(i, band, lo, hi) AS (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
    " json_extract(value, '$[2]'), json_extract(value, '$[3]') FROM json_each(?))"
    " SELECT k.i, b.article_id, b.story_id, count(*) FROM k"
    " JOIN story_band b ON b.band = k.band AND b.created_at >= k.lo"
    " AND b.created_at <= k.hi AND b.article_id != k.i"
    " GROUP BY k.i, b.article_id, b.story_id HAVING count(*) >= ?"
)
_SET_STORY_SQL = "UPDATE article SET story_id = ? WHERE id = ?"
_SET_STORY = (
    update(_ARTICLE).where(_ARTICLE.c.id == bindparam("aid")).values(story_id=bindparam("sid"))
)


_Texts = dict[int, tuple[str, str, datetime | None, datetime]]


_Rows = list[tuple[int, int, int]]


def _driver(conn: Connection) -> Any:
    """SQLite's own connection (sqlite3) under `conn`, inside its transaction, for the
    per-article statements of the story path: SQLAlchemy's execution context cost about half
    of each (30 of 65 µs for a candidate read)."""
    return conn.connection.driver_connection


def _sqlite_time(text: str) -> datetime:
    """A time as SQLite holds it (UTC text without offset), as the column type reads it
    (`UTCDateTime`): a tenth of the cost of going through the type."""
    return as_utc(datetime.fromisoformat(text))


def _find(
    conn: Connection,
    keys: Sequence[int],
    when: datetime,
    window: timedelta,
    exclude: int,
    vector: VectorKeys | None,
    prefound: _Rows | None,
) -> tuple[_Rows, _Rows, _Texts, dict[int, dedup.Embedding]]:
    """`_candidates`' reads: MinHash rows, SimHash rows, the texts and vectors they name."""
    lo, hi = when - window, when + window
    rows: _Rows = []
    vrows: _Rows = []
    texts: _Texts = {}
    embeddings: dict[int, dedup.Embedding] = {}
    # The vector rules accept nothing further apart than VECTOR_HOURS: a shorter range to scan.
    reach = min(window, timedelta(hours=dedup.VECTOR_HOURS))
    vlo, vhi = when - reach, when + reach
    sqlite = conn.dialect.paramstyle == "qmark"
    if sqlite:  # through the driver: finds, then texts (and vectors) in one query
        if prefound is not None:
            rows = prefound
        else:
            rows = _sqlite_find(conn, "story_band", keys, lo, hi, exclude)
        if vector is not None:
            vrows = _sqlite_find(conn, "story_vector_band", vector.bands, vlo, vhi, exclude)
        ids = list(dict.fromkeys(r[0] for r in (*rows, *vrows)))
        texts, embeddings = _sqlite_texts_vectors(conn, ids, vector.model if vector else None)
        return rows, vrows, texts, embeddings
    if prefound is not None:
        rows = prefound
    elif keys:
        params = {"keys": list(keys), "lo": lo, "hi": hi, "self_id": exclude}
        rows = [(int(a), int(s), int(c)) for a, s, c in conn.execute(_FIND, params)]
    if vector is not None and vector.bands:
        params = {"keys": list(vector.bands), "lo": vlo, "hi": vhi, "self_id": exclude}
        vrows = [(int(a), int(s), int(c)) for a, s, c in conn.execute(_VFIND, params)]
    if not rows and not vrows:
        return rows, vrows, texts, embeddings
    missing = [i for i in dict.fromkeys(r[0] for r in (*rows, *vrows)) if i not in texts]
    if missing:
        texts.update(_texts(conn, missing))
    if vector is not None:
        ids = list(dict.fromkeys(r[0] for r in (*rows, *vrows)))
        embeddings = _embeddings(conn, ids, vector.model)
    return rows, vrows, texts, embeddings


def _candidates(
    session: Session,
    keys: Sequence[int],
    when: datetime,
    window: timedelta,
    exclude: int,
    vector: VectorKeys | None = None,
    prefound: _Rows | None = None,
) -> list[dedup.Candidate]:
    """Earlier articles sharing MinHash keys, and (with `vector`) SimHash keys, in the window;
    each with its fingerprint and, when it has one under the same model, its vector.

    `prefound`: the MinHash look-up already made (`BandIndex.find`: (article, story, keys
    shared) rows), so only texts, vectors and SimHash keys are read here."""
    conn = session.connection()
    rows, vrows, texts, embeddings = _find(conn, keys, when, window, exclude, vector, prefound)
    if not rows and not vrows:
        return []
    shared = {a: c for a, _s, c in rows}
    vshared = {a: c for a, _s, c in vrows}
    if vector is not None:  # vector-only candidates too far by cosine can neither join nor veto
        near = dedup.close_enough(vector.embedding, embeddings)
        vrows = [r for r in vrows if r[0] in shared or r[0] in near]
    stories = {a: s for a, s, _c in (*vrows, *rows)}
    languages: dict[int, frozenset[str]] = {}
    if vector is not None and any(
        e.language != vector.embedding.language for e in embeddings.values()
    ):  # a translation may match: which languages do those stories hold already?
        languages = _story_languages(conn, list(set(stories.values())))
    found: list[dedup.Candidate] = []
    for article_id, story_id in stories.items():
        text = texts.get(article_id)
        if text is None:
            continue
        title, summary, published, first_seen = text
        at = article_time(published, first_seen)
        fp = _cache.get(article_id, title or "", summary or "", at)
        found.append(
            dedup.Candidate(
                article_id,
                story_id,
                shared.get(article_id, 0),
                fp,
                embeddings.get(article_id),
                vshared.get(article_id, 0),
                languages.get(story_id, frozenset()),
            )
        )
    return found


def _story_languages(conn: Connection, story_ids: Sequence[int]) -> dict[int, frozenset[str]]:
    found: dict[int, set[str]] = {}
    rows = conn.execute(
        select(_VECTOR.c.story_id, _VECTOR.c.language)
        .where(_VECTOR.c.story_id.in_(list(story_ids)))
        .distinct()
    )
    for story_id, language in rows:
        found.setdefault(int(story_id), set()).add(str(language))
    return {k: frozenset(v) for k, v in found.items()}


def _texts(conn: Connection, ids: Sequence[int]) -> _Texts:
    return {
        int(r[0]): (str(r[1] or ""), str(r[2] or ""), r[3], r[4])
        for r in conn.execute(_TEXTS, {"ids": list(ids)})
    }


def _embeddings(conn: Connection, ids: Sequence[int], model: str) -> dict[int, dedup.Embedding]:
    """The stored vectors of these articles under `model` (another model's are not comparable)."""
    if not ids:
        return {}
    out: dict[int, dedup.Embedding] = {}
    for aid, stored_model, language, raw in conn.execute(_VECTORS, {"ids": list(ids)}):
        if stored_model == model:
            vec = np.frombuffer(raw, dtype="<f4").astype(np.float32)
            out[int(aid)] = dedup.Embedding(vec, str(language))
    return out


def _sqlite_find(
    conn: Connection,
    table: str,
    keys: Sequence[int],
    lo: datetime,
    hi: datetime,
    exclude: int,
) -> list[tuple[int, int, int]]:
    """`_FIND` (story_band) or `_VFIND` (story_vector_band) through the driver."""
    if not keys:
        return []
    to_db = _BAND.c.created_at.type._cached_bind_processor(conn.dialect)
    marks = ",".join("?" * len(keys))
    sql = (
        f"SELECT article_id, story_id, count(*) AS shared FROM {table}"
        f" WHERE band IN ({marks}) AND created_at >= ? AND created_at <= ? AND article_id != ?"
        " GROUP BY article_id, story_id HAVING count(*) >= ?"
        " ORDER BY shared DESC, article_id LIMIT ?"
    )
    bounds = (to_db(lo), to_db(hi)) if to_db is not None else (lo, hi)
    params = (*keys, *bounds, exclude, dedup.MIN_SHARED, dedup.MAX_CANDIDATES)
    return _driver(conn).execute(sql, params).fetchall()  # type: ignore[no-any-return]


def _sqlite_texts_vectors(
    conn: Connection, ids: Sequence[int], model: str | None
) -> tuple[_Texts, dict[int, dedup.Embedding]]:
    """Candidates' texts and their vectors under `model` (None: texts only), in one driver
    query."""
    if not ids:
        return {}, {}
    marks = ",".join("?" * len(ids))
    sql = (
        "SELECT a.id, a.title, a.summary, a.published, a.first_seen, v.model, v.language,"
        " v.vector FROM article a LEFT JOIN story_vector v ON v.article_id = a.id"
        f" WHERE a.id IN ({marks})"
        if model is not None
        else "SELECT id, title, summary, published, first_seen, NULL, NULL, NULL FROM article"
        f" WHERE id IN ({marks})"
    )
    texts: _Texts = {}
    vectors: dict[int, dedup.Embedding] = {}
    for aid, title, summary, published, seen, vmodel, lang, raw in _driver(conn).execute(
        sql, ids
    ):
        pub = _sqlite_time(published) if published is not None else None
        texts[aid] = (title or "", summary or "", pub, _sqlite_time(seen))
        if raw is not None and vmodel == model:
            vec = np.frombuffer(raw, dtype="<f4").astype(np.float32)
            vectors[aid] = dedup.Embedding(vec, lang)
    return texts, vectors


def _merge(session: Session, keep: int, others: Sequence[int], now: datetime) -> None:
    """Move every article of `others` into story `keep` (the older story)."""
    if not others:
        return
    moved = [
        int(i)
        for i in session.execute(
            select(_ARTICLE.c.id).where(_ARTICLE.c.story_id.in_(list(others)))
        ).scalars()
    ]
    if moved:
        session.execute(update(_ARTICLE).where(_ARTICLE.c.id.in_(moved)).values(story_id=keep))
        session.execute(update(_BAND).where(_BAND.c.article_id.in_(moved)).values(story_id=keep))
        session.execute(update(_VBAND).where(_VBAND.c.article_id.in_(moved)).values(story_id=keep))
        session.execute(
            update(_VECTOR).where(_VECTOR.c.article_id.in_(moved)).values(story_id=keep)
        )
    session.execute(update(_STORY).where(_STORY.c.id.in_(list(others))).values(article_count=0))
    # Recounted, not incremented: a replica may have joined a merged story meanwhile.
    count = (
        select(func.count())
        .select_from(_ARTICLE)
        .where(_ARTICLE.c.story_id == keep)
        .scalar_subquery()
    )
    session.execute(
        update(_STORY).where(_STORY.c.id == keep).values(article_count=count, last_seen_at=now)
    )


def _add_bands(
    conn: Connection, keys: Sequence[int], article_id: int, story_id: int, when: datetime
) -> None:
    """Insert the article's band rows; on SQLite through the driver (half the cost).

    The time is converted by the column's own type once, so the stored text is exactly what
    SQLAlchemy would have written.
    """
    if not keys:
        return
    if conn.dialect.paramstyle == "qmark":
        proc = _BAND.c.created_at.type._cached_bind_processor(conn.dialect)
        at = proc(when) if proc is not None else when
        _driver(conn).executemany(_ADD_BANDS_SQL, [(k, article_id, story_id, at) for k in keys])
        return
    rows = [
        {"band": k, "article_id": article_id, "story_id": story_id, "created_at": when}
        for k in keys
    ]
    conn.execute(_ADD_BANDS, rows)


def _add_vector(
    conn: Connection, vector: VectorKeys, article_id: int, story_id: int, when: datetime
) -> None:
    """Store the article's vector and its SimHash band rows (on SQLite through the driver)."""
    raw = vector.embedding.vector.astype("<f4").tobytes()
    language = vector.embedding.language[:8]
    if conn.dialect.paramstyle == "qmark":
        proc = _VBAND.c.created_at.type._cached_bind_processor(conn.dialect)
        at = proc(when) if proc is not None else when
        driver = _driver(conn)
        driver.execute(
            "INSERT INTO story_vector (article_id, story_id, model, language, vector, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (article_id, story_id, vector.model, language, raw, at),
        )
        if vector.bands:
            driver.executemany(
                _ADD_VBANDS_SQL, [(k, article_id, story_id, at) for k in vector.bands]
            )
        return
    conn.execute(
        insert(_VECTOR),
        {
            "article_id": article_id,
            "story_id": story_id,
            "model": vector.model,
            "language": language,
            "vector": raw,
            "created_at": when,
        },
    )
    if not vector.bands:
        return
    conn.execute(
        insert(_VBAND),
        [
            {"band": k, "article_id": article_id, "story_id": story_id, "created_at": when}
            for k in vector.bands
        ],
    )


@dataclass(frozen=True, slots=True)
class VectorKeys:
    """The vector signal of an article: its embedding (vector and language) under `model`, and
    the SimHash band keys of the vector."""

    model: str
    embedding: dedup.Embedding
    bands: tuple[int, ...]


def vector_keys(model: str, embedding: dedup.Embedding) -> VectorKeys:
    return VectorKeys(model, embedding, dedup.vector_band_keys(embedding.vector))


@dataclass(frozen=True, slots=True)
class StoryKeys:
    """What placing an article in a story needs from the article alone: its time, fingerprint
    and LSH band keys, and its vector signal when it has one. Pure CPU (most of
    `assign_story`'s cost), so the poll makes it before its write transaction; only the
    candidate look-up and the decision run inside."""

    when: datetime
    fingerprint: dedup.Fingerprint
    bands: tuple[int, ...]
    vector: VectorKeys | None = None


def story_keys(
    article: Article,
    now: datetime,
    model: str | None = None,
    embedding: dedup.Embedding | None = None,
) -> StoryKeys:
    """The `StoryKeys` of an article first seen at `now` (pure: no session); with an
    embedding (made under `model`), the vector signal too."""
    when = article_time(article.published, now)
    fp = dedup.fingerprint(article.title, article.text, when)
    vec = vector_keys(model, embedding) if model is not None and embedding is not None else None
    return StoryKeys(when, fp, tuple(dedup.band_keys(fp)), vec)


def story_keys_many(
    articles: Sequence[Article],
    now: datetime,
    model: str | None = None,
    embeddings: Mapping[str, dedup.Embedding] | None = None,
) -> list[StoryKeys]:
    """`story_keys` of one poll's articles, the band keys in one batch (`band_keys_many`);
    `embeddings` by entry key (made under `model`)."""
    found = embeddings or {}
    whens = [article_time(a.published, now) for a in articles]
    fps = [dedup.fingerprint(a.title, a.text, w) for a, w in zip(articles, whens, strict=True)]
    out: list[StoryKeys] = []
    for article, when, fp, bands in zip(
        articles, whens, fps, dedup.band_keys_many(fps), strict=True
    ):
        embedding = found.get(article.entry_key)
        vec = vector_keys(model, embedding) if model is not None and embedding is not None else None
        out.append(StoryKeys(when, fp, bands, vec))
    return out


class BandIndex:
    """The MinHash look-ups and band inserts of one write chunk, made in a few statements
    instead of two per article (they were a quarter of a catch-up's time).

    On SQLite, `prefetch` answers the look-up of every new article of the chunk in one
    grouped query (the per-article query, `_FIND`, with the chunk's keys as a JSON array);
    elsewhere `find` runs `_FIND` per article. Either way `find` adds the chunk's earlier
    articles, whose band rows are held here, so the answer is exactly that of the per-article
    query after per-article inserts. `flush` writes what is held: band rows, the articles'
    story ids and the joins' counts (in story order, so concurrent ingests cannot deadlock on
    story rows). Stories merged meanwhile are followed (`story`), and a merge flushes first so
    its UPDATEs see every row. Lives inside one transaction.
    """

    _KEYS_PER_QUERY = 20_000  # one query's JSON array stays a few hundred KB

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._found: dict[int, _Rows] = {}  # new article: its stored rows
        self._held: dict[int, list[tuple[int, int, datetime]]] = {}  # band: chunk's own rows
        self._pending: list[tuple[int, int, int, Any]] = []  # (band, article, story, at)
        self._moved: dict[int, int] = {}  # merged story: the story it went into
        self._placed: list[tuple[int, int]] = []  # (article, story) not yet written
        self.assigned: dict[int, StoryAssignment] = {}  # article: its story, placed here
        self._joins: dict[int, tuple[int, datetime]] = {}  # story: (articles joined, when)

    @classmethod
    def prefetch(
        cls, session: Session, entries: Sequence[tuple[int, StoryKeys]], window: timedelta
    ) -> BandIndex:
        """The index for a chunk's new articles, (article id, its keys) in write order."""
        index = cls(window)
        conn = session.connection()
        if conn.dialect.paramstyle != "qmark" or not entries:
            return index
        to_db = _BAND.c.created_at.type._cached_bind_processor(conn.dialect)

        def bound(at: datetime) -> Any:
            return to_db(at) if to_db is not None else at

        batch: list[tuple[int, StoryKeys]] = []
        size = 0
        for entry in entries:
            if batch and size + len(entry[1].bands) > cls._KEYS_PER_QUERY:
                index._prefetch_sqlite(conn, batch, bound)
                batch, size = [], 0
            batch.append(entry)
            size += len(entry[1].bands)
        index._prefetch_sqlite(conn, batch, bound)
        return index

    def _prefetch_sqlite(
        self, conn: Connection, batch: Sequence[tuple[int, StoryKeys]], bound: Any
    ) -> None:
        keys: list[tuple[int, int, Any, Any]] = []  # (new article, band, its window) per key
        for article_id, item in batch:
            self._found[article_id] = []
            lo, hi = bound(item.when - self.window), bound(item.when + self.window)
            keys += ((article_id, band, lo, hi) for band in item.bands)
        if not keys:
            return
        rows = conn.exec_driver_sql(_PREFETCH_SQL, (json.dumps(keys), dedup.MIN_SHARED))
        for i, article_id, story_id, shared in rows:
            self._found[int(i)].append((int(article_id), int(story_id), int(shared)))

    def story(self, story_id: int) -> int:
        while story_id in self._moved:
            story_id = self._moved[story_id]
        return story_id

    def find(
        self, conn: Connection, article_id: int, keys: Sequence[int], when: datetime
    ) -> _Rows:
        """`_FIND`'s answer for a new article: (article, story, keys shared) of articles in the
        window sharing at least MIN_SHARED keys, most shared first, then by article id, at
        most MAX_CANDIDATES."""
        lo, hi = when - self.window, when + self.window
        stored = self._found.get(article_id)
        if stored is None:
            params = {"keys": list(keys), "lo": lo, "hi": hi, "self_id": article_id}
            found = {(int(a), int(s)): int(c) for a, s, c in conn.execute(_FIND, params)}
        else:
            found = {(a, s): c for a, s, c in stored}
        held: dict[tuple[int, int], int] = {}
        for band in keys:
            for other, story_id, at in self._held.get(band, ()):
                if other != article_id and lo <= at <= hi:
                    held[(other, story_id)] = held.get((other, story_id), 0) + 1
        found.update((pair, n) for pair, n in held.items() if n >= dedup.MIN_SHARED)
        rows = [(a, self.story(s), c) for (a, s), c in found.items()]
        rows.sort(key=lambda r: (-r[2], r[0]))
        return rows[: dedup.MAX_CANDIDATES]

    def add(
        self, conn: Connection, keys: Sequence[int], article_id: int, story_id: int, when: datetime
    ) -> None:
        """Hold the band rows of an article just placed (written by `flush`)."""
        proc = _BAND.c.created_at.type._cached_bind_processor(conn.dialect)
        at = proc(when) if proc is not None and conn.dialect.paramstyle == "qmark" else when
        for band in keys:
            self._held.setdefault(band, []).append((article_id, story_id, when))
            self._pending.append((band, article_id, story_id, at))

    def place(self, article_id: int, assignment: StoryAssignment) -> None:
        """Hold `article.story_id` of an article just placed (written by `flush`)."""
        self._placed.append((article_id, assignment.story_id))
        self.assigned[article_id] = assignment

    def joined(self, story_id: int, now: datetime) -> None:
        """Count an article into a story (written by `flush`, in story order)."""
        n, _when = self._joins.get(story_id, (0, now))
        self._joins[story_id] = (n + 1, now)

    def merged(self, keep: int, others: Sequence[int]) -> None:
        gone = {o for o in others if o != keep}
        for other in gone:
            self._moved[other] = keep
        # Articles of merged stories are answered from the database again (moved to `keep`).
        self.assigned = {a: s for a, s in self.assigned.items() if s.story_id not in gone}

    def flush(self, conn: Connection) -> None:
        """Write the held story ids of articles and band rows (under the story each is in)."""
        placed, self._placed = self._placed, []
        joins, self._joins = self._joins, {}
        counts: dict[int, tuple[int, datetime]] = {}
        for story_id, (n, when) in joins.items():  # a merged story's joins count in its keeper
            keep = self.story(story_id)
            before, _at = counts.get(keep, (0, when))
            counts[keep] = (before + n, when)
        if counts:
            conn.execute(
                _COUNT_JOINS,
                [{"sid": sid, "n": n, "seen": at} for sid, (n, at) in sorted(counts.items())],
            )
        if placed and conn.dialect.paramstyle == "qmark":
            conn.exec_driver_sql(_SET_STORY_SQL, [(self.story(s), a) for a, s in placed])
        elif placed:
            conn.execute(_SET_STORY, [{"aid": a, "sid": self.story(s)} for a, s in placed])
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        if conn.dialect.paramstyle == "qmark":  # the time is already the column's text
            conn.exec_driver_sql(_ADD_BANDS_SQL, [(b, a, self.story(s), t) for b, a, s, t in rows])
            return
        conn.execute(
            _ADD_BANDS,
            [
                {"band": b, "article_id": a, "story_id": self.story(s), "created_at": t}
                for b, a, s, t in rows
            ],
        )


def assign_story(
    session: Session,
    article_id: int,
    article: Article,
    now: datetime,
    window_hours: float,
    keys: StoryKeys | None = None,
    index: BandIndex | None = None,
) -> StoryAssignment:
    """Put a just-inserted article into a story (joining a near-duplicate's, or a new one).

    Runs inside the caller's transaction; sets `article.story_id` and writes the band rows
    (with `index`, the chunk's `BandIndex`, it looks up there and holds its writes there: the
    caller flushes it). `keys` are the article's `story_keys(article, now)`, made before the
    transaction; without them they are made here.
    """
    now = as_utc(now)
    prepared = keys if keys is not None else story_keys(article, now)
    when, fp, bands, vec = prepared.when, prepared.fingerprint, prepared.bands, prepared.vector
    window = timedelta(hours=window_hours)
    session.flush()  # ORM objects the caller added must be visible to the Core statements
    conn = session.connection()
    rows = index.find(conn, article_id, bands, when) if index is not None else None
    found = _candidates(session, bands, when, window, article_id, vec, rows)
    choice = dedup.choose(fp, found, window, vec.embedding if vec is not None else None)
    if choice.story_id is None:
        key = dedup.story_key(f"{article.source_id}\x1f{article.entry_key}")
        values = {
            "key": key,
            "first_article_id": article_id,
            "title": article.title[:TITLE_MAX],
            "article_count": 1,
            "created_at": now,
            "last_seen_at": now,
        }
        story_id = _new_story(conn, values)
        first, is_new = article_id, True
    else:
        story_id, is_new = choice.story_id, False
        if index is not None and choice.merge:
            index.flush(conn)  # the merge moves band rows: all of them must be written
            index.merged(story_id, choice.merge)
        _merge(session, story_id, choice.merge, now)
        if index is not None:
            row = conn.execute(_STORY_HEAD, {"sid": story_id}).one()
            index.joined(story_id, now)
        else:
            row = conn.execute(_JOIN_STORY, {"sid": story_id, "seen": now}).one()
        key, first = str(row[0]), int(row[1])
    if index is not None:
        index.add(conn, bands, article_id, story_id, when)
    else:
        _add_bands(conn, bands, article_id, story_id, when)
    if vec is not None:
        _add_vector(conn, vec, article_id, story_id, when)
    _cache.put(article_id, article.title, article.text, fp)
    assignment = StoryAssignment(story_id, key, is_new, first)
    if index is not None:
        index.place(article_id, assignment)
    elif conn.dialect.paramstyle == "qmark":
        _driver(conn).execute(_SET_STORY_SQL, (story_id, article_id))
    else:
        conn.execute(_SET_STORY, {"aid": article_id, "sid": story_id})
    return assignment


def _new_story(conn: Connection, values: dict[str, Any]) -> int:
    """Insert a story row; on SQLite through the driver (SQLAlchemy's statement handling cost
    more than the insert), its times converted by the columns' own type."""
    if conn.dialect.paramstyle != "qmark":
        return int(conn.execute(_NEW_STORY, values).scalar_one())
    proc = _STORY.c.created_at.type._cached_bind_processor(conn.dialect)
    at = proc(values["created_at"]) if proc is not None else values["created_at"]
    seen = proc(values["last_seen_at"]) if proc is not None else values["last_seen_at"]
    rows = _driver(conn).execute(
        _NEW_STORY_SQL,
        (
            values["key"],
            values["first_article_id"],
            values["title"],
            values["article_count"],
            at,
            seen,
        ),
    ).fetchall()  # RETURNING: read to the end, so the statement is done before the next
    return int(rows[0][0])


_STORY_OF = (
    select(_STORY.c.id, _STORY.c.key, _STORY.c.first_article_id)
    .join(_ARTICLE, _ARTICLE.c.story_id == _STORY.c.id)
    .where(_ARTICLE.c.id == bindparam("aid"))
)


def story_of_article(session: Session, article_id: int) -> StoryAssignment | None:
    """The story a stored article belongs to, as a later member of it (`is_new` False)."""
    row = session.connection().execute(_STORY_OF, {"aid": article_id}).first()
    if row is None:
        return None
    return StoryAssignment(int(row[0] or 0), str(row[1]), False, int(row[2]))


def reconcile_stories(
    session: Session,
    now: datetime,
    window_hours: float,
    lookback: timedelta,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Merge stories started within `lookback` into older stories they turn out to duplicate.

    This closes the multi-replica race: two transactions that each started a story for copies
    of one event (neither could see the other) are merged into the lower story id here.
    Returns the number of stories merged away. `should_stop` is asked before each story: after
    a large catch-up there are thousands, and a shutdown must not wait for them (the next tick,
    here or on another replica, takes up where this one stopped).
    """
    now = as_utc(now)
    window = timedelta(hours=window_hours)
    recent = session.execute(
        select(_STORY.c.id)
        .where(_STORY.c.created_at >= now - lookback, _STORY.c.article_count > 0)
        .order_by(_STORY.c.id.desc())
    ).scalars()
    merged = 0
    for story_id in list(recent):
        if should_stop():
            break
        # The story's earliest article still in it (the first may have been moved by a merge).
        row = session.execute(
            select(
                _ARTICLE.c.id,
                _ARTICLE.c.title,
                _ARTICLE.c.summary,
                _ARTICLE.c.published,
                _ARTICLE.c.first_seen,
            )
            .where(_ARTICLE.c.story_id == story_id)
            .order_by(_ARTICLE.c.id)
            .limit(1)
        ).first()
        if row is None:
            continue  # merged meanwhile
        first_id = int(row.id)
        when = article_time(row.published, row.first_seen)
        fp = _cache.get(int(first_id), row.title or "", row.summary or "", when)
        keys = dedup.band_keys(fp)
        vec = _stored_vector_keys(session, first_id)
        older = [
            c
            for c in _candidates(session, keys, when, window, int(first_id), vec)
            if c.story_id < story_id
        ]
        choice = dedup.choose(fp, older, window, vec.embedding if vec is not None else None)
        if choice.story_id is not None:
            _merge(session, choice.story_id, [story_id, *choice.merge], now)
            merged += 1 + len(choice.merge)
    return merged


def _stored_vector_keys(session: Session, article_id: int) -> VectorKeys | None:
    row = session.execute(
        select(_VECTOR.c.model, _VECTOR.c.language, _VECTOR.c.vector).where(
            _VECTOR.c.article_id == article_id
        )
    ).first()
    if row is None:
        return None
    vec = np.frombuffer(row.vector, dtype="<f4").astype(np.float32)
    return vector_keys(str(row.model), dedup.Embedding(vec, str(row.language)))


def stored_embedding(session: Session, article_id: int) -> tuple[str, dedup.Embedding] | None:
    """(model, embedding) of a stored article, when it got a vector."""
    found = _stored_vector_keys(session, article_id)
    return (found.model, found.embedding) if found is not None else None


def prune_bands(session: Session, now: datetime, keep: timedelta) -> int:
    """Drop the band rows of articles first seen before `now - keep`.

    A new article is only compared within the window, so older rows are dead weight in the
    index (keep at least twice the window; late-arriving backdated items are the only loss).
    Articles and stories stay. Returns the number of rows deleted.
    """
    cut = session.execute(
        select(func.min(_ARTICLE.c.id)).where(_ARTICLE.c.first_seen >= as_utc(now) - keep)
    ).scalar()
    if cut is None:
        cut = session.execute(select(func.max(_ARTICLE.c.id))).scalar()
        if cut is None:
            return 0
        cut += 1
    result = session.execute(_BAND.delete().where(_BAND.c.article_id < int(cut)))
    vresult = session.execute(_VBAND.delete().where(_VBAND.c.article_id < int(cut)))
    session.execute(_VECTOR.delete().where(_VECTOR.c.article_id < int(cut)))
    return int(getattr(result, "rowcount", 0) or 0) + int(getattr(vresult, "rowcount", 0) or 0)


def stories_tick(
    engine: Engine,
    window_hours: float,
    lookback: timedelta = timedelta(minutes=10),
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[int, int]:
    """The periodic upkeep of the index, for the service's scheduler (blocking: run it in a
    thread), in its own transaction: merge concurrently started stories (PostgreSQL only:
    SQLite's BEGIN IMMEDIATE serializes writers, so a second copy always sees the first), and
    prune band rows older than twice the window. Returns (stories merged, band rows pruned)."""
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        merged = 0
        if engine.dialect.name != "sqlite":
            merged = reconcile_stories(session, now, window_hours, lookback, should_stop)
        pruned = prune_bands(session, now, timedelta(hours=2 * window_hours))
    return merged, pruned


def reconcile_and_prune(
    engine: Engine, now: datetime, window_hours: float, lookback: timedelta
) -> tuple[int, int]:
    """`monitor stories reconcile`: merge (on any database) and prune, in one transaction.
    Returns (stories merged, band rows pruned)."""
    with Session(engine) as session, session.begin():
        merged = reconcile_stories(session, now, window_hours, lookback)
        pruned = prune_bands(session, now, timedelta(hours=2 * window_hours))
    return merged, pruned


def rebuild_index(engine: Engine, since: datetime) -> int:
    """`rebuild_bands` in its own transaction."""
    with Session(engine) as session, session.begin():
        return rebuild_bands(session, since)


def rebuild_bands(session: Session, since: datetime) -> int:
    """Recompute the band rows of articles first seen since `since` from their stored text.

    For after a change of the band parameters in monitor.dedup (keys of old rows would no
    longer match); story assignments are kept. Returns the number of articles re-indexed.
    """
    conn = session.connection()
    rows = conn.execute(
        select(
            _ARTICLE.c.id,
            _ARTICLE.c.title,
            _ARTICLE.c.summary,
            _ARTICLE.c.published,
            _ARTICLE.c.first_seen,
            _ARTICLE.c.story_id,
        ).where(_ARTICLE.c.first_seen >= as_utc(since), _ARTICLE.c.story_id.is_not(None))
    ).all()
    ids = [int(r.id) for r in rows]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        conn.execute(_BAND.delete().where(_BAND.c.article_id.in_(chunk)))
        conn.execute(_VBAND.delete().where(_VBAND.c.article_id.in_(chunk)))
    for r in rows:
        when = article_time(r.published, r.first_seen)
        fp = dedup.fingerprint(r.title or "", r.summary or "", when)
        _add_bands(conn, dedup.band_keys(fp), int(r.id), int(r.story_id), when)
    vectors = (
        conn.execute(
            select(
                _VECTOR.c.article_id, _VECTOR.c.story_id, _VECTOR.c.vector, _VECTOR.c.created_at
            ).where(_VECTOR.c.article_id.in_(bindparam("ids", expanding=True))),
            {"ids": ids},
        ).all()
        if ids
        else []
    )
    for v in vectors:
        keys = dedup.vector_band_keys(np.frombuffer(v.vector, dtype="<f4").astype(np.float32))
        if keys:
            conn.execute(
                insert(_VBAND),
                [
                    {
                        "band": k,
                        "article_id": int(v.article_id),
                        "story_id": int(v.story_id),
                        "created_at": v.created_at,
                    }
                    for k in keys
                ],
            )
    _cache.clear()
    return len(rows)


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StorySummary:
    id: int
    key: str
    title: str
    article_count: int
    created_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True, slots=True)
class StoryArticle:
    id: int
    source_id: str
    title: str
    url: str
    published: datetime | None
    first_seen: datetime


def _summary(row: Any) -> StorySummary:
    return StorySummary(
        int(row.id),
        str(row.key),
        str(row.title),
        int(row.article_count),
        row.created_at,
        row.last_seen_at,
    )


def list_stories(session: Session, since: datetime, limit: int = 200) -> list[StorySummary]:
    """Stories seen since `since`, most recently active first."""
    rows = session.execute(
        select(_STORY)
        .where(_STORY.c.last_seen_at >= as_utc(since), _STORY.c.article_count > 0)
        .order_by(_STORY.c.last_seen_at.desc(), _STORY.c.id.desc())
        .limit(limit)
    ).all()
    return [_summary(r) for r in rows]


def get_story(session: Session, ref: str) -> tuple[StorySummary, list[StoryArticle]] | None:
    """One story by numeric id or key, with its articles in time order."""
    cond = _STORY.c.id == int(ref) if ref.isdigit() else _STORY.c.key == ref
    row = session.execute(select(_STORY).where(cond)).first()
    if row is None:
        return None
    articles = session.execute(
        select(
            _ARTICLE.c.id,
            _ARTICLE.c.source_id,
            _ARTICLE.c.title,
            _ARTICLE.c.url,
            _ARTICLE.c.published,
            _ARTICLE.c.first_seen,
        )
        .where(_ARTICLE.c.story_id == row.id)
        .order_by(_ARTICLE.c.first_seen, _ARTICLE.c.id)
    ).all()
    return _summary(row), [
        StoryArticle(
            int(a.id), str(a.source_id), str(a.title), str(a.url), a.published, a.first_seen
        )
        for a in articles
    ]


def read_stories(engine: Engine, since: datetime, limit: int = 200) -> list[StorySummary]:
    """`list_stories` in a session of its own."""
    with Session(engine) as session:
        return list_stories(session, since, limit=limit)


def read_story(engine: Engine, ref: str) -> tuple[StorySummary, list[StoryArticle]] | None:
    """`get_story` in a session of its own."""
    with Session(engine) as session:
        return get_story(session, ref)


@dataclass(frozen=True, slots=True)
class StoredArticleSignals:
    """What `monitor stories explain` needs of one stored article."""

    id: int
    source_id: str
    title: str
    text: str
    when: datetime
    story_id: int | None
    vector: tuple[str, dedup.Embedding] | None  # (model, embedding), when it got one


def read_article_signals(engine: Engine, ids: Sequence[int]) -> dict[int, StoredArticleSignals]:
    """The stored text, time, story and vector of these articles (missing ids are left out)."""
    with Session(engine) as session:
        rows = session.execute(
            select(
                _ARTICLE.c.id,
                _ARTICLE.c.source_id,
                _ARTICLE.c.title,
                _ARTICLE.c.summary,
                _ARTICLE.c.published,
                _ARTICLE.c.first_seen,
                _ARTICLE.c.story_id,
            ).where(_ARTICLE.c.id.in_(list(ids)))
        ).all()
        return {
            int(r.id): StoredArticleSignals(
                int(r.id),
                str(r.source_id),
                str(r.title or ""),
                str(r.summary or ""),
                article_time(r.published, r.first_seen),
                int(r.story_id) if r.story_id is not None else None,
                stored_embedding(session, int(r.id)),
            )
            for r in rows
        }
