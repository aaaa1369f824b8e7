"""The admin console's pages on the service's listener: server-rendered (Jinja2, autoescaped),
one small script of ours for live previews, everything behind a login.

Reads go through the listener's one database thread with a deadline (as `/status` does);
backtests and cross-validation run on a worker thread of their own, so a long backtest never
delays a page or a probe. Every page reads a bounded amount: lists are paginated by keyset.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

from aiohttp import web
from jinja2 import Environment, PackageLoader

from monitor import __version__, languages
from monitor.console import advice
from monitor.console.auth import COOKIE, LoginThrottle, Role, Session, Sessions
from monitor.console.backtest import Backtest, Models, Quality, run_backtest
from monitor.console.draft import (
    NEW_TEMPLATE,
    NotWritable,
    check_draft,
    id_problem,
    save_atomically,
    saved_text,
    text_hash,
    writable,
)
from monitor.logs import get_logger
from monitor.model import AlertStatus, Watchlist
from monitor.query.matcher import compile_matcher
from monitor.relevance.examples import Example, read_examples
from monitor.relevance.models import embed_articles
from monitor.store import alerts as alert_store
from monitor.store import console as store
from monitor.store import status as status_store

if TYPE_CHECKING:
    from monitor.relevance.embed import Embedder
    from monitor.relevance.models import VectorCache
    from monitor.settings import Settings
    from monitor.store.db import Engine
    from monitor.watchlists import WatchlistRegistry

log = get_logger(__name__)
T = TypeVar("T")

DB_DEADLINE_SECONDS = 3.0
PAGE = 50
STATIC = {"console.js": "text/javascript", "console.css": "text/css"}
DAYS = (1, 3, 7, 30)
FRAGMENT_WAIT_SECONDS = 20.0


class ConsoleService(Protocol):
    """What the console reads from the running service (monitor.service.Service has it)."""

    settings: Settings
    engine: Engine
    owner: str

    @property
    def registry(self) -> WatchlistRegistry: ...


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("monitor", "templates/console"),
        autoescape=True,  # article text is hostile: every value is escaped
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    env.globals["highlighted"] = advice.highlighted
    env.globals["safe_href"] = advice.safe_href
    env.globals["version"] = __version__
    return env


def _when(value: datetime | None) -> str:
    if value is None:
        return "–"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = (datetime.now(UTC) - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            text = f"{seconds / size:.0f} {unit}"
            break
    else:
        text = f"{seconds:.0f} s"
    return f"in {text}" if future else f"{text} ago"


@dataclass(frozen=True, slots=True)
class Flash:
    kind: str  # ok | bad
    text: str


class Console:
    """Registers the console's routes on the listener's application."""

    def __init__(self, service: ConsoleService, db_pool: ThreadPoolExecutor) -> None:
        self.service = service
        self.settings = service.settings
        self._db_pool = db_pool
        self._work_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-console")
        tokens = {
            Role.ADMIN: (
                self.settings.admin_token.get_secret_value() if self.settings.admin_token else ""
            ),
            Role.DESK: (
                self.settings.desk_token.get_secret_value() if self.settings.desk_token else ""
            ),
        }
        self.sessions = Sessions(tokens, self.settings.session_hours * 3600)
        self.throttle = LoginThrottle()
        self.env = _env()
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._warm = False

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.overview),
            web.get("/login", self.login_form),
            web.post("/login", self.login),
            web.post("/logout", self.logout),
            web.get("/static/{name}", self.static),
            web.get("/watchlists", self.watchlists),
            web.get("/watchlists/new", self.edit),
            web.post("/watchlists/new", self.edit_post),
            web.get("/watchlists/{wid}", self.watchlist),
            web.get("/watchlists/{wid}/edit", self.edit),
            web.post("/watchlists/{wid}/edit", self.edit_post),
            web.get("/watchlists/{wid}/quality", self.quality_fragment),
            web.get("/watchlists/{wid}/recent", self.recent_fragment),
            web.post("/api/draft", self.api_draft),
            web.get("/sources", self.sources),
            web.get("/sources/{sid}", self.source),
            web.get("/alerts", self.alerts),
            web.get("/alerts/{aid}", self.alert),
            web.post("/alerts/{aid}/retry", self.retry),
            web.get("/stories", self.stories),
            web.get("/stories/{story}", self.story),
            web.get("/articles/{article}", self.article),
        ]

    def close(self) -> None:
        self._work_pool.shutdown(wait=False, cancel_futures=True)

    # --- plumbing ------------------------------------------------------------------------

    async def _db(self, func: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(
            loop.run_in_executor(self._db_pool, func), timeout=DB_DEADLINE_SECONDS
        )

    async def _work(self, func: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._work_pool, func)

    @property
    def engine(self) -> Engine:
        return self.service.engine

    @property
    def registry(self) -> WatchlistRegistry:
        return self.service.registry

    @property
    def directory(self) -> Path:
        return self.registry.directory

    @cached_property
    def _embedder(self) -> Embedder:
        live = self.registry.relevance.embedder
        if live is not None:
            return live
        from monitor.relevance.embed import make_embedder

        return make_embedder(self.settings.embedder)

    @cached_property
    def vectors(self) -> VectorCache:
        from monitor.store.vectors import DatabaseVectors

        return DatabaseVectors(self.engine)

    @cached_property
    def models(self) -> Models:
        registry = self.registry
        return Models(
            lambda: self._embedder,
            self.vectors,
            live=lambda: (registry.watchlists, registry.relevance),
            examples=self._examples_with_desk,
            generation=lambda: getattr(self.service, "feedback_generation", 0),
        )

    def _examples_with_desk(self, watchlist: Watchlist) -> list[Example]:
        """The examples file plus the desk's labels (the desk wins), as the service trains."""
        from monitor.feedback import merge_examples
        from monitor.relevance.models import file_examples
        from monitor.store import feedback as feedback_store

        files = file_examples(watchlist)
        labelled = feedback_store.labelled_articles(self.engine, watchlist.id)
        return merge_examples(files, labelled) if labelled else files

    def session(self, request: web.Request) -> Session:
        """The caller's session: a signed cookie, or a Bearer token (scripts). Pages redirect
        to /login without one; JSON and API calls get 401."""
        if not self.sessions.enabled:
            raise web.HTTPNotFound(
                text="the console is off: set MONITOR_ADMIN_TOKEN (and MONITOR_DESK_TOKEN for "
                "read-only desk staff)\n"
            )
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            role = self.sessions.role_of_token(value.strip())
            if role is None:
                raise web.HTTPUnauthorized(
                    text="unknown token\n", headers={"WWW-Authenticate": 'Bearer realm="monitor"'}
                )
            self._warm_up()
            return Session(role, "bearer", time.time() + 60, via_cookie=False)
        cookie = request.cookies.get(COOKIE)
        found = self.sessions.check(cookie) if cookie else None
        if found is not None:
            self._warm_up()
            return found
        if request.method == "GET" and not request.path.startswith("/api/"):
            target = request.path_qs if request.path != "/" else "/"
            raise web.HTTPFound(f"/login?next={quote(target, safe='/')}")
        raise web.HTTPUnauthorized(
            text="log in at /login, or send 'Authorization: Bearer <token>'\n",
            headers={"WWW-Authenticate": 'Bearer realm="monitor"'},
        )

    def _warm_up(self) -> None:
        """Someone uses the console: load the story page's language model (about a second)
        in the background, once, instead of in a page's answer."""
        if not self._warm:
            self._warm = True
            self._work_pool.submit(languages.guess, "warm up the language model", "")

    def _same_origin(self, request: web.Request) -> bool:
        """A cross-site form cannot post here: browsers send Origin on POST."""
        origin = request.headers.get("Origin")
        if origin is None or origin == "null":
            return origin is None
        return urlsplit(origin).netloc == request.host

    async def _posted(
        self, request: web.Request, *, write: bool
    ) -> tuple[Session, dict[str, str]]:
        """The session and form of a POST, CSRF-checked (cookie sessions), role-checked."""
        session = self.session(request)
        if request.content_type == "application/json":
            try:
                data = await request.json()
            except ValueError:
                raise web.HTTPBadRequest(text="send JSON") from None
            form = {str(k): str(v) for k, v in (data if isinstance(data, dict) else {}).items()}
            sent = request.headers.get("X-CSRF-Token", "")
        else:
            posted = await request.post()
            form = {k: str(v) for k, v in posted.items() if isinstance(v, str)}
            sent = form.get("csrf", "")
        if session.via_cookie and (
            not self._same_origin(request) or not self.sessions.csrf_ok(session, sent)
        ):
            raise web.HTTPForbidden(
                text="the form is stale or came from another site (CSRF check failed): reload "
                "the page and try again\n"
            )
        if write and not session.can_write:
            raise web.HTTPForbidden(text="read-only login: only the admin token may change this\n")
        return session, form

    def render(
        self,
        request: web.Request,
        template: str,
        session: Session | None,
        *,
        status: int = 200,
        **context: Any,
    ) -> web.Response:
        page = self.env.get_template(template).render(
            session=session,
            csrf=self.sessions.csrf(session) if session and session.via_cookie else "",
            path=request.path,
            replica=self.service.owner,
            **context,
        )
        return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")

    def _fragment(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    # --- login ---------------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.Response:
        if not self.sessions.enabled:
            self.session(request)  # raises the "console is off" answer
        return self.render(
            request, "login.html", None, next=_next(request.query.get("next")), error=None
        )

    async def login(self, request: web.Request) -> web.Response:
        if not self.sessions.enabled:
            self.session(request)
        form = await request.post()
        target = _next(str(form.get("next", "")))
        client = request.remote or "?"
        if not self._same_origin(request):
            raise web.HTTPForbidden(text="log in from this site's own /login page\n")
        if self.throttle.blocked(client):
            return self.render(
                request,
                "login.html",
                None,
                status=429,
                next=target,
                error="Too many failed logins from this address: wait a minute.",
            )
        role = self.sessions.role_of_token(str(form.get("token", "")).strip())
        if role is None:
            self.throttle.failed(client)
            log.warning("console login refused", client=client)
            return self.render(
                request,
                "login.html",
                None,
                status=401,
                next=target,
                error="That is not the admin or desk token.",
            )
        cookie, _ = self.sessions.issue(role)
        log.info("console login", role=role.value, client=client)
        response = web.HTTPSeeOther(target)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(self.sessions.lifetime),
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        await self._posted(request, write=False)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        body = resources.files("monitor").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=STATIC[name], charset="utf-8")

    # --- overview ------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        session = self.session(request)
        now = datetime.now(UTC)

        def read() -> dict[str, Any]:
            snap = status_store.read_status(self.engine, sources_limit=0, alerts_limit=15)
            attention = [
                s
                for health in ("failing", "moved", "disabled")
                for s in store.list_sources(self.engine, health=health, limit=20)
            ]
            return {
                "snap": snap,
                "health": store.source_health_counts(self.engine),
                "attention": attention,
                "leases": store.leases_by_owner(self.engine, now),
            }

        data = await self._db(read)
        snap = data["snap"]
        by_state: dict[str, int] = {}
        for (_channel, state), count in snap.state.alerts_by_state.items():
            by_state[state] = by_state.get(state, 0) + count
        return self.render(
            request,
            "overview.html",
            session,
            **data,
            by_state=by_state,
            states=[s.value for s in AlertStatus],
            registry=self.registry.health(),
            advice=advice.source_advice,
            draining=getattr(getattr(self.service, "health", None), "draining", False),
        )

    # --- watchlists ----------------------------------------------------------------------

    async def watchlists(self, request: web.Request) -> web.Response:
        session = self.session(request)
        now = datetime.now(UTC)

        counts = await self._db(
            lambda: store.alert_counts_by_watchlist(
                self.engine, now - timedelta(days=30), now - timedelta(days=7)
            )
        )
        desk = await self._db(lambda: _desk_precision(self.engine, now))
        items = sorted(self.registry.watchlists.values(), key=lambda w: w.id)
        return self.render(
            request,
            "watchlists.html",
            session,
            items=items,
            counts=counts,
            desk=desk,
            examples={w.id: _examples_count(w) for w in items},
            quality={w.id: self.models.cached_quality(w) for w in items},
            health=self.registry.health(),
            problems=self.registry.relevance.problems,
        )

    def _watchlist_or_404(self, wid: str) -> Watchlist:
        found = self.registry.watchlists.get(wid)
        if found is None:
            raise web.HTTPNotFound(text=f"no watchlist '{wid}' is loaded\n")
        return found

    async def watchlist(self, request: web.Request) -> web.Response:
        session = self.session(request)
        wid = request.match_info["wid"]
        wl = self._watchlist_or_404(wid)
        recent = await self._db(
            lambda: store.list_alerts(self.engine, watchlist_id=wid, limit=20)
        )
        desk, labels = await self._db(lambda: _desk_of(self.engine, wid))
        health = self.registry.health()
        mine = [p for p in health.problems if p.startswith((f"{wid}:", f"{wid}.", str(wl.path)))]
        saved = request.query.get("saved") == "1"
        flash = None
        if saved:
            flash = (
                Flash("bad", "Saved, but the reload reported problems: " + "; ".join(mine))
                if mine
                else Flash(
                    "ok",
                    f"Saved {wl.path.name} and reloaded: this version is live "
                    f"(config {self.registry.config_hash}).",
                )
            )
        return self.render(
            request,
            "watchlist.html",
            session,
            wl=wl,
            recent=recent,
            examples=_examples_count(wl),
            quality=self.models.cached_quality(wl),
            model_problem=self.registry.relevance.problems.get(wid),
            has_model=wid in self.registry.relevance.models,
            problems=mine,
            flash=flash,
            saved=saved,
            desk=desk,
            labels=labels,
        )

    async def _shared(self, key: str, func: Callable[[], T]) -> T:
        """One computation per key at a time; later callers wait for the same result."""
        future = self._pending.get(key)
        if future is None or future.done():
            future = asyncio.ensure_future(self._work(func))
            self._pending[key] = future
            future.add_done_callback(lambda _f: self._pending.pop(key, None))
        return await asyncio.shield(future)  # type: ignore[no-any-return]

    async def _quality(self, wl: Watchlist, wait: float) -> Quality | None:
        cached = self.models.cached_quality(wl)
        if cached is not None:
            return cached
        task = asyncio.ensure_future(
            self._shared("quality:" + self.models.key(wl), lambda: self.models.quality(wl))
        )
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(task), wait)
        return None

    async def quality_fragment(self, request: web.Request) -> web.Response:
        self.session(request)
        wl = self._watchlist_or_404(request.match_info["wid"])
        quality = await self._quality(wl, FRAGMENT_WAIT_SECONDS)
        html = self._fragment("_quality.html", quality=quality, wl=wl, label="saved version")
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def recent_fragment(self, request: web.Request) -> web.Response:
        """What the live version matched in the last 3 days, and its near misses."""
        self.session(request)
        wl = self._watchlist_or_404(request.match_info["wid"])
        since = datetime.now(UTC) - timedelta(days=3)
        # Cached for a minute per version: reloading the page does not scan again.
        result = await self._shared(
            f"recent:{wl.id}:{self.models.key(wl)}:{int(time.time() // 60)}",
            lambda: run_backtest(self.engine, self.models, wl, None, since=since, days=3),
        )
        html = self._fragment("_recent.html", bt=result, wl=wl)
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    # --- draft and backtest --------------------------------------------------------------

    async def edit(self, request: web.Request) -> web.Response:
        session = self.session(request)
        wid = request.match_info.get("wid")
        if wid is None:
            text, base = NEW_TEMPLATE, ""
        else:
            found = await asyncio.to_thread(saved_text, self.directory, wid)
            if found is None:
                raise web.HTTPNotFound(text=f"no file {wid}.yaml in the watchlist folder\n")
            text, base = found, text_hash(found)
        return self._editor(request, session, wid, text, base, days=7)

    def _editor(
        self,
        request: web.Request,
        session: Session,
        wid: str | None,
        text: str,
        base: str,
        *,
        days: int,
        status: int = 200,
        flash: Flash | None = None,
        check: Any = None,
        bt: Backtest | None = None,
        kept_draft: bool = False,
        new_id: str = "",
    ) -> web.Response:
        return self.render(
            request,
            "edit.html",
            session,
            status=status,
            wid=wid,
            new_id=new_id,
            text=text,
            base=base,
            days=days,
            day_choices=DAYS,
            flash=flash,
            check=check,
            bt=bt,
            kept_draft=kept_draft,
            writable=writable(self.directory),
            folder=self.directory.name,
        )

    async def edit_post(self, request: web.Request) -> web.StreamResponse:
        """Without JavaScript: preview, save or download the draft in the form. A failed
        save shows the same form with the draft in it: nothing typed is lost."""
        session, form = await self._posted(request, write=False)
        action = form.get("action", "preview")
        route_wid = request.match_info.get("wid")
        wid = route_wid or form.get("id", "").strip()
        text = form.get("yaml", "").replace("\r\n", "\n")
        base = form.get("base", "")
        days = _days(form.get("days"))
        if action == "download":
            name = wid if not id_problem(wid) else "watchlist"
            return web.Response(
                text=text,
                content_type="application/yaml",
                charset="utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}.yaml"'},
            )

        def again(
            status: int, flash: Flash | None, check: Any = None, bt: Any = None
        ) -> web.Response:
            return self._editor(
                request, session, route_wid, text, base, days=days, status=status,
                flash=flash, check=check, bt=bt, kept_draft=True, new_id=wid,
            )

        check = await self._work(lambda: self._check(wid, text))
        if action == "save":
            if not session.can_write:
                return again(403, Flash("bad", "Read-only login: only the admin can save."), check)
            if not check.ok:
                return again(
                    422, Flash("bad", "Not saved: fix the errors below first."), check
                )
            current = await asyncio.to_thread(saved_text, self.directory, wid)
            if route_wid is None and current is not None:
                return again(409, Flash("bad", f"Not saved: {wid}.yaml exists already."), check)
            if current is not None and text_hash(current) != base:
                base = text_hash(current)
                return again(
                    409,
                    Flash(
                        "bad",
                        f"Not saved: {wid}.yaml changed on disk since you opened it (another "
                        "editor or a git pull). Your draft is below; compare it with the file, "
                        "then save again to replace the file.",
                    ),
                    check,
                )
            try:
                await asyncio.to_thread(save_atomically, self.directory, wid, text)
            except NotWritable as exc:
                return again(
                    503,
                    Flash(
                        "bad",
                        f"Not saved: {exc}. Download the YAML and commit it to the watchlists "
                        "repository; your draft stays below.",
                    ),
                    check,
                )
            log.info("watchlist saved from the console", watchlist=wid, role=session.role.value)
            await asyncio.to_thread(self.registry.reload)
            raise web.HTTPSeeOther(f"/watchlists/{wid}?saved=1")
        bt = None
        if check.ok and check.watchlist is not None:
            bt = await self._backtest(check.watchlist, days)
        return again(200 if check.ok else 422, None, check, bt)

    def _check(self, wid: str, text: str) -> Any:
        from monitor.sources import SourcesError, load_sources

        try:
            ids: set[str] | None = {s.id for s in load_sources(self.settings.sources_path)}
        except (SourcesError, OSError):
            ids = None
        return check_draft(self.directory, wid, text, ids)

    async def _backtest(
        self,
        draft: Watchlist,
        days: int,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Backtest:
        saved = self.registry.watchlists.get(draft.id)
        live = self.registry.relevance
        # The live version is judged by the live model; a draft's model is trained on demand.
        saved_models = live if saved is not None and saved.id in live.models else None
        since = datetime.now(UTC) - timedelta(days=days)
        return await self._work(
            lambda: run_backtest(
                self.engine,
                self.models,
                draft,
                saved,
                since=since,
                days=days,
                saved_models=saved_models,
                progress=progress,
                cancelled=cancelled,
            )
        )

    async def api_draft(self, request: web.Request) -> web.StreamResponse:
        """As the admin types: validation, then the backtest's progress, its result and the
        draft's cross-validated figures, as one NDJSON stream (HTML parts rendered here)."""
        _session, form = await self._posted(request, write=False)
        wid = form.get("id", "").strip()
        text = form.get("yaml", "")
        days = _days(form.get("days"))
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson; charset=utf-8"}
        )
        await response.prepare(request)
        stop = threading.Event()

        async def send(kind: str, **data: Any) -> None:
            line = json.dumps({"type": kind, **data}, ensure_ascii=False) + "\n"
            try:
                await response.write(line.encode())
            except (ConnectionResetError, RuntimeError):
                stop.set()
                raise

        try:
            check = await self._work(lambda: self._check(wid, text))
            await send(
                "check",
                ok=check.ok,
                errors=[
                    {"file": e.file, "line": e.line, "message": e.message} for e in check.errors
                ],
                html=self._fragment("_errors.html", check=check),
            )
            if not check.ok or check.watchlist is None:
                return response
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

            def progress(done: int, total: int) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, (done, total))

            task = asyncio.ensure_future(
                self._backtest(check.watchlist, days, progress, stop.is_set)
            )
            while not task.done():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    done, total = getter.result()
                    await send("progress", done=done, total=total)
                else:
                    getter.cancel()
            bt = task.result()
            await send(
                "result",
                gained=bt.gained_count,
                lost=bt.lost_count,
                alerts=bt.alerts,
                scanned=bt.scanned,
                html=self._fragment("_backtest.html", bt=bt, wl=check.watchlist),
            )
            draft = check.watchlist
            saved = self.registry.watchlists.get(draft.id)
            desk, labels = await self._db(lambda: _desk_of(self.engine, draft.id))
            if (
                draft.examples is not None
                or labels
                or (saved is not None and saved.examples is not None)
            ):
                mine = await self._work(lambda: self.models.quality(draft))
                theirs = (
                    await self._work(lambda: self.models.quality(saved))
                    if saved is not None and (saved.examples is not None or labels)
                    else None
                )
                await send(
                    "quality",
                    html=self._fragment(
                        "_compare.html", draft=mine, saved=theirs, desk=desk, labels=labels
                    ),
                )
        except (ConnectionResetError, RuntimeError):
            stop.set()
        except asyncio.CancelledError:
            stop.set()
            raise
        return response

    # --- sources, alerts, stories, articles ------------------------------------------------

    async def sources(self, request: web.Request) -> web.Response:
        session = self.session(request)
        health = request.query.get("health") or None
        if health is not None and health not in store.HEALTH:
            raise web.HTTPBadRequest(text=f"health is one of {', '.join(store.HEALTH)}\n")
        page = _int(request.query.get("page"), 1)

        def read() -> tuple[dict[str, int], list[store.SourceView]]:
            return (
                store.source_health_counts(self.engine),
                store.list_sources(
                    self.engine, health=health, offset=(page - 1) * 100, limit=101
                ),
            )

        counts, rows = await self._db(read)
        return self.render(
            request,
            "sources.html",
            session,
            counts=counts,
            rows=rows[:100],
            more=len(rows) > 100,
            page=page,
            health=health,
            advice=advice.source_advice,
        )

    async def source(self, request: web.Request) -> web.Response:
        session = self.session(request)
        sid = request.match_info["sid"]

        def read() -> Any:
            found = store.get_source(self.engine, sid)
            if found is None:
                return None
            return (
                found,
                store.poll_events(self.engine, sid),
                store.source_articles(self.engine, sid),
            )

        data = await self._db(read)
        if data is None:
            raise web.HTTPNotFound(text=f"no source '{sid}'\n")
        src, events, articles = data
        return self.render(
            request,
            "source.html",
            session,
            src=src,
            events=events,
            articles=articles,
            advice=advice.source_advice(src.health, src.status, src.disabled_reason, src.moved_to),
        )

    async def alerts(self, request: web.Request) -> web.Response:
        session = self.session(request)
        state = request.query.get("status") or None
        if state is not None and state not in {s.value for s in AlertStatus}:
            raise web.HTTPBadRequest(text="unknown status\n")
        wid = request.query.get("watchlist") or None
        before = _int(request.query.get("before"), 0) or None
        rows = await self._db(
            lambda: store.list_alerts(
                self.engine, status=state, watchlist_id=wid, before_id=before, limit=PAGE + 1
            )
        )
        return self.render(
            request,
            "alerts.html",
            session,
            rows=rows[:PAGE],
            more=rows[PAGE - 1].id if len(rows) > PAGE else None,
            state=state,
            wid=wid,
            states=[s.value for s in AlertStatus],
        )

    async def alert(self, request: web.Request) -> web.Response:
        session = self.session(request)
        aid = _int(request.match_info["aid"], 0)
        detail = await self._db(lambda: store.get_alert(self.engine, aid))
        if detail is None:
            raise web.HTTPNotFound(text=f"no alert #{aid}\n")
        flash = Flash("ok", "Queued again: it is sent on the next dispatcher tick.") if (
            request.query.get("retried") == "1"
        ) else None
        return self.render(request, "alert.html", session, d=detail, a=detail.alert, flash=flash)

    async def retry(self, request: web.Request) -> web.Response:
        await self._posted(request, write=True)
        aid = _int(request.match_info["aid"], 0)
        detail = await self._db(lambda: store.get_alert(self.engine, aid))
        if detail is None:
            raise web.HTTPNotFound(text=f"no alert #{aid}\n")
        if detail.alert.status != AlertStatus.DEAD:
            raise web.HTTPConflict(text=f"alert #{aid} is {detail.alert.status}, not dead\n")
        await self._db(
            lambda: alert_store.requeue(self.engine, ids=[aid], now=datetime.now(UTC))
        )
        log.info("alert retried from the console", alert=aid)
        raise web.HTTPSeeOther(f"/alerts/{aid}?retried=1")

    async def stories(self, request: web.Request) -> web.Response:
        session = self.session(request)
        before = _int(request.query.get("before"), 0) or None
        several = request.query.get("several") == "1"
        rows = await self._db(
            lambda: store.list_stories(
                self.engine, before_id=before, min_articles=2 if several else 1, limit=PAGE + 1
            )
        )
        return self.render(
            request,
            "stories.html",
            session,
            rows=rows[:PAGE],
            more=rows[PAGE - 1].id if len(rows) > PAGE else None,
            several=several,
        )

    async def story(self, request: web.Request) -> web.Response:
        session = self.session(request)
        sid = _int(request.match_info["story"], 0)
        detail = await self._db(lambda: store.get_story(self.engine, sid))
        if detail is None:
            raise web.HTTPNotFound(text=f"no story #{sid}\n")
        langs = await self._work(
            lambda: [languages.guess(a.title, text) for a, text in detail.articles]
        )
        outlets: dict[str, int] = {}
        for line, _ in detail.articles:
            outlets[line.source_id] = outlets.get(line.source_id, 0) + 1
        counts: dict[str, int] = {}
        for lang in langs:
            counts[lang] = counts.get(lang, 0) + 1
        return self.render(
            request,
            "story.html",
            session,
            d=detail,
            rows=list(zip([a for a, _ in detail.articles], langs, strict=True)),
            outlets=outlets,
            languages=counts,
            language_name=languages.name,
        )

    async def article(self, request: web.Request) -> web.Response:
        """An article and, for every live watchlist, whether it would alert and why not."""
        session = self.session(request)
        aid = _int(request.match_info["article"], 0)
        detail = await self._db(lambda: store.get_article(self.engine, aid))
        if detail is None:
            raise web.HTTPNotFound(text=f"no article #{aid}\n")
        verdicts = await self._work(lambda: self._explain(detail))
        stored = detail.stored
        age_limit = self.settings.max_article_age_hours
        too_old = (
            stored.article.published is not None
            and (stored.first_seen - stored.article.published).total_seconds()
            > age_limit * 3600
        )
        return self.render(
            request,
            "article.html",
            session,
            d=detail,
            a=stored.article,
            verdicts=verdicts,
            too_old=too_old,
            age_limit=age_limit,
        )

    def _explain(self, detail: store.ArticleDetail) -> list[dict[str, Any]]:
        article = detail.stored.article
        watchlists = list(self.registry.watchlists.values())
        matcher = compile_matcher(watchlists)
        live = self.registry.relevance
        out: list[dict[str, Any]] = []
        vector = None
        for wl in sorted(watchlists, key=lambda w: w.id):
            why = matcher.explain(article, wl.id)
            judged = None
            if why.match is not None and wl.id in live.models and live.embedder is not None:
                if vector is None:
                    vector = embed_articles(live.embedder, self.vectors, [article])[0]
                judged = live.judge(article, vector, [why.match])[0].judgement
            out.append({"wl": wl, "why": why, "judgement": judged})
        return out


def _examples_count(wl: Watchlist) -> tuple[int, int] | None:
    """(examples, relevant) of the watchlist's examples file, cached by its mtime."""
    if wl.examples is None:
        return None
    try:
        stamp = wl.examples.stat().st_mtime_ns
    except OSError:
        return (0, 0)
    key = (str(wl.examples), stamp)
    found = _EXAMPLE_COUNTS.get(key)
    if found is None:
        examples, _ = read_examples(wl.examples)
        found = (len(examples), sum(e.relevant for e in examples))
        _EXAMPLE_COUNTS[key] = found
    return found


_EXAMPLE_COUNTS: dict[tuple[str, int], tuple[int, int]] = {}


def _next(value: str | None) -> str:
    """Where to go after login: only a path of this site (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _days(value: str | None) -> int:
    found = _int(value, 7)
    return found if found in DAYS else 7


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default



def _desk_of(engine: Engine, wid: str) -> tuple[dict[int, Any], int]:
    """One watchlist's desk judgements over 7 and 30 days, and its labels in effect."""
    from monitor.store import feedback as feedback_store

    windows = feedback_store.desk_precision(engine, datetime.now(UTC), watchlist_id=wid)
    return windows.get(wid, {}), feedback_store.labelled_watchlists(engine).get(wid, 0)


def _desk_precision(engine: Engine, now: datetime) -> dict[str, dict[int, tuple[int, int]]]:
    """Desk labels by watchlist over the last 7 and 30 days: {id: {days: (relevant, not)}}."""
    from monitor.store import feedback as feedback_store

    return {
        wid: {days: (j.relevant, j.not_relevant) for days, j in windows.items()}
        for wid, windows in feedback_store.desk_precision(engine, now).items()
    }
