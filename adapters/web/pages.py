"""The pages: server-side jinja2 templates (autoescaped), kept live by
adapters/web/static/shoal.js over the API and its event stream.

Page hooks for people and browser tests (SPEC.md): `/login`'s form has
inputs `user` and `password`; the monitoring page holds the role in an
element with `data-role`, and every real server in an element with
`data-server="VIRTUAL/SERVER"` and `data-health`, holding a button with
`data-action="drain"` or `"undrain"`.  The session's CSRF token is in
`<meta name="csrf-token">` for the script, which sends it as
`X-CSRF-Token` with every change.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from adapters.web import users as users_file
from adapters.web.app import (AUDIT, DAEMON, OPTIONS, SESSIONS, USERS, WHO, Who, check_password, client_address,
                              cookie_name, identify)
from adapters.web.client import DaemonUnavailable
from adapters.web.config_ops import CONFIG

MAX_FORM = 8 * 1024

ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                         autoescape=True, undefined=jinja2.StrictUndefined)


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    who: Who | None = request.get(WHO)
    text = ENV.get_template(name).render(who=who, csrf=who.session.csrf if who and who.session else "",
                                         path=request.path, **context)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


async def login_form(request: web.Request) -> web.Response:
    return render(request, "login.html", message="")


async def login(request: web.Request) -> web.StreamResponse:
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=request.content_length)
    data = await request.content.read(MAX_FORM + 1)
    if len(data) > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=len(data))
    from urllib.parse import parse_qs

    form = parse_qs(data.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=10)
    name, password = form.get("user", [""])[0], form.get("password", [""])[0]
    user = await check_password(request, name, password)
    if isinstance(user, web.Response):  # rate limited
        return render(request, "login.html", status=429, message=user.text and _error_text(user))
    if user is None:
        return render(request, "login.html", status=401, message="wrong user or password")
    options = request.app[OPTIONS]
    old = request.cookies.get(cookie_name(options))
    token, _ = request.app[SESSIONS].create(user.name, user.role, old, stamp=user.hash)
    request.app[AUDIT].write(user=user.name, source=client_address(request), action="login", result="ok",
                             detail=f"role {user.role}")
    response = web.HTTPSeeOther("/")
    response.set_cookie(cookie_name(options), token, path="/", httponly=True, samesite="Strict",
                        secure=options.tls)
    raise response


def _error_text(response: web.Response) -> str:
    import json

    try:
        return str(json.loads(response.text or "{}").get("error", ""))
    except ValueError:
        return ""


async def logout(request: web.Request) -> web.Response:
    options = request.app[OPTIONS]
    token = request.cookies.get(cookie_name(options))
    if token:
        request.app[SESSIONS].end(token)
    who = request[WHO]
    request.app[AUDIT].write(user=who.user, source=client_address(request), action="logout", result="ok")
    response = web.json_response({"ok": True})
    response.del_cookie(cookie_name(options), path="/")
    return response


async def _status(request: web.Request) -> tuple[dict[str, Any] | None, str]:
    try:
        answer = await request.app[DAEMON].ask({"cmd": "status"})
    except DaemonUnavailable as e:
        return None, str(e)
    if "error" in answer:
        return None, f"the daemon: {answer['error']}"
    return answer, ""


async def monitor(request: web.Request) -> web.Response:
    status, problem = await _status(request)
    partner = request.app[OPTIONS].partner
    return render(request, "monitor.html", status=200, data=status, problem=problem, title="monitoring",
                  partner=partner.url if partner else "")


async def _read_config(request: web.Request) -> tuple[Any, str]:
    """The configuration file as CONFIG reads it (off the loop), or None and why not."""
    path = request.app[OPTIONS].config_path
    try:
        return await asyncio.get_running_loop().run_in_executor(None, CONFIG.read, path), ""
    except OSError as e:
        return None, f"cannot read {path}: {e.strerror or e}"


async def config(request: web.Request) -> web.Response:
    current, problem = await _read_config(request)
    options = request.app[OPTIONS]
    return render(request, "config.html", current=current, problem=problem, config_path=options.config_path,
                  title="configuration", partner=options.partner.url if options.partner and current else "")


async def config_forms(request: web.Request) -> web.Response:
    from adapters.web import forms

    current, problem = await _read_config(request)
    return render(request, "forms.html", current=current, blocks=forms.blocks(current.text) if current else [],
                  problem=problem, config_path=request.app[OPTIONS].config_path, title="configuration forms")


async def whatif(request: web.Request) -> web.Response:
    from scenario.model import FAULT_KEYS

    return render(request, "whatif.html", faults=FAULT_KEYS, title="what if")


async def audit(request: web.Request) -> web.Response:
    entries = await asyncio.get_running_loop().run_in_executor(None, request.app[AUDIT].tail, 500)
    return render(request, "audit.html", entries=entries, title="audit log")


async def users(request: web.Request) -> web.Response:
    table = request.app[USERS].current()
    return render(request, "users.html", users=sorted(table.values(), key=lambda u: u.name),
                  roles=users_file.ROLES, title="users")


__all__ = ["audit", "config", "config_forms", "whatif", "identify", "login", "login_form", "logout", "monitor", "users"]
