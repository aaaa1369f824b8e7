"""`monitor demo`: its bundled sample, its feed server, its terminal drawing, and the whole run.

The end-to-end test runs the real command in a subprocess (USE model, shipped watchlists,
temporary database) and reads what a newcomer reads: alerts drawn as Slack messages and an
email, why each matched, the catch-up, a grouped story, what a model held back, the summary
and the next commands, within the minute the issue allows, with no escape codes in a pipe.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import httpx
import pytest

from monitor.demo import load_sample
from monitor.demo.feeds import DemoFeeds
from monitor.demo.show import mrkdwn, slack_panel
from monitor.render import AlertContent, render_slack
from monitor.settings import Settings
from tests.support.paths import CORPUS, REPO

MONITOR = str(Path(sys.executable).with_name("monitor"))


def test_the_sample_is_real_unseen_and_documented() -> None:
    sample = load_sample()
    assert len(sample) == 26
    corpus = {
        json.loads(line)["id"]: json.loads(line)
        for line in (CORPUS / "articles.jsonl").read_text(encoding="utf-8").splitlines()
    }
    examples = set()
    for path in (REPO / "watchlists").glob("*.examples.jsonl"):
        examples |= {json.loads(x)["id"] for x in path.read_text(encoding="utf-8").splitlines()}
    notes = (REPO / "monitor" / "demo" / "SOURCES.md").read_text(encoding="utf-8")
    for item in sample:
        assert corpus[item.id]["title"] == item.title  # copied, not rewritten
        assert item.id not in examples  # the models judge articles they never saw
        assert item.origin.split(":")[0] in notes
    assert {i.round for i in sample} == {0, 1, 2, 3}
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {"demo/*.jsonl", "demo/*.md"} <= set(package_data["package-data"]["monitor"])


async def test_feeds_grow_by_round_and_answer_304_when_unchanged() -> None:
    sample = load_sample()
    feeds = DemoFeeds(sample)
    await feeds.start()
    try:
        now = datetime.now(UTC)
        feeds.publish(0, now)
        async with httpx.AsyncClient() as client:
            first = await client.get(feeds.url("kcna-watch"))
            parsed = feedparser.parse(first.content)
            expected = {i.id for i in sample if i.feed == "kcna-watch" and i.round == 0}
            assert {e.id for e in parsed.entries} == expected
            etag = first.headers["ETag"]
            again = await client.get(feeds.url("kcna-watch"), headers={"If-None-Match": etag})
            assert again.status_code == 304
            feeds.publish(2, now)
            grown = await client.get(feeds.url("kcna-watch"), headers={"If-None-Match": etag})
            assert grown.status_code == 200
            titles = [e.title for e in feedparser.parse(grown.content).entries]
            assert "Permanent Mission of DPRK at UN Issues Press Statement" in titles
            assert (await client.get(feeds.url("nope"))).status_code == 404
    finally:
        await feeds.stop()


def test_mrkdwn_is_drawn_as_text_with_links_and_no_markup() -> None:
    text = mrkdwn(
        "*Kim* wrote &lt;b&gt; [bold]x[/bold] <https://e.example/a|the letter> "
        "<!date^1^x|2026-01-01>"
    )
    assert text.plain == (
        "Kim wrote <b> [bold]x[/bold] the letter (https://e.example/a) 2026-01-01"
    )
    assert any(span.style == "bold" for span in text.spans)
    content = AlertContent(
        kind="alert",  # type: ignore[arg-type]
        watchlist_id="w",
        watchlist_name="W",
        title="<!channel> Kim letter \x1b[31m",
        url="https://e.example/a",
        source="Wire",
        reason="model 0.90 (min 0.50): relevant",
    )
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=100)
    console.print(slack_panel(render_slack(content), "#desk", reply_to=3))
    drawn = out.getvalue()
    assert "reply in the thread of alert #3" in drawn and "model 0.90" in drawn
    assert "\x1b" not in drawn  # no escape codes from the title, no colour in a pipe


@pytest.mark.slow
def test_demo_shows_the_product_in_under_a_minute(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MONITOR_")  # the demo owns its settings; Slack stays off anyway
    }
    env["MONITOR_SLACK_BOT_TOKEN"] = "xoxb-never-used"  # must be ignored: nothing is sent
    started = time.monotonic()
    done = subprocess.run(
        [MONITOR, "demo", "--database", f"sqlite:///{tmp_path / 'demo.db'}"],
        cwd=tmp_path,  # the watchlists are found in the checkout beside the package
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    seconds = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert seconds < 60, seconds
    assert "\x1b[" not in out and not any(line.startswith("{") for line in out.splitlines())
    assert "Catch-up: the feeds already hold 11 items" in out
    assert "Slack → #desk" in out and "Subject: [North Korean missile" in out
    assert "matched" in out and "model 0." in out and "like:" in out  # why it matched
    assert "reply in the thread of alert" in out  # other outlets' copies of one story
    assert "the model said no" in out and "held back by the missile-tests model" in out
    # One launch, four outlets, two languages: whichever copy was stored first names the story
    # (the feeds are polled concurrently), so the line is checked for the outlets it groups.
    assert "grouped as one story: " in out, out[-3000:]
    # The title and its outlets, "(bankier, epoch-times, …)", may wrap onto the next line.
    grouped = out[out.index("grouped as one story: ") :].split(")")[0]
    assert "Korea Północna wystrzeliła" in grouped or "North Korea Fires" in grouped, grouped
    assert all(f in grouped for f in ("epoch-times", "forsal", "interia", "bankier")), grouped
    assert "Summary" in out and "Next" in out and "monitor watchlists check" in out
    # It ran on the given database: the stored stories are there to look at afterwards.
    listed = subprocess.run(
        [MONITOR, "stories", "list", "--since", "1d"],
        env={**env, "MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0 and "Korea Północna" in listed.stdout


def test_demo_needs_watchlists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from monitor.cli import main
    from monitor.commands.demo import find_watchlists

    assert find_watchlists(tmp_path / "none", Settings().watchlists_dir) is None
    assert find_watchlists(None, tmp_path / "none") == (REPO / "watchlists").resolve()
    assert main(["demo", "--watchlists", str(tmp_path)]) == 2
    assert "no watchlists in" in capsys.readouterr().err
