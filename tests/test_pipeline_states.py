"""Misbehaving sources through the real poll path end in the right stored source state, and one
broken source never disturbs the others."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from monitor.app import App
from monitor.clock import utcnow
from monitor.model import FetchResult
from monitor.service import Service
from monitor.settings import Settings
from monitor.store import db, sources
from monitor.store.sources import ClaimedSource
from monitor.store.tables import SourceRow
from tests.support.feedserver import SMALL_RSS, FeedServer, rss


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def _service(tmp: Path, url: str, server: FeedServer, routes: dict[str, str]) -> Service:
    folder = tmp / "watchlists"
    folder.mkdir()
    lines = ["sources:"]
    for source_id, path in routes.items():
        target = path if path.startswith("http") else server.url(path)
        lines += [
            f"  - id: {source_id}",
            f"    name: {source_id}",
            f"    url: {target}",
            "    every: 10m",
        ]
    (folder / "sources.yaml").write_text("\n".join(lines) + "\n")
    db.upgrade(url)
    settings = Settings(
        database_url=url,  # type: ignore[arg-type]
        watchlists_dir=folder,
        allow_private_hosts=["127.0.0.1"],
        fetch_total_timeout=2.0,
        fetch_read_timeout=1.0,
        http_port=-1,
    )
    service = Service(App(settings))
    service.prepare(exclusive=False)
    return service


def _rows(service: Service) -> dict[str, SourceRow]:
    with Session(service.engine) as session:
        return {row.id: row for row in session.query(SourceRow)}


@pytest.mark.slow
def test_each_misbehaviour_ends_in_its_state(
    server: FeedServer, tmp_path: Path, db_url: str
) -> None:
    server.add("/ok.xml", rss([("Launch report", "http://127.0.0.1/a/1")]))
    server.add_status("/500", 500)
    server.add_retry_after("/429", 600)
    server.add_status("/gone", 410)
    server.add_redirect_loop("/loop")
    server.add_redirect("/meta", "http://169.254.169.254/latest/meta-data/")
    server.add_trickle("/slow", SMALL_RSS * 20, interval=0.3)
    server.add_huge("/huge")
    server.add_gzip_bomb("/bomb")
    server.add_entity_expansion("/entities", "quadratic")
    server.add_html("/html")
    routes = {
        "ok": "/ok.xml",
        "e500": "/500",
        "e429": "/429",
        "gone": "/gone",
        "loop": "/loop",
        "meta": "/meta",
        "slow": "/slow",
        "huge": "/huge",
        "bomb": "/bomb",
        "entities": "/entities",
        "html": "/html",
    }
    service = _service(tmp_path, db_url, server, routes)
    try:
        before = datetime.now(UTC)
        reports = {r.source_id: r for r in asyncio.run(service.poller.poll_due(force=True))}
        asyncio.run(service.aclose())
    finally:
        service.engine.dispose()
    expected = {
        "ok": "ok",
        "e500": "http_5xx",
        "e429": "rate_limited",
        "gone": "gone",
        "loop": "too_many_redirects",
        "meta": "blocked_ssrf",
        "slow": "timeout",
        "huge": "too_large",
        "bomb": "too_large",
        "entities": "rejected_entities",
        "html": "parse_error",
    }
    engine = db.make_engine(db_url)
    try:
        with Session(engine) as session:
            rows = {row.id: row for row in session.query(SourceRow)}
    finally:
        engine.dispose()
    assert {k: r.last_status for k, r in rows.items()} == expected
    assert rows["ok"].failures == 0 and rows["ok"].first_poll_done and rows["ok"].etag
    for source_id, row in rows.items():
        assert row.lease_owner is None  # every claim completed
        if source_id == "ok":
            continue
        assert row.failures == 1 and row.last_error, source_id
        assert row.next_poll_at > before, source_id  # backs off, never hot-loops
    assert rows["e500"].error_transient is True and rows["e500"].last_http_status == 500
    # Retry-After: 600 is honoured as the earliest next poll
    assert rows["e429"].next_poll_at >= before + timedelta(seconds=590)
    assert rows["gone"].disabled_reason and "410" in rows["gone"].disabled_reason
    assert "169.254.169.254" in (rows["meta"].last_error or "") or "link-local" in (
        rows["meta"].last_error or ""
    )
    # the trickle is cut at the overall deadline, not after the whole body
    assert reports["slow"].seconds < 6
    assert reports["ok"].new == 1


def test_gone_source_is_not_polled_again(
    server: FeedServer, tmp_path: Path, sqlite_url: str
) -> None:
    server.add_status("/gone", 410)
    server.add("/ok.xml", rss([("a", "http://127.0.0.1/a/1")]))
    service = _service(tmp_path, sqlite_url, server, {"gone": "/gone", "ok": "/ok.xml"})
    try:
        asyncio.run(service.poller.poll_due(force=True))
        second = asyncio.run(service.poller.poll_due(force=True))
        asyncio.run(service.aclose())
    finally:
        service.engine.dispose()
    assert [r.source_id for r in second] == ["ok"]
    assert server.hits["/gone"] == 1


def _claim_then_lose(service: Service, lost: str) -> tuple[list[ClaimedSource], ClaimedSource]:
    """Claim every source with a 1 s lease, then let "other" take `lost` over once it expired."""
    now = utcnow()
    with Session(service.engine) as session, session.begin():
        claims = sources.claim_sources(
            session, owner=service.owner, now=now, lease_seconds=1, limit=100, force=True
        )
    with Session(service.engine) as session, session.begin():
        (taken,) = sources.claim_sources(
            session,
            owner="other",
            now=now + timedelta(seconds=5),
            lease_seconds=60,
            limit=1,
            force=True,
            only=[lost],
        )
    return claims, taken


def test_batched_304_updates_are_fenced(
    server: FeedServer, tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica that lost its lease while its 304 waited in the batch writes nothing."""
    server.add("/ok.xml", rss([("a", "http://127.0.0.1/a/1")]))
    service = _service(tmp_path, sqlite_url, server, {"ok": "/ok.xml"})
    try:
        asyncio.run(service.poller.poll_due(force=True))  # first poll: catch-up, validators
        (stale,), taken = _claim_then_lose(service, "ok")
        result = FetchResult("ok", server.url("/ok.xml"), 304, None, {}, None, None, None, 0.0)
        report = service.poller._batch_if_quiet(stale, result)
        assert report is not None and report.status == "not_modified"
        assert service.poller.flush_quiet() == 0
        row = _rows(service)["ok"]
        assert row.lease_owner == "other" and row.lease_epoch == taken.lease_epoch
        assert row.last_status == "ok"  # the stale 304 did not overwrite the state
        asyncio.run(service.aclose())
    finally:
        service.engine.dispose()


def test_a_batch_with_one_lost_lease_writes_the_others(
    server: FeedServer, tmp_path: Path, db_url: str
) -> None:
    """The batched 304 write is all-or-retry: one fenced-off row must not cost the others."""
    routes = {f"s{i}": f"/s{i}.xml" for i in range(4)}
    for path in routes.values():
        server.add(path, rss([("a", "http://127.0.0.1/a/1")]))
    service = _service(tmp_path, db_url, server, routes)
    try:
        asyncio.run(service.poller.poll_due(force=True))  # first poll: catch-up, validators
        polls_before = {k: r.polls for k, r in _rows(service).items()}
        claims, taken = _claim_then_lose(service, "s2")
        for claim in claims:
            result = FetchResult(claim.id, claim.url, 304, None, {}, None, None, None, 0.0)
            assert service.poller._batch_if_quiet(claim, result) is not None
        assert service.poller.flush_quiet() == 3
        rows = _rows(service)
        asyncio.run(service.aclose())
    finally:
        service.engine.dispose()
    assert rows["s2"].lease_owner == "other" and rows["s2"].lease_epoch == taken.lease_epoch
    assert rows["s2"].last_status == "ok" and rows["s2"].polls == polls_before["s2"]
    for source_id in ("s0", "s1", "s3"):
        row = rows[source_id]
        assert row.lease_owner is None and row.last_status == "not_modified", source_id
        assert row.polls == polls_before[source_id] + 1, source_id
