"""The daemon's control socket and what `shoal status` / `shoal table` print.

One JSON object a line over a Unix socket at `STATE_DIR/control.sock`:
request `{"cmd": "status"}`, `{"cmd": "table"}`, `{"cmd": "reload"}` or
`{"cmd": "admin", "action": ..., "server": ...}`; the answer is one JSON
object a line.  A connection may send several requests, one a line.

Every request line gets exactly one answer line, whatever it holds: a line
that is not JSON, not an object, names an unknown command or bad arguments,
or makes the handler raise, is answered `{"error": ...}` and counted; it
never stops the daemon.  Bounds: a request line of at most `MAX_LINE`
bytes (a longer one is answered with an error and the connection closed),
`IDLE_TIMEOUT_S` to send a line (then the connection is closed),
`HANDLER_TIMEOUT_S` for an answer, `MAX_CLIENTS` connections at once (one
more is answered "busy" and closed).

The socket is made safely: an existing `control.sock` that is a socket
nobody answers on (a previous life's) or a symbolic link is removed (the
link itself, never what it points to); one a daemon still answers on, or
any other kind of file, stops the start with `ControlError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any, Awaitable, Callable

from adapters.describe import host_port
from engine.status import Status
from engine.table import Table

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

log = logging.getLogger("shoal.control")

MAX_LINE = 64 * 1024
IDLE_TIMEOUT_S = 5.0
HANDLER_TIMEOUT_S = 30.0
MAX_CLIENTS = 16


class ControlError(OSError):
    """The control socket cannot be made (path taken, another daemon on it)."""


def status_json(status: Status) -> dict[str, Any]:
    """The object `shoal status --json` prints (SPEC.md)."""
    p = status.partner
    return {
        "node": status.node,
        "role": status.role,
        "serial_no": status.serial_no,
        "vips": list(status.vips),
        "partner": {
            "alive": p.alive, "state": p.state, "serial_no": p.serial_no, "deaf": p.deaf, "drift": p.drift,
            "last_heard": None if p.last_heard_ms is None else round((status.now_ms - p.last_heard_ms) / 1000, 3),
        },
        "services": [
            {
                "name": s.name, "address": s.address, "port": s.port, "protocol": s.protocol, "fwmark": s.fwmark,
                "scheduler": s.scheduler, "sorry_in_table": s.sorry_in_table, "quorum_ok": s.quorum_ok,
                "servers": [
                    {"name": r.name, "address": r.address, "port": r.port, "health": r.health, "weight": r.weight,
                     "in_table": r.in_table, "admin": r.admin, "last_check": r.last_check,
                     "last_detail": r.last_detail, "checks_ok": r.checks_ok, "checks_failed": r.checks_failed}
                    for r in s.servers
                ],
            }
            for s in status.services
        ],
        "counters": dict(status.counters),
        "auth": status.auth,
        "table": _table_json(status),
        "links": {"down": list(status.links_down), "gave_up": status.unfit},
    }


def _table_json(status: Status) -> dict[str, Any]:
    """The kernel table checks: how often, and the drift found (a table that
    differed from what was applied: a change behind shoal's back)."""
    t = status.table
    return {
        "check_interval": t.check_interval_ms / 1000, "checks": t.checks, "stale_reads": t.stale_reads,
        "drift": {
            "count": t.drifts, "last_ms": t.last_drift_ms,
            "last_ago": None if t.last_drift_ms is None else round((status.now_ms - t.last_drift_ms) / 1000, 3),
            "ops": list(t.last_drift),
        },
    }


def status_text(data: dict[str, Any]) -> str:
    """`shoal status` for a person."""
    p = data["partner"]
    heard = "never heard" if p["last_heard"] is None else f"heard {p['last_heard']:.1f} s ago"
    lines = [
        f"{data['node']}: {data['role']}, serial_no {data['serial_no']}",
        f"VIPs: {' '.join(data['vips']) or '-'}",
        f"partner: {'alive' if p['alive'] else 'not heard'} ({p['state'] or '-'}, {heard})"
        + (", cannot hear us" if p["deaf"] else "") + (f", serial_no {p['serial_no']} differs" if p["drift"] else ""),
    ]
    for s in data["services"]:
        # the service as `ipvsadm -Ln` heads it: TCP 10.0.0.1:80, UDP [2001:db8::1]:53, FWM 5
        address = s["address"] or "-"
        where = (f"FWM {s['fwmark']}" + (" IPv6" if ":" in address else "") if s["fwmark"]
                 else f"{s['protocol'].upper()} {host_port(address, s['port'])}")
        lines.append(f"virtual {s['name']} ({where} {s['scheduler']})" + ("  [sorry server in]" if s["sorry_in_table"] else ""))
        for r in s["servers"]:
            flag = "" if r["admin"] == "auto" else f" [{r['admin']}]"
            lines.append(f"  {r['name']:<12} {host_port(r['address'], r['port']):<21} {r['health']:<8} "
                         f"weight {r['weight']}{flag}"
                         f"  ({r['checks_ok']} ok, {r['checks_failed']} failed; {r['last_detail'] or '-'})")
    t = data.get("table")
    if t is not None:
        every = f"every {t['check_interval']:g} s" if t["check_interval"] else "only after a failure"
        drift = t["drift"]
        line = f"kernel table: checked {every} ({t['checks']} checks), "
        if drift["count"]:
            line += f"drift {drift['count']} time(s), last {drift['last_ago']:.1f} s ago, put back with:"
            lines.append(line)
            lines.extend(f"  ipvsadm {op}" for op in drift["ops"])
        else:
            lines.append(line + "no drift")
    counters = {k: v for k, v in data["counters"].items() if v}
    if counters:
        lines.append("counters: " + " ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    if "loop" in data:
        lines.append(_loop_text(data["loop"]))
    if data.get("auth") is not None:
        lines.append(f"heartbeat authentication: {data['auth']}")
    links = data.get("links") or {}
    if links.get("down"):
        lines.append(f"links down: {' '.join(links['down'])}" + (
            " (monitor_links = 1: this router takes nothing until they are back)" if links.get("gave_up") else
            " (monitor_links = 0: noted only)"))
    lines.extend(f"WARNING: {w}" for w in data.get("warnings", ()))
    return "\n".join(lines)


def _loop_text(loop: dict[str, Any]) -> str:
    """The daemon loop's health in one line: how late it wakes, what waits, what was dropped."""
    late = loop["lateness_ms"]
    queues = " ".join(f"{k} {v}" for k, v in loop["queues"].items())
    drops = " ".join(f"{k}={v}" for k, v in sorted(loop["drops"].items()) if v) or "none"
    return (f"loop: late p50 {late['p50']:g} ms, p99 {late['p99']:g} ms, max {late['max']:g} ms "
            f"(last {late['samples']} wake-ups); waiting: {queues}; dropped: {drops}")


class ControlServer:
    def __init__(self, state_dir: str, handler: Handler, *, idle_timeout_s: float = IDLE_TIMEOUT_S,
                 handler_timeout_s: float = HANDLER_TIMEOUT_S, max_clients: int = MAX_CLIENTS) -> None:
        self.path = str(Path(state_dir) / "control.sock")
        self.handler = handler
        self.idle_timeout_s = idle_timeout_s
        self.handler_timeout_s = handler_timeout_s
        self.max_clients = max_clients
        self.bad_requests = 0
        self.errors: dict[str, int] = {}  # by reason: not-json, handler-error, oversize, idle, busy...
        self.clients = 0
        self.server: asyncio.AbstractServer | None = None

    def _count(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1
        if reason in ("not-json", "not-object", "bad-request", "handler-error", "oversize"):
            self.bad_requests += 1

    async def start(self) -> None:
        _clear_stale(self.path)
        self.server = await asyncio.start_unix_server(self._client, path=self.path, limit=MAX_LINE)
        os.chmod(self.path, 0o600)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.clients >= self.max_clients:
            self._count("busy")
            await _send(writer, {"error": f"busy: {self.max_clients} control connections are open already"})
            writer.close()
            return
        self.clients += 1
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, OSError):
            self._count("connection")
        finally:
            self.clients -= 1
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one line and answer it; False when the connection is done."""
        try:
            line = await asyncio.wait_for(reader.readline(), self.idle_timeout_s)
        except asyncio.TimeoutError:
            self._count("idle")
            await _send(writer, {"error": f"no request within {self.idle_timeout_s:g} s: closing"})
            return False
        except ValueError:  # longer than MAX_LINE: the rest of it would read as more lines
            self._count("oversize")
            await _send(writer, {"error": f"bad request: longer than {MAX_LINE} bytes"})
            return False
        if not line:
            return False
        await _send(writer, await self._answer(line))
        return line.endswith(b"\n")

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            self._count("not-json")
            return {"error": f"bad request: not JSON ({_short(e)})"}
        if not isinstance(request, dict):
            self._count("not-object")
            return {"error": "bad request: expected a JSON object"}
        try:
            answer = await asyncio.wait_for(self.handler(request), self.handler_timeout_s)
        except (ValueError, KeyError, TypeError) as e:
            self._count("bad-request")
            return {"error": f"bad request: {_short(e)}"}
        except asyncio.TimeoutError:
            self._count("handler-timeout")
            return {"error": f"no answer within {self.handler_timeout_s:g} s"}
        except Exception as e:
            return self._bug(request, e)
        try:
            json.dumps(answer)
        except (TypeError, ValueError) as e:  # an answer that cannot be sent: the handler's bug too
            return self._bug(request, e)
        return answer

    def _bug(self, request: dict[str, Any], e: Exception) -> dict[str, Any]:
        self._count("handler-error")
        log.error("control: request %s failed", _short(json.dumps(request, default=lambda o: type(o).__name__)),
                  exc_info=e, extra={"fields": {"kind": "control", "error": type(e).__name__}})
        return {"error": f"internal error: {type(e).__name__}: {_short(e)}"}

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)


async def _send(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
    try:
        writer.write((json.dumps(answer) + "\n").encode())
        await writer.drain()
    except (ConnectionError, OSError):
        pass


def _short(value: object, limit: int = 200) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _clear_stale(path: str) -> None:
    """Make room for the socket at `path`, or say why not (ControlError)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        os.unlink(path)  # the link, not its target
        return
    if not stat.S_ISSOCK(mode):
        raise ControlError(f"{path} exists and is not a socket: remove it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # a previous daemon's: nobody listens
            return
        except OSError:
            pass
    raise ControlError(f"another daemon answers on {path}: stop it first, or give this one another --state-dir")


def ask(state_dir: str, request: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """One request to a running daemon (blocking; for the CLI)."""
    path = str(Path(state_dir) / "control.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(path)
        sock.sendall((json.dumps(request) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer


def table_of(table: Table) -> list[dict[str, Any]]:
    """A table as JSON, for `shoal table` over the socket."""
    out = []
    for key in sorted(table):
        entry = table[key]
        s = entry.service
        out.append({
            "protocol": key.protocol, "address": key.address, "port": key.port, "fwmark": key.fwmark,
            "family": key.family, "scheduler": s.scheduler, "sched_flags": list(s.sched_flags),
            "persistent_s": s.persistent_s, "pmask": s.pmask,
            "dests": [{"address": d.key.address, "port": d.key.port, "weight": d.weight, "forward": d.forward}
                      for d in (entry.dests[k] for k in sorted(entry.dests))],
        })
    return out
