"""The database-backed story index on real SQLite and PostgreSQL, migrated with Alembic."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from monitor import dedup
from monitor.cli import main
from monitor.corpus import CorpusItem, read_articles
from monitor.model import Article, StoryAssignment
from monitor.settings import get_settings
from monitor.store import articles, db, stories
from monitor.store.tables import ArticleRow, Story, StoryBand, StoryVector, StoryVectorBand
from tests.support.paths import CORPUS

T0 = datetime(2023, 3, 19, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def corpus() -> list[CorpusItem]:
    return read_articles(CORPUS / "articles.jsonl")


def _article(source: str, title: str, text: str, published: datetime | None) -> Article:
    digest = hashlib.sha256(f"{source}|{title}|{text}".encode()).hexdigest()
    return Article(
        source_id=source,
        entry_key=digest[:32],
        url=f"https://{source}.example/{digest[:8]}",
        title=title,
        text=text,
        published=published,
        content_hash=digest,
    )


def _store(
    session: Session, article: Article, now: datetime, window: float = 72.0
) -> tuple[int, StoryAssignment]:
    article_id = articles.insert_article(session, article, now=now, catchup=False)
    assert article_id is not None
    return article_id, stories.assign_story(session, article_id, article, now, window)


def _ingest(engine: Engine, article: Article, now: datetime) -> tuple[int, StoryAssignment]:
    with Session(engine) as session, session.begin():
        return _store(session, article, now)


ABC = _article(
    "abc",
    "N Korea launches missile into sea amid US-S Korea drills",
    "North Korea has launched a short-range ballistic missile toward the sea, its neighbors say, "
    "as the North ramps up testing activities in response to U.S.-South Korean military drills "
    "that it views as an invasion rehearsal",
    T0,
)
NBC = _article(
    "nbc",
    "North Korea launches missile into sea amid U.S. and South Korean military drills",
    "North Korea launched a short-range ballistic missile toward the sea on Sunday, its neighbors "
    "said, ramping up testing activities in response to ongoing U.S.-South Korean military drills "
    "that it views as an invasion rehearsal.",
    T0 + timedelta(hours=2),
)
OTHER = _article(
    "fox",
    "UN committee passes resolution condemning North Korean human rights abuses",
    "A United Nations committee passed a resolution Wednesday condemning North Korean human "
    "rights abuses and urging member countries not to repatriate escapees.",
    T0 + timedelta(hours=1),
)


def test_copies_join_the_first_story_and_others_start_their_own(engine: Engine) -> None:
    now = T0 + timedelta(hours=3)
    abc_id, first = _ingest(engine, ABC, now)
    other_id, other = _ingest(engine, OTHER, now)
    nbc_id, copy = _ingest(engine, NBC, now)
    assert first.is_new and first.first_article_id == abc_id
    assert other.is_new and other.story_id != first.story_id
    assert not copy.is_new
    assert (copy.story_id, copy.story_key, copy.first_article_id) == (
        first.story_id,
        first.story_key,
        abc_id,
    )
    with Session(engine) as session:
        rows: dict[int | None, int | None] = dict(
            session.execute(select(col(ArticleRow.id), col(ArticleRow.story_id))).all()
        )
        assert rows == {abc_id: first.story_id, other_id: other.story_id, nbc_id: first.story_id}
        story = session.get(Story, first.story_id)
        assert story is not None and story.article_count == 2
        bands = session.scalar(
            select(func.count()).select_from(StoryBand).where(col(StoryBand.article_id) == nbc_id)
        )
        assert bands == dedup.TITLE_BANDS + dedup.TEXT_BANDS
        shown = stories.get_story(session, first.story_key)
        assert shown is not None and [a.id for a in shown[1]] == [abc_id, nbc_id]


def test_the_same_event_days_later_is_a_new_story(engine: Engine) -> None:
    _, first = _ingest(engine, ABC, T0)
    later = _article("nbc", NBC.title, NBC.text, T0 + timedelta(days=4))
    _, again = _ingest(engine, later, T0 + timedelta(days=4))
    assert again.is_new and again.story_id != first.story_id


def test_the_index_survives_a_restart(engine: Engine, db_url: str) -> None:
    _, first = _ingest(engine, ABC, T0)
    engine.dispose()
    stories._cache.clear()
    fresh = db.make_engine(db_url)
    try:
        _, copy = _ingest(fresh, NBC, T0 + timedelta(hours=2))
    finally:
        fresh.dispose()
    assert copy.story_id == first.story_id and not copy.is_new


def _corpus_days(corpus: list[CorpusItem]) -> list[CorpusItem]:
    """Three weeks of corpus items with wire copies among them, in publication order."""
    day = [
        a
        for a in corpus
        if a.published is not None
        and datetime(2023, 11, 15, tzinfo=UTC) <= a.published < datetime(2023, 12, 5, tzinfo=UTC)
    ]
    return sorted(day, key=lambda a: (a.published or T0, a.line))


def test_corpus_day_groups_like_the_memory_index(engine: Engine, corpus: list[CorpusItem]) -> None:
    """The database path and `stories test` run one algorithm: same groups on real items."""
    from monitor.evaluation import group

    day = _corpus_days(corpus)
    expected = group(day, 72.0)
    with Session(engine) as session, session.begin():
        for a in day:
            art = Article(a.source, a.id, "", a.title, a.text, a.published, a.id)
            _store(session, art, a.published or T0)
    with Session(engine) as session:
        got = {
            str(k): v
            for k, v in session.execute(
                select(col(ArticleRow.entry_key), col(ArticleRow.story_id))
            ).all()
        }
    assert len(day) > 60
    pairs = [(x, y) for x in got for y in got if x < y]
    assert any(expected[x] == expected[y] for x, y in pairs)
    for x, y in pairs:
        assert (expected[x] == expected[y]) == (got[x] == got[y]), (x, y)


def test_list_and_show_commands(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    _, first = _ingest(engine, _article("abc", ABC.title, ABC.text, now), now)
    _ingest(engine, _article("nbc", NBC.title, NBC.text, now), now)
    monkeypatch.setenv("MONITOR_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        assert main(["stories", "list", "--since", "1d"]) == 0
        out = capsys.readouterr().out
        assert first.story_key in out and "  2  " in out and ABC.title[:40] in out
        assert main(["stories", "show", str(first.story_id)]) == 0
        out = capsys.readouterr().out
        assert "abc" in out and "nbc" in out and NBC.url in out
        assert main(["stories", "show", "st_0000000000000000"]) == 1
        assert "no story 'st_0000000000000000'" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    db.upgrade(pg_url)
    eng = db.make_engine(pg_url)
    yield eng
    eng.dispose()


def test_two_replicas_at_the_same_moment_converge(pg_engine: Engine) -> None:
    """Two open transactions cannot see each other: both start a story; reconcile merges them."""
    now = T0 + timedelta(hours=3)
    with Session(pg_engine) as one, Session(pg_engine) as two:
        one.begin()
        two.begin()
        a_id, a = _store(one, ABC, now)
        b_id, b = _store(two, NBC, now)
        one.commit()
        two.commit()
    assert a.is_new and b.is_new and a.story_id < b.story_id
    with Session(pg_engine) as session, session.begin():
        merged = stories.reconcile_stories(session, now, 72.0, timedelta(hours=1))
    assert merged == 1
    with Session(pg_engine) as session:
        rows: dict[int | None, int | None] = dict(
            session.execute(select(col(ArticleRow.id), col(ArticleRow.story_id))).all()
        )
        assert rows == {a_id: a.story_id, b_id: a.story_id}
        gone = session.get(Story, b.story_id)
        kept = session.get(Story, a.story_id)
        assert gone is not None and gone.article_count == 0
        assert kept is not None and kept.article_count == 2
        band_stories = set(session.scalars(select(col(StoryBand.story_id))).all())
        assert band_stories == {a.story_id}
        assert [s.id for s in stories.list_stories(session, now - timedelta(days=1))] == [
            a.story_id
        ]


def test_a_later_copy_merges_concurrently_started_stories(pg_engine: Engine) -> None:
    now = T0 + timedelta(hours=3)
    with Session(pg_engine) as one, Session(pg_engine) as two:
        one.begin()
        two.begin()
        _, a = _store(one, ABC, now)
        _, b = _store(two, NBC, now)
        one.commit()
        two.commit()
    third = _article("wapo", NBC.title, NBC.text + " Japan said.", T0 + timedelta(hours=4))
    _, c = _ingest(pg_engine, third, now)
    assert not c.is_new and c.story_id == a.story_id
    with Session(pg_engine) as session:
        kept = session.get(Story, a.story_id)
        gone = session.get(Story, b.story_id)
        assert kept is not None and kept.article_count == 3
        assert gone is not None and gone.article_count == 0


def test_rebuild_index_and_reconcile_commands(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the band rows are lost (or the band parameters change) the index is rebuilt."""
    now = datetime.now(UTC)
    _, first = _ingest(engine, _article("abc", ABC.title, ABC.text, now), now)
    with Session(engine) as session, session.begin():
        session.execute(StoryBand.__table__.delete())  # type: ignore[attr-defined]
    monkeypatch.setenv("MONITOR_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        assert main(["stories", "rebuild-index", "--since", "1d"]) == 0
        assert "re-indexed 1 articles" in capsys.readouterr().out
        assert main(["stories", "reconcile", "--lookback", "1h"]) == 0
        assert "merged 0 stories; pruned 0 band rows older than 144 h" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()
    stories._cache.clear()
    _, copy = _ingest(engine, _article("nbc", NBC.title, NBC.text, now), now)
    assert copy.story_id == first.story_id and not copy.is_new


def test_stories_tick_merges_on_postgresql_and_is_idle_on_sqlite(
    pg_engine: Engine, sqlite_url: str
) -> None:
    now = datetime.now(UTC)
    first = _article("abc", ABC.title, ABC.text, now)
    second = _article("nbc", NBC.title, NBC.text, now)
    with Session(pg_engine) as one, Session(pg_engine) as two:
        one.begin()
        two.begin()
        _, a = _store(one, first, now)
        _, b = _store(two, second, now)
        one.commit()
        two.commit()
    assert a.story_id != b.story_id
    # A shutdown asks it to stop: nothing is merged now, and the next tick does the work.
    assert stories.stories_tick(pg_engine, 72.0, should_stop=lambda: True) == (0, 0)
    assert stories.stories_tick(pg_engine, 72.0) == (1, 0)
    assert stories.stories_tick(pg_engine, 72.0) == (0, 0)
    db.upgrade(sqlite_url)
    lite = db.make_engine(sqlite_url)
    try:
        assert stories.stories_tick(lite, 72.0) == (0, 0)
    finally:
        lite.dispose()


def test_band_rows_older_than_twice_the_window_are_pruned(engine: Engine) -> None:
    old_id, _ = _ingest(engine, ABC, T0)
    new_id, _ = _ingest(engine, OTHER, T0 + timedelta(days=7))
    with Session(engine) as session, session.begin():
        pruned = stories.prune_bands(session, T0 + timedelta(days=7), timedelta(hours=144))
    keys = dedup.TITLE_BANDS + dedup.TEXT_BANDS
    assert pruned == keys
    with Session(engine) as session:
        left = set(session.scalars(select(col(StoryBand.article_id))).all())
        assert left == {new_id} and old_id not in left
        assert session.get(ArticleRow, old_id) is not None


# --- the vector signal in the database ------------------------------------------------------------

MODEL = "test-model"


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x)).astype(np.float32)


_RNG = np.random.default_rng(11)
EVENT = _unit(_RNG.standard_normal(512))
CLOSE = _unit(EVENT + 0.35 * _unit(_RNG.standard_normal(512)))  # cosine about 0.94
TRANSLATED = _unit(EVENT + 1.2 * _unit(_RNG.standard_normal(512)))  # cosine about 0.64


def _ingest_vec(
    engine: Engine, article: Article, now: datetime, vector: np.ndarray, language: str = "en"
) -> tuple[int, StoryAssignment]:
    """Store an article with its vector signal, the way the poll prepares it."""
    keys = stories.story_keys(article, now, MODEL, dedup.Embedding(vector, language))
    with Session(engine) as session, session.begin():
        article_id = articles.insert_article(session, article, now=now, catchup=False)
        assert article_id is not None
        return article_id, stories.assign_story(session, article_id, article, now, 72.0, keys)


DRONE_CNN = _article(
    "cnn",
    "North Korea says it tested underwater nuclear attack drone",
    "Pyongyang claims a new weapon system can unleash a radioactive tsunami.",
    T0,
)
DRONE_NBC = _article(
    "nbc",
    "Kim's regime touts trial of secret undersea weapon",
    "State media described the device as able to cause radioactive waves near enemy ports.",
    T0 + timedelta(hours=3),
)
DRONE_PAP = _article(
    "pap",
    "Korea Północna testowała podwodnego drona",
    "Według państwowych mediów broń może wywołać radioaktywne tsunami.",
    T0 + timedelta(hours=4),
)


def test_other_words_join_by_vector_and_share_the_index(engine: Engine) -> None:
    """Two outlets' own copy of one event (no shared headline words) and a Polish report: one
    story, found through the SimHash rows in the database; the vectors are stored."""
    cnn_id, first = _ingest_vec(engine, DRONE_CNN, T0, EVENT)
    nbc_id, second = _ingest_vec(engine, DRONE_NBC, T0, CLOSE)
    pap_id, third = _ingest_vec(engine, DRONE_PAP, T0, TRANSLATED, language="pl")
    assert first.is_new and not second.is_new and not third.is_new
    assert first.story_id == second.story_id == third.story_id
    with Session(engine) as session:
        rows = session.execute(select(StoryVector.article_id, StoryVector.language)).all()
        bands = session.scalar(select(func.count()).select_from(StoryVectorBand))
    assert sorted(rows) == [(cnn_id, "en"), (nbc_id, "en"), (pap_id, "pl")]
    assert bands == 3 * dedup.VECTOR_BANDS
    # Without a vector, another outlet's own words are too different for MinHash.
    own = _article(
        "abc",
        "Pyongyang unveils nuclear-capable undersea drone",
        "Officials said the system was tried off the east coast this week.",
        T0 + timedelta(hours=3),
    )
    _, alone = _ingest(engine, own, T0)
    assert alone.is_new


def test_close_vectors_with_conflicting_dates_stay_apart(engine: Engine) -> None:
    """Different Security Council meetings read alike to any embedding: the dates guard vetoes."""
    a = _article(
        "un", "Security Council meets on North Korea", "The meeting on July 13 heard the envoy.", T0
    )
    b = _article(
        "cna",
        "UN envoys clash over Pyongyang",
        "The session on July 14 heard the ambassador.",
        T0 + timedelta(hours=20),
    )
    _, first = _ingest_vec(engine, a, T0, EVENT)
    _, second = _ingest_vec(engine, b, T0, CLOSE)
    assert first.is_new and second.is_new


def test_prune_and_rebuild_keep_the_vector_index(engine: Engine) -> None:
    _ingest_vec(engine, DRONE_CNN, T0, EVENT)
    with Session(engine) as session, session.begin():
        assert stories.rebuild_bands(session, T0 - timedelta(days=1)) == 1
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(StoryVectorBand)) == (
            dedup.VECTOR_BANDS
        )
    later = T0 + timedelta(days=30)
    with Session(engine) as session, session.begin():
        pruned = stories.prune_bands(session, later, timedelta(hours=144))
    assert pruned >= dedup.VECTOR_BANDS
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(StoryVectorBand)) == 0
        assert session.scalar(select(func.count()).select_from(StoryVector)) == 0


def test_reconcile_merges_stories_found_by_vector(engine: Engine) -> None:
    """Two replicas each started a story for one event (simulated: the second article was
    stored without the vector signal); reconcile finds it by its stored vector and merges."""
    cnn_id, first = _ingest_vec(engine, DRONE_CNN, T0, EVENT)
    with Session(engine) as session, session.begin():
        nbc_id = articles.insert_article(session, DRONE_NBC, now=T0, catchup=False)
        assert nbc_id is not None
        second = stories.assign_story(session, nbc_id, DRONE_NBC, T0, 72.0)
        # the vector arrives as the other replica would have written it
        keys = stories.vector_keys(MODEL, dedup.Embedding(CLOSE, "en"))
        stories._add_vector(
            session.connection(), keys, nbc_id, second.story_id, DRONE_NBC.published
        )
    assert second.is_new and second.story_id != first.story_id
    with Session(engine) as session, session.begin():
        merged = stories.reconcile_stories(session, T0, 72.0, timedelta(hours=1))
    assert merged == 1
    with Session(engine) as session:
        owners = dict(session.execute(select(StoryVector.article_id, StoryVector.story_id)).all())
    assert owners == {cnn_id: first.story_id, nbc_id: first.story_id}


def test_explain_command_on_stored_articles(
    db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cnn_id, _ = _ingest_vec(engine, DRONE_CNN, T0, EVENT)
    nbc_id, _ = _ingest(engine, DRONE_NBC, T0)
    monkeypatch.setenv("MONITOR_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        code = main(["stories", "explain", str(cnn_id), str(nbc_id), "--embedder", "none"])
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert code == 0, out
    assert "decision: NOT ONE STORY (not alike)" in out
    assert "stored: different stories" in out and "vector: no vector" in out


def _store_chunk(session: Session, batch: list[Article], now: datetime) -> list[StoryAssignment]:
    """As a poll's write chunk does: insert, one `BandIndex` look-up, assign, flush."""
    window = timedelta(hours=72.0)
    ids = [articles.insert_article(session, a, now=now, catchup=False) for a in batch]
    keys = stories.story_keys_many(batch, now)
    fresh = [(i, k) for i, k in zip(ids, keys, strict=True) if i is not None]
    index = stories.BandIndex.prefetch(session, fresh, window)
    out = [
        stories.assign_story(session, i, a, now, 72.0, keys=k, index=index)
        for i, a, k in zip(ids, batch, keys, strict=True)
        if i is not None
    ]
    index.flush(session.connection())
    return out


@pytest.mark.parametrize("size", [1, 7, 200])
def test_chunked_look_ups_group_like_one_query_per_article(
    engine: Engine, corpus: list[CorpusItem], size: int
) -> None:
    """Copies inside one chunk find each other; stored band rows are those of the slow path."""
    from monitor.evaluation import group

    day = _corpus_days(corpus)
    expected = group(day, 72.0)
    now = datetime(2023, 12, 5, tzinfo=UTC)
    arts = [Article(a.source, a.id, "", a.title, a.text, a.published, a.id) for a in day]
    for start in range(0, len(arts), size):
        with Session(engine) as session, session.begin():
            _store_chunk(session, arts[start : start + size], now)
    with Session(engine) as session:
        got = {
            str(k): v
            for k, v in session.execute(
                select(col(ArticleRow.entry_key), col(ArticleRow.story_id))
            ).all()
        }
        bands = session.execute(
            select(col(StoryBand.article_id), col(StoryBand.story_id), col(StoryBand.band))
        ).all()
        by_id = dict(session.execute(select(col(ArticleRow.id), col(ArticleRow.story_id))).all())
        counted = dict(session.execute(select(col(Story.id), col(Story.article_count))).all())
    pairs = [(x, y) for x in got for y in got if x < y]
    assert sum(expected[x] == expected[y] for x, y in pairs) >= 3
    for x, y in pairs:
        assert (expected[x] == expected[y]) == (got[x] == got[y]), (x, y)
    want = sum(len(k) for k in stories.story_keys_many(arts, now) for k in [k.bands])
    assert len(bands) == want  # every held row was written, once
    assert all(by_id[a] == s for a, s, _b in bands)  # under its article's story
    members = Counter(by_id.values())
    assert {sid: n for sid, n in counted.items() if n} == dict(members)  # joins counted once


def test_a_merge_inside_a_chunk_moves_the_rows_held_for_it(pg_engine: Engine) -> None:
    """Concurrently started stories merge mid-chunk; a later copy of the chunk joins the kept
    story, and its band rows (held, then written) name the kept story too."""
    now = T0 + timedelta(hours=3)
    with Session(pg_engine) as one, Session(pg_engine) as two:
        one.begin()
        two.begin()
        _, a = _store(one, ABC, now)
        _, b = _store(two, NBC, now)
        one.commit()
        two.commit()
    assert a.story_id != b.story_id
    third = _article("wapo", NBC.title, NBC.text + " Japan said.", T0 + timedelta(hours=4))
    fourth = _article("cbs", NBC.title, NBC.text + " Seoul said.", T0 + timedelta(hours=5))
    with Session(pg_engine) as session, session.begin():
        c, d = _store_chunk(session, [third, fourth], now)
    assert c.story_id == a.story_id and d.story_id == a.story_id
    with Session(pg_engine) as session:
        stored = set(session.execute(select(col(StoryBand.story_id))).scalars())
        assert stored == {a.story_id}
        kept = session.get(Story, a.story_id)
        assert kept is not None and kept.article_count == 4


def test_the_chunk_index_follows_merged_stories(engine: Engine) -> None:
    """Rows read or held before a merge answer, and are written, under the kept story."""
    now = T0 + timedelta(hours=3)
    abc_id, a = _ingest(engine, ABC, now)
    third = _article("wapo", NBC.title, NBC.text + " Japan said.", T0 + timedelta(hours=4))
    held, later = stories.story_keys(NBC, now), stories.story_keys(third, now)
    with Session(engine) as session, session.begin():
        nbc_id = articles.insert_article(session, NBC, now=now, catchup=False)
        third_id = articles.insert_article(session, third, now=now, catchup=False)
        assert nbc_id is not None and third_id is not None
        window = timedelta(hours=72)
        index = stories.BandIndex.prefetch(session, [(nbc_id, held), (third_id, later)], window)
        conn = session.connection()
        index.add(conn, held.bands, nbc_id, 999_999, held.when)  # under a story about to merge
        index.merged(a.story_id, [999_999])
        found = index.find(conn, third_id, later.bands, later.when)
        assert {(art, story) for art, story, _n in found} == {
            (abc_id, a.story_id),
            (nbc_id, a.story_id),
        }
        index.flush(conn)
        written = session.execute(
            select(col(StoryBand.story_id)).where(col(StoryBand.article_id) == nbc_id)
        ).scalars()
        assert set(written) == {a.story_id}


def test_the_driver_path_reads_stored_times_as_the_column_type_does(sq_engine: Engine) -> None:
    """The story path reads candidates' times through sqlite3 itself: the same aware UTC times
    as SQLAlchemy's column type gives, whatever the fraction or the offset written."""
    column = stories._ARTICLE.c.published.type
    write = column._cached_bind_processor(sq_engine.dialect)
    read = column._cached_result_processor(sq_engine.dialect, None)
    assert write is not None and read is not None
    for at in (
        datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(2026, 1, 2, tzinfo=UTC),
        datetime(2026, 6, 1, 12, 30, tzinfo=timezone(timedelta(hours=9))),
    ):
        stored = write(at)
        assert stories._sqlite_time(stored) == read(stored) == at
        assert stories._sqlite_time(stored).tzinfo is UTC
