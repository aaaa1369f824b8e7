"""Big documents through the real poll path (a local HTTP feed server, real SQLite): the entry
cap keeps the newest entries, the writes go in short fenced transactions that leave the write
lock to the dispatcher and other sources, and a crash or a lost lease between two of them
neither loses nor doubles an alert."""

from __future__ import annotations

import asyncio
import io
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from monitor.clock import utcnow
from monitor.deliver import Dispatcher
from monitor.model import Article
from monitor.pipeline import newest_entries
from monitor.store import db
from monitor.store.tables import AlertRow, ArticleRow, SourceRow
from tests.support.alerts import enqueue, item, watchlist
from tests.support.alerts import settings as alert_settings
from tests.support.desk import Desk, Item, feed
from tests.support.feedserver import FeedServer
from tests.support.paths import CORPUS

CHUNK = 20  # write_chunk_entries for the chunk-boundary tests: a few chunks from a small feed


def _vocabulary() -> tuple[str, ...]:
    """The words of the corpus articles: items made of them read like news, not like copies
    of each other (a tiny vocabulary would make every item a near-duplicate of every other)."""
    words: set[str] = set()
    for line in (CORPUS / "articles.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        words.update(w for w in f"{record['title']} {record['summary']}".split() if w.isalpha())
    return tuple(sorted(w for w in words if w.casefold() != "missile"))  # only ours match


WORDS = _vocabulary()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def distinct_items(count: int, prefix: str, *, match_every: int = 0, seed: int = 7) -> list[Item]:
    """`count` distinct items, newest first; every `match_every`-th one mentions a missile."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for i in range(count):
        title = " ".join(rng.choice(WORDS) for _ in range(7)) + f" {prefix}{i}"
        if match_every and i % match_every == 0:
            title = f"Missile report {prefix}{i}: " + title
        summary = " ".join(rng.choice(WORDS) for _ in range(30))
        out.append((f"{prefix}{i}", title, summary, now - timedelta(minutes=i)))
    return out


def count(engine: Engine, table: type, *where: Any) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def sql(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


# --- the cap -----------------------------------------------------------------------------------


def test_the_cap_keeps_the_newest_entries_by_date(
    server: FeedServer, tmp_path: Path, sqlite_url: str
) -> None:
    items = distinct_items(300, "c")
    random.Random(3).shuffle(items)  # document order says nothing about age
    url = server.add("/big.xml", feed(items))
    desk = Desk(tmp_path, sqlite_url, {"big": url}, max_entries_per_document=50)
    try:
        report = desk.poll("big")
        with Session(desk.engine) as session:
            stored = set(session.scalars(select(ArticleRow.entry_key)))
            row = session.get(SourceRow, "big")
            assert row is not None
            status = row.last_error
    finally:
        desk.close()
    newest = sorted(items, key=lambda i: i[3] or datetime.min, reverse=True)[:50]
    # feedparser resolves the short GUIDs against the feed's URL
    assert {key.rsplit("/", 1)[-1] for key in stored} == {guid for guid, *_ in newest}
    assert (report.new, report.skipped) == (50, 250)
    assert "kept the newest 50 of 300 entries" in report.message
    assert status is not None and "MONITOR_MAX_ENTRIES_PER_DOCUMENT" in status


def _article(key: str, published: datetime | None) -> Article:
    return Article("s", key, "", key, "", published, f"h-{key}")


def test_the_cap_without_dates_keeps_document_order_and_counts_keys_once() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    old = now - timedelta(days=3)
    articles = [
        _article("a", None),
        _article("b", old),
        _article("a", None),  # the same entry twice: one slot
        _article("c", None),
        _article("d", old - timedelta(days=1)),
    ]
    kept, skipped = newest_entries(articles, 3, now)
    # undated entries count as seen now (the newest); the oldest dated one goes
    assert [a.entry_key for a in kept] == ["a", "b", "c"] and skipped == 1
    kept, skipped = newest_entries(articles, 10, now)
    assert [a.entry_key for a in kept] == ["a", "b", "c", "d"] and skipped == 0


# --- chunk boundaries --------------------------------------------------------------------------


def test_each_chunk_renews_the_lease(server: FeedServer, tmp_path: Path, sqlite_url: str) -> None:
    url = server.add("/big.xml", feed(distinct_items(2 * CHUNK + 10, "r")))
    desk = Desk(tmp_path, sqlite_url, {"big": url}, write_chunk_entries=CHUNK)
    try:
        # A real trigger notes the lease as each article is inserted: what each chunk saw.
        sql(
            desk.engine,
            "CREATE TABLE lease_seen (lease_until TEXT)",
            "CREATE TRIGGER note_lease AFTER INSERT ON article BEGIN "
            "INSERT INTO lease_seen SELECT lease_until FROM source WHERE id = 'big'; END",
        )
        report = desk.poll("big")
        with desk.engine.connect() as conn:
            seen = [
                r[0] for r in conn.exec_driver_sql("SELECT DISTINCT lease_until FROM lease_seen")
            ]
    finally:
        desk.close()
    assert report.status == "ok" and report.new == 2 * CHUNK + 10
    # three chunks: the first two each renewed the lease as they began (later each time); the
    # last one wrote under the second renewal and completed the source
    assert len(seen) == 2 and seen == sorted(seen)


def _steal_lease_in_chunk_one(engine: Engine) -> None:
    """Another replica takes the source over (its lease having run out) while the first chunk
    is written: the second chunk finds the lease gone."""
    sql(
        engine,
        "CREATE TRIGGER steal AFTER INSERT ON article WHEN NEW.id = 10 BEGIN "
        "UPDATE source SET lease_owner = 'other', lease_epoch = lease_epoch + 1; END",
    )


def _crash_in_chunk_two(engine: Engine) -> None:
    """The process dies in the middle of the second chunk (a failing write stands in for it)."""
    sql(
        engine,
        f"CREATE TRIGGER crash BEFORE INSERT ON article WHEN "
        f"(SELECT count(*) FROM article) >= {CHUNK + 5} BEGIN "
        "SELECT RAISE(ABORT, 'simulated crash'); END",
    )


def _interrupted_poll(desk: Desk, interrupt: str) -> None:
    """Poll 'big' with the second chunk interrupted; afterwards the source is free again."""
    engine = desk.engine
    if interrupt == "crash":
        _crash_in_chunk_two(engine)
        report = desk.poll("big")  # the failed ingest is the source's error, not the tick's
        assert report.status == "error"
        assert report.message == "ingest failed: IntegrityError: simulated crash"
        sql(engine, "DROP TRIGGER crash")
        with engine.connect() as conn:  # its lease was given back
            owner = conn.exec_driver_sql("SELECT lease_owner FROM source WHERE id = 'big'")
            assert owner.scalar() is None
    else:
        _steal_lease_in_chunk_one(engine)
        assert desk.poll("big").status == "lost_lease"
        sql(
            engine, "DROP TRIGGER steal", "UPDATE source SET lease_owner = NULL, lease_until = NULL"
        )


@pytest.mark.parametrize("interrupt", ["crash", "lost_lease"])
def test_an_interrupted_poll_neither_loses_nor_doubles_alerts(
    server: FeedServer, tmp_path: Path, sqlite_url: str, interrupt: str
) -> None:
    total = 2 * CHUNK + 10  # three chunks; the alerting half fills the first and part of the next
    url = server.add("/big.xml", feed([("seed", "Seed", "seed", None)]))
    desk = Desk(
        tmp_path, sqlite_url, {"big": url}, flood_threshold=10_000, write_chunk_entries=CHUNK
    )
    engine = desk.engine
    try:
        assert desk.poll("big").status == "ok"  # the catch-up
        # Every other entry matches: alerting entries fill the first chunk and part of the next.
        server.update("/big.xml", feed(distinct_items(total, "n", match_every=2)))
        _interrupted_poll(desk, interrupt)
        first_chunk_alerts = count(engine, AlertRow)
        assert first_chunk_alerts == CHUNK  # committed with their articles
        report = desk.poll("big")
        with Session(engine) as session:
            alerted = list(session.scalars(select(AlertRow.article_id)))
        articles = count(engine, ArticleRow)
    finally:
        desk.close()
    assert report.status == "ok"
    assert articles == total + 1
    assert len(alerted) == total // 2 and len(set(alerted)) == len(alerted)  # each exactly once


@pytest.mark.parametrize("interrupt", ["crash", "lost_lease"])
def test_an_interrupted_first_poll_stays_a_catch_up(
    server: FeedServer, tmp_path: Path, sqlite_url: str, interrupt: str
) -> None:
    total = 2 * CHUNK + 10
    url = server.add("/big.xml", feed(distinct_items(total, "f", match_every=1)))
    desk = Desk(
        tmp_path, sqlite_url, {"big": url}, flood_threshold=10_000, write_chunk_entries=CHUNK
    )
    try:
        _interrupted_poll(desk, interrupt)
        with Session(desk.engine) as session:
            row = session.get(SourceRow, "big")
            assert row is not None and not row.first_poll_done
        report = desk.poll("big")
        stored = count(desk.engine, ArticleRow)
        alerts = count(desk.engine, AlertRow)
    finally:
        desk.close()
    assert report.status == "ok" and stored == total
    assert alerts == 0  # the first poll of a new source alerts nobody, however it went


def test_a_dry_run_of_a_big_document_writes_nothing(
    server: FeedServer, tmp_path: Path, sqlite_url: str
) -> None:
    url = server.add("/big.xml", feed([("seed", "Seed", "seed", None)]))
    desk = Desk(tmp_path, sqlite_url, {"big": url}, write_chunk_entries=CHUNK)
    try:
        assert desk.poll("big").status == "ok"  # the catch-up, for real
    finally:
        desk.close()
    server.update("/big.xml", feed(distinct_items(3 * CHUNK, "d", match_every=3)))
    dry = Desk(tmp_path, sqlite_url, {"big": url}, write_chunk_entries=CHUNK, dry_run=True)
    try:
        report = dry.poll("big")
        with Session(dry.engine) as session:
            row = session.get(SourceRow, "big")
            assert row is not None
            lease, polls = row.lease_owner, row.polls
    finally:
        dry.close()
    assert report.status == "dry_run" and report.new == 3 * CHUNK
    assert len(report.matches) == CHUNK and report.previews  # what would have been sent
    assert count(dry.engine, ArticleRow) == 1 and count(dry.engine, AlertRow) == 0
    assert lease is None and polls == 1  # given back, and not counted as a poll


# --- the write lock is shared ------------------------------------------------------------------


def _short_busy_timeout(engine: Engine, seconds: float) -> None:
    """Give up on the write lock after `seconds` (the service's own engines wait 30 s)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA busy_timeout={int(seconds * 1000)}")

    engine.dispose()  # connections opened before now keep their 30 s


def _timed(what: str, action: Callable[[], object], log: list[tuple[str, float, float]]) -> None:
    started = time.monotonic()
    action()
    log.append((what, started, time.monotonic() - started))


@pytest.mark.slow
def test_a_5000_item_feed_leaves_the_write_lock_to_the_others(
    server: FeedServer, tmp_path: Path, sqlite_url: str
) -> None:
    """While one source ingests 5,000 entries, the dispatcher completes alerts and another
    source is polled, each on a connection that gives up after 5 s: none of them fails with
    "database is locked", and each waits far less than that."""
    busy = 5.0
    big = server.add("/big.xml", feed(distinct_items(5000, "b", match_every=9)))
    small = server.add("/small.xml", feed([("s0", "Small", "small", None)]))
    feeds = {"big": big, "small": small}
    # Chunks of 50: the big write spans 100 transactions, so the others' turns between them
    # are seen even when the whole ingest takes well under a second (the matcher is fast).
    desk = Desk(
        tmp_path, sqlite_url, feeds, max_entries_per_document=5000, write_chunk_entries=50
    )
    other = Desk(tmp_path, sqlite_url, feeds, instance_name="other")
    _short_busy_timeout(other.engine, busy)
    cfg = alert_settings(database_url=sqlite_url, deliver_batch=1)
    dispatcher_engine = db.make_engine(sqlite_url)
    _short_busy_timeout(dispatcher_engine, busy)
    enqueue(
        dispatcher_engine,
        [item(i, source="small") for i in range(1, 200)],
        [watchlist()],
        cfg,
        utcnow(),
        source="small",
    )
    dispatcher = Dispatcher(cfg, dispatcher_engine, owner="dispatcher", console=io.StringIO())
    outcome: dict[str, Any] = {}

    def ingest() -> None:
        started = time.monotonic()
        outcome["report"] = desk.poll("big")
        outcome["window"] = (started, time.monotonic())

    thread = threading.Thread(target=ingest)
    log: list[tuple[str, float, float]] = []
    errors: list[OperationalError] = []
    first_write: float | None = None
    thread.start()
    try:
        for n in range(10_000):
            if not thread.is_alive():
                break
            try:
                _timed("deliver", lambda: asyncio.run(dispatcher.tick()), log)
                server.update("/small.xml", feed([(f"s{n}", f"Small {n}", "small", None)]))
                _timed("poll", lambda: other.poll("small"), log)
            except OperationalError as exc:  # "database is locked"
                errors.append(exc)
            if first_write is None and count(
                dispatcher_engine, ArticleRow, ArticleRow.source_id == "big"
            ):
                first_write = time.monotonic()
            time.sleep(0.05)
    finally:
        thread.join(timeout=600)
        desk.close()
        other.close()
        dispatcher_engine.dispose()
    report = outcome["report"]
    assert report.status == "ok" and report.new == 5000
    assert not errors, errors[:3]
    assert first_write is not None
    during = [(what, took) for what, at, took in log if at >= first_write]
    # the writes of the big poll take seconds; the others got the lock in between
    assert len([w for w, _ in during if w == "deliver"]) >= 3, log
    assert len([w for w, _ in during if w == "poll"]) >= 3, log
    # each got the lock well inside its busy timeout (none failed, see above): the big poll's
    # chunks are short. Not a tight bound: a loaded CI machine stretches every wait.
    assert max(took for _, took in during) < busy * 0.8, during


def test_copies_and_near_duplicates_in_one_document_are_one_story(
    server: FeedServer, tmp_path: Path, sqlite_url: str
) -> None:
    """Within one write chunk a copy joins its original's story and a rewrite is found among
    the chunk's own articles (their band rows not yet written): one alert, the rest threaded."""
    url = server.add("/f.xml", feed(distinct_items(3, "old")))
    desk = Desk(tmp_path, sqlite_url, {"f": url}, story_vectors="off")  # MinHash alone
    try:
        assert desk.poll("f").new == 3  # the first poll only stores
        now = datetime.now(UTC)
        title = "Missile launch reported by Japan as North Korea fires toward the sea"
        text = (
            "North Korea fired a ballistic missile toward the sea off its east coast on Sunday, "
            "Japan's defence ministry said, the latest in a series of launches this year."
        )
        items = [
            ("one", title, text, now),
            ("two", title, text, now - timedelta(minutes=1)),  # the same text: a copy
            ("three", title, text + " Seoul said it was analysing the flight.", now),
            *distinct_items(4, "new", seed=11),
        ]
        server.add("/f.xml", feed(items))
        report = desk.poll("f")
        with Session(desk.engine) as session:
            stories = {
                str(url).rsplit("/", 1)[-1]: story
                for url, story in session.execute(select(ArticleRow.url, ArticleRow.story_id))
            }
            kinds = [r.kind for r in session.scalars(select(AlertRow).order_by(AlertRow.id))]
    finally:
        desk.close()
    assert report.new == 6  # "two" is stored as a copy of "one"
    assert stories["one"] == stories["three"]
    assert len(set(stories.values())) == 3 + 4 + 1
    assert kinds == ["alert", "also", "also"]
