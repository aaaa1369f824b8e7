"""The HTTP listener inside `monitor run`: /livez, /readyz, /metrics and /status.

* `/livez` (and the `/healthz` alias) says the process and its scheduler are alive: a tick started
  recently. It never looks at the database, so an outage cannot cause a restart storm.
* `/readyz` checks the database, the schema revision, the watchlists and draining; 503 lists each
  failed check in JSON.
* `/metrics` is the Prometheus exposition of this replica (monitor/metrics.py).
* `/status` is a small HTML page, or JSON with `?format=json` / `Accept: application/json`.
* `/` and the rest are the admin console (monitor/console), behind `/login`.

Database reads run on one dedicated thread with a deadline, so a hung database never blocks the
event loop, never starves the poller's threads, and a probe answers within a few seconds.
`MONITOR_HTTP_PORT=0` binds a free port and logs it (`http listening`, key `port`); a negative
port turns the listener off.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aiohttp import web
from jinja2 import Environment

from monitor import __version__
from monitor.clock import as_utc
from monitor.console.auth import COOKIE
from monitor.console.pages import Console
from monitor.logs import get_logger, scrub
from monitor.metrics import CONTENT_TYPE
from monitor.model import WAITING, AlertStatus
from monitor.redact import redact_url
from monitor.store import db, status
from monitor.store import feedback as feedback_store
from monitor.store.db import Engine
from monitor.store.feedback import DESK_WINDOWS, DeskJudgement
from monitor.store.status import StoreState

if TYPE_CHECKING:
    from monitor.metrics import ServiceMetrics
    from monitor.settings import Settings
    from monitor.watchlists import WatchlistRegistry
    from monitor.watchlists.registry import RegistryHealth

log = get_logger(__name__)
T = TypeVar("T")

LIVEZ_MAX_AGE_SECONDS = 60.0
DB_DEADLINE_SECONDS = 3.0
READY_CACHE_SECONDS = 1.0
STATUS_SOURCES_LIMIT = 500
STATUS_ALERTS_LIMIT = 50


class HealthView(Protocol):
    """The fields of `monitor.service.Health` this module reads."""

    started: float
    heartbeat: float
    draining: bool


class ServiceView(Protocol):
    """What the web server needs from the running service (monitor.service.Service has it)."""

    settings: Settings
    engine: Engine
    owner: str

    @property
    def registry(self) -> WatchlistRegistry: ...

    @property
    def metrics(self) -> ServiceMetrics: ...

    @property
    def health(self) -> HealthView: ...


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: dict[str, Check]
    at: float

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ok else "not ready",
            "checks": {name: asdict(check) for name, check in self.checks.items()},
        }


class WebServer:
    """The aiohttp application of one replica; `start()` binds, `stop()` closes."""

    def __init__(self, service: ServiceView) -> None:
        self.service = service
        self.settings = service.settings
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        # One thread for every database read of this module: probes never pile up threads.
        self._db_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-web-db")
        self._ready: Readiness | None = None
        self._ready_task: asyncio.Task[Readiness] | None = None
        self._head: str | None = None
        self.app = web.Application(middlewares=[_security_headers], client_max_size=1024**2)
        self.console = Console(service, self._db_pool)
        self.app.add_routes(
            [
                *self.console.routes(),
                web.get("/livez", self.livez),
                web.get("/healthz", self.livez),
                web.get("/readyz", self.readyz),
                web.get("/metrics", self.metrics),
                web.get("/status", self.status),
            ]
        )
        # Desk feedback (Slack interactivity, email links): monitor/feedback_web.py.
        from monitor.feedback_web import register

        register(self.app, self.settings, getattr(service, "feedback", None))

    @property
    def url(self) -> str:
        host = self.settings.http_host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._head = await asyncio.to_thread(db.head_revision)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.settings.http_host, self.settings.http_port, reuse_address=True
        )
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(
                f"cannot listen on {self.settings.http_host}:{self.settings.http_port} ({exc}): "
                "set MONITOR_HTTP_PORT to a free port (0 picks one, -1 turns the listener off)"
            ) from exc
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else self.settings.http_port
        log.info("http listening", host=self.settings.http_host, port=self.port, url=self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.console.close()
        self._db_pool.shutdown(wait=False, cancel_futures=True)

    # --- database reads with a deadline --------------------------------------------------

    async def _db(self, func: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(
            loop.run_in_executor(self._db_pool, func), timeout=DB_DEADLINE_SECONDS
        )

    # --- handlers ------------------------------------------------------------------------

    async def livez(self, _request: web.Request) -> web.Response:
        health = self.service.health
        age = time.monotonic() - health.heartbeat
        alive = age <= LIVEZ_MAX_AGE_SECONDS
        body = {
            "status": "alive" if alive else "stalled",
            "heartbeat_age_seconds": round(age, 3),
            "max_age_seconds": LIVEZ_MAX_AGE_SECONDS,
            "draining": health.draining,
        }
        return web.json_response(body, status=200 if alive else 503)

    async def readyz(self, _request: web.Request) -> web.Response:
        ready = await self.readiness()
        return web.json_response(ready.as_json(), status=200 if ready.ok else 503)

    async def readiness(self) -> Readiness:
        """Checks shared by concurrent probes and cached for a second."""
        cached = self._ready
        if cached is not None and time.monotonic() - cached.at < READY_CACHE_SECONDS:
            return self._with_live_flags(cached)
        if self._ready_task is None or self._ready_task.done():
            self._ready_task = asyncio.create_task(self._check_database())
        result = await asyncio.shield(self._ready_task)
        self._ready = result
        return self._with_live_flags(result)

    def _with_live_flags(self, ready: Readiness) -> Readiness:
        """Draining and watchlists change without the database: never cache them."""
        checks = dict(ready.checks)
        registry = self.service.registry
        checks["watchlists"] = (
            Check(True, f"{len(registry.watchlists)} watchlists loaded")
            if registry.loaded
            else Check(False, "no valid watchlist set loaded yet: see the watchlist errors in logs")
        )
        health = registry.health()
        problems = health.problems
        checks["watchlist_reload"] = Check(
            not health.restarting,
            "; ".join(problems) if problems else "watching for changes",
        )
        checks["draining"] = (
            Check(False, "shutting down: no new work is claimed")
            if self.service.health.draining
            else Check(True, "accepting work")
        )
        return Readiness(checks, ready.at)

    async def _check_database(self) -> Readiness:
        head = self._head

        def probe() -> str | None:
            db.ping(self.service.engine)
            return db.current_revision(self.service.engine)

        checks: dict[str, Check] = {}
        try:
            current = await self._db(probe)
        except TimeoutError:
            checks["database"] = Check(
                False, f"no answer within {DB_DEADLINE_SECONDS:.0f} s (database busy or down)"
            )
            checks["schema"] = Check(False, "unknown: database unreachable")
        except Exception as exc:
            checks["database"] = Check(False, _short(exc))
            checks["schema"] = Check(False, "unknown: database unreachable")
        else:
            checks["database"] = Check(True, "reachable")
            checks["schema"] = (
                Check(True, f"at head {head}")
                if current == head
                else Check(
                    False,
                    f"schema at {current or 'nothing'}, code needs {head}: "
                    "run `monitor db upgrade`",
                )
            )
        return Readiness(checks, time.monotonic())

    async def metrics(self, _request: web.Request) -> web.Response:
        metrics = self.service.metrics
        started = time.monotonic()
        state: StoreState | None
        try:
            state = await self._db(lambda: status.read_store_state(self.service.engine))
        except Exception as exc:
            state = None
            log.warning("metrics: database unreadable", error=_short(exc))
        metrics.set_store_state(state, time.monotonic() - started)
        registry = self.service.registry
        metrics.sync_watchlists(
            ok=registry.reloads_ok,
            error=registry.reloads_error,
            last_success=registry.last_success,
            count=len(registry.watchlists),
        )
        health = self.service.health
        metrics.draining.set(1 if health.draining else 0)
        metrics.heartbeat_age.set(max(0.0, time.monotonic() - health.heartbeat))
        body = metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    def _authorize(self, request: web.Request) -> None:
        """Pages with desk data need the admin token (or a console login); without one
        configured they are off."""
        token = self.settings.admin_token
        if token is None or not token.get_secret_value():
            raise web.HTTPNotFound(
                text="this page is off: set MONITOR_ADMIN_TOKEN and send "
                "'Authorization: Bearer <token>'\n"
            )
        cookie = request.cookies.get(COOKIE)
        if cookie and self.console.sessions.check(cookie) is not None:
            return
        sent = request.headers.get("Authorization", "")
        scheme, _, value = sent.partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), expected):
            raise web.HTTPUnauthorized(
                text="send the admin token as 'Authorization: Bearer <MONITOR_ADMIN_TOKEN>'\n",
                headers={"WWW-Authenticate": 'Bearer realm="monitor"'},
            )

    async def status(self, request: web.Request) -> web.Response:
        self._authorize(request)
        want_json = request.query.get("format") == "json" or (
            request.query.get("format") != "html" and _prefers_json(request)
        )
        try:
            limit = int(request.query.get("limit", STATUS_SOURCES_LIMIT))
        except ValueError:
            raise web.HTTPBadRequest(text="limit must be a whole number") from None
        limit = max(1, min(limit, 100_000))
        ready = await self.readiness()
        payload: dict[str, Any] = {
            "replica": {
                "name": self.service.owner,
                "version": __version__,
                "started_at": _iso_ts(self.service.health.started),
                "uptime_seconds": round(time.time() - self.service.health.started, 1),
                "draining": self.service.health.draining,
                "ready": ready.ok,
                "http_port": self.port,
            },
            "readiness": ready.as_json()["checks"],
            "watchlists": _watchlist_health(self.service.registry.health()),
        }
        code = 200
        try:
            ids = tuple(self.service.registry.watchlists)
            payload.update(
                await self._db(lambda: read_status(self.service.engine, limit, watchlists=ids))
            )
            payload["watchlists"]["desk_precision"] = payload.pop("desk_precision")
            payload["database"] = {"ok": True, "error": None}
        except Exception as exc:
            code = 503
            detail = "no answer in time" if isinstance(exc, TimeoutError) else _short(exc)
            payload["database"] = {"ok": False, "error": detail}
        if want_json:
            return web.json_response(payload, status=code, dumps=_dumps)
        html = _TEMPLATE.render(s=payload)
        return web.Response(text=html, status=code, content_type="text/html", charset="utf-8")


def read_status(
    engine: Engine, limit: int = STATUS_SOURCES_LIMIT, *, watchlists: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Sources' health (failing first), recent alerts, outbox state, replicas and each
    watchlist's precision as judged by the desk, as plain data."""
    snap = status.read_status(engine, sources_limit=limit, alerts_limit=STATUS_ALERTS_LIMIT)
    desk = feedback_store.desk_precision(engine, snap.now)
    state = snap.state
    sources = [
        {
            "id": r.id,
            "name": r.name,
            "url": redact_url(r.url),
            "status": r.status,
            "http_status": r.http_status,
            "failures": r.failures,
            "error": scrub(r.error)[:300] if r.error else None,
            "last_polled_at": _iso(r.last_polled_at),
            "last_success_at": _iso(r.last_success_at),
            "next_poll_at": _iso(r.next_poll_at),
            "polls": r.polls,
            "lease_owner": r.lease_owner,
            "disabled_reason": r.disabled_reason,
            "moved_to": redact_url(r.moved_to) if r.moved_to else None,
        }
        for r in snap.sources
    ]
    alerts = [
        {
            "id": a.id,
            "kind": a.kind,
            "watchlist": a.watchlist_id,
            "channel": a.channel,
            "destination": a.destination,
            "status": a.status,
            "attempts": a.attempts,
            "created_at": _iso(a.created_at),
            "sent_at": _iso(a.sent_at),
            "error": scrub(a.error)[:300] if a.error else None,
            "source": a.source_id,
            "title": a.title[:300],
        }
        for a in snap.alerts
    ]
    replicas = [
        {
            "name": r.name,
            "version": r.version,
            "started_at": _iso(r.started_at),
            "last_seen_at": _iso(r.last_seen_at),
            "alive": r.alive,
        }
        for r in snap.replicas
    ]
    outbox: dict[str, Any] = {
        "by_state": {
            f"{channel}:{status_}": count
            for (channel, status_), count in sorted(state.alerts_by_state.items())
        },
        "waiting": sum(
            count for (_ch, status_), count in state.alerts_by_state.items() if status_ in WAITING
        ),
        "oldest_waiting_age_seconds": round(max(state.oldest_waiting_age.values(), default=0), 1),
        "dead": sum(
            c for (_ch, s), c in state.alerts_by_state.items() if s == AlertStatus.DEAD
        ),
        "newest_dead": _dead_line(snap.newest_dead),
    }
    breakers = [
        {
            "target": b.key,
            "channel": b.channel,
            "failures": b.failures,
            "down_since": _iso(b.opened_at),
            "next_probe_at": _iso(b.next_probe_at),
            "error": scrub(b.last_error)[:300] if b.last_error else None,
        }
        for b in snap.breakers
    ]
    return {
        "generated_at": snap.now.isoformat(),
        "sources_summary": {
            "enabled": state.sources_total,
            "failing": state.sources_failing,
            "leased": state.sources_leased,
            "overdue": state.sources_overdue,
            "shown": len(sources),
        },
        "sources": sources,
        "alerts": alerts,
        "outbox": outbox,
        "breakers": breakers,
        "replicas": replicas,
        "desk_precision": {
            wid: {
                f"{days}d": desk.get(wid, {}).get(days, DeskJudgement()).as_json()
                for days in DESK_WINDOWS
            }
            for wid in sorted(set(watchlists) | set(desk))
        },
    }


def _dead_line(alert: status.RecentAlert | None) -> dict[str, Any] | None:
    """The alert given up on last: what an operator looks at first."""
    if alert is None:
        return None
    return {
        "id": alert.id,
        "watchlist": alert.watchlist_id,
        "channel": alert.channel,
        "destination": alert.destination,
        "dead_at": _iso(alert.dead_at or alert.created_at),
        "attempts": alert.attempts,
        "title": alert.title[:300],
        "error": scrub(alert.error)[:300] if alert.error else None,
    }


def _watchlist_health(health: RegistryHealth) -> dict[str, Any]:
    return {**asdict(health), "problems": list(health.problems)}


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # No referrer leaves the site, and our own form posts keep their Origin (CSRF check).
    "Referrer-Policy": "same-origin",
    # Only our own script and stylesheet: no inline script, no CDN, no framing, no form or
    # fetch to another origin. (/status keeps its inline style.)
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
}


@web.middleware
async def _security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every answer, errors included: no sniffing, no framing, no caching of desk data."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


def _prefers_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _short(exc: BaseException) -> str:
    text_ = str(exc).strip().splitlines()
    return scrub(f"{type(exc).__name__}: {text_[0] if text_ else ''}")[:300]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat(timespec="seconds")


def _iso_ts(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


_TEMPLATE = Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>monitor status: {{ s.replica.name }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:left;vertical-align:top}th{background:#f3f3f3}.bad{color:#a00}.ok{color:#070}
code{font-size:12px}
</style></head><body>
<h1>monitor status</h1>
<p>Replica <b>{{ s.replica.name }}</b> · version {{ s.replica.version }} · up
{{ s.replica.uptime_seconds }} s ·
{% if s.replica.ready %}<span class="ok">ready</span>{% else %}<span class="bad">not ready</span>
{% endif %}{% if s.replica.draining %} · <span class="bad">draining</span>{% endif %}
· <a href="?format=json">JSON</a> · <a href="/metrics">metrics</a></p>
<h2>Readiness</h2><table><tr><th>check</th><th>ok</th><th>detail</th></tr>
{% for name, c in s.readiness.items() %}<tr><td>{{ name }}</td>
<td class="{{ 'ok' if c.ok else 'bad' }}">{{ 'yes' if c.ok else 'no' }}</td>
<td>{{ c.detail }}</td></tr>{% endfor %}</table>
{% if not s.database.ok %}<p class="bad">Database unreachable: {{ s.database.error }}</p>
{% else %}
<h2>Outbox</h2><p>{{ s.outbox.waiting }} waiting (oldest {{ s.outbox.oldest_waiting_age_seconds }}
s), {{ s.outbox.dead }} dead.
{% for k, v in s.outbox.by_state.items() %}<code>{{ k }}={{ v }}</code> {% endfor %}</p>
{% set d = s.outbox.newest_dead %}{% if d %}<p class="bad" id="dead">
{{- s.outbox.dead }} dead alert{{ '' if s.outbox.dead == 1 else 's' }}; newest: #{{ d.id }}
{{- ' ' }}({{ d.watchlist }} → {{ d.channel }} {{ d.destination }}, {{ d.dead_at }}):
{{- ' ' }}{{ d.error or 'no reason recorded' }}. Fix the cause, then
<code>monitor alerts retry --dead</code>.</p>{% endif %}
{% if s.breakers %}<h2>Delivery targets down</h2><table><tr><th>target</th><th>channel</th>
<th>down since</th><th>failures</th><th>next probe</th><th>error</th></tr>
{% for b in s.breakers %}<tr><td>{{ b.target }}</td><td>{{ b.channel }}</td>
<td>{{ b.down_since or '' }}</td><td>{{ b.failures }}</td><td>{{ b.next_probe_at }}</td>
<td class="bad">{{ b.error or '' }}</td></tr>{% endfor %}</table>{% endif %}
<h2>Replicas</h2><table><tr><th>name</th><th>version</th><th>started</th><th>last seen</th>
<th>alive</th></tr>{% for r in s.replicas %}<tr><td>{{ r.name }}</td><td>{{ r.version }}</td>
<td>{{ r.started_at }}</td><td>{{ r.last_seen_at }}</td>
<td class="{{ 'ok' if r.alive else 'bad' }}">{{ 'yes' if r.alive else 'no' }}</td></tr>
{% endfor %}</table>
<h2>Watchlists: precision as judged by the desk</h2>
<table><tr><th>watchlist</th>{% for w in ('7d', '30d') %}<th>{{ w }}</th>{% endfor %}</tr>
{% for wid, d in s.watchlists.desk_precision.items() %}<tr><td>{{ wid }}</td>
{% for w in ('7d', '30d') %}<td>{% if d[w].judged %}{{ '%.2f'|format(d[w].precision) }}
({{ d[w].relevant }} of {{ d[w].judged }} relevant){% else %}no labels{% endif %}</td>
{% endfor %}</tr>{% endfor %}</table>
<h2>Recent alerts</h2><table><tr><th>id</th><th>watchlist</th><th>to</th><th>state</th>
<th>tries</th><th>created</th><th>sent</th><th>title</th><th>error</th></tr>
{% for a in s.alerts %}<tr><td>{{ a.id }}</td><td>{{ a.watchlist }}</td>
<td>{{ a.channel }} {{ a.destination }}</td>
<td class="{{ 'bad' if a.status == 'dead' else '' }}">{{ a.status }}</td><td>{{ a.attempts }}</td>
<td>{{ a.created_at }}</td><td>{{ a.sent_at or '' }}</td><td>{{ a.title }}</td>
<td>{{ a.error or '' }}</td></tr>{% endfor %}</table>
<h2>Sources</h2><p>{{ s.sources_summary.enabled }} enabled, {{ s.sources_summary.failing }}
failing, {{ s.sources_summary.leased }} being polled, {{ s.sources_summary.overdue }} overdue;
showing {{ s.sources_summary.shown }}, failing first.</p>
<table><tr><th>source</th><th>status</th><th>failures</th><th>last polled</th>
<th>last success</th><th>next poll</th><th>error</th></tr>
{% for r in s.sources %}<tr><td title="{{ r.url }}">{{ r.id }}</td>
<td class="{{ 'bad' if r.failures else '' }}">{{ r.status }}{% if r.http_status %}
({{ r.http_status }}){% endif %}</td><td>{{ r.failures }}</td><td>{{ r.last_polled_at or '' }}</td>
<td>{{ r.last_success_at or '' }}</td><td>{{ r.next_poll_at }}</td>
<td>{{ r.disabled_reason or r.error or '' }}{% if r.moved_to and not r.error %}
moved permanently to {{ r.moved_to }}{% endif %}</td></tr>{% endfor %}</table>
{% endif %}
<p><small>generated {{ s.generated_at or '' }}</small></p>
</body></html>
"""
)
