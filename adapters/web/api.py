"""The HTTP API under /api/v1 (SPEC.md, "Operating a running pair"), and /metrics.

Every answer is JSON (the event stream and /metrics aside); an error is
`{"error": message}`.  A daemon that does not answer is 503.  Changes
(admin actions, the configuration, users) are written to the audit log
with their before and after, whatever their result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Any, Callable

from aiohttp import web

from adapters.web import forms
from adapters.web import metrics as metrics_text
from adapters.web import users as users_file
from adapters.web.app import (AUDIT, CONFIG_LOCK, DAEMON, HUB, MAX_BODY, MAX_CONFIG_BODY, OPTIONS, SESSIONS, USERS,
                              WHATIF_SLOTS, WHO, Who, client_address, error, read_json, security_headers)
from adapters.web.client import DaemonUnavailable
from adapters.web.config_ops import CONFIG, Applied, Conflict, Invalid, health_of

ACTIONS = ("drain", "undrain", "weight", "failover")
MAX_WEIGHT = 65535
MAX_SERVER_NAME = 512


def who(request: web.Request) -> Who:
    return request[WHO]


def audit(request: web.Request, **entry: Any) -> None:
    request.app[AUDIT].write(user=who(request).user, source=client_address(request), **entry)


async def status(request: web.Request) -> web.Response:
    try:
        answer = await request.app[DAEMON].ask({"cmd": "status"})
    except DaemonUnavailable as e:
        return error(503, str(e))
    if "error" in answer:
        return error(503, f"the daemon: {answer['error']}")
    return web.json_response(answer)


def _server_state(status: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    """One server's admin, health and weight in a status, for the audit log."""
    if status is None:
        return None
    if not name:
        return {"role": status.get("role")}
    virtual, _, server = name.rpartition("/")
    for s in status.get("services", ()):
        if virtual and s.get("name") != virtual:
            continue
        for r in s.get("servers", ()):
            if r.get("name") == server:
                return {k: r.get(k) for k in ("admin", "health", "weight")}
    return None


async def _status_or_none(request: web.Request) -> dict[str, Any] | None:
    try:
        answer = await request.app[DAEMON].ask({"cmd": "status"})
    except DaemonUnavailable:
        return None
    return None if "error" in answer else answer


async def admin(request: web.Request) -> web.Response:
    body = await read_json(request)
    action, server, weight = body.get("action"), body.get("server", ""), body.get("weight")
    if action not in ACTIONS:
        return error(400, f"action must be one of {', '.join(ACTIONS)}")
    if not isinstance(server, str) or len(server) > MAX_SERVER_NAME:
        return error(400, "server must be a string: VIRTUAL/SERVER")
    if action != "failover" and not server:
        return error(400, f"{action} needs a server: VIRTUAL/SERVER")
    request_: dict[str, Any] = {"cmd": "admin", "action": action, "server": server}
    if action == "weight":
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= MAX_WEIGHT:
            return error(400, f"weight must be an integer from 0 to {MAX_WEIGHT}")
        request_["weight"] = weight
    what = f"{action} {server}".strip() + (f" {weight}" if action == "weight" else "")
    before = _server_state(await _status_or_none(request), server)
    try:
        answer = await request.app[DAEMON].ask(request_)
    except DaemonUnavailable as e:
        audit(request, action="admin", target=what, before=before, result="failed", detail=str(e))
        return error(503, str(e))
    if answer.get("ok") is True and "error" not in answer:
        # the daemon carries an accepted action out at its next step: read back until it shows (bounded)
        after = _server_state(await _status_or_none(request), server)
        for _ in range(5):
            if after != before:
                break
            await asyncio.sleep(0.05)
            after = _server_state(await _status_or_none(request), server)
        audit(request, action="admin", target=what, before=before, after=after, result="ok")
        return web.json_response({"ok": True})
    reason = str(answer.get("error") or "refused by the daemon")
    audit(request, action="admin", target=what, before=before, result="refused", detail=reason)
    return error(409, reason)


def _config_response(current: Any) -> web.Response:
    response = web.json_response({"text": current.text, "serial_no": current.serial_no})
    response.headers["ETag"] = current.etag
    return response


async def get_config(request: web.Request) -> web.Response:
    path = request.app[OPTIONS].config_path
    try:
        current = await asyncio.get_running_loop().run_in_executor(None, CONFIG.read, path)
    except OSError as e:
        return error(500, f"cannot read {path}: {e.strerror or e}")
    return _config_response(current)


def _text(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str):
        raise web.HTTPBadRequest(text=json.dumps({"error": "text must be a string: the whole lvs.cf"}),
                                 content_type="application/json")
    return text


async def check_config(request: web.Request) -> web.Response:
    """The verdict on a candidate text (`{"text"}`), or on the forms' edits
    (`{"etag", "edits"}`, `_edit`); when it is valid, also what applying it
    would do: the diff of the file (serial_no raised) and the table operations."""
    body = await read_json(request, MAX_CONFIG_BODY)
    if "edits" in body and "text" not in body:
        return await _edit(request, body)
    text = _text(body)
    loop = asyncio.get_running_loop()
    errors = await loop.run_in_executor(None, CONFIG.check, text)
    answer: dict[str, Any] = {"valid": not errors, "errors": errors}
    if not errors:
        health = health_of(await _status_or_none(request))
        with contextlib.suppress(OSError):
            prepared = await loop.run_in_executor(None, CONFIG.preview, request.app[OPTIONS].config_path, text,
                                                  health)
            if prepared.errors:  # serial_no cannot be raised
                return web.json_response({"valid": False, "errors": prepared.errors})
            answer.update(diff=prepared.diff, table_ops=list(prepared.table_ops), serial_no=prepared.serial_no)
    return web.json_response(answer)


MAX_EDITS = 1000


def _path_ok(block: Any, least: int) -> bool:
    return isinstance(block, list) and least <= len(block) <= 2 and all(isinstance(b, str) for b in block)


def _edit_shape_ok(e: dict[str, Any]) -> bool:
    """One of the forms' edits (adapters/web/forms.py), by its shape only: forms.edit judges the rest."""
    op = e.get("op", "set")
    if op == "set":
        return (_path_ok(e.get("block"), 0) and isinstance(e.get("key"), str)
                and (e.get("value") is None or isinstance(e.get("value"), str)) and "value" in e)
    if op == "add_block":
        return (e.get("kind") in ("virtual", "server") and isinstance(e.get("name"), str)
                and (e.get("parent") is None or isinstance(e.get("parent"), str)))
    return op == "remove_block" and _path_ok(e.get("block"), 1)


async def _edit(request: web.Request, body: dict[str, Any]) -> web.Response:
    """`/config/check` of the forms' edits, made to the file as it is (refused,
    412, when it is no longer the version the form was made from): the
    resulting text, and its errors at their fields, or its diff and table
    operations.  Nothing is written: the page PUTs the text to apply it."""
    edits, tag = body.get("edits"), body.get("etag")
    if not isinstance(tag, str) or not isinstance(edits, list) or len(edits) > MAX_EDITS or not all(
            isinstance(e, dict) and _edit_shape_ok(e) for e in edits):
        return error(400, 'expected {"etag", "edits": [...]}, each edit {"block": [VIRTUAL, SERVER], "key", '
                          '"value"} (value null: the key removed), {"op": "add_block", "kind": "virtual"|"server", '
                          '"name", "parent"} or {"op": "remove_block", "block": [VIRTUAL, SERVER]}')
    loop = asyncio.get_running_loop()
    path = request.app[OPTIONS].config_path
    try:
        current = await loop.run_in_executor(None, CONFIG.read, path)
    except OSError as e:
        return error(500, f"cannot read {path}: {e.strerror or e}")
    if current.etag != tag:
        return error(412, "the file changed since the form was made: reload it", etag=current.etag)
    edited = await loop.run_in_executor(None, forms.edit, current.text, edits)
    if edited.errors:
        return web.json_response({"valid": False, "errors": edited.errors, "text": edited.text})
    answer = {"valid": True, "errors": [], "text": edited.text}
    prepared = await loop.run_in_executor(None, CONFIG.preview, path, edited.text,
                                          health_of(await _status_or_none(request)))
    if prepared.errors:
        return web.json_response({"valid": False, "errors": prepared.errors, "text": edited.text})
    answer.update(diff=prepared.diff, table_ops=list(prepared.table_ops), serial_no=prepared.serial_no)
    return web.json_response(answer)


def history_dir(request: web.Request) -> str:
    return os.path.join(request.app[OPTIONS].state_dir, "config-history")


async def put_config(request: web.Request) -> web.Response:
    if_match = request.headers.get("If-Match")
    if not if_match:
        return error(428, "If-Match is required: the ETag of GET /api/v1/config")
    text = _text(await read_json(request, MAX_CONFIG_BODY))
    return await _apply(request, "config", if_match.strip(),
                        lambda path, health: CONFIG.apply(path, text, if_match.strip(), history_dir(request), health))


async def _apply(request: web.Request, action: str, if_match: str,
                 write: Callable[[str, Any], Applied]) -> web.Response:
    """Write the file (`write`), then reload the daemon; audited either way."""
    path = request.app[OPTIONS].config_path
    loop = asyncio.get_running_loop()
    health = health_of(await _status_or_none(request))
    async with request.app[CONFIG_LOCK]:
        try:
            before = await loop.run_in_executor(None, CONFIG.read, path)
            applied = await loop.run_in_executor(None, write, path, health)
        except Conflict as e:
            audit(request, action=action, target=path, before={"etag": e.etag}, result="refused",
                  detail=f"the file changed meanwhile (If-Match {if_match[:80]})")
            return error(412, "the file changed since it was read: read it again", etag=e.etag)
        except Invalid as e:
            audit(request, action=action, target=path, result="refused", detail=str(e))
            return web.json_response({"valid": False, "errors": e.errors}, status=422)
        except KeyError as e:
            return error(404, str(e).strip("'\""))
        except OSError as e:
            audit(request, action=action, target=path, result="failed", detail=str(e))
            return error(500, f"cannot write {path}: {e.strerror or e}")
        try:
            answer = await request.app[DAEMON].ask({"cmd": "reload"})
            reloaded = answer.get("ok") is True and "error" not in answer
            detail: Any = answer.get("detail") if reloaded else answer.get("error")
        except DaemonUnavailable as e:
            reloaded, detail = False, str(e)
    audit(request, action=action, target=path, before={"serial_no": before.serial_no, "etag": before.etag},
          after={"serial_no": applied.serial_no, "etag": applied.etag, "reloaded": reloaded,
                 "saved_as": applied.saved, "table_ops": list(applied.table_ops)},
          result="ok", detail=applied.diff[:16384])
    response = web.json_response({"serial_no": applied.serial_no, "reloaded": reloaded,
                                  "detail": detail if isinstance(detail, (str, dict, list)) else str(detail),
                                  "table_ops": list(applied.table_ops), "diff": applied.diff})
    response.headers["ETag"] = applied.etag
    return response


async def push_config(request: web.Request) -> web.Response:
    """Copy this file to the partner's web tool (adapters/web/partner.py has the rules)."""
    from adapters.web import configedit
    from adapters.web.partner import PartnerError, read_record, write_record

    options = request.app[OPTIONS]
    partner = options.partner
    if partner is None:
        return error(409, "no partner: start shoal web with --partner URL --partner-user NAME "
                          "--partner-password-file FILE")
    if_match = request.headers.get("If-Match")
    if not if_match:
        return error(428, "If-Match is required: the ETag of GET /api/v1/config")
    loop = asyncio.get_running_loop()
    path = options.config_path
    ours = await loop.run_in_executor(None, CONFIG.read, path)
    if ours.etag != if_match.strip():
        return error(412, "the file changed since it was read: read it again", etag=ours.etag)
    if ours.serial_no is None:
        return error(409, "this file is not valid: nothing copied")
    target = f"{partner.url} ({path})"
    try:
        text, tag, serial = await partner.config()
    except PartnerError as e:
        audit(request, action="config-push", target=target, result="failed", detail=str(e))
        return error(502, str(e))
    record = read_record(options.state_dir)
    if record.get("etag") and record["etag"] != tag and text != ours.text:
        reason = (f"the partner's file changed since the last copy (it is now serial_no {serial}): someone edited it "
                  f"there; look at it first, nothing copied")
        audit(request, action="config-push", target=target, before={"partner_etag": tag}, result="refused",
              detail=reason)
        return error(409, reason)
    mine = ours.text
    if serial is not None and ours.serial_no <= serial:  # the copy must keep its number on the partner
        raised = configedit.set_value(mine, (), "serial_no", str(serial + 1))
        answer = await _apply(request, "config", if_match.strip(),
                              lambda p, health: CONFIG.apply(p, raised, if_match.strip(), history_dir(request),
                                                             health))
        if answer.status != 200:
            return answer
        mine = (await loop.run_in_executor(None, CONFIG.read, path)).text
    try:
        status, body, new_tag = await partner.put(mine, tag)
    except PartnerError as e:
        audit(request, action="config-push", target=target, result="failed", detail=str(e))
        return error(502, str(e))
    if status != 200:
        reason = str(body.get("error") or f"{len(body.get('errors', []))} error(s)" if body else f"HTTP {status}")
        audit(request, action="config-push", target=target, before={"partner_serial_no": serial}, result="refused",
              detail=f"the partner answered {status}: {reason}")
        return error(409, f"the partner refused the copy ({status}): {reason}")
    write_record(options.state_dir, {"etag": new_tag, "serial_no": body.get("serial_no")})
    audit(request, action="config-push", target=target, before={"partner_serial_no": serial},
          after={"partner_serial_no": body.get("serial_no"), "reloaded": body.get("reloaded")}, result="ok")
    return web.json_response({"ok": True, "serial_no": body.get("serial_no"), "reloaded": body.get("reloaded"),
                              "detail": body.get("detail")})


async def partner_status(request: web.Request) -> web.Response:
    """The partner's own status (its web tool, `--partner`): both routers side by side."""
    from adapters.web.partner import PartnerError

    partner = request.app[OPTIONS].partner
    if partner is None:
        return error(404, "no partner: start shoal web with --partner URL")
    try:
        return web.json_response(await partner.status())
    except PartnerError as e:
        return error(502, str(e))


async def whatif(request: web.Request) -> web.Response:
    """The current lvs.cf (or `text`, a candidate) run in the simulator with the
    chosen faults, from the real servers' health as the daemon sees it now:
    the timeline, the tables, the VIP owner (adapters/web/whatif.py).  The
    real pair is not touched."""
    from adapters.web.whatif import MAX_FAULTS, WhatIfError, what_if

    body = await read_json(request, MAX_CONFIG_BODY)
    faults, duration, text = body.get("faults"), body.get("duration_s", 30), body.get("text")
    if isinstance(faults, dict):
        faults = [faults]
    if not isinstance(faults, list) or not 1 <= len(faults) <= MAX_FAULTS or not all(
            isinstance(f, dict) for f in faults):
        return error(400, f'faults must be 1 to {MAX_FAULTS} objects such as {{"server_down": "VIRTUAL/SERVER"}}')
    if not isinstance(duration, (int, float)) or isinstance(duration, bool):
        return error(400, "duration_s must be a number of seconds")
    if text is not None and not isinstance(text, str):
        return error(400, "text must be a string: a whole lvs.cf")
    loop = asyncio.get_running_loop()
    if text is None:
        try:
            text = (await loop.run_in_executor(None, CONFIG.read, request.app[OPTIONS].config_path)).text
        except OSError as e:
            return error(500, f"cannot read the configuration: {e.strerror or e}")
    status_ = await _status_or_none(request)
    down = sorted(f"{s['name']}/{r['name']}" for s in (status_ or {}).get("services", ())
                  for r in s.get("servers", ()) if r.get("health") == "down")
    async with request.app[WHATIF_SLOTS]:
        try:
            result = await loop.run_in_executor(None, lambda: what_if(text, faults, duration_s=duration, down=down))
        except WhatIfError as e:
            return error(422, str(e))
    return web.json_response(result.as_json())


async def config_history(request: web.Request) -> web.Response:
    versions = await asyncio.get_running_loop().run_in_executor(None, CONFIG.history, history_dir(request))
    return web.json_response({"versions": [{"id": v.id, "serial_no": v.serial_no, "saved_at": v.saved_at,
                                            "size": v.size} for v in versions]})


async def config_version(request: web.Request) -> web.Response:
    version = request.match_info["version"]
    try:
        text = await asyncio.get_running_loop().run_in_executor(None, CONFIG.version_text, history_dir(request),
                                                                 version)
    except (KeyError, OSError):
        return error(404, "no such version")
    return web.json_response({"id": version, "text": text})


async def revert_config(request: web.Request) -> web.Response:
    if_match = request.headers.get("If-Match")
    if not if_match:
        return error(428, "If-Match is required: the ETag of GET /api/v1/config")
    body = await read_json(request)
    version = body.get("version")
    if not isinstance(version, str):
        return error(400, "version must be a string: an id of GET /api/v1/config/history")
    return await _apply(request, "config-revert", if_match.strip(),
                        lambda path, health: CONFIG.revert(path, version, if_match.strip(), history_dir(request)))


async def events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    options = request.app[OPTIONS]
    queue = hub.subscribe()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    security_headers(request, response)
    try:
        await response.prepare(request)
        state = {"kind": "stream", "state": "up" if hub.connected else "down"}
        await response.write(b"retry: 2000\n\n" + _sse(state))
        session = who(request).session
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), options.keepalive_s)
            except asyncio.TimeoutError:
                if session is not None and not request.app[SESSIONS].alive(session):
                    break  # logged out or timed out: the page's next request goes to /login
                await response.write(b": keepalive\n\n")
                continue
            if event.get("state") == "closing" and event.get("kind") == "stream":
                break
            await response.write(_sse(event))
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        hub.unsubscribe(queue)
    return response


def _sse(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, separators=(",", ":"))
    name = "stream" if event.get("kind") == "stream" else "message"
    return f"event: {name}\ndata: {data}\n\n".encode()


async def audit_route(request: web.Request) -> web.Response:
    text = request.query.get("limit", "200")
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        return error(400, "limit must be an integer from 1 to 1000")
    entries = await asyncio.get_running_loop().run_in_executor(None, request.app[AUDIT].tail, int(text))
    return web.json_response({"entries": entries})


async def list_users(request: web.Request) -> web.Response:
    table = request.app[USERS].current()
    return web.json_response({"users": [{"name": u.name, "role": u.role} for u in
                                        sorted(table.values(), key=lambda u: u.name)]})


async def put_user(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = await read_json(request, MAX_BODY)
    role, password = body.get("role", "viewer"), body.get("password")
    if not isinstance(role, str) or not isinstance(password, str):
        return error(400, "role and password must be strings")
    store = request.app[USERS]
    try:
        user = await asyncio.get_running_loop().run_in_executor(None, users_file.make, name, role, password)
    except users_file.UsersError as e:
        return error(400, str(e))
    try:
        table = dict(store.refresh())
    except users_file.UsersError as e:
        return error(409, f"the users file cannot be read: {e}")
    before = {"role": table[name].role} if name in table else None
    if before and before["role"] == "admin" and role != "admin" and store.admins() == [name]:
        return error(409, "the last admin cannot lose the admin role")
    table[name] = user
    users_file.save(store.path, table)
    store.refresh()
    request.app[SESSIONS].end_user(name)  # a changed password or role: their sessions end
    audit(request, action="user", target=name, before=before, after={"role": role}, result="ok")
    return web.json_response({"ok": True})


async def delete_user(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    store = request.app[USERS]
    try:
        table = dict(store.refresh())
    except users_file.UsersError as e:
        return error(409, f"the users file cannot be read: {e}")
    if name not in table:
        return error(404, "no such user")
    if store.admins() == [name]:
        return error(409, "the last admin cannot be removed")
    before = {"role": table.pop(name).role}
    users_file.save(store.path, table)
    store.refresh()
    request.app[SESSIONS].end_user(name)
    audit(request, action="user", target=name, before=before, after=None, result="ok", detail="removed")
    return web.json_response({"ok": True})


async def openapi(request: web.Request) -> web.Response:
    from adapters.web.openapi import document

    return web.json_response(document())


async def metrics(request: web.Request) -> web.Response:
    status_ = await _status_or_none(request)
    body = metrics_text.render(status_, request.app[HUB].failovers)
    return web.Response(body=body, headers={"Content-Type": metrics_text.CONTENT_TYPE_LATEST})
