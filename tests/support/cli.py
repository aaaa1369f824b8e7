"""The real `monitor` command in a subprocess, for tests that go through the CLI."""

from __future__ import annotations

import subprocess
import sys


def run_monitor(
    env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`python -m monitor ARGS` with exactly `env`; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
