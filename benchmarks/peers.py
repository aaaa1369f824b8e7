"""monitor beside rss2email and a bare httpx+feedparser loop, on the same local feeds.

nginx on 127.0.0.1 serves generated RSS 2.0 feeds (default 500 feeds of 30 items; ETag and
Last-Modified, so unchanged feeds answer 304). Three tools poll them, each as a fresh process:

- rss2email `run --no-send` (the Debian package; fetches one feed after the other);
- a bare loop: httpx with 10 requests in flight, `feedparser.parse` of every 200, the
  validators kept in a JSON file (this script with `--bare-loop`);
- `monitor poll --once --all` with `MONITOR_POLL_BATCH` above the feed count (one claim), 10
  fetches in flight and per host, the shipped watchlists' queries and a SQLite database:
  everything the service does per poll (store, stories, matching, outbox planning), with the
  shipped watchlists' examples: `poll --once` trains the models only when a poll judges (a
  catch-up and a 304 never do), so they cost these runs nothing; `--no-models` drops the
  example files (queries only). `--embedder` (default `use`) sets `MONITOR_EMBEDDER`.

Runs: "new" (a catch-up from empty state: every item is new), "unchanged" (the same feeds
again: all 304) and "unchanged, small" (a tenth of the feeds, e.g. 50, all 304). Each
repetition runs the three tools back to back on the same scenario (paired runs, the order
rotated), from fresh state for "new". The table shows the median wall time, the spread
(fastest–slowest) and the median peak RSS of the tool's process, and monitor's time as a
ratio of each peer's, computed per pair.

The script installs nginx and rss2email with apt-get when they are missing (as root).

    .venv/bin/python benchmarks/peers.py [--feeds 500] [--items 30] [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parents[1]
MONITOR = str(Path(sys.executable).with_name("monitor"))
TOOLS = ("rss2email", "bare", "monitor")
LABELS = {
    "rss2email": "rss2email `--no-send`",
    "bare": "bare httpx+feedparser",
    "monitor": "`monitor poll --once --all`",
}

# Filler text and a few desk topics, so some items match the shipped watchlists and some
# wire stories are republished by several feeds (story grouping has work to do). The filler
# draws on 4,000 made-up words, as varied as news copy: from a vocabulary of 60 words every
# item shares most of its shingles with every other one, and story grouping (rightly) weighs
# thousands of candidates per item, which no real desk's feeds do.
SYLLABLES = tuple(c + v for c in "bcdfghklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou"))


def _vocabulary(size: int = 4000, seed: int = 3) -> tuple[str, ...]:
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return tuple(sorted(words))


WORDS = _vocabulary()
TOPICS = (
    "North Korea fired a ballistic missile into the East Sea, Seoul's Joint Chiefs said",
    "Kim Jong Un sent a letter to the Russian president marking the anniversary of ties",
    "The UN Security Council met on North Korea's latest missile test and sanctions",
    "Pyongyang's envoy to the United Nations rejected the resolution as hostile",
)


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_feeds(folder: Path, feeds: int, items: int, seed: int = 15) -> list[str]:
    """Write `feeds` RSS files of `items` items; returns their file names."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    wires = [
        (f"wire-{w}", sentence(rng, 9), " ".join(sentence(rng, 14) for _ in range(4)))
        for w in range(max(1, feeds // 10))
    ]
    names = []
    for f in range(feeds):
        parts = [
            '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>',
            f"<title>Feed {f}</title><link>http://news{f}.example/</link>",
            f"<description>Generated feed {f}</description>",
        ]
        for i in range(items):
            guid = f"http://news{f}.example/{i}"
            roll = rng.random()
            if roll < 0.05:  # a wire story several feeds carry
                _key, title, body = rng.choice(wires)
            elif roll < 0.08:
                title = rng.choice(TOPICS)
                body = title + ". " + " ".join(sentence(rng, 14) for _ in range(3))
            else:
                title = sentence(rng, 9)
                body = " ".join(sentence(rng, 14) for _ in range(4))
            published = format_datetime(now - timedelta(minutes=7 * i + f % 7), usegmt=True)
            parts.append(
                f"<item><title>{escape(title)}</title><link>{guid}</link>"
                f'<guid isPermaLink="true">{guid}</guid><pubDate>{published}</pubDate>'
                f"<description>{escape(body)}</description></item>"
            )
        parts.append("</channel></rss>\n")
        name = f"f{f:04d}.xml"
        (folder / name).write_text("".join(parts), encoding="utf-8")
        names.append(name)
    return names


# --- tools --------------------------------------------------------------------------------


def ensure_tools() -> tuple[str, str]:
    """Paths of nginx and r2e, installing the Debian packages when one is missing."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    r2e = shutil.which("r2e") or ""
    if not nginx or not r2e:
        if os.geteuid() != 0:
            raise SystemExit(
                "need nginx and rss2email: run as root or `apt-get install nginx rss2email`"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", "nginx", "rss2email"]
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=True)
            subprocess.run(cmd, env=env, check=True)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        r2e = shutil.which("r2e") or "/usr/bin/r2e"
    return nginx, r2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(nginx: str, root: Path, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """nginx in the foreground serving `root` (static files: ETag and Last-Modified, 304s)."""
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        f"""daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    types {{ application/rss+xml xml; }}
    default_type application/octet-stream;
    etag on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""
    )
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(work)])
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, base
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"nginx did not start: {(work / 'nginx-error.log').read_text()}")


@dataclass
class Setup:
    """State templates of the three tools for one set of feeds."""

    urls: list[str]
    work: Path
    env: dict[str, str]
    r2e: str
    models: bool
    template_db: Path = field(init=False)

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True)
        (self.work / "urls.txt").write_text("\n".join(self.urls) + "\n")
        watchlists = self.work / "watchlists"
        shutil.copytree(REPO / "watchlists", watchlists)
        if not self.models:  # `--no-models`: the queries only
            for path in watchlists.glob("*.examples.jsonl"):
                path.unlink()
            for path in watchlists.glob("*.yaml"):
                lines = path.read_text().splitlines(keepends=True)
                path.write_text("".join(ln for ln in lines if not ln.startswith("examples:")))
        lines = ["sources:"]
        for i, url in enumerate(self.urls):
            lines += [f"  - id: f{i:04d}", f"    name: Feed {i}", f"    url: {url}"]
        (watchlists / "sources.yaml").write_text("\n".join(lines) + "\n")
        self.env = {**self.env, "MONITOR_WATCHLISTS_DIR": str(watchlists)}
        self.template_db = self.work / "template.db"
        run([MONITOR, "db", "upgrade"], self.monitor_env(self.template_db))
        config = self.work / "r2e-template.cfg"
        run(
            [
                self.r2e,
                "-c",
                str(config),
                "-d",
                str(self.work / "unused.json"),
                "new",
                "bench@example.org",
            ],
            self.env,
        )
        with config.open("a") as out:
            for i, url in enumerate(self.urls):
                out.write(f"\n[feed.f{i:04d}]\nurl = {url}\n")

    def monitor_env(self, database: Path) -> dict[str, str]:
        return {**self.env, "MONITOR_DATABASE_URL": f"sqlite:///{database}"}

    def fresh(self, rep: int) -> tuple[dict[str, list[str]], dict[str, str]]:
        """Empty state for every tool (a copy of the migrated database, a new rss2email data
        file, no validators for the bare loop); returns each tool's command and monitor's
        environment."""
        state = self.work / f"rep{rep}"
        state.mkdir()
        shutil.copy(self.template_db, state / "monitor.db")
        shutil.copy(self.work / "r2e-template.cfg", state / "r2e.cfg")
        commands = {
            "rss2email": [
                self.r2e,
                "-c",
                str(state / "r2e.cfg"),
                "-d",
                str(state / "r2e.json"),
                "run",
                "--no-send",
            ],
            "bare": [
                sys.executable,
                __file__,
                "--bare-loop",
                str(state / "bare.json"),
                str(self.work / "urls.txt"),
            ],
            "monitor": [MONITOR, "poll", "--once", "--all"],
        }
        return commands, self.monitor_env(state / "monitor.db")


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} {argv[1:4]} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done


# --- the bare loop ------------------------------------------------------------------------


def bare_loop(state_file: Path, urls_file: Path) -> None:
    """httpx, 10 requests in flight, conditional GETs, `feedparser.parse` of each 200."""
    import feedparser
    import httpx

    urls = urls_file.read_text().split()
    state: dict[str, dict[str, str]] = (
        json.loads(state_file.read_text()) if state_file.exists() else {}
    )
    counts = {"200": 0, "304": 0, "entries": 0}

    async def one(client: httpx.AsyncClient, limit: asyncio.Semaphore, url: str) -> None:
        headers = {}
        seen = state.get(url, {})
        if "etag" in seen:
            headers["If-None-Match"] = seen["etag"]
        if "modified" in seen:
            headers["If-Modified-Since"] = seen["modified"]
        async with limit:
            response = await client.get(url, headers=headers)
        if response.status_code == 304:
            counts["304"] += 1
            return
        response.raise_for_status()
        parsed = feedparser.parse(response.content)
        counts["200"] += 1
        counts["entries"] += len(parsed.entries)
        state[url] = {
            k: v
            for k, v in (
                ("etag", response.headers.get("etag")),
                ("modified", response.headers.get("last-modified")),
            )
            if v
        }

    async def main() -> None:
        limit = asyncio.Semaphore(10)
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(one(client, limit, url) for url in urls))

    asyncio.run(main())
    state_file.write_text(json.dumps(state))
    print(f"fetched {counts['200'] + counts['304']}: {counts}")


# --- the benchmark ------------------------------------------------------------------------


class RunFailed(Exception):
    """A tool exited non-zero; the message is its last line of stderr."""


def timed_run(argv: list[str], env: dict[str, str], expect: int) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one process; checks it covered every feed."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # read the pipes in the background so a chatty tool never blocks, then reap with wait4
    outputs: dict[str, bytes] = {}

    def drain(name: str, stream: IO[bytes]) -> None:
        outputs[name] = stream.read()

    readers = [
        threading.Thread(target=drain, args=("out", proc.stdout), daemon=True),
        threading.Thread(target=drain, args=("err", proc.stderr), daemon=True),
    ]
    for t in readers:
        t.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # Ctrl-C: stop the tool too
        proc.kill()
        raise
    wall = time.monotonic() - start
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = outputs.get("out", b"").decode(errors="replace")
    err = outputs.get("err", b"").decode(errors="replace")
    if proc.returncode != 0:  # counted as a failed run: the table says how many
        lines = err.strip().splitlines()
        why = lines[-1] if lines else f"exit {proc.returncode}"
        print(f"{' '.join(argv[:4])} exited {proc.returncode}:\n{err[:3000]}", file=sys.stderr)
        raise RunFailed(why)
    if argv[0] == MONITOR:
        summary = [ln for ln in out.splitlines() if ln.startswith("polled ")]
        if not summary or not summary[-1].startswith(f"polled {expect} source(s): {expect} ok"):
            raise SystemExit(f"monitor did not poll all {expect} feeds: {summary or out[-500:]}")
    elif argv[0] == sys.executable and f"fetched {expect}:" not in out:
        raise SystemExit(f"the bare loop did not fetch all {expect} feeds: {out[-500:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=500)
    parser.add_argument("--items", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--embedder", choices=("hashing", "use"), default="use")
    parser.add_argument(
        "--no-models",
        dest="models",
        action="store_false",
        help="drop the watchlists' examples (queries only)",
    )
    parser.add_argument("--quick", action="store_true", help="100 feeds, 2 runs")
    parser.add_argument("--bare-loop", nargs=2, metavar=("STATE", "URLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_loop:
        bare_loop(Path(args.bare_loop[0]), Path(args.bare_loop[1]))
        return
    if args.quick:
        args.feeds, args.runs = 100, 2
    small = max(1, args.feeds // 10)

    nginx, r2e = ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="monitor-peers-"))
    work.chmod(0o755)  # nginx's worker runs as nobody
    server = None
    try:
        root = work / "feeds"
        root.mkdir()
        names = make_feeds(root, args.feeds, args.items)
        server, base = start_nginx(nginx, root, work)
        urls = [f"{base}/{name}" for name in names]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cached, as in the image
        env.update(
            PYTHONPATH=str(REPO),
            PYTHONPYCACHEPREFIX=str(work / "pycache"),
            MONITOR_ALLOW_PRIVATE_HOSTS="127.0.0.1",
            MONITOR_POLL_BATCH=str(args.feeds * 2),
            MONITOR_FETCH_CONCURRENCY="10",
            MONITOR_FETCH_PER_HOST="10",
            MONITOR_EMBEDDER=args.embedder,
            MONITOR_LOG_LEVEL="WARNING",
            MONITOR_HTTP_PORT="-1",
        )
        big = Setup(urls, work / "big", env, r2e, args.models)
        little = Setup(urls[:small], work / "small", env, r2e, args.models)
        results: dict[str, dict[str, list[tuple[float, float] | None]]] = {
            run_name: {tool: [] for tool in TOOLS}
            for run_name in ("new", "unchanged", "unchanged-small")
        }
        failures: dict[str, dict[str, list[str]]] = {
            run_name: {tool: [] for tool in TOOLS} for run_name in results
        }
        for rep in range(args.runs + 1):  # the first repetition warms caches, uncounted
            order = TOOLS[rep % 3 :] + TOOLS[: rep % 3]
            for setup, run_names in (
                (big, ("new", "unchanged")),
                (little, ("", "unchanged-small")),
            ):
                commands, monitor_env = setup.fresh(rep)
                envs = {t: monitor_env if t == "monitor" else env for t in TOOLS}
                for run_name in run_names:
                    for tool in order:
                        try:
                            sample = timed_run(commands[tool], envs[tool], len(setup.urls))
                        except RunFailed as exc:
                            sample = None
                            if run_name and rep > 0:
                                failures[run_name][tool].append(str(exc))
                        if run_name and rep > 0:
                            results[run_name][tool].append(sample)
            print(f"repetition {rep}/{args.runs} done", file=sys.stderr)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"{args.feeds} feeds of {args.items} items from nginx on 127.0.0.1; {args.runs} paired "
        f"runs after one warm-up; {os.cpu_count()} CPUs; shipped watchlists, "
        + (f"models on (embedder {args.embedder})" if args.models else "queries only (no models)")
    )
    print()
    titles = {
        "new": f"{args.feeds} new feeds (catch-up)",
        "unchanged": f"{args.feeds} unchanged feeds (all 304)",
        "unchanged-small": f"{small} unchanged feeds (all 304)",
    }
    print(
        "| run | "
        + " | ".join(LABELS[t] for t in TOOLS)
        + " | monitor ÷ rss2email | monitor ÷ bare |"
    )
    print("|---|" + "---:|" * (len(TOOLS) + 2))
    print_table(results, failures, titles)


def print_table(
    results: dict[str, dict[str, list[tuple[float, float] | None]]],
    failures: dict[str, dict[str, list[str]]],
    titles: dict[str, str],
) -> None:
    """One row per run: each tool's median, spread and peak RSS, then monitor's ratios."""
    for run_name, by_tool in results.items():
        cells = []
        for tool in TOOLS:
            done = [x for x in by_tool[tool] if x is not None]
            failed = failures[run_name][tool]
            cell = "–"
            if done:
                walls = [w for w, _ in done]
                rss = statistics.median(r for _, r in done)
                cell = (
                    f"{statistics.median(walls):.2f} s ({min(walls):.2f}–{max(walls):.2f}), "
                    f"{rss:.0f} MiB"
                )
            if failed:
                cell += f"; {len(failed)} failed: {failed[0][:80]}"
            cells.append(cell)
        ratios = []
        for peer in ("rss2email", "bare"):
            pairs = [
                m[0] / p[0]
                for m, p in zip(by_tool["monitor"], by_tool[peer], strict=True)
                if m is not None and p is not None
            ]
            ratios.append(
                f"{statistics.median(pairs):.2f}× ({min(pairs):.2f}–{max(pairs):.2f})"
                if pairs
                else "–"
            )
        print(f"| {titles[run_name]} | " + " | ".join(cells + ratios) + " |")


if __name__ == "__main__":
    main()
