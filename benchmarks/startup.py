"""Start-up of the `monitor` commands: wall time and CPU per run, beside a bare interpreter.

Each row runs the installed `monitor` entry point (this checkout first on PYTHONPATH) as a
fresh process, one warm-up then `--runs` times, and prints the median wall time, its spread
(fastest–slowest) and the median CPU (user + system) of the process. Bytecode is cached in a
temporary PYTHONPYCACHEPREFIX, as the container image compiles it at build time
(UV_COMPILE_BYTECODE), so no row pays for compiling the sources.

- `python -c pass`: the interpreter and site alone (the floor every command pays);
- `monitor --help`, `monitor health` against a ready listener and against a closed port;
- `monitor poll --once --all` of one local feed (a migrated SQLite database, watchlists without
  example files, so no model is trained): the time until its first request reaches the feed
  server ("ready to fetch"), and the whole command (an unchanged feed: a 304).

    .venv/bin/python benchmarks/startup.py [--runs 15] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MONITOR = str(Path(sys.executable).with_name("monitor"))
FEED = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>t</title>'
    b"<link>http://example.org/</link><description>d</description>"
    b"<item><title>One</title><link>http://example.org/1</link><guid>1</guid></item>"
    b"</channel></rss>\n"
)
ETAG = '"' + hashlib.sha256(FEED).hexdigest()[:16] + '"'
first_request: list[float] = []


class Handler(BaseHTTPRequestHandler):
    """/readyz answers ready; /feed.xml is one RSS item with an ETag (304 when it matches)."""

    def do_GET(self) -> None:
        first_request.append(time.monotonic())
        if self.path == "/readyz":
            self._send(200, json.dumps({"status": "ready", "checks": {"database": {"ok": 1}}}))
        elif self.headers.get("If-None-Match") == ETAG:
            self.send_response(304)
            self.send_header("ETag", ETAG)
            self.end_headers()
        else:
            self._send(200, FEED.decode(), content_type="application/rss+xml")

    def _send(self, status: int, body: str, content_type: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", ETAG)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        pass


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, float | None]:
    """(wall seconds, CPU seconds, seconds to the first request seen by the server or None)."""
    first_request.clear()
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {err[-2000:]}")
    first = first_request[0] - start if first_request else None
    return wall, usage.ru_utime + usage.ru_stime, first


def row(
    name: str, run: Callable[[], tuple[float, float, float | None]], runs: int
) -> dict[str, Any]:
    run()  # warm-up: bytecode cache, page cache
    samples = [run() for _ in range(runs)]
    walls = [s[0] for s in samples]
    firsts = [s[2] for s in samples if s[2] is not None]
    return {
        "name": name,
        "wall": statistics.median(walls),
        "spread": (min(walls), max(walls)),
        "cpu": statistics.median(s[1] for s in samples),
        "first": statistics.median(firsts) if firsts and name.startswith("monitor poll") else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="5 runs per row")
    args = parser.parse_args()
    runs = 5 if args.quick else args.runs

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"

    tmp = Path(tempfile.mkdtemp(prefix="monitor-startup-"))
    try:
        folder = tmp / "watchlists"
        shutil.copytree(REPO / "tests" / "data" / "watchlists" / "good", folder)
        (folder / "sources.yaml").write_text(
            f"sources:\n  - id: local\n    name: Local\n    url: {base}/feed.xml\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(
            PYTHONPATH=str(REPO),
            PYTHONPYCACHEPREFIX=str(tmp / "pycache"),
            MONITOR_DATABASE_URL=f"sqlite:///{tmp / 'm.db'}",
            MONITOR_WATCHLISTS_DIR=str(folder),
            MONITOR_ALLOW_PRIVATE_HOSTS="127.0.0.1",
            MONITOR_EMBEDDER="hashing",
            MONITOR_LOG_LEVEL="WARNING",
        )
        subprocess.run([MONITOR, "db", "upgrade"], env=env, check=True, capture_output=True)
        table = [
            row("python -c pass", lambda: timed([sys.executable, "-c", "pass"], env), runs),
            row("monitor --help", lambda: timed([MONITOR, "--help"], env), runs),
            row(
                "monitor health (ready)",
                lambda: timed([MONITOR, "health", "--url", base, "-q"], env),
                runs,
            ),
            row(
                "monitor health (nothing listens)",
                lambda: timed([MONITOR, "health", "--url", closed, "-q", "--timeout", "1"], env),
                runs,
            ),
            row(
                "monitor poll --once --all (1 feed, 304)",
                lambda: timed([MONITOR, "poll", "--once", "--all"], env),
                runs,
            ),
        ]
    finally:
        server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    floor = table[0]["wall"]
    print(
        f"{runs} runs per row after one warm-up; {os.cpu_count()} CPUs; "
        f"Python {sys.version.split()[0]}"
    )
    print()
    print("| command | wall (median) | spread | CPU (median) | − interpreter | first fetch |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in table:
        low, high = r["spread"]
        first = f"{r['first'] * 1000:.0f} ms" if r["first"] is not None else "–"
        print(
            f"| `{r['name']}` | {r['wall'] * 1000:.0f} ms | {low * 1000:.0f}–{high * 1000:.0f} ms "
            f"| {r['cpu'] * 1000:.0f} ms | {(r['wall'] - floor) * 1000:+.0f} ms | {first} |"
        )


if __name__ == "__main__":
    main()
