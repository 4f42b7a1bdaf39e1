"""The daemon's control socket and what `shoal status` / `shoal table` print.

One JSON object a line over a Unix socket at `STATE_DIR/control.sock`
(mode 0600: only the daemon's user); the answer is one JSON object a line.
A connection may send several requests, one a line:

- `{"cmd": "status"}`: the object of `shoal status --json` (`status_json`);
- `{"cmd": "table"}`: `{"table": [...], "text": "ipvsadm -Ln layout"}`;
- `{"cmd": "reload"}`: as SIGHUP; `{"ok": true, "detail": "what changed"}`
  or `{"ok": false, "error": reason, "errors": ["file:line:col: message", ...]}`;
- `{"cmd": "admin", "action": A, "server": "VIRTUAL/SERVER"}` with A one of
  drain, undrain, weight (then `"weight": N`, an integer 0-65535), failover
  (no server), force_down, force_up, auto: answered once the daemon's engine
  has stepped it, `{"ok": true}` (carried out) or `{"ok": false, "error":
  reason}` (refused: no such server, weight out of range, failover
  conditions not met...); `{"ok": true, "detail": "accepted; not yet
  carried out"}` if the step has not come within 10 s;
- `{"cmd": "events"}`: a stream.  The answer `{"ok": true}` comes first (or
  `{"error": "busy: ..."}` when `MAX_SUBSCRIBERS` streams are open, and the
  connection is closed); then the connection stays open and the daemon
  writes one JSON object a line for every event as it happens, until the
  client closes it.  Nothing the client sends afterwards is read as a request.

Events (the fields of SPEC.md's trace, "Trace (JSON lines)"; every event
has `t` (seconds since the daemon started, as the engine counts time),
`time` (Unix time), `node` (`primary`/`backup`), `kind`, and `text` (the
daemon's log line for it, in lvs.cf and ipvsadm words)):

    role            from, to, reason
    vip             op (add/del), address, prefix, device, label
    arp             address, device
    table           op (add_service, edit_service, del_service, add_dest,
                    edit_dest, del_dest), service (the virtual's name),
                    server (the real server's name; null for a service op),
                    weight (null unless add_dest/edit_dest), ipvsadm (the
                    operation as ipvsadm arguments), failed (only when the
                    dataplane refused it: the error)
    health          service, server, from, to (up/down/unknown), detail
    heartbeat_lost  path
    admin           action, server, weight (null unless "weight"), ok,
                    reason (when refused)
    reload          ok, serial_no (in force afterwards), detail (what
                    changed) or error and errors

    {"t": 12.3, "time": 1764551000.2, "node": "primary", "kind": "health",
     "service": "web", "server": "rs1", "from": "up", "to": "down",
     "detail": "connection refused", "text": "health web/rs1: up -> down ..."}

Other kinds the daemon logs come too (partner, weight, quorum, config,
error, admin_refused, drift, stall, hold, links, command, timeouts,
syncd, vip_cleanup: docs/LOGS.md has their fields); a consumer ignores a
kind it does not know.  Bounds: each stream has a queue of
`SUBSCRIBER_LINES` events; a reader that falls that far behind is dropped
(its connection closed, counted in status as `events.dropped`): the daemon
never waits for a reader.

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
import ipaddress
import json
import logging
import os
import socket
import stat
from pathlib import Path
from collections import deque
from typing import Any, Awaitable, Callable

from adapters.dataplane import Connections
from adapters.describe import host_port, plain
from engine.status import ServiceStatus, Status
from engine.table import Table

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

log = logging.getLogger("shoal.control")

MAX_LINE = 64 * 1024
IDLE_TIMEOUT_S = 5.0
HANDLER_TIMEOUT_S = 30.0
MAX_CLIENTS = 16
MAX_SUBSCRIBERS = 8  # event streams open at once (each also holds one of MAX_CLIENTS)
SUBSCRIBER_LINES = 1024  # events queued for one stream before its reader is dropped


class ControlError(OSError):
    """The control socket cannot be made (path taken, another daemon on it)."""


def status_json(status: Status, connections: Connections | None = None) -> dict[str, Any]:
    """The object `shoal status --json` prints (SPEC.md).

    `connections`: the dataplane's counters (`Dataplane.connections()`), or
    None; each server gets `connections: {"active", "inactive", "total"}`
    when the dataplane counted it, else null."""
    p = status.partner
    counted = _by_server(connections)
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
                     "in_table": r.in_table, "admin": r.admin, "admin_weight": r.admin_weight,
                     "last_check": r.last_check,
                     "last_detail": r.last_detail, "checks_ok": r.checks_ok, "checks_failed": r.checks_failed,
                     "connections": counted.get(_server_key(s, r.address, r.port))}
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


_Where = tuple[str, str, int, int, str, int]  # protocol, VIP, port, fwmark, server address, server port


def _canonical(address: str | None) -> str:
    try:
        return str(ipaddress.ip_address(address or ""))
    except ValueError:
        return address or ""


def _server_key(s: ServiceStatus, address: str, port: int) -> _Where:
    if s.fwmark:
        return ("fwmark", "", 0, s.fwmark, _canonical(address), port)
    return (s.protocol, _canonical(s.address), s.port, 0, _canonical(address), port)


def _by_server(connections: Connections | None) -> dict[_Where, dict[str, int]]:
    out: dict[_Where, dict[str, int]] = {}
    for (key, dkey), c in (connections or {}).items():
        where = (key.protocol, _canonical(key.address) if key.address else "", key.port, key.fwmark,
                 _canonical(dkey.address), dkey.port)
        out[where] = {"active": c.active, "inactive": c.inactive, "total": c.total}
    return out


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
            flag = "" if r["admin"] == "auto" else f" [{r['admin']}]" if r["admin"] != "weight" \
                else f" [operator weight {r.get('admin_weight')}]"
            conns = r.get("connections")
            counted = f"  conns {conns['active']} active {conns['inactive']} inactive" if conns else ""
            lines.append(f"  {r['name']:<12} {host_port(r['address'], r['port']):<21} {r['health']:<8} "
                         f"weight {r['weight']}{flag}{counted}"
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


class Subscriber:
    """One event stream's queue: lines waiting to be written, bounded."""

    def __init__(self, limit: int, on_drop: Callable[[], None]) -> None:
        self.lines: deque[bytes] = deque()
        self.limit = limit
        self.on_drop = on_drop
        self.dropped = False
        self.wake = asyncio.Event()

    def offer(self, line: bytes) -> bool:
        """Queue `line`; False (and the reader dropped) when the queue is full."""
        if self.dropped:
            return False
        if len(self.lines) >= self.limit:
            self.dropped = True
            self.lines.clear()
            self.wake.set()
            try:
                self.on_drop()
            except Exception:  # closing a connection must not reach the daemon
                pass
            return False
        self.lines.append(line)
        self.wake.set()
        return True


class EventBus:
    """The daemon's events, to every open stream: `publish` never blocks nor raises."""

    def __init__(self, max_subscribers: int = MAX_SUBSCRIBERS, lines: int = SUBSCRIBER_LINES) -> None:
        self.max_subscribers = max_subscribers
        self.lines = lines
        self.subscribers: list[Subscriber] = []
        self.dropped = 0  # readers dropped for falling behind
        self.refused = 0  # streams refused: too many open
        self.published = 0

    def subscribe(self, on_drop: Callable[[], None]) -> Subscriber | None:
        if len(self.subscribers) >= self.max_subscribers:
            self.refused += 1
            return None
        sub = Subscriber(self.lines, on_drop)
        self.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)

    def publish(self, event: dict[str, Any]) -> None:
        if not self.subscribers:
            return
        self.published += 1
        try:
            line = (json.dumps(event, default=plain) + "\n").encode()
        except (TypeError, ValueError, RecursionError):
            return
        for sub in list(self.subscribers):
            if not sub.offer(line):
                self.dropped += 1
                self.unsubscribe(sub)

    def summary(self) -> dict[str, int]:
        return {"subscribers": len(self.subscribers), "dropped": self.dropped, "refused": self.refused,
                "published": self.published}


_TABLE_OPS = {"-A": "add_service", "-E": "edit_service", "-D": "del_service",
              "-a": "add_dest", "-e": "edit_dest", "-d": "del_dest"}


def event_of(fields: dict[str, Any], text: str, t_s: float, node: str, unix_time: float) -> dict[str, Any]:
    """One event of the stream from a line the daemon says (`adapters.describe`'s
    `Said`): its fields, in the trace's words where the trace has them."""
    event: dict[str, Any] = {"t": round(t_s, 3), "time": round(unix_time, 3), "node": node,
                             "kind": fields.get("kind", "unknown")}
    if event["kind"] == "table" and fields.get("op") in _TABLE_OPS:
        op = _TABLE_OPS[fields["op"]]
        dest = op.endswith("_dest")
        event.update(op=op, service=fields.get("virtual") or fields.get("service"),
                     server=(fields.get("name") or fields.get("server")) if dest else None,
                     weight=fields.get("weight") if op in ("add_dest", "edit_dest") else None,
                     ipvsadm=text.removeprefix("table: ").split(" (")[0])
        if "failed" in fields:
            event["failed"] = fields["failed"]
    else:
        event.update((k, v) for k, v in fields.items() if k not in event)
    event["text"] = text
    return event


class ControlServer:
    def __init__(self, state_dir: str, handler: Handler, *, idle_timeout_s: float = IDLE_TIMEOUT_S,
                 handler_timeout_s: float = HANDLER_TIMEOUT_S, max_clients: int = MAX_CLIENTS,
                 events: EventBus | None = None) -> None:
        self.path = str(Path(state_dir) / "control.sock")
        self.handler = handler
        self.events = events
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
        answer = await self._answer(line)
        if answer is None:
            await self._stream(reader, writer)
            return False
        await _send(writer, answer)
        return line.endswith(b"\n")

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """`{"cmd": "events"}`: the events, as they come, until the client
        closes the connection or falls too far behind."""
        assert self.events is not None
        sub = self.events.subscribe(writer.transport.abort)
        if sub is None:
            self._count("busy-events")
            await _send(writer, {"error": f"busy: {self.events.max_subscribers} event streams are open already"})
            return
        eof = asyncio.ensure_future(_until_eof(reader))
        waiter: asyncio.Future[Any] | None = None
        try:
            await _send(writer, {"ok": True})
            while not sub.dropped:
                waiter = asyncio.ensure_future(sub.wake.wait())
                await asyncio.wait({waiter, eof}, return_when=asyncio.FIRST_COMPLETED)
                if eof.done() or sub.dropped:
                    break
                sub.wake.clear()
                data = b"".join(sub.lines)
                sub.lines.clear()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.events.unsubscribe(sub)
            eof.cancel()
            if waiter is not None:
                waiter.cancel()

    async def _answer(self, line: bytes) -> dict[str, Any] | None:
        """The answer to one request line; None: an event stream starts."""
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            self._count("not-json")
            return {"error": f"bad request: not JSON ({_short(e)})"}
        if not isinstance(request, dict):
            self._count("not-object")
            return {"error": "bad request: expected a JSON object"}
        if request.get("cmd") == "events" and self.events is not None:
            return None
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


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Read and discard until the client closes (a stream reads no more requests)."""
    try:
        while await reader.read(4096):
            pass
    except (ConnectionError, OSError):
        pass


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
