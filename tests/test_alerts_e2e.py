"""End to end: local feeds → `monitor run` (a real subprocess) → the Slack stand-in and SMTP.

The second test kills the service with SIGKILL at random moments while 200 alerts are in
flight, restarts it, and checks that in the end every alert reached Slack exactly once.
"""

from __future__ import annotations

import functools
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from monitor.clock import utcnow
from monitor.store import db
from monitor.store.tables import AlertRow
from tests.support.alerts import enqueue, item, settings, watchlist
from tests.support.cluster import Replica, replica_env, start_replica
from tests.support.feedserver import FeedServer
from tests.support.slackfake import Fault, SlackFake
from tests.support.smtpserver import SmtpServer

pytestmark = pytest.mark.slow  # `monitor run` processes end to end, a kill -9 among them

TOKEN = "xoxb-test-token-0000"  # what tests/support/cluster.replica_env configures
REPO = Path(__file__).resolve().parents[1]

WATCHLIST = """name: Leader letters
description: Letters from Kim Jong Un.
query: '"Kim Jong Un" AND letter'
alert:
  slack: ["#nk-desk"]
  email: ["desk@example.org"]
"""
OTHER = """name: Launches
description: Missile launches.
query: missile
alert:
  slack: ["#launches"]
"""


def rss(items: list[tuple[str, str, str]]) -> bytes:
    """(guid, title, summary) items, published now."""
    now = format_datetime(datetime.now(UTC), usegmt=True)
    parts = [
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>',
        "<title>t</title><link>http://example.org/</link><description>d</description>",
    ]
    for guid, title, summary in items:
        parts.append(
            f"<item><title>{escape(title)}</title><link>http://example.org/{guid}</link>"
            f"<guid>{guid}</guid><description>{escape(summary)}</description>"
            f"<pubDate>{now}</pubDate></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def wait_for(check: Callable[[], bool], timeout: float, what: str, replica: Replica) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if replica.proc.poll() is not None:
            raise AssertionError(f"monitor run exited:\n{replica.tail()}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}:\n{replica.tail()}")


@pytest.fixture
def servers() -> Iterator[tuple[FeedServer, SlackFake, SmtpServer]]:
    with FeedServer() as feeds, SlackFake(TOKEN) as slack, SmtpServer() as smtp:
        yield feeds, slack, smtp


def poll_now(env: dict[str, str]) -> str:
    """A second poll without waiting 10 s for the schedule (the running service delivers)."""
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "poll", "--once", "--all"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_feeds_to_slack_and_email(
    tmp_path: Path, servers: tuple[FeedServer, SlackFake, SmtpServer]
) -> None:
    feeds, slack, smtp = servers
    folder = tmp_path / "watchlists"
    folder.mkdir()
    (folder / "letters.yaml").write_text(WATCHLIST)
    (folder / "launches.yaml").write_text(OTHER)
    wire = feeds.add("/wire.xml", rss([("old1", "Kim Jong Un letter archive", "old letter")]))
    daily = feeds.add("/daily.xml", rss([("d0", "Weather", "sunny")]))
    (folder / "sources.yaml").write_text(
        "sources:\n"
        f"  - id: wire\n    name: Wire Service\n    url: {wire}\n    every: 10m\n"
        f"  - id: daily\n    name: The Daily\n    url: {daily}\n    every: 10m\n"
    )
    env = replica_env(
        database_url=f"sqlite:///{tmp_path / 'monitor.db'}",
        watchlists_dir=folder,
        slack_api_url=slack.url,
        extra={
            "MONITOR_SMTP_HOST": smtp.host,
            "MONITOR_SMTP_PORT": str(smtp.port),
            "MONITOR_SMTP_SECURITY": "none",
            "MONITOR_SMTP_FROM": "alerts@monitor.example",
            "MONITOR_DELIVER_TICK_SECONDS": "0.2",
            "MONITOR_SLACK_CHANNEL_INTERVAL": "0.2",
        },
    )
    replica = start_replica("e2e", env, tmp_path / "logs")
    try:
        wait_for(
            lambda: bool(replica.events("polled")) and len(replica.events("polled")) >= 2,
            30,
            "the catch-up polls",
            replica,
        )
        time.sleep(0.5)
        assert slack.posts() == [] and smtp.received == []  # catch-up never alerts

        hostile = "<!channel> Kim Jong Un letter @here"
        body = "Kim Jong Un sent a letter <script>alert(1)</script> to Putin."
        feeds.update(
            "/wire.xml",
            rss(
                [
                    ("old1", "Kim Jong Un letter archive", "old letter"),
                    ("n1", hostile, body),
                    ("n2", "Missile launch reported", "A missile was fired."),
                    ("n3", "Markets calm", "Nothing to see."),
                ]
            ),
        )
        poll_now(env)
        wait_for(
            lambda: len(slack.messages) >= 2 and len(smtp.received) >= 1,
            20,
            "the first alerts",
            replica,
        )

        letters = slack.in_channel("nk-desk")
        launches = slack.in_channel("launches")
        assert len(letters) == 1 and len(launches) == 1
        first = letters[0]
        wire_text = first.text + str(first.blocks)
        assert "<!channel>" not in wire_text and not re.search(r"@here\b", wire_text)
        assert "\u2039!channel\u203a" in first.blocks[0]["text"]["text"]
        assert "Wire Service" in wire_text and "Leader letters" in wire_text
        assert first.args["unfurl_links"] is False and first.metadata is not None
        (mail,) = smtp.received
        msg = mail.message
        assert mail.rcpt_tos == ["desk@example.org"]
        assert msg["Subject"] == "[Leader letters] <!channel> Kim Jong Un letter @here"
        html = msg.get_body(("html",))
        assert html is not None
        assert "&lt;!channel&gt;" in html.get_content() and "<script" not in html.get_content()

        # An edit of the article and a copy from another outlet go into the thread.
        feeds.update(
            "/wire.xml",
            rss(
                [
                    ("old1", "Kim Jong Un letter archive", "old letter"),
                    ("n1", hostile, body + " Updated with reactions."),
                    ("n2", "Missile launch reported", "A missile was fired."),
                    ("n3", "Markets calm", "Nothing to see."),
                ]
            ),
        )
        feeds.update("/daily.xml", rss([("d0", "Weather", "sunny"), ("d1", hostile, body)]))
        poll_now(env)
        wait_for(
            lambda: len(slack.in_channel("nk-desk")) >= 3 and len(smtp.received) >= 3,
            20,
            "the follow-ups",
            replica,
        )
        time.sleep(0.5)
        letters = slack.in_channel("nk-desk")
        assert len(letters) == 3
        replies = letters[1:]
        assert all(m.thread_ts == first.ts for m in replies)
        texts = " ".join(m.text for m in replies)
        assert "Also reported by The Daily" in texts and "Updated:" in texts
        threaded = [m.message for m in smtp.received[1:]]
        assert all(m["In-Reply-To"] == msg["Message-ID"] for m in threaded)
        assert len(slack.in_channel("launches")) == 1  # nothing new there

        code, seconds = replica.terminate()
        assert code == 0 and seconds < 10
    finally:
        replica.close()
    logs = replica.log_path.read_text()
    assert TOKEN not in logs


def _sending(slack: SlackFake, seen: int) -> bool:
    return len(slack.messages) > seen or len(slack.messages) >= 190


def sent(engine: Engine) -> int:
    with Session(engine) as session:
        return int(
            session.scalar(
                select(func.count()).select_from(AlertRow).where(col(AlertRow.status) == "sent")
            )
            or 0
        )


def test_kill_9_while_200_alerts_are_in_flight(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    cfg = settings(slack_bot_token=TOKEN, flood_threshold=1000)
    channels = ("#a", "#b", "#c", "#d")
    items = [item(i, story=(i, True)) for i in range(1, 51)]  # x 4 channels = 200 alerts
    enqueue(engine, items, [watchlist(slack=channels)], cfg, utcnow())
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(AlertRow)) == 200
    folder = tmp_path / "watchlists"
    folder.mkdir()
    (folder / "nk.yaml").write_text('name: NK\nquery: kim\nalert:\n  slack: ["#a"]\n')
    with FeedServer() as feeds, SlackFake(TOKEN) as slack:
        feed = feeds.add("/f.xml", rss([("x", "Weather", "sunny")]))
        (folder / "sources.yaml").write_text(
            f"sources:\n  - id: f\n    name: F\n    url: {feed}\n    every: 10m\n"
        )
        slack.post_delay = (0.05, 0.3)
        slack.fail_next("chat.postMessage", Fault("500_after_store"), times=3)
        env = replica_env(
            database_url=url,
            watchlists_dir=folder,
            slack_api_url=slack.url,
            extra={
                "MONITOR_DELIVER_TICK_SECONDS": "0.2",
                "MONITOR_SLACK_CHANNEL_INTERVAL": "0",
                "MONITOR_DELIVER_BATCH": "10",
                "MONITOR_LEASE_SECONDS": "1",
                "MONITOR_SLACK_TIMEOUT": "1",
                "MONITOR_DELIVER_RETRY_BASE_SECONDS": "0.5",
                "MONITOR_LOG_LEVEL": "WARNING",
                "MONITOR_HTTP_PORT": "-1",
            },
        )
        rng = random.Random(4)
        kills = 0
        for round_no in range(6):
            replica = start_replica(f"r{round_no}", env, tmp_path / "logs")
            try:
                if round_no < 5:
                    # Kill once sending is under way, at a random moment within it.
                    started = functools.partial(_sending, slack, kills * 30)
                    wait_for(started, 30, "sending to start", replica)
                    time.sleep(rng.uniform(0.05, 0.6))
                    replica.kill()
                    kills += 1
                    continue
                wait_for(lambda: sent(engine) >= 200, 60, "every alert marked sent", replica)
                time.sleep(1.0)  # anything doubled would show up now
            finally:
                replica.close()
        by_alert = slack.by_alert()
        doubles = {k: len(v) for k, v in by_alert.items() if len(v) > 1}
        assert len(by_alert) == 200 and not doubles, doubles
        # The restarts found rows in `sending` and looked them up instead of re-posting.
        assert slack.posts("conversations.history")
        with Session(engine) as session:
            states: dict[str, int] = {
                str(status): int(count)
                for status, count in session.execute(
                    select(col(AlertRow.status), func.count()).group_by(col(AlertRow.status))
                )
            }
        assert states == {"sent": 200}
        assert kills == 5
    engine.dispose()


def test_without_slack_or_email_monitor_run_prints_alerts(tmp_path: Path) -> None:
    folder = tmp_path / "watchlists"
    folder.mkdir()
    (folder / "letters.yaml").write_text(WATCHLIST)
    with FeedServer() as feeds:
        wire = feeds.add("/wire.xml", rss([("a", "Weather", "sunny")]))
        (folder / "sources.yaml").write_text(
            f"sources:\n  - id: wire\n    name: Wire Service\n    url: {wire}\n    every: 10m\n"
        )
        env = replica_env(
            database_url=f"sqlite:///{tmp_path / 'monitor.db'}",
            watchlists_dir=folder,
            extra={"MONITOR_DELIVER_TICK_SECONDS": "0.2"},
        )
        replica = start_replica("console", env, tmp_path / "logs")
        try:
            wait_for(lambda: bool(replica.events("polled")), 30, "the catch-up poll", replica)
            feeds.update(
                "/wire.xml",
                rss(
                    [
                        ("a", "Weather", "sunny"),
                        ("b", "Kim Jong Un letter to Trump", "Kim Jong Un wrote a letter."),
                    ]
                ),
            )
            polled = poll_now(env)
            # The watchlist names Slack and email, neither is configured: said, not dropped.
            assert "its alerts go to the console" in polled
            wait_for(
                lambda: "ALERT · Leader letters → console" in replica.tail(20_000),
                20,
                "the console alert",
                replica,
            )
            out = replica.tail(20_000)
            assert "Kim Jong Un letter to Trump" in out and "Wire Service" in out
            assert "http://example.org/b" in out
        finally:
            replica.close()
