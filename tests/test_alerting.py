"""Planning outbox rows: what alerts, where it goes, threading, flood guard, digests."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from monitor.deliver import Dispatcher
from monitor.render import AlertContent
from tests.support.alerts import enqueue, item, rows, settings, watchlist

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)



def test_catchup_and_old_articles_never_alert(sq_engine: Engine) -> None:
    cfg = settings(max_article_age_hours=24)
    items = [
        item(1, catchup=True, published=NOW),
        item(2, published=NOW - timedelta(hours=25)),
        item(3, published=NOW - timedelta(hours=23)),
        item(4, published=None),
    ]
    assert enqueue(sq_engine, items, [watchlist()], cfg, NOW) == 2
    assert sorted(r.article_id or 0 for r in rows(sq_engine)) == [3, 4]


def test_rerun_never_doubles(engine: Engine) -> None:
    cfg = settings()
    items = [item(1), item(2)]
    assert enqueue(engine, items, [watchlist()], cfg, NOW) == 2
    assert enqueue(engine, items, [watchlist()], cfg, NOW) == 0
    assert len(rows(engine)) == 2


def test_nothing_configured_goes_to_console(sq_engine: Engine) -> None:
    enqueue(
        sq_engine, [item(1)], [watchlist(slack=("#nk",), email=("a@example.org",))], settings(), NOW
    )
    found = rows(sq_engine)
    assert [(r.channel, r.destination) for r in found] == [("console", "console")]


def test_routes_with_slack_and_email(sq_engine: Engine) -> None:
    cfg = settings(slack_bot_token="xoxb-1", smtp_host="127.0.0.1")
    wl = watchlist(slack=("#nk", "#desk"), email=("a@example.org", "b@example.org"))
    assert enqueue(sq_engine, [item(1)], [wl], cfg, NOW) == 4
    routes = {(r.channel, r.destination) for r in rows(sq_engine)}
    assert routes == {
        ("slack", "#nk"),
        ("slack", "#desk"),
        ("email", "a@example.org"),
        ("email", "b@example.org"),
    }


def test_slack_named_but_only_email_configured(sq_engine: Engine) -> None:
    cfg = settings(smtp_host="127.0.0.1")
    wl = watchlist(slack=("#nk",), email=("a@example.org",))
    enqueue(sq_engine, [item(1)], [wl], cfg, NOW)
    routes = {(r.channel, r.destination) for r in rows(sq_engine)}
    assert routes == {("email", "a@example.org"), ("console", "console")}


def test_webhook_mode_has_one_destination(sq_engine: Engine) -> None:
    cfg = settings(slack_webhook_url="https://hooks.slack.com/services/T/B/x")
    enqueue(sq_engine, [item(1)], [watchlist(slack=("#a", "#b"))], cfg, NOW)
    assert [(r.channel, r.destination) for r in rows(sq_engine)] == [("slack", "webhook")]


def test_default_channel_for_watchlists_without_slack(sq_engine: Engine) -> None:
    cfg = settings(slack_bot_token="xoxb-1", slack_default_channel="#alerts")
    enqueue(sq_engine, [item(1)], [watchlist(slack=())], cfg, NOW)
    assert [(r.channel, r.destination) for r in rows(sq_engine)] == [("slack", "#alerts")]


def test_watchlist_source_filter(sq_engine: Engine) -> None:
    cfg = settings(slack_bot_token="xoxb-1")
    assert enqueue(sq_engine, [item(1)], [watchlist(sources=("other",))], cfg, NOW) == 0


def test_update_is_a_followup_of_the_first_alert(sq_engine: Engine) -> None:
    cfg = settings(slack_bot_token="xoxb-1")
    enqueue(sq_engine, [item(1)], [watchlist()], cfg, NOW)
    edited = item(1, title="Kim Jong Un story 1 (updated)", change="update", content_hash="hash-v2")
    assert enqueue(sq_engine, [edited], [watchlist()], cfg, NOW) == 1
    first, follow = rows(sq_engine)
    assert follow.kind == "update" and follow.parent_alert_id == first.id
    assert AlertContent.from_json(follow.payload_json).title.endswith("(updated)")


def test_later_copy_of_story_is_also_reported(sq_engine: Engine) -> None:
    cfg = settings(slack_bot_token="xoxb-1")
    enqueue(sq_engine, [item(1, story=(10, True))], [watchlist()], cfg, NOW)
    copy = item(2, source="other", story=(10, False))
    assert enqueue(sq_engine, [copy], [watchlist()], cfg, NOW, source="other") == 1
    first, also = rows(sq_engine)
    assert first.kind == "alert" and also.kind == "also"
    assert also.parent_alert_id == first.id
    assert AlertContent.from_json(also.payload_json).source == "OTHER News"


def test_copy_of_story_that_never_alerted_is_top_level(sq_engine: Engine) -> None:
    cfg = settings(slack_bot_token="xoxb-1")
    enqueue(sq_engine, [item(2, story=(11, False))], [watchlist()], cfg, NOW)
    assert [r.kind for r in rows(sq_engine)] == ["alert"]


def test_same_poll_copies_thread_under_one_alert(engine: Engine) -> None:
    cfg = settings(slack_bot_token="xoxb-1")
    items = [item(1, story=(7, True)), item(2, story=(7, False)), item(3, story=(7, False))]
    assert enqueue(engine, items, [watchlist()], cfg, NOW) == 3
    found = rows(engine)
    assert [r.kind for r in found] == ["alert", "also", "also"]
    assert {r.parent_alert_id for r in found[1:]} == {found[0].id}


def test_flood_guard_folds_into_one_summary_per_destination(sq_engine: Engine) -> None:
    cfg = settings(slack_bot_token="xoxb-1", smtp_host="127.0.0.1", flood_threshold=3)
    wl = watchlist(email=("a@example.org",))
    assert enqueue(sq_engine, [item(i) for i in range(1, 6)], [wl], cfg, NOW) == 2
    found = rows(sq_engine)
    assert [r.kind for r in found] == ["summary", "summary"]
    payload = AlertContent.from_json(found[0].payload_json)
    assert payload.total == 5 and len(payload.items) == 5
    # At the threshold: individual alerts.
    assert (
        enqueue(sq_engine, [item(i, source="b") for i in range(1, 4)], [wl], cfg, NOW, source="b")
        == 6
    )


def test_updates_count_against_the_flood_guard(sq_engine: Engine) -> None:
    cfg = settings(flood_threshold=3)
    wl = watchlist()
    assert enqueue(sq_engine, [item(i) for i in range(1, 4)], [wl], cfg, NOW) == 3  # at it
    edits = [item(i, change="update", content_hash=f"v2-{i}") for i in range(1, 4)]
    assert enqueue(sq_engine, edits, [wl], cfg, NOW) == 3  # three updates: at the threshold
    assert [r.kind for r in rows(sq_engine)][3:] == ["update"] * 3
    # two updates and two new articles in one poll: four messages, more than three
    mixed = [
        item(1, change="update", content_hash="v3-1"),
        item(2, change="update", content_hash="v3-2"),
    ]
    assert enqueue(sq_engine, [*mixed, item(4), item(5)], [wl], cfg, NOW) == 1
    summary = rows(sq_engine)[-1]
    payload = AlertContent.from_json(summary.payload_json)
    assert summary.kind == "summary" and payload.total == 4 and payload.extra["updates"] == "2"
    # the same articles edited again later flood again: a summary of its own, not a duplicate
    again = [item(i, change="update", content_hash=f"v4-{i}") for i in range(1, 6)]
    assert enqueue(sq_engine, again, [wl], cfg, NOW) == 1


def test_one_poll_written_in_chunks_keeps_one_flood_guard(sq_engine: Engine) -> None:
    from sqlalchemy.orm import Session

    from monitor import alerting

    cfg = settings(flood_threshold=3)
    guard = alerting.FloodGuard(cfg.flood_threshold)

    def chunk(ids: range) -> int:
        with Session(sq_engine) as session, session.begin():
            return alerting.enqueue_for_poll(
                session,
                source_id="src",
                source_name="Src",
                items=[item(i) for i in ids],
                watchlists={"nk": watchlist()},
                settings=cfg,
                now=NOW,
                flood=guard,
            )

    assert chunk(range(1, 3)) == 2  # two single alerts
    assert chunk(range(3, 5)) == 1  # four in the poll now: these two are folded
    assert chunk(range(5, 6)) == 1  # the destination flooded: the rest of the poll folds too
    assert [r.kind for r in rows(sq_engine)] == ["alert", "alert", "summary", "summary"]


def test_digest_rows_wait_and_become_one_message(engine: Engine) -> None:
    cfg = settings()
    wl = watchlist(slack=(), mode="digest", digest="hourly")
    items = [item(1, story=(1, True)), item(2, story=(1, False)), item(3, story=(2, True))]
    assert enqueue(engine, items, [wl], cfg, NOW) == 3
    held = rows(engine)
    assert {r.status for r in held} == {"held"}
    assert {r.digest_at for r in held} == {NOW + timedelta(hours=1)}
    assert [r.kind for r in held] == ["alert", "also", "alert"]
    out = io.StringIO()
    dispatcher = Dispatcher(cfg, engine, owner="t", console=out)
    assert asyncio.run(dispatcher.tick(NOW + timedelta(minutes=30))) == 0
    assert asyncio.run(dispatcher.tick(NOW + timedelta(hours=1, seconds=1))) == 1
    final = rows(engine)
    digest = [r for r in final if r.kind == "digest"]
    assert len(digest) == 1 and digest[0].status == "sent"
    assert {r.status for r in final if r.kind != "digest"} == {"digested"}
    text = out.getvalue()
    assert "DIGEST" in text and "also reported by SRC News" in text
    payload = json.loads(digest[0].payload_json)
    assert payload["total"] == 3


@pytest.mark.parametrize("mode", ["immediate", "digest"])
def test_multiple_watchlists_are_separate(sq_engine: Engine, mode: str) -> None:
    cfg = settings(slack_bot_token="xoxb-1")
    wls = [
        watchlist("nk", mode=mode, digest="hourly" if mode == "digest" else None),
        watchlist("un", slack=("#un",)),
    ]
    assert enqueue(sq_engine, [item(1, watchlists=("nk", "un"))], wls, cfg, NOW) == 2
    assert {r.watchlist_id for r in rows(sq_engine)} == {"nk", "un"}


def test_preview_renders_what_a_poll_planned(sq_engine: Engine) -> None:
    from sqlalchemy.orm import Session

    from monitor import alerting

    cfg = settings(slack_bot_token="xoxb-1")
    with Session(sq_engine) as session, session.begin():
        alerting.enqueue_for_poll(
            session,
            source_id="src",
            source_name="Src",
            items=[item(1), item(2)],
            watchlists={"nk": watchlist()},
            settings=cfg,
            now=NOW,
        )
        shown = alerting.preview_for_poll(session, source_id="src", now=NOW)
        session.rollback()
    assert len(shown) == 2 and "slack:#nk" in shown[0] and "Kim Jong Un story 1" in shown[0]
    assert rows(sq_engine) == []
