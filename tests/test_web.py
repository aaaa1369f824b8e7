"""The HTTP listener: /livez, /readyz, /metrics, /status and `monitor health`, on real databases.

The web server only needs a few attributes of the running service; these tests give it a real
engine (migrated with Alembic), a real watchlist registry and real metrics, and talk to it over
real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from monitor.clock import utcnow
from monitor.metrics import ServiceMetrics, metric_names, sample_value
from monitor.model import PollStatus
from monitor.settings import Settings
from monitor.store import db
from monitor.store.tables import AlertRow, ArticleRow, ReplicaRow, SourceRow
from monitor.watchlists import WatchlistRegistry
from monitor.web import LIVEZ_MAX_AGE_SECONDS, WebServer

REPO = Path(__file__).resolve().parents[1]


@dataclass
class HealthState:
    started: float = field(default_factory=time.time)
    heartbeat: float = field(default_factory=time.monotonic)
    draining: bool = False


@dataclass
class FakeService:
    """The attributes WebServer reads from monitor.service.Service, all of them real objects."""

    settings: Settings
    engine: Engine
    registry: WatchlistRegistry
    owner: str = "test-replica"
    health: HealthState = field(default_factory=HealthState)
    metrics: ServiceMetrics = field(default_factory=lambda: ServiceMetrics(commit="abc123"))


def make_service(url: str, *, load_watchlists: bool = True) -> FakeService:
    settings = Settings(
        database_url=url,  # type: ignore[arg-type]
        http_host="127.0.0.1",
        http_port=0,
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
    )
    registry = WatchlistRegistry(REPO / "watchlists")
    if load_watchlists:
        assert registry.reload() == []
    return FakeService(settings, db.make_engine(url), registry)


@pytest.fixture
async def served(db_url: str) -> AsyncIterator[tuple[FakeService, WebServer]]:
    db.upgrade(db_url)
    service = make_service(db_url)
    server = WebServer(service)
    await server.start()
    try:
        yield service, server
    finally:
        await server.stop()
        service.engine.dispose()


ADMIN_TOKEN = "status-page-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def get(url: str, **headers: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, allow_redirects=False) as resp,
    ):
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


BROKEN_URL = "http://user:SENTINEL-3@127.0.0.1:9/x?access_token=SENTINEL-3"
MOVED_SHOWN = "https://news.example.org/new-feed.xml?X-Amz-Signature=[redacted]"


def seed(engine: Engine) -> None:
    now = utcnow()
    with Session(engine) as session, session.begin():
        session.add(
            SourceRow(
                id="good",
                name="Good",
                url="http://127.0.0.1:9/feed.xml",
                # stored before moves were stored redacted: /status redacts it on the way out
                moved_to="https://news.example.org/new-feed.xml?X-Amz-Signature=SENTINEL-3",
            )
        )
        session.add(
            SourceRow(
                id="broken",
                name="Broken",
                url=BROKEN_URL,
                failures=3,
                last_status="http_5xx",
                last_http_status=503,
                last_error=f"HTTP 503 from {BROKEN_URL}",
            )
        )
        session.add(
            ArticleRow(
                id=1,
                source_id="good",
                entry_key="k1",
                title="<script>alert(1)</script> Missile launch",
                content_hash="h1",
            )
        )
        for i, status in enumerate(["pending", "pending", "sent", "dead", "retry"], start=1):
            session.add(
                AlertRow(
                    dedup_key=f"a{i}",
                    article_id=1,
                    source_id="good",
                    watchlist_id="missile-tests",
                    channel="slack",
                    destination="#nk-desk",
                    status=status,
                    created_at=now - timedelta(seconds=100 * i),
                )
            )
        session.add(ReplicaRow(name="other-replica", started_at=now, last_seen_at=now))
        session.add(
            ReplicaRow(
                name="gone-replica",
                started_at=now - timedelta(hours=1),
                last_seen_at=now - timedelta(minutes=10),
            )
        )


async def test_livez_follows_the_scheduler_heartbeat(
    served: tuple[FakeService, WebServer],
) -> None:
    service, server = served
    status, ctype, body = await get(server.url + "/livez")
    assert status == 200 and ctype.startswith("application/json")
    assert json.loads(body)["status"] == "alive"
    status, _, _ = await get(server.url + "/healthz")
    assert status == 200
    service.health.heartbeat = time.monotonic() - LIVEZ_MAX_AGE_SECONDS - 1
    status, _, body = await get(server.url + "/livez")
    assert status == 503 and json.loads(body)["status"] == "stalled"
    assert (await get(server.url + "/healthz"))[0] == 503


async def test_livez_ignores_the_database(tmp_path: Path) -> None:
    """A database outage must not make the orchestrator restart the process."""
    service = make_service("postgresql+psycopg://nobody:pw@127.0.0.1:1/none")
    server = WebServer(service)
    await server.start()
    try:
        assert (await get(server.url + "/livez"))[0] == 200
        status, _, body = await get(server.url + "/readyz")
        assert status == 503
        checks = json.loads(body)["checks"]
        assert checks["database"]["ok"] is False
        assert "pw" not in checks["database"]["detail"]
        assert checks["watchlists"]["ok"] is True
    finally:
        await server.stop()


async def test_readyz_checks_each_condition(served: tuple[FakeService, WebServer]) -> None:
    service, server = served
    status, _, body = await get(server.url + "/readyz")
    data = json.loads(body)
    assert status == 200, body
    assert data["status"] == "ready"
    wanted = {"database", "schema", "watchlists", "watchlist_reload", "draining"}
    assert set(data["checks"]) == wanted
    assert all(check["ok"] for check in data["checks"].values())

    service.health.draining = True
    status, _, body = await get(server.url + "/readyz")
    assert status == 503
    assert json.loads(body)["checks"]["draining"]["ok"] is False
    service.health.draining = False

    service.registry.loaded = False
    status, _, body = await get(server.url + "/readyz")
    assert status == 503
    assert json.loads(body)["checks"]["watchlists"]["ok"] is False


async def test_readyz_wants_the_schema_at_head(sqlite_url: str) -> None:
    db.upgrade(sqlite_url, "base")  # creates the file and alembic's table, no revision
    service = make_service(sqlite_url)
    server = WebServer(service)
    await server.start()
    try:
        status, _, body = await get(server.url + "/readyz")
        checks = json.loads(body)["checks"]
        assert status == 503
        assert checks["database"]["ok"] is True
        assert checks["schema"]["ok"] is False
        assert "monitor db upgrade" in checks["schema"]["detail"]
        await asyncio.to_thread(db.upgrade, sqlite_url)
        await asyncio.sleep(1.1)  # past the readiness cache
        assert (await get(server.url + "/readyz"))[0] == 200
    finally:
        await server.stop()
        service.engine.dispose()


async def test_metrics_names_units_and_values(served: tuple[FakeService, WebServer]) -> None:
    service, server = served
    await asyncio.to_thread(seed, service.engine)
    m = service.metrics
    m.observe_poll(PollStatus.OK, 0.4, new=3, updated=1, alerts=2, matches=2)
    m.observe_poll(PollStatus.NOT_MODIFIED, 0.05, new=0, updated=0, alerts=0, matches=0)
    m.observe_poll(
        PollStatus.ERROR, 30.0, new=0, updated=0, alerts=0, matches=0, error_kind="timeout"
    )
    m.observe_tick("poll", 0.7)
    status, ctype, body = await get(server.url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    names = metric_names(body)
    assert names and all(name.startswith("monitor_") for name in names), names
    assert not any(name.endswith("_created") for name in names)
    # No per-source or per-URL labels anywhere.
    assert "url=" not in body and "source=" not in body and "good" not in body
    assert sample_value(body, "monitor_feed_fetches_total", {"outcome": "ok"}) == 1
    assert sample_value(body, "monitor_feed_fetches_total", {"outcome": "timeout"}) == 1
    assert sample_value(body, "monitor_feed_fetch_duration_seconds_count") == 3
    assert sample_value(body, "monitor_articles_new_total") == 3
    assert sample_value(body, "monitor_watchlist_matches_total") == 2
    assert sample_value(body, "monitor_alerts_enqueued_total") == 2
    assert sample_value(body, "monitor_tick_duration_seconds_count", {"job": "poll"}) == 1
    assert sample_value(body, "monitor_alerts", {"channel": "slack", "state": "pending"}) == 2
    assert sample_value(body, "monitor_alerts", {"channel": "slack", "state": "dead"}) == 1
    assert sample_value(body, "monitor_outbox_pending", {"channel": "slack"}) == 3
    oldest = sample_value(body, "monitor_outbox_oldest_pending_age_seconds", {"channel": "slack"})
    assert 490 <= oldest <= 600  # the retry row, created 500 s ago
    assert sample_value(body, "monitor_sources") == 2
    assert sample_value(body, "monitor_sources_failing") == 1
    assert sample_value(body, "monitor_replicas_alive") == 1
    assert sample_value(body, "monitor_database_up") == 1
    assert sample_value(body, "monitor_watchlist_reloads_total", {"result": "ok"}) == 1
    assert sample_value(body, "monitor_watchlists") == 3
    assert sample_value(body, "monitor_build_info", {"commit": "abc123"}) == 1
    counters = [n for n in names if n.endswith("_total")]
    assert len(counters) >= 5
    # A second scrape does not double counters mirrored from the registry.
    _, _, again = await get(server.url + "/metrics")
    assert sample_value(again, "monitor_watchlist_reloads_total", {"result": "ok"}) == 1


async def test_metrics_answer_with_the_database_down() -> None:
    service = make_service("postgresql+psycopg://nobody:pw@127.0.0.1:1/none")
    server = WebServer(service)
    await server.start()
    try:
        service.metrics.observe_poll(PollStatus.OK, 0.1, new=1, updated=0, alerts=0, matches=0)
        status, _, body = await get(server.url + "/metrics")
        assert status == 200
        assert sample_value(body, "monitor_database_up") == 0
        assert sample_value(body, "monitor_articles_new_total") == 1
        assert "monitor_outbox_pending" not in body
    finally:
        await server.stop()


async def test_status_json_and_html(served: tuple[FakeService, WebServer]) -> None:
    service, server = served
    await asyncio.to_thread(seed, service.engine)
    status, ctype, body = await get(server.url + "/status?format=json", **AUTH)
    assert status == 200 and ctype.startswith("application/json")
    data = json.loads(body)
    assert data["replica"]["name"] == "test-replica" and data["replica"]["ready"] is True
    assert [s["id"] for s in data["sources"]] == ["broken", "good"]  # failing first
    broken = data["sources"][0]
    assert broken["failures"] == 3 and broken["http_status"] == 503
    assert data["sources"][1]["moved_to"] == MOVED_SHOWN
    assert broken["url"] == "http://[redacted]@127.0.0.1:9/x?access_token=[redacted]"
    assert broken["error"] == f"HTTP 503 from {broken['url']}"
    assert "SENTINEL" not in body  # query values and userinfo of URLs and errors are redacted
    assert data["outbox"]["waiting"] == 3 and data["outbox"]["dead"] == 1
    assert len(data["alerts"]) == 5 and data["alerts"][0]["watchlist"] == "missile-tests"
    alive = {r["name"]: r["alive"] for r in data["replicas"]}
    assert alive == {"other-replica": True, "gone-replica": False}

    # Content negotiation: Accept wins when no format is given; browsers get HTML.
    _, ctype, _ = await get(server.url + "/status", Accept="application/json", **AUTH)
    assert ctype.startswith("application/json")
    status, ctype, html = await get(server.url + "/status", Accept="text/html,*/*", **AUTH)
    assert status == 200 and ctype.startswith("text/html")
    assert "missile-tests" in html and "gone-replica" in html
    assert f"moved permanently to {MOVED_SHOWN}" in html and "SENTINEL" not in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert (await get(server.url + "/status?limit=x", **AUTH))[0] == 400
    _, _, one = await get(server.url + "/status?format=json&limit=1", **AUTH)
    assert [s["id"] for s in json.loads(one)["sources"]] == ["broken"]
    assert (await get(server.url + "/"))[0] == 302


async def test_status_with_the_database_down() -> None:
    service = make_service("postgresql+psycopg://nobody:pw@127.0.0.1:1/none")
    server = WebServer(service)
    await server.start()
    try:
        status, _, body = await get(server.url + "/status?format=json", **AUTH)
        data = json.loads(body)
        assert status == 503
        assert data["database"]["ok"] is False and data["replica"]["ready"] is False
        status, _, html = await get(server.url + "/status", **AUTH)
        assert status == 503 and "Database unreachable" in html
    finally:
        await server.stop()


async def test_port_zero_picks_a_free_port_and_a_busy_port_is_a_clear_error(
    sqlite_url: str,
) -> None:
    db.upgrade(sqlite_url)
    service = make_service(sqlite_url)
    first = WebServer(service)
    await first.start()
    try:
        assert first.port is not None and first.port > 0
        busy = make_service(sqlite_url)
        busy.settings = Settings(
            database_url=sqlite_url, http_host="127.0.0.1", http_port=first.port
        )
        with pytest.raises(OSError, match="MONITOR_HTTP_PORT"):
            await WebServer(busy).start()
        busy.engine.dispose()
    finally:
        await first.stop()
        service.engine.dispose()


def run_health(*args: str, port: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    if port is not None:
        env["MONITOR_HTTP_PORT"] = str(port)
    return subprocess.run(
        [sys.executable, "-m", "monitor", "health", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


@pytest.mark.slow
async def test_monitor_health_exit_codes(sqlite_url: str) -> None:
    db.upgrade(sqlite_url)
    service = make_service(sqlite_url)
    server = WebServer(service)
    await server.start()
    try:
        ok = await asyncio.to_thread(run_health, port=server.port)
        assert ok.returncode == 0, ok.stderr
        assert "ready" in ok.stdout
        service.health.draining = True
        not_ready = await asyncio.to_thread(run_health, port=server.port)
        assert not_ready.returncode == 1
        assert "draining: shutting down" in not_ready.stderr
        live = await asyncio.to_thread(run_health, "--live", port=server.port)
        assert live.returncode == 0, live.stderr
        port = server.port
    finally:
        await server.stop()
        service.engine.dispose()
    silent = await asyncio.to_thread(run_health, "--timeout", "1", port=port)
    assert silent.returncode == 2 and "no answer" in silent.stderr
    off = await asyncio.to_thread(run_health, port=0)
    assert off.returncode == 2 and "--url" in off.stderr


async def test_status_needs_the_admin_token(served: tuple[FakeService, WebServer]) -> None:
    """Desk data (recipients, titles, errors) only with the token; probes stay open."""
    _, server = served
    status, _, body = await get(server.url + "/status?format=json")
    assert status == 401 and "Authorization: Bearer" in body
    status, _, _ = await get(server.url + "/status", Authorization="Bearer wrong-token")
    assert status == 401
    status, _, _ = await get(server.url + "/status", Authorization=ADMIN_TOKEN)  # no scheme
    assert status == 401
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + "/status", headers=AUTH) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Cache-Control"] == "no-store"
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/status") as resp:
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert resp.headers["X-Frame-Options"] == "DENY"  # errors carry them too
        for open_path in ("/livez", "/readyz", "/metrics"):
            async with session.get(server.url + open_path) as resp:
                assert resp.status == 200, open_path


async def test_status_is_off_without_a_token(db_url: str) -> None:
    db.upgrade(db_url)
    service = make_service(db_url)
    service.settings = Settings(
        database_url=db_url,  # type: ignore[arg-type]
        http_host="127.0.0.1",
        http_port=0,
    )
    server = WebServer(service)
    await server.start()
    try:
        status, _, body = await get(server.url + "/status", **AUTH)
        assert status == 404 and "MONITOR_ADMIN_TOKEN" in body
        assert (await get(server.url + "/livez"))[0] == 200
    finally:
        await server.stop()
        service.engine.dispose()


async def test_status_shows_the_watchlist_reload_state(
    served: tuple[FakeService, WebServer],
) -> None:
    service, server = served
    _, _, body = await get(server.url + "/status?format=json", **AUTH)
    watchlists = json.loads(body)["watchlists"]
    assert watchlists["loaded"] is True and watchlists["count"] == len(service.registry.watchlists)
    assert watchlists["problems"] == []
    _, _, ready = await get(server.url + "/readyz")
    assert "watchlist_reload" in json.loads(ready)["checks"]
