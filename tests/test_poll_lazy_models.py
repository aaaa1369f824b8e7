"""`monitor poll --once` trains the watchlists' models only when a poll needs them: a catch-up
(every source new) stores and alerts nobody, so it never pays for training; the first poll
that judges trains each model once, outside any write transaction."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support import console as support
from tests.support.cli import run_monitor
from tests.support.feedserver import FeedServer, rss

LAUNCH = "North Korea fires ballistic missile into the sea, Japan says"


def test_a_catch_up_trains_nothing_and_the_first_judging_poll_trains_once(
    tmp_path: Path,
) -> None:
    folder = support.watchlist_folder(tmp_path / "watchlists", negatives=60)
    with FeedServer() as server:
        items = {i: [(f"old{i}-{j}", f"Old item {j} of feed {i}") for j in range(3)]
                 for i in range(3)}
        lines = ["sources:"]
        for i in range(3):
            server.add(f"/f{i}.xml", rss(items[i]))
            lines += [f"  - id: s{i}", f"    name: S{i}", f"    url: {server.url(f'/f{i}.xml')}"]
        (folder / "sources.yaml").write_text("\n".join(lines) + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
        env.update(
            MONITOR_DATABASE_URL=f"sqlite:///{tmp_path / 'm.db'}",
            MONITOR_WATCHLISTS_DIR=str(folder),
            MONITOR_ALLOW_PRIVATE_HOSTS="127.0.0.1",
            MONITOR_EMBEDDER="hashing",
            MONITOR_LOG_LEVEL="INFO",
            MONITOR_LOG_FORMAT="json",
        )

        def poll() -> subprocess.CompletedProcess[str]:
            return run_monitor(env, "poll", "--once", "--all")

        first = poll()  # every source is new: a catch-up
        assert first.returncode == 0, first.stderr
        assert "9 new article(s)" in first.stdout
        assert "watchlist_model_trained" not in first.stderr

        for i in range(3):  # the launch appears in all three feeds (stored once: same text)
            server.add(f"/f{i}.xml", rss([(f"launch{i}", LAUNCH), *items[i]]))
        second = poll()
        assert second.returncode == 0, second.stderr
        assert "polled 3 source(s): 3 ok" in second.stdout
        trained = [ln for ln in second.stderr.splitlines() if "watchlist_model_trained" in ln]
        assert len(trained) == 3, second.stderr  # each watchlist's model once, not once a feed
        # The launch passed the missile gate and the model judged it (alerted or held back).
        judged = "match missile-tests" in second.stdout or "match_rejected_by_model" in (
            second.stderr
        )
        assert judged, second.stdout + second.stderr
