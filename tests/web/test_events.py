"""GET /api/v1/events: the daemon's event stream relayed as server-sent
events, one JSON object each; the stream's own state (`event: stream`)
when the daemon goes away and comes back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientResponse

from tests.web.harness import Harness, basic, run


async def next_event(r: ClientResponse, timeout_s: float = 5.0) -> tuple[str, dict[str, Any]]:
    """The next `event:`/`data:` pair of the stream (comments and retry skipped)."""
    name, data = "message", None
    while True:
        line = (await asyncio.wait_for(r.content.readline(), timeout_s)).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            return name, data


async def wait_for(predicate, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


def test_events_are_relayed_as_server_sent_events(tmp_path):
    async def body(h: Harness) -> None:
        await wait_for(lambda: h.fake.streams)  # the web tool subscribed at start
        r = await h.client.get("/api/v1/events", headers=basic("viewer"))
        assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
        assert "Content-Security-Policy" in r.headers
        assert await next_event(r) == ("stream", {"kind": "stream", "state": "up"})
        health = {"t": 12.3, "node": "primary", "kind": "health", "service": "HTTP", "server": "web1",
                  "from": "up", "to": "down", "detail": "connection refused"}
        h.fake.push(health)
        assert await next_event(r) == ("message", health)
        role = {"t": 13.0, "node": "primary", "kind": "role", "from": "standby", "to": "active"}
        h.fake.push(role)
        assert await next_event(r) == ("message", role)
        metrics = await (await h.client.get("/metrics", headers=basic("viewer"))).text()
        assert "shoal_failovers_total 1.0" in metrics
        # the daemon goes away: the page is told, and told again when it is back
        await h.fake.stop()
        name, data = await next_event(r)
        assert (name, data["state"]) == ("stream", "down")
        await h.fake.start()
        name, data = await next_event(r)
        assert (name, data["state"]) == ("stream", "up")
        r.close()
    run(tmp_path, body)


def test_event_stream_keepalive_and_end_at_logout(tmp_path):
    async def body(h: Harness) -> None:
        csrf = await h.login("viewer")
        r = await h.client.get("/api/v1/events")
        assert r.status == 200
        await next_event(r)
        line = b""
        while not line.startswith(b": keepalive"):
            line = await asyncio.wait_for(r.content.readline(), 2)
        assert (await h.client.post("/logout", headers={"X-CSRF-Token": csrf})).status == 200
        rest = await asyncio.wait_for(r.content.read(), 3)  # the stream ends within one keepalive
        assert b"data:" not in rest
    run(tmp_path, body, keepalive_s=0.2)
