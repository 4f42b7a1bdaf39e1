"""A tiny stand-in for `shoal run`'s control socket (adapters/control.py):
answers status, admin and reload, and streams events, from a dict the test
changes.  Enough for the web tool's handler tests; the real daemon is in
tests/adapters."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
from typing import Any

WEIRD = "<script>alert(1)</script>&$(touch${IFS}/tmp/pwned);`id`|'\""


def default_status() -> dict[str, Any]:
    def server(name: str, address: str, health: str = "up", weight: int = 1) -> dict[str, Any]:
        return {"name": name, "address": address, "port": 80, "health": health, "weight": weight,
                "in_table": True, "admin": "auto", "last_check": health != "down", "last_detail": "HTTP/1.0 200 OK",
                "checks_ok": 5, "checks_failed": 0, "connections": None}

    return {
        "node": "primary", "role": "active", "serial_no": 37, "vips": ["192.168.26.10"],
        "partner": {"alive": True, "state": "standby", "serial_no": 37, "deaf": False, "drift": False,
                    "last_heard": 0.4},
        "services": [
            {"name": "HTTP", "address": "192.168.26.10", "port": 80, "protocol": "tcp", "fwmark": None,
             "scheduler": "wlc", "sorry_in_table": False, "quorum_ok": True,
             "servers": [server("web1", "10.11.12.11"), server("web2", "10.11.12.12", "down", 0),
                         server(WEIRD, "10.11.12.13", "unknown")]},
        ],
        "counters": {"heartbeats_received": 42, "heartbeats_bad": 0},
        "auth": None,
        "table": {"check_interval": 5, "checks": 3, "stale_reads": 0,
                  "drift": {"count": 0, "last_ms": None, "last_ago": None, "ops": []}},
        "links": {"down": [], "gave_up": False},
    }


class FakeDaemon:
    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, "control.sock")
        self.status = default_status()
        self.requests: list[dict[str, Any]] = []
        self.refuse: str | None = None  # the next admin requests are refused with this reason
        self.reload_answer: dict[str, Any] = {"ok": True, "detail": "serial_no 37 -> 38"}
        self.streams: list[asyncio.Queue[dict[str, Any]]] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._client, path=self.path)

    async def stop(self) -> None:
        for queue in self.streams:
            queue.put_nowait(None)  # type: ignore[arg-type]  # the streams end
        await asyncio.sleep(0.01)
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1)
            self.server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def push(self, event: dict[str, Any]) -> None:
        for queue in self.streams:
            queue.put_nowait(event)

    def server_row(self, name: str) -> dict[str, Any]:
        virtual, _, server = name.rpartition("/")
        for s in self.status["services"]:
            if s["name"] == virtual:
                for r in s["servers"]:
                    if r["name"] == server:
                        return r
        raise KeyError(name)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                request = json.loads(line)
                self.requests.append(request)
                if request.get("cmd") == "events":
                    await self._stream(writer)
                    return
                writer.write((json.dumps(self._answer(request)) + "\n").encode())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.streams.append(queue)
        try:
            writer.write(b'{"ok": true}\n')
            await writer.drain()
            while True:
                event = await queue.get()
                if event is None:
                    return
                writer.write((json.dumps(event) + "\n").encode())
                await writer.drain()
        finally:
            self.streams.remove(queue)

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "status":
            return copy.deepcopy(self.status)
        if cmd == "reload":
            return dict(self.reload_answer)
        if cmd == "admin":
            if self.refuse:
                return {"ok": False, "error": self.refuse}
            action = request["action"]
            if action == "failover":
                self.status["role"] = "standby"
                return {"ok": True}
            try:
                row = self.server_row(request["server"])
            except KeyError:
                return {"ok": False, "error": f"no server {request['server']}"}
            if action == "drain":
                row["admin"], row["weight"] = "drain", 0
            elif action == "undrain":
                row["admin"], row["weight"] = "auto", 1
            elif action == "weight":
                row["admin"], row["weight"] = "weight", request["weight"]
            return {"ok": True}
        return {"error": f"unknown command {cmd}"}
