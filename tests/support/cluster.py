"""Real `monitor run` processes for multi-replica tests and the scale benchmark.

Each replica is `python -m monitor run` with its own environment, its JSON logs in a file, and
its HTTP port picked by the service itself (`MONITOR_HTTP_PORT=0`, read back from the
`http listening` log line). CPU time and peak memory come from /proc, so no extra package.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


SLACK_TOKEN = "xoxb-test-token-0000"  # what the Slack fake of these tests expects


ADMIN_TOKEN = "test-admin-token"  # the replicas' MONITOR_ADMIN_TOKEN


def replica_env(
    *,
    database_url: str,
    watchlists_dir: Path,
    slack_api_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one test replica: local servers only, fast ticks, random port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "MONITOR_DATABASE_URL": database_url,
            "MONITOR_WATCHLISTS_DIR": str(watchlists_dir),
            "MONITOR_HTTP_HOST": "127.0.0.1",
            "MONITOR_HTTP_PORT": "0",
            "MONITOR_ALLOW_PRIVATE_HOSTS": "127.0.0.1",
            "MONITOR_TICK_SECONDS": "1",
            "MONITOR_LOG_LEVEL": "INFO",
            "MONITOR_ADMIN_TOKEN": ADMIN_TOKEN,
        }
    )
    if slack_api_url is not None:
        env["MONITOR_SLACK_API_URL"] = slack_api_url
        env["MONITOR_SLACK_BOT_TOKEN"] = SLACK_TOKEN
    env.update(extra or {})
    return env


@dataclass
class Replica:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None
    _log: TextIO | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == name]

    def wait_listening(self, timeout: float = 30.0) -> int:
        """The port from the `http listening` log line, or /livez on a port given up front."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.port is not None:
                try:
                    if self.get("/livez", timeout=1)[0] == 200:
                        return self.port
                except OSError:
                    pass
            for record in self.events("http listening"):
                self.port = int(record["port"])
                return self.port
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"replica {self.name} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            time.sleep(0.1)
        raise TimeoutError(f"replica {self.name} did not start listening:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def get_json(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        status, body = self.get(path, timeout)
        return status, json.loads(body)

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def terminate(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took)."""
        started = time.monotonic()
        self.signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def cpu_seconds(self) -> float:
        """User + system CPU of the process so far (0 once it is gone)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def peak_rss_bytes(self) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def close(self) -> None:
        self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_replica(
    name: str, env: Mapping[str, str], log_dir: Path, *, port: int | None = None
) -> Replica:
    """Start `monitor run`; with `port`, on that port (needed when INFO logs are off)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(env)
    if port is not None:
        env["MONITOR_HTTP_PORT"] = str(port)
    log_path = log_dir / f"{name}.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run"],
        env={**env, "MONITOR_INSTANCE_NAME": name},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )
    return Replica(name, proc, log_path, port=port, _log=log)
