"""A real console to test against: a migrated SQLite database seeded with corpus articles and
sources in every state, a writable copy of the shipped watchlists (models trained with the
hashing text model), and the service's own listener on 127.0.0.1.

Used by the console tests, the browser tests, `benchmarks/console.py` and the screenshot
script, so each looks at the same thing.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from monitor.relevance.embed import HashingEmbedder
from monitor.relevance.models import RelevanceModels, train_models
from monitor.settings import Settings
from monitor.store import db
from monitor.store.tables import (
    AlertRow,
    ArticleCopyRow,
    ArticleRow,
    PollEventRow,
    ReplicaRow,
    SourceRow,
    Story,
)
from monitor.store.vectors import DatabaseVectors
from monitor.watchlists import WatchlistRegistry
from monitor.web import WebServer
from tests.support.paths import REPO

ADMIN = "admin-token-for-tests"
DESK = "desk-token-for-tests"
HOSTILE_TITLE = '<img src=x onerror="window.__pwned=1"> North Korea fires <b>ballistic</b> missile'
CORPUS = REPO / "tests" / "data" / "corpus" / "articles.jsonl"


@dataclass
class HealthState:
    started: float = field(default_factory=time.time)
    heartbeat: float = field(default_factory=time.monotonic)
    draining: bool = False


@dataclass
class ConsoleService:
    """The attributes the listener reads from monitor.service.Service, all real objects."""

    settings: Settings
    engine: Engine
    registry: WatchlistRegistry
    owner: str = "console-test"
    health: HealthState = field(default_factory=HealthState)
    metrics: object = None


def watchlist_folder(target: Path, *, examples: bool = True, negatives: int = 150) -> Path:
    """A writable copy of the shipped watchlists (without examples: the query decides). The
    examples files keep every relevant line and the first `negatives` others, so models
    train in a fraction of a second."""
    target.mkdir(parents=True, exist_ok=True)
    for path in (REPO / "watchlists").iterdir():
        if path.suffix == ".jsonl":
            if examples:
                lines = path.read_text(encoding="utf-8").splitlines()
                kept = [ln for ln in lines if '"relevant": true' in ln]
                kept += [ln for ln in lines if '"relevant": true' not in ln][:negatives]
                (target / path.name).write_text("\n".join(kept) + "\n", encoding="utf-8")
            continue
        shutil.copy(path, target / path.name)
    if not examples:
        for path in target.glob("*.yaml"):
            text = path.read_text(encoding="utf-8")
            path.write_text(
                "\n".join(
                    line for line in text.splitlines() if not line.startswith("examples:")
                )
                + "\n",
                encoding="utf-8",
            )
    return target


def make_service(
    db_url: str, folder: Path, *, admin: str | None = ADMIN, desk: str | None = DESK
) -> ConsoleService:
    from monitor.metrics import ServiceMetrics

    settings = Settings(
        database_url=db_url,  # type: ignore[arg-type]
        http_host="127.0.0.1",
        http_port=0,
        admin_token=admin,  # type: ignore[arg-type]
        desk_token=desk,  # type: ignore[arg-type]
        embedder="hashing",
        watchlists_dir=folder,
        sources_file=folder / "sources.yaml",
    )
    engine = db.make_engine(db_url)
    embedder = HashingEmbedder()
    vectors = DatabaseVectors(engine)

    def trainer(watchlists: object) -> RelevanceModels:
        chosen = [w for w in watchlists if w.examples is not None]  # type: ignore[attr-defined]
        return train_models(chosen, embedder, vectors) if chosen else RelevanceModels()

    registry = WatchlistRegistry(folder, trainer=trainer)
    registry.reload()
    return ConsoleService(settings, engine, registry, metrics=ServiceMetrics(commit="test"))


def corpus(limit: int | None = None) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    return rows[:limit] if limit else rows


def seed(
    engine: Engine, *, articles: int = 400, span_days: float = 6, now: datetime | None = None
) -> dict[str, int]:
    """Sources in every health, `articles` corpus articles over the last `span_days` (reused
    round-robin beyond the corpus), the hostile title, a story of two outlets, alerts in
    several states (one dead), poll history and two replicas. Returns ids worth visiting."""
    now = now or datetime.now(UTC)
    texts = corpus()
    with Session(engine) as session, session.begin():
        session.add_all(
            [
                SourceRow(id="kcna", name="KCNA Watch", url="https://kcnawatch.org/feed/",
                          last_status="ok", polls=40, last_polled_at=now - timedelta(minutes=3),
                          last_success_at=now - timedelta(minutes=3), first_poll_done=True),
                SourceRow(id="yonhap", name="Yonhap", url="https://en.yna.co.kr/RSS/nk.xml",
                          last_status="ok", polls=40, first_poll_done=True,
                          last_success_at=now - timedelta(minutes=5)),
                SourceRow(id="dailynk", name="Daily NK",
                          url="https://www.dailynk.com/feed/?key=SECRET-KEY-1",
                          last_status="http_4xx", last_http_status=403, failures=6,
                          error_transient=False, polls=12,
                          last_error="403 access forbidden (https://www.dailynk.com/feed/?key=SECRET-KEY-1)",
                          last_polled_at=now - timedelta(minutes=20),
                          last_success_at=now - timedelta(days=2)),
                SourceRow(id="38north", name="38 North", url="https://www.38north.org/feed",
                          last_status="ok", polls=30, first_poll_done=True,
                          moved_to="https://www.38north.org/feed/"),
                SourceRow(id="old-un", name="UN News (old)", url="https://news.un.org/old.xml",
                          last_status="gone", last_http_status=410,
                          disabled_reason="410 Gone: the server says this feed was removed"),
                SourceRow(id="fresh", name="Fresh source", url="https://example.org/feed.xml"),
            ]
        )
        session.execute(
            insert(PollEventRow),
            [
                {"source_id": "dailynk", "polled_at": now - timedelta(minutes=20 * i),
                 "status": "http_4xx" if i < 6 else "ok", "http_status": 403 if i < 6 else 200,
                 "error": "403 access forbidden (https://www.dailynk.com/feed/?key=[redacted])"
                 if i < 6 else None, "new_entries": None if i < 6 else 2,
                 "failures": max(0, 6 - i)}
                for i in range(8)
            ],
        )
        rows = []
        sources = ["kcna", "yonhap", "dailynk", "38north"]
        for i in range(articles):
            t = texts[i % len(texts)]
            seen = now - timedelta(minutes=(i * span_days * 24 * 60) / max(articles, 1))
            rows.append(
                {"source_id": sources[i % len(sources)], "entry_key": f"e{i}",
                 "url": t.get("url", ""), "link": t.get("url", ""),
                 "title": t["title"], "summary": t.get("summary", ""), "published": seen,
                 "first_seen": seen, "content_hash": f"h{i}", "revision": 1,
                 "catchup": False}
            )
        for start in range(0, len(rows), 5000):
            session.execute(insert(ArticleRow), rows[start : start + 5000])
        hostile = ArticleRow(
            source_id="kcna", entry_key="hostile", url="javascript:alert(1)",
            link="javascript:alert(1)", title=HOSTILE_TITLE,
            summary="KCNA said the DPRK test-fired a new ballistic missile <script>"
            "window.__pwned=2</script> off the east coast.",
            published=now - timedelta(minutes=1), first_seen=now - timedelta(minutes=1),
            content_hash="hostile",
        )
        session.add(hostile)
        session.flush()
        story = Story(key="s1", first_article_id=1, title=texts[0]["title"], article_count=2,
                      created_at=now - timedelta(hours=5), last_seen_at=now - timedelta(hours=1))
        session.add(story)
        session.flush()
        session.execute(
            ArticleRow.__table__.update()  # type: ignore[attr-defined]
            .where(ArticleRow.__table__.c.id.in_([1, 2]))  # type: ignore[attr-defined]
            .values(story_id=story.id)
        )
        session.add(ArticleCopyRow(article_id=1, source_id="yonhap", entry_key="copy-1",
                                   url="https://en.yna.co.kr/x"))
        payload = {"kind": "alert", "watchlist_id": "missile-tests",
                   "watchlist_name": "North Korean missile and weapons tests",
                   "title": HOSTILE_TITLE, "url": "javascript:alert(1)", "source": "kcna",
                   "score": 7.0, "terms": ["DPRK", "ballistic missile", "test-fired"],
                   "snippet": "the DPRK test-fired a new ballistic missile",
                   "highlights": [[4, 8], [9, 19], [26, 42]],
                   "reason": "model 0.91 (min 0.50): relevant · like: North Korea fires…"}
        alerts = []
        for i, state in enumerate(["sent", "sent", "pending", "retry", "dead"]):
            alerts.append(
                AlertRow(dedup_key=f"a{i}", article_id=hostile.id, source_id="kcna",
                         watchlist_id="missile-tests", channel="slack", destination="#nk-desk",
                         status=state, attempts=3 if state in ("retry", "dead") else 1,
                         payload_json=json.dumps(payload), created_at=now - timedelta(hours=i),
                         first_due_at=now - timedelta(hours=i),
                         sent_at=now - timedelta(hours=i) if state == "sent" else None,
                         dead_at=now - timedelta(minutes=30) if state == "dead" else None,
                         last_error="channel_not_found: #nk-desk does not exist"
                         if state == "dead" else None)
            )
        session.add_all(alerts)
        session.add(ReplicaRow(name="console-test", started_at=now - timedelta(hours=2),
                               last_seen_at=now, version="0.1.0"))
        session.add(ReplicaRow(name="replica-b", started_at=now - timedelta(hours=5),
                               last_seen_at=now - timedelta(minutes=9), version="0.1.0"))
        session.flush()
        return {"hostile": int(hostile.id or 0), "story": int(story.id or 0),
                "dead": int(alerts[-1].id or 0), "sent": int(alerts[0].id or 0)}


async def start(service: ConsoleService) -> WebServer:
    server = WebServer(service)  # type: ignore[arg-type]
    await server.start()
    return server


def prepared(db_url: str) -> None:
    db.upgrade(db_url)
