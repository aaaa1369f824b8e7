"""Outbox commands as a user runs them: deliver --once [--dry-run], alerts list, alerts retry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.clock import utcnow
from monitor.store import db
from tests.support.alerts import enqueue, item, settings, watchlist
from tests.support.slackfake import SlackFake

pytestmark = pytest.mark.slow  # one `monitor` process per step, about 10 s a test

REPO = Path(__file__).resolve().parents[1]
TOKEN = "xoxb-cli-token"


def monitor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )


def base_env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update(MONITOR_DATABASE_URL=url, MONITOR_LOG_LEVEL="WARNING", **extra)
    return env


def test_console_delivery_and_listing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    enqueue(
        engine, [item(1, title="Kim Jong Un \x1b[31mletter")], [watchlist()], settings(), utcnow()
    )
    engine.dispose()
    env = base_env(url)

    dry = monitor(env, "deliver", "--once", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "[dry run] alert 1 would go to console console" in dry.stdout
    assert "1 alerts due (dry run" in dry.stdout

    listed = monitor(env, "alerts", "list", "--status", "pending")
    assert listed.returncode == 0
    assert "pending" in listed.stdout and "console:console" in listed.stdout

    sent = monitor(env, "deliver", "--once")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "ALERT · NK desk → console" in sent.stdout
    assert "Kim Jong Un" in sent.stdout and "\x1b" not in sent.stdout
    assert "1 alerts delivered, 0 failed" in sent.stdout

    listed = monitor(env, "alerts", "list", "--status", "sent")
    assert " sent " in listed.stdout
    assert monitor(env, "alerts", "list", "--status", "dead").stdout.startswith("no alerts")


def test_dead_alerts_are_listed_with_reason_and_retried(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    with SlackFake(TOKEN) as slack:
        cfg = settings(slack_bot_token=TOKEN, slack_api_url=slack.url)
        enqueue(engine, [item(1)], [watchlist(slack=("#gone",))], cfg, utcnow())
        engine.dispose()
        slack.missing_channels.add("gone")
        env = base_env(url, MONITOR_SLACK_BOT_TOKEN=TOKEN, MONITOR_SLACK_API_URL=slack.url)

        failed = monitor(env, "deliver", "--once")
        assert failed.returncode == 1
        assert "0 alerts delivered, 1 failed" in failed.stdout
        dead = monitor(env, "alerts", "list", "--status", "dead")
        assert "dead: Slack error channel_not_found" in dead.stdout
        assert TOKEN not in dead.stdout + failed.stdout + failed.stderr

        slack.missing_channels.clear()
        retried = monitor(env, "alerts", "retry", "--dead")
        assert retried.returncode == 0 and "1 alert(s) queued again" in retried.stdout
        assert monitor(env, "deliver", "--once").returncode == 0
        assert len(slack.messages) == 1

        again = monitor(env, "alerts", "retry", "--dead")
        assert again.returncode == 1 and "no dead alerts" in again.stderr
        unknown = monitor(env, "alerts", "retry", "999")
        assert unknown.returncode == 1 and "999" in unknown.stderr
