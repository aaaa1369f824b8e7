"""Edited entries through the real poll path (a local HTTP feed server, real SQLite): a view
counter that changes on every poll is not news (no update alert, no revision), a changed title
is, a flood of updates goes through the flood guard, and old revisions are pruned."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from monitor.render import AlertContent
from monitor.store.articles import KEEP_REVISIONS
from monitor.store.tables import AlertRow, ArticleRevisionRow, ArticleRow
from tests.support.desk import Desk, Item, feed
from tests.support.feedserver import FeedServer


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def story(n: int, views: int, title: str = "") -> Item:
    """Article `n` with a view counter in its description, as some feeds carry."""
    heading = title or f"North Korea fires missile number {n} into the sea"
    text = f"The launch was seen from Japan. {views:,} views · {views // 40} comments"
    return (f"a{n}", heading, text, None)


def alerts(desk: Desk) -> list[AlertRow]:
    with Session(desk.engine) as session:
        return list(session.scalars(select(AlertRow).order_by(AlertRow.id)))  # type: ignore[arg-type]


def revisions(desk: Desk) -> list[tuple[int, int]]:
    with Session(desk.engine) as session:
        rows = session.execute(
            select(ArticleRevisionRow.article_id, ArticleRevisionRow.revision).order_by(
                ArticleRevisionRow.article_id, ArticleRevisionRow.revision
            )
        )
        return [(int(a), int(r)) for a, r in rows]


@pytest.fixture
def desk(server: FeedServer, tmp_path: Path, sqlite_url: str) -> Iterator[Desk]:
    """A source whose first poll (the catch-up) is done; tests publish on /feed.xml."""
    url = server.add("/feed.xml", feed([("seed", "Seed", "seed", None)]))
    desk = Desk(tmp_path, sqlite_url, {"wire": url}, flood_threshold=3)
    try:
        assert desk.poll("wire").status == "ok"
        yield desk
    finally:
        desk.close()


def test_a_changing_view_counter_is_not_an_update(server: FeedServer, desk: Desk) -> None:
    server.update("/feed.xml", feed([story(1, 1234), story(2, 56)]))
    assert desk.poll("wire").alerts == 2
    for poll, views in enumerate((1301, 1477, 2010), start=1):
        server.update("/feed.xml", feed([story(1, views), story(2, 56 + poll)]))
        report = desk.poll("wire")
        assert (report.status, report.new, report.updated, report.alerts) == ("ok", 0, 0, 0)
    assert [a.kind for a in alerts(desk)] == ["alert", "alert"]
    assert revisions(desk) == []
    with Session(desk.engine) as session:
        texts = set(session.scalars(select(ArticleRow.summary).where(ArticleRow.title != "Seed")))
    assert any("1,234 views" in t for t in texts)  # the stored text keeps the first counter

    # A changed headline is news, counter or not: one update, in the thread of its alert.
    corrected = "North Korea fires a missile from a submarine"
    server.update("/feed.xml", feed([story(1, 2222, corrected), story(2, 99)]))
    report = desk.poll("wire")
    assert (report.updated, report.alerts) == (1, 1)
    first, _second, update = alerts(desk)
    assert update.kind == "update" and update.parent_alert_id == first.id
    assert AlertContent.from_json(update.payload_json).title == corrected
    assert len(revisions(desk)) == 1


def test_a_flood_of_updates_is_folded_by_the_flood_guard(server: FeedServer, desk: Desk) -> None:
    server.update("/feed.xml", feed([story(n, 10) for n in (1, 2, 3)]))
    assert desk.poll("wire").alerts == 3  # at the threshold of 3: one by one
    server.update("/feed.xml", feed([story(n, 10) for n in (1, 2, 3, 4, 5)]))
    assert desk.poll("wire").alerts == 2
    # Every headline rewritten at once (a CMS migration): five updates, more than three.
    server.update("/feed.xml", feed([story(n, 10, f"Missile {n}: corrected") for n in range(1, 6)]))
    report = desk.poll("wire")
    assert (report.updated, report.alerts) == (5, 1)
    rows = alerts(desk)
    assert [r.kind for r in rows] == ["alert"] * 5 + ["summary"]
    summary = AlertContent.from_json(rows[-1].payload_json)
    assert summary.total == 5 and summary.extra["updates"] == "5"
    assert {i.kind for i in summary.items} == {"update"}
    assert len(revisions(desk)) == 5  # the edits are recorded all the same

    # Two updates in the next poll: under the threshold, each in its thread again.
    server.update(
        "/feed.xml",
        feed(
            [
                story(n, 10, f"Missile {n}: final" if n < 3 else f"Missile {n}: corrected")
                for n in range(1, 6)
            ]
        ),
    )
    assert desk.poll("wire").alerts == 2
    assert [r.kind for r in alerts(desk)][-2:] == ["update", "update"]


def test_only_the_last_revisions_are_kept(server: FeedServer, desk: Desk) -> None:
    server.update("/feed.xml", feed([story(1, 10)]))
    assert desk.poll("wire").alerts == 1
    edits = KEEP_REVISIONS + 3
    for n in range(1, edits + 1):
        server.update("/feed.xml", feed([story(1, 10, f"Missile launch, version {n}")]))
        report = desk.poll("wire")
        assert (report.updated, report.alerts) == (1, 1)
    kept = revisions(desk)
    with Session(desk.engine) as session:
        article = session.scalars(select(ArticleRow).where(ArticleRow.title != "Seed")).one()
        updates = session.scalar(
            select(func.count()).select_from(AlertRow).where(AlertRow.kind == "update")
        )
    # revision 1 is the article as first stored; each edit adds one
    assert article.revision == edits + 1 and article.title == f"Missile launch, version {edits}"
    assert [r for _a, r in kept] == list(range(edits + 2 - KEEP_REVISIONS, edits + 2))
    assert updates == edits  # pruning revisions never touches the alerts
