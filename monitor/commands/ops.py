"""`monitor health`: ask the local service whether it is ready (the container HEALTHCHECK).

It reads only `MONITOR_HTTP_HOST`/`MONITOR_HTTP_PORT` (or `--url`) and uses the standard library,
so it starts fast and works while the database is down: it then reports "not ready" instead of
hanging. Exit codes: 0 ready (or alive with `--live`), 1 not ready, 2 no answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.app import App

EXIT_READY = 0
EXIT_NOT_READY = 1
EXIT_NO_ANSWER = 2


def register(sub: argparse._SubParsersAction[Any]) -> None:
    health = sub.add_parser(
        "health",
        help="exit 0 when the local service is ready (its /readyz), 1 when not, 2 when silent",
        description=(
            "Query /readyz of the service on MONITOR_HTTP_PORT (default 8080) and exit 0 when "
            "it is ready, 1 when it answers 'not ready' (the failed checks are printed), 2 when "
            "nothing answers. Meant for the container HEALTHCHECK."
        ),
    )
    health.add_argument(
        "--live",
        action="store_true",
        help="check /livez (process alive) instead of /readyz (ready for work)",
    )
    health.add_argument("--url", default=None, help="base URL (default http://127.0.0.1:PORT)")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait (default 3)")
    health.add_argument("--quiet", "-q", action="store_true", help="print nothing")
    health.set_defaults(func=cmd_health, without_app=True)  # no settings, no database


def local_base_url() -> str:
    """The service's own listener from MONITOR_HTTP_HOST/PORT, as seen from this machine."""
    host = os.environ.get("MONITOR_HTTP_HOST", "0.0.0.0").strip() or "0.0.0.0"
    raw_port = os.environ.get("MONITOR_HTTP_PORT", "8080").strip() or "8080"
    try:
        port = int(raw_port)
    except ValueError:
        raise ValueError(f"MONITOR_HTTP_PORT={raw_port!r} is not a port number") from None
    if port <= 0:
        raise ValueError(
            f"MONITOR_HTTP_PORT={port}: the listener is off or on a random port; "
            "pass --url http://127.0.0.1:PORT"
        )
    if host in ("0.0.0.0", "::", "*"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def check(base_url: str, *, live: bool = False, timeout: float = 3.0) -> tuple[int, str]:
    """(exit code, one-line explanation) for the service at `base_url`."""
    path = "/livez" if live else "/readyz"
    url = base_url.rstrip("/") + path
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return EXIT_READY, _summary(response.read(), live=live, status=response.status)
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return EXIT_NOT_READY, _summary(body, live=live, status=exc.code)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        return EXIT_NO_ANSWER, f"no answer from {url}: {reason}"


def _summary(body: bytes, *, live: bool, status: int) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return f"HTTP {status}"
    if live:
        return f"{data.get('status', status)} (heartbeat {data.get('heartbeat_age_seconds')} s ago)"
    checks = data.get("checks", {})
    failed = [f"{name}: {c.get('detail')}" for name, c in checks.items() if not c.get("ok")]
    if not failed:
        return f"ready ({', '.join(sorted(checks))} ok)"
    return "not ready: " + "; ".join(failed)


def cmd_health(args: argparse.Namespace, app: App | None = None) -> int:
    """Run before any App is built (`without_app`): the HEALTHCHECK pays for urllib only."""
    try:
        base = args.url or local_base_url()
    except ValueError as exc:
        print(f"monitor health: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER
    code, message = check(base, live=args.live, timeout=args.timeout)
    if not args.quiet:
        print(message, file=sys.stdout if code == EXIT_READY else sys.stderr)
    return code
