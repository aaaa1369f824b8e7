"""Build the real image without a Docker engine, and run commands in it.

Debian's podman/buildah build OCI images with `--isolation chroot` and `buildah run
--isolation chroot` runs a command in one (no daemon, no user namespaces; `podman run` is
refused by the sandbox). Public registries cannot be reached, so the Dockerfile's two build
arguments get local images:

- `BASE`: Debian (the release the Dockerfile's default base is built on) from Debian's own
  packages, made by mmdebstrap (a debootstrap that downloads in parallel: about 1 minute
  instead of 3) from the mirror this machine's apt uses, plus python3 and the CA
  certificates this machine trusts beyond Debian's (a TLS-inspecting proxy's), so the build's
  downloads verify. Built once and kept in podman's image store under a tag keyed by the
  release, the packages, the mirror and those certificates: later runs reuse it.
- `UV_IMAGE`: `FROM scratch` holding the uv binary of the dev environment (the same version
  the lock was made with).

Then the Dockerfile is built exactly as written; podman's layer cache makes an unchanged
rebuild take seconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import REPO

RELEASE = "bookworm"
PACKAGES = ("python3", "ca-certificates")
TOOLS = ("podman", "buildah", "mmdebstrap")
# One tag per checkout: worktrees on one machine build side by side without racing on a tag.
IMAGE = f"localhost/monitor:test-{hashlib.sha256(str(REPO).encode()).hexdigest()[:8]}"
EXTRA_CAS = Path("/usr/local/share/ca-certificates")
UV = Path(sys.executable).with_name("uv")


class ImageError(RuntimeError):
    """A step of the build failed; the message carries the tool's output."""


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _run(args: Sequence[str], *, timeout: float = 900, **kwargs: object) -> str:
    result = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )  # type: ignore[call-overload]
    if result.returncode != 0:
        raise ImageError(
            f"{' '.join(args[:3])} … failed ({result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-4000:]}"
        )
    return str(result.stdout)


def _image_exists(tag: str) -> bool:
    return subprocess.run(["podman", "image", "exists", tag], check=False).returncode == 0


def debian_mirror() -> str:
    """The Debian mirror this machine's apt is configured with (deb822 or one-line form)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"^URIs:\s*(\S+)|^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            uri = match.group(1) or match.group(2)
            if "security" not in uri:
                return uri.rstrip("/")
    raise ImageError("no Debian mirror found in /etc/apt/sources.list*: needed by mmdebstrap")


def _extra_cas() -> list[Path]:
    return sorted(EXTRA_CAS.glob("*.crt")) if EXTRA_CAS.is_dir() else []


def base_tag(mirror: str) -> str:
    digest = hashlib.sha256()
    for part in ("mmdebstrap", RELEASE, *PACKAGES, mirror):
        digest.update(part.encode() + b"\0")
    for ca in _extra_cas():
        digest.update(ca.read_bytes())
    return f"localhost/monitor-test-base:{RELEASE}-{digest.hexdigest()[:12]}"


def ensure_base() -> tuple[str, float]:
    """The base image's tag, built when podman does not hold it yet; (tag, seconds spent)."""
    mirror = debian_mirror()
    tag = base_tag(mirror)
    if _image_exists(tag):
        return tag, 0.0
    started = time.monotonic()
    cas = [str(ca) for ca in _extra_cas()]
    hooks = []
    if cas:
        hooks = [
            f"--customize-hook=copy-in {' '.join(cas)} /usr/local/share/ca-certificates",
            '--customize-hook=chroot "$1" update-ca-certificates',
        ]
    with tempfile.TemporaryDirectory(prefix="monitor-base-", dir="/var/tmp") as tmp:
        tar = Path(tmp) / "base.tar"
        _run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                *hooks,
                "--format=tar",
                RELEASE,
                str(tar),
                mirror,
            ],
            timeout=1200,
        )
        _run(["podman", "import", str(tar), tag])
    return tag, time.monotonic() - started


def ensure_uv() -> str:
    version = _run([str(UV), "--version"]).split()[1]
    tag = f"localhost/monitor-test-uv:{version}"
    if _image_exists(tag):
        return tag
    with tempfile.TemporaryDirectory(prefix="monitor-uv-") as tmp:
        shutil.copy2(UV, Path(tmp) / "uv")
        (Path(tmp) / "Containerfile").write_text("FROM scratch\nCOPY uv /uv\n")
        _run(["podman", "build", "--isolation", "chroot", "-q", "-t", tag, tmp])
    return tag


def _image_id(tag: str) -> str | None:
    if not _image_exists(tag):
        return None
    return _run(["podman", "image", "inspect", "--format", "{{.Id}}", tag]).strip()


def build_image(base: str, uv: str, tag: str = IMAGE) -> float:
    """Build the Dockerfile as written with the local BASE and UV_IMAGE; returns seconds.
    The image this replaces is removed once nothing refers to it (its layers stay cached)."""
    before = _image_id(tag)
    started = time.monotonic()
    _run(
        [
            "podman",
            "build",
            "--isolation",
            "chroot",
            "--format",
            "docker",  # as Docker builds it: the OCI format has no HEALTHCHECK
            "--build-arg",
            f"BASE={base}",
            "--build-arg",
            f"UV_IMAGE={uv}",
            "-t",
            tag,
            str(REPO),
        ],
        timeout=1500,
    )
    seconds = time.monotonic() - started
    if before and before != _image_id(tag):
        subprocess.run(["podman", "rmi", before], capture_output=True, check=False)
    # Each build leaves untagged stage images, the layer cache of the next build; keep a day's.
    subprocess.run(
        ["podman", "image", "prune", "-f", "--filter", "until=24h"],
        capture_output=True,
        check=False,
    )
    return seconds


def image_config(tag: str = IMAGE) -> dict[str, object]:
    """User, Entrypoint, Cmd, Env, WorkingDir and Healthcheck as the image records them."""
    import json

    out = _run(["podman", "image", "inspect", tag])
    data = json.loads(out)[0]
    config = dict(data.get("Config") or {})
    config["Healthcheck"] = data.get("Healthcheck") or config.get("Healthcheck")
    return config


@dataclass
class Container:
    """A buildah working container of the image: commands run in it as the image's user."""

    name: str

    def command(
        self,
        args: Sequence[str],
        *,
        volumes: Mapping[Path, str] = {},
        user: str | None = None,
    ) -> list[str]:
        cmd = ["buildah", "run", "--isolation", "chroot"]
        for host, inside in volumes.items():
            cmd += ["--volume", f"{host}:{inside}"]
        if user is not None:
            cmd += ["--user", user]
        return [*cmd, self.name, "--", *args]

    def run(
        self, args: Sequence[str], *, volumes: Mapping[Path, str] = {}, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(args, volumes=volumes),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def set_env(self, env: Mapping[str, str]) -> None:
        args = ["buildah", "config"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        _run([*args, self.name])


@contextmanager
def container(tag: str = IMAGE) -> Iterator[Container]:
    name = f"monitor-test-{os.getpid()}-{time.monotonic_ns()}"
    _run(["buildah", "from", "--name", name, tag])
    # buildah run (1.28) mounts a fresh directory on each declared VOLUME and lets it shadow a
    # `--volume` for the same path, where `docker run -v` binds over it: drop the declarations
    # from this working container (the image keeps them; tests check the image's config).
    volumes = image_config(tag).get("Volumes") or {}
    for path in volumes:  # type: ignore[union-attr]
        _run(["buildah", "config", "--volume", f"{path}-", name])
    try:
        yield Container(name)
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, check=False)


def descendant(pid: int, argv0: str) -> int | None:
    """The first process under `pid` whose command starts with `argv0` (buildah run does not
    pass signals on, so the test signals the image's init, as `docker stop` does)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    todo = list(children.get(pid, []))
    while todo:
        current = todo.pop(0)
        try:
            cmdline = (Path("/proc") / str(current) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].decode(errors="replace") == argv0:
            return current
        todo.extend(children.get(current, []))
    return None
