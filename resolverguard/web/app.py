"""The dashboard server: aiohttp on the resolver's own event loop (started by `Service.start`).

Why aiohttp: it is asyncio-native (one loop, no second server thread racing the chain), well kept
(aio-libs, releases every few months), serves HTTP/1.1 with keep-alive and has no template or ORM
layer we would not use. Everything here is a coroutine on the DNS loop; the two expensive things
leave it: password hashing (scrypt, ~50 ms) and store reads, both in worker threads
(resolverguard.web.reads has the measurement behind threads rather than a helper process).

One guard (`_guard`) decides every request: public paths (login, static files, health) pass; the
API wants a session cookie or `Authorization: Bearer <password>` and answers 401 otherwise; pages
redirect to /login; any POST made with a cookie must carry the session's CSRF token (403 otherwise).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from aiohttp import web

from resolverguard.chain import Next
from resolverguard.explain import decision_chain
from resolverguard.web import api, pages
from resolverguard.web.auth import BearerCache, LoginLimiter, PasswordHash, Session, Sessions, csrf_ok
from resolverguard.web.context import DASHBOARD, Resolver
from resolverguard.web.reads import MAX_READS, StoreReads, store_path

if TYPE_CHECKING:
    from resolverguard.config import DashboardConfig
    from resolverguard.pipeline import Pipeline

COOKIE = "rg_session"
STATIC = Path(__file__).resolve().parent / "static"
PUBLIC = ("/login", "/static/", "/api/v1/health")
SECURITY_HEADERS = {
    # Every script, style and image is ours (no CDN); inline SVG charts need no exception.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
MAX_BODY = 64 * 1024  # names and minutes: nothing an action needs is larger

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Dashboard:
    """The running dashboard: its web server, sessions and login limiter (state of this server,
    gone on restart). Settings are read from `service.cfg.dashboard` on each use, so a reload that
    changes the password takes effect at once; the listen address is fixed at start."""

    def __init__(self, service: Resolver, clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        settings = service.cfg.dashboard
        self.sessions = Sessions(settings.session_hours * 3600, clock)
        self.limiter = LoginLimiter(settings.login_attempts, settings.login_window, clock)
        self.bearers = BearerCache()
        self._password_hash = settings.password_hash
        self._runner: web.AppRunner | None = None
        self._read_gate = asyncio.Semaphore(MAX_READS)
        self._explainer: tuple[Pipeline, Next] | None = None
        self._explainer_lock = asyncio.Lock()
        self.port = settings.listen.port

    @property
    def settings(self) -> DashboardConfig:
        return self.service.cfg.dashboard

    def reads(self) -> StoreReads | None:
        """The running policy's store (None without one)."""
        path = store_path(self.service.cfg)
        return StoreReads(path, self._read_gate) if path is not None else None

    async def decision_chain(self) -> Next:
        """`explain`'s decision steps for the running pipeline: built once per pipeline (a reload
        makes a new one), in a worker thread, since building one takes ~70 ms."""
        async with self._explainer_lock:
            service = self.service
            pipeline = service.pipeline
            if self._explainer is None or self._explainer[0] is not pipeline:
                chain = await asyncio.to_thread(decision_chain, service.cfg, service.model, pipeline.groups)
                self._explainer = (pipeline, chain)
            return self._explainer[1]

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        app[DASHBOARD] = self
        app.router.add_get("/login", pages.login_page)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_static("/static/", STATIC, append_version=False)
        api.routes(app)
        pages.routes(app)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.listen.host, self.settings.listen.port, reuse_address=True)
        await site.start()
        if self._runner.addresses:  # port 0 in tests: the one the kernel chose
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- who is asking ------------------------------------------------------------------------

    async def password_ok(self, password: str) -> bool:
        text = self.settings.password_hash
        if text is None:
            return False
        return await asyncio.to_thread(PasswordHash.parse(text).matches, password)

    async def _bearer_ok(self, request: web.Request, token: str) -> bool:
        if self.bearers.known(token):
            return True
        client = request.remote or "?"
        if self.limiter.retry_after(client) > 0:
            return False
        if await self.password_ok(token):
            self.bearers.add(token)
            self.limiter.succeeded(client)
            return True
        self.limiter.failed(client)
        return False

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await self._decide(request, handler)
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith("/api/") or response.content_type == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _follow_reloads(self) -> None:
        """A reload may change the password or the login limit: a new password ends every session
        and forgets every bearer token checked against the old one."""
        settings = self.settings
        self.limiter.attempts, self.limiter.window = settings.login_attempts, settings.login_window
        if settings.password_hash != self._password_hash:
            self._password_hash = settings.password_hash
            self.sessions = Sessions(settings.session_hours * 3600, self.sessions.clock)
            self.bearers = BearerCache()

    async def _decide(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self._follow_reloads()
        is_api = request.path.startswith("/api/")
        if request.path.startswith(PUBLIC):
            return await handler(request)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            if not await self._bearer_ok(request, auth.removeprefix("Bearer ").strip()):
                return api.error(401, "bad token")
            request["session"] = None  # no cookie: no CSRF to check
            return await handler(request)
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            if is_api:
                return api.error(401, "log in first (session cookie) or send Authorization: Bearer <password>")
            back = "/login?" + urlencode({"next": request.path_qs})
            raise web.HTTPSeeOther(back if request.method == "GET" else "/login")
        if request.method not in ("GET", "HEAD", "OPTIONS") and not await self._csrf_checked(request, session):
            return api.error(403, "missing or wrong CSRF token") if is_api else pages.forbidden()
        request["session"] = session
        return await handler(request)

    async def _csrf_checked(self, request: web.Request, session: Session) -> bool:
        token = request.headers.get("X-CSRF-Token")
        if token is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            value = form.get("csrf")
            token = value if isinstance(value, str) else None
        return csrf_ok(session, token)

    # -- log in and out -----------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.StreamResponse:
        client = request.remote or "?"
        wait = self.limiter.retry_after(client)
        if wait > 0:
            return pages.login_page_with(
                f"Too many failed logins: try again in {wait:.0f} s.", 429, {"Retry-After": str(int(wait) + 1)}
            )
        form = await request.post()
        password = form.get("password")
        if not isinstance(password, str) or not await self.password_ok(password):
            self.limiter.failed(client)
            return pages.login_page_with("Wrong password.", 401, next_path=pages.local_path(form.get("next")))
        self.limiter.succeeded(client)
        session = self.sessions.create()
        response = web.HTTPSeeOther(pages.local_path(form.get("next")))
        response.set_cookie(
            COOKIE,
            session.id,
            httponly=True,
            samesite="Strict",
            path="/",
            max_age=int(self.settings.session_hours * 3600),
        )
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.end(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response
