"""`shoal web`: the application, its routes and the rules every request passes.

Every route is declared once in ROUTES with the smallest role that may use
it; the middlewares enforce, for every request, in this order:

1. security headers on every answer (a Content-Security-Policy allowing no
   inline script and nothing from elsewhere, no framing, no sniffing, no
   referrer; no caching of anything but static files; HSTS under TLS);
2. who is asking: HTTP Basic (rate limited like the login form) or the
   session cookie.  Nobody: an API route (`/api/...`, `/metrics`), whatever
   its method, answers 401; anything else but the login page and static
   files redirects to `/login`;
3. state-changing methods (POST, PUT, DELETE, PATCH): a request whose
   `Origin` is not this site, or that a browser marks cross-site, is
   refused (403); a cookie-authenticated one also needs the session's
   `X-CSRF-Token` header (403 without it);
4. the role: too small a role gets 403.

Request bodies are bounded (`MAX_BODY` for JSON and forms, `MAX_CONFIG_BODY`
for a whole lvs.cf).  Nothing here runs a shell or any other program.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import HttpVersion11, web

from adapters.web import users as users_file
from adapters.web.audit import Audit
from adapters.web.auth import LoginLimit, Session, Sessions, Users
from adapters.web.client import Daemon, EventHub
from adapters.web.partner import Partner

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BODY = 64 * 1024
MAX_CONFIG_BODY = 12 * 1024 * 1024  # a 4 MiB lvs.cf, JSON-escaped
UNSAFE = frozenset({"POST", "PUT", "DELETE", "PATCH"})
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
STATIC_DIR = Path(__file__).parent / "static"


@dataclass(frozen=True, slots=True)
class Options:
    config_path: str
    state_dir: str
    users_path: str
    tls: bool = False
    idle_s: float = 15 * 60
    absolute_s: float = 8 * 3600
    login_failures: int = 5
    login_window_s: float = 60.0
    keepalive_s: float = 15.0  # a comment on the event stream this often
    partner: Partner | None = None  # the other router's web tool, for copying the configuration


@dataclass(frozen=True, slots=True)
class Who:
    user: str
    role: str
    via: str  # "basic" or "session"
    session: Session | None = None


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    role: str | None  # None: public
    kind: str  # "api" (401 without authentication), "page" (redirect to /login), "public"
    handler: Handler = field(compare=False, repr=False)


def routes() -> list[Route]:
    from adapters.web import api, pages

    return [
        Route("GET", "/login", None, "public", pages.login_form),
        Route("POST", "/login", None, "public", pages.login),
        Route("POST", "/logout", "viewer", "page", pages.logout),
        Route("GET", "/", "viewer", "page", pages.monitor),
        Route("GET", "/config", "viewer", "page", pages.config),
        Route("GET", "/config/forms", "viewer", "page", pages.config_forms),
        Route("GET", "/audit", "viewer", "page", pages.audit),
        Route("GET", "/whatif", "viewer", "page", pages.whatif),
        Route("GET", "/users", "admin", "page", pages.users),
        Route("GET", "/api/v1/status", "viewer", "api", api.status),
        Route("GET", "/api/v1/partner/status", "viewer", "api", api.partner_status),
        Route("POST", "/api/v1/admin", "operator", "api", api.admin),
        Route("GET", "/api/v1/config", "viewer", "api", api.get_config),
        Route("PUT", "/api/v1/config", "admin", "api", api.put_config),
        Route("POST", "/api/v1/config/check", "viewer", "api", api.check_config),
        Route("GET", "/api/v1/config/history", "viewer", "api", api.config_history),
        Route("GET", "/api/v1/config/history/{version}", "viewer", "api", api.config_version),
        Route("POST", "/api/v1/config/revert", "admin", "api", api.revert_config),
        Route("POST", "/api/v1/config/push", "admin", "api", api.push_config),
        Route("GET", "/api/v1/events", "viewer", "api", api.events),
        Route("POST", "/api/v1/whatif", "operator", "api", api.whatif),
        Route("GET", "/api/v1/audit", "viewer", "api", api.audit_route),
        Route("GET", "/api/v1/users", "admin", "api", api.list_users),
        Route("PUT", "/api/v1/users/{name}", "admin", "api", api.put_user),
        Route("DELETE", "/api/v1/users/{name}", "admin", "api", api.delete_user),
        Route("GET", "/api/v1/openapi.json", "viewer", "api", api.openapi),
        Route("GET", "/metrics", "viewer", "api", api.metrics),
    ]


OPTIONS: web.AppKey[Options] = web.AppKey("options", Options)
SESSIONS: web.AppKey[Sessions] = web.AppKey("sessions", Sessions)
LIMIT: web.AppKey[LoginLimit] = web.AppKey("limit", LoginLimit)
USERS: web.AppKey[Users] = web.AppKey("users", Users)
AUDIT: web.AppKey[Audit] = web.AppKey("audit", Audit)
DAEMON: web.AppKey[Daemon] = web.AppKey("daemon", Daemon)
HUB: web.AppKey[EventHub] = web.AppKey("hub", EventHub)
CONFIG_LOCK: web.AppKey[asyncio.Lock] = web.AppKey("config_lock", asyncio.Lock)
WHATIF_SLOTS: web.AppKey[asyncio.Semaphore] = web.AppKey("whatif_slots", asyncio.Semaphore)
WHO: web.RequestKey[Who] = web.RequestKey("who", Who)


def cookie_name(options: Options) -> str:
    return "__Host-shoal_session" if options.tls else "shoal_session"


def is_api(path: str) -> bool:
    return path.startswith("/api/") or path == "/api" or path == "/metrics"


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def unauthorized(request: web.Request, message: str = "authentication required") -> web.Response:
    if is_api(request.path):
        response = error(401, message)
        # not to a page's own fetch or EventSource: a browser would stop it with a password prompt
        if request.headers.get("Sec-Fetch-Mode") not in ("cors", "same-origin", "no-cors"):
            response.headers["WWW-Authenticate"] = 'Basic realm="shoal", charset="UTF-8"'
        return response
    raise web.HTTPFound("/login")


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as e:
        if is_api(request.path) and e.status >= 400 and e.content_type != "application/json":
            response = error(e.status, e.reason)
            for name in ("Allow", "WWW-Authenticate", "Retry-After"):
                if name in e.headers:
                    response.headers[name] = e.headers[name]
        else:
            response = e
        _secure(request, response)
        if response is e:
            raise
        return response
    _secure(request, response)
    return response


def _secure(request: web.Request, response: web.StreamResponse) -> None:
    if response.prepared:  # the event stream set its own before its first byte
        return
    h = response.headers
    h["Server"] = "shoal"  # not the library and its version
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    # same-origin, not no-referrer: with no-referrer a browser posts a form with `Origin: null`,
    # which the Origin check must refuse
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if not request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-store")
    if request.app[OPTIONS].tls:
        h.setdefault("Strict-Transport-Security", "max-age=31536000")


def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """For a streamed answer: the headers `headers_middleware` adds, before it is prepared."""
    _secure(request, response)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route: Route | None = getattr(request.match_info.route, "shoal_route", None)
    public = request.path.startswith("/static/") or (route is not None and route.role is None)
    if request.method in UNSAFE:
        refusal = _cross_site(request)
        if refusal:
            return error(403, refusal) if is_api(request.path) or public else _forbidden_page(refusal)
    if public:
        return await handler(request)
    who = await identify(request)
    if who is None:
        return unauthorized(request)
    if isinstance(who, web.Response):
        return who
    request[WHO] = who
    if who.via == "session" and request.method in UNSAFE:
        token = request.headers.get("X-CSRF-Token", "")
        assert who.session is not None
        if not hmac.compare_digest(token.encode(), who.session.csrf.encode()):
            return error(403, "missing or wrong X-CSRF-Token header")
    if route is not None and route.role is not None and not users_file.allows(who.role, route.role):
        message = f"the {route.role} role is needed; {who.user} is {who.role}"
        return error(403, message) if is_api(request.path) else _forbidden_page(message)
    return await handler(request)


def _forbidden_page(message: str) -> web.Response:
    return web.Response(status=403, text=f"403 forbidden: {message}\n", content_type="text/plain")


def _cross_site(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return "cross-origin request refused (Origin is not this site)"
    if request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
        return "cross-site request refused"
    return None


async def identify(request: web.Request) -> Who | web.Response | None:
    """The user of `request` (Basic or session), a 401/429 answer, or None: nobody."""
    app = request.app
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            name, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if not sep:
            return None
        user = await check_password(request, name, password)
        if isinstance(user, web.Response):
            return user
        return None if user is None else Who(user.name, user.role, "basic")
    token = request.cookies.get(cookie_name(app[OPTIONS]))
    if token:
        background = request.headers.get("X-Shoal-Background") == "1"
        session = app[SESSIONS].get(token, touch=not background)
        if session is not None:
            # the users file as it is now: a user removed or given a new password (shoal passwd,
            # while the tool runs) is logged out; a new role counts at once
            user = app[USERS].current().get(session.user)
            if user is None or user.hash != session.stamp:
                app[SESSIONS].end(token)
                return None
            return Who(session.user, user.role, "session", session)
    return None


async def check_password(request: web.Request, name: str, password: str) -> users_file.User | web.Response | None:
    """A login attempt (form or Basic): rate limited, counted, audited when it fails."""
    app = request.app
    address = client_address(request)
    wait = app[LIMIT].retry_after(address, name)
    if wait > 0:
        response = error(429, f"too many failed logins: try again in {wait:.0f} s")
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    if len(password) > users_file.MAX_PASSWORD or len(name) > users_file.MAX_NAME:
        user = None
    else:
        user = await asyncio.get_running_loop().run_in_executor(None, app[USERS].verify, name, password)
    if user is None:
        app[LIMIT].failed(address, name)
        app[AUDIT].write(user=name[:users_file.MAX_NAME], source=address, action="login", result="denied",
                         detail="wrong user or password")
    return user


async def _expect(request: web.Request) -> None:
    """`Expect: 100-continue` is answered as aiohttp does; any other
    expectation is ignored, as RFC 9110 allows (a server MAY answer 417), so
    that every answer stays one the API documents (aiohttp's own 417 is a
    text body the OpenAPI document does not have)."""
    if request.version == HttpVersion11 and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0


def make_app(options: Options) -> web.Application:
    app = web.Application(middlewares=[headers_middleware, auth_middleware], client_max_size=MAX_CONFIG_BODY)
    app[OPTIONS] = options
    app[SESSIONS] = Sessions(idle_s=options.idle_s, absolute_s=options.absolute_s)
    app[LIMIT] = LoginLimit(max_failures=options.login_failures, window_s=options.login_window_s)
    app[USERS] = Users(options.users_path)
    app[AUDIT] = Audit(os.path.join(options.state_dir, "web-audit.log"))
    app[DAEMON] = Daemon(options.state_dir)
    app[HUB] = EventHub(app[DAEMON])
    app[CONFIG_LOCK] = asyncio.Lock()
    app[WHATIF_SLOTS] = asyncio.Semaphore(2)  # simulations are CPU: two at a time
    for route in routes():
        resource_route = app.router.add_route(route.method, route.path, route.handler, expect_handler=_expect)
        resource_route.shoal_route = route  # type: ignore[attr-defined]
    app.router.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False)

    async def start_hub(app: web.Application) -> None:
        app[HUB].start()

    async def stop_hub(app: web.Application) -> None:
        await app[HUB].stop()

    async def end_streams(app: web.Application) -> None:
        app[HUB].close_subscribers()

    app.on_startup.append(start_hub)
    app.on_shutdown.append(end_streams)
    app.on_cleanup.append(stop_hub)
    return app


async def read_json(request: web.Request, limit: int = MAX_BODY) -> dict[str, Any]:
    """The request's JSON object body, at most `limit` bytes; 400/413/415 otherwise."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    data = await request.content.read(limit + 1)
    if len(data) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise web.HTTPBadRequest(text=json.dumps({"error": "the body is not JSON"}), content_type="application/json")
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "the body must be a JSON object"}),
                                 content_type="application/json")
    return body
