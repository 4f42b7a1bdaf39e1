"""The daemon's control socket and what `shoal status` / `shoal table` print.

One JSON object a line over a Unix socket at `STATE_DIR/control.sock`:
request `{"cmd": "status"}`, `{"cmd": "table"}` or `{"cmd": "admin",
"action": ..., "server": ...}`; the answer is one JSON object.  A request
that is not JSON, or names an unknown command, gets `{"error": ...}` and is
counted; it never stops the daemon.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any, Awaitable, Callable

from engine.status import Status
from engine.table import Table

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


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
        "table": _table_json(status),
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
        where = f"fwmark {s['fwmark']}" if s["fwmark"] else f"{s['protocol']} {s['address']}:{s['port']}"
        lines.append(f"virtual {s['name']} ({where}, {s['scheduler']})" + ("  [sorry server in]" if s["sorry_in_table"] else ""))
        for r in s["servers"]:
            flag = "" if r["admin"] == "auto" else f" [{r['admin']}]"
            lines.append(f"  {r['name']:<12} {r['address']}:{r['port']:<6} {r['health']:<8} weight {r['weight']}{flag}"
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
    return "\n".join(lines)


class ControlServer:
    def __init__(self, state_dir: str, handler: Handler) -> None:
        self.path = str(Path(state_dir) / "control.sock")
        self.handler = handler
        self.bad_requests = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.server = await asyncio.start_unix_server(self._client, path=self.path)
        os.chmod(self.path, 0o600)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("expected a JSON object")
                answer = await self.handler(request)
            except (ValueError, KeyError, TypeError) as e:
                self.bad_requests += 1
                answer = {"error": f"bad request: {e}"}
            writer.write((json.dumps(answer) + "\n").encode())
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, OSError):
            self.bad_requests += 1
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


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
