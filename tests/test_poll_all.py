"""`monitor poll --once --all` polls every source, batch after batch, not one batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.feedserver import FeedServer, rss


def test_all_means_all_across_batches_and_the_summary_counts_them(tmp_path: Path) -> None:
    folder = tmp_path / "watchlists"
    folder.mkdir()
    with FeedServer() as server:
        lines = ["sources:"]
        for i in range(7):
            server.add(f"/f{i}.xml", rss([(f"g{i}", f"Item {i}")]))
            lines += [f"  - id: s{i}", f"    name: S{i}", f"    url: {server.url(f'/f{i}.xml')}"]
        lines += ["  - id: broken", "    name: Broken", f"    url: {server.url('/missing.xml')}"]
        (folder / "sources.yaml").write_text("\n".join(lines) + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
        env.update(
            MONITOR_DATABASE_URL=f"sqlite:///{tmp_path / 'm.db'}",
            MONITOR_WATCHLISTS_DIR=str(folder),
            MONITOR_ALLOW_PRIVATE_HOSTS="127.0.0.1",
            MONITOR_POLL_BATCH="3",
            MONITOR_LOG_LEVEL="WARNING",
        )

        def poll(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "monitor", "poll", "--once", *extra],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
                check=False,
            )

        first = poll()
        assert first.returncode == 1, first.stderr  # the broken source failed
        polled = [ln.split()[0] for ln in first.stdout.splitlines() if ln.startswith(("s", "b"))]
        assert sorted(polled) == ["broken", *(f"s{i}" for i in range(7))]  # 3 batches of ≤ 3
        assert "polled 8 source(s): 7 ok, 1 failed; 7 new article(s), 0 alert(s)" in first.stdout
        again = poll("--all")  # every source once more, though none is due
        assert "polled 8 source(s)" in again.stdout
        assert poll().stdout.strip() == "no source is due (use --all to poll every source now)"
