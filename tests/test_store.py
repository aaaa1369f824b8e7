"""Storage on real SQLite and real PostgreSQL: sync, claims with leases, fencing, dedup inserts."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from monitor.clock import utcnow
from monitor.model import Article, HtmlSelectors, PollStatus, SourceConfig
from monitor.store import articles, db, sources
from monitor.store.sources import SourceUpdate
from monitor.store.tables import ArticleCopyRow, ArticleRevisionRow, ArticleRow, SourceRow


def _cfg(i: int, **kw: object) -> SourceConfig:
    values: dict[str, object] = {
        "id": f"s{i}",
        "name": f"Source {i}",
        "url": f"https://e{i}.example/feed",
    }
    values.update(kw)
    return SourceConfig(**values)  # type: ignore[arg-type]


def _article(source: str, key: str, digest: str, title: str = "t") -> Article:
    return Article(source, key, f"https://x.example/{key}", title, "text", None, digest)


def _ok(now: datetime) -> SourceUpdate:
    return SourceUpdate(status=PollStatus.OK, polled_at=now, next_poll_at=now, failures=0)


def test_migrations_reach_head(engine: Engine) -> None:
    assert db.schema_is_current(engine)


def test_sync_sources_adds_updates_and_disables(engine: Engine) -> None:
    now = utcnow()
    sel = HtmlSelectors(item="li", title="h2", link="a")
    with Session(engine) as s, s.begin():
        sources.sync_sources(s, [_cfg(1), _cfg(2, kind="html", selectors=sel)], now)
    with Session(engine) as s, s.begin():
        row = s.get(SourceRow, "s1")
        assert row is not None
        row.etag, row.first_poll_done = '"abc"', True
        sources.sync_sources(s, [_cfg(1, url="https://moved.example/rss")], now)
    with Session(engine) as s:
        s1, s2 = s.get(SourceRow, "s1"), s.get(SourceRow, "s2")
        assert s1 is not None and s2 is not None
        # a new URL is another document: validators forgotten, next poll is a catch-up
        assert s1.url == "https://moved.example/rss" and s1.etag is None and not s1.first_poll_done
        assert s2.enabled is False and s2.selectors_json and '"item": "li"' in s2.selectors_json


def test_claim_respects_due_time_and_leases(engine: Engine) -> None:
    now = utcnow()
    with Session(engine) as s, s.begin():
        sources.sync_sources(s, [_cfg(i) for i in range(5)], now)
        s.get(SourceRow, "s4").next_poll_at = now + timedelta(hours=1)  # type: ignore[union-attr]
    with Session(engine) as s, s.begin():
        first = sources.claim_sources(s, owner="a", now=now, lease_seconds=60, limit=3)
    with Session(engine) as s, s.begin():
        second = sources.claim_sources(s, owner="b", now=now, lease_seconds=60, limit=10)
    assert len(first) == 3 and len(second) == 1
    assert not {c.id for c in first} & {c.id for c in second}
    assert "s4" not in {c.id for c in first + second}
    with Session(engine) as s, s.begin():
        forced = sources.claim_sources(
            s, owner="c", now=now, lease_seconds=60, limit=10, force=True
        )
    assert [c.id for c in forced] == ["s4"]  # the rest are leased
    # after the leases expire, another replica can take them
    later = now + timedelta(seconds=61)
    with Session(engine) as s, s.begin():
        again = sources.claim_sources(s, owner="d", now=later, lease_seconds=60, limit=10)
    assert len(again) == 4


def test_completion_is_fenced_by_epoch(engine: Engine) -> None:
    now = utcnow()
    with Session(engine) as s, s.begin():
        sources.sync_sources(s, [_cfg(1)], now)
    with Session(engine) as s, s.begin():
        (stale,) = sources.claim_sources(s, owner="a", now=now, lease_seconds=1, limit=1)
    later = now + timedelta(seconds=5)
    with Session(engine) as s, s.begin():
        (fresh,) = sources.claim_sources(s, owner="b", now=later, lease_seconds=60, limit=1)
    assert fresh.lease_epoch == stale.lease_epoch + 1
    with Session(engine) as s, s.begin():
        assert not sources.complete_source(s, stale, owner="a", update=_ok(later))
    with Session(engine) as s, s.begin():
        assert sources.complete_source(s, fresh, owner="b", update=_ok(later))
    with Session(engine) as s:
        row = s.get(SourceRow, "s1")
        assert row is not None and row.lease_owner is None and row.last_status == "ok"
        assert row.polls == 1  # the fenced-off completion did not count


def test_articles_stored_once_copies_linked_edits_recorded(engine: Engine) -> None:
    now = utcnow()
    a = _article("s1", "guid:1", "h1")
    with Session(engine) as s, s.begin():
        first = articles.insert_article(s, a, now=now, catchup=False)
        again = articles.insert_article(s, a, now=now, catchup=False)
    assert first is not None and again is None  # ON CONFLICT DO NOTHING
    with Session(engine) as s, s.begin():
        assert articles.articles_by_hash(s, ["h1", "zz"]) == {"h1": first}
        assert articles.insert_copy(s, first, _article("s2", "guid:9", "h1"), now=now)
        assert not articles.insert_copy(s, first, _article("s2", "guid:9", "h1"), now=now)
    with Session(engine) as s, s.begin():
        known = articles.known_entries(s, "s2", ["guid:9", "guid:x"])
        assert set(known) == {"guid:9"} and known["guid:9"].article_id == first
        k1 = articles.known_entries(s, "s1", ["guid:1"])["guid:1"]
        articles.record_revision(s, k1, _article("s1", "guid:1", "h2", "edited"), now=now)
    with Session(engine) as s:
        row = s.get(ArticleRow, first)
        assert row is not None and row.revision == 2 and row.title == "edited"
        assert s.scalar(select(func.count()).select_from(ArticleRevisionRow)) == 1
        assert s.scalar(select(func.count()).select_from(ArticleCopyRow)) == 1
        assert s.scalar(select(func.count()).select_from(ArticleRow)) == 1
        listed = articles.list_articles(s, since=None)
        assert [x.id for x in listed] == [first]


def test_release_gives_claims_back(engine: Engine) -> None:
    now = utcnow()
    with Session(engine) as s, s.begin():
        sources.sync_sources(s, [_cfg(1), _cfg(2)], now)
    with Session(engine) as s, s.begin():
        assert len(sources.claim_sources(s, owner="a", now=now, lease_seconds=600, limit=5)) == 2
    with Session(engine) as s, s.begin():
        assert sources.release_sources(s, "a") == 2
    with Session(engine) as s, s.begin():
        assert len(sources.claim_sources(s, owner="b", now=now, lease_seconds=600, limit=5)) == 2
