"""The control socket's event stream (`{"cmd": "events"}`, adapters/control.py)
and the overrides file (adapters/overrides.py), on a real `ControlServer`
and a real state directory; the daemon end to end is in
test_admin_daemon.py."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from adapters import overrides
from adapters.control import EventBus, event_of
from adapters.describe import describe
from engine.events import AddDest, DelService, Notify
from engine.registry import Override
from engine.table import Dest, DestKey, ServiceKey
from tests.adapters.test_control import Served


async def nothing(request: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "echo": request}


def subscribe(path: str) -> tuple[socket.socket, Any]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    sock.sendall(b'{"cmd": "events"}\n')
    return sock, sock.makefile("rb")


def served(tmp_path: Path, bus: EventBus) -> Served:
    return Served(tmp_path, nothing, events=bus)


def publish(s: Served, bus: EventBus, *events: dict[str, Any]) -> None:
    async def go() -> None:
        for event in events:
            bus.publish(event)

    s.call(go())


def wait_for(predicate: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_stream_answers_ok_then_every_event_as_a_line(tmp_path: Path) -> None:
    bus = EventBus()
    s = served(tmp_path, bus)
    try:
        sock, lines = subscribe(s.path)
        assert json.loads(lines.readline()) == {"ok": True}
        wait_for(lambda: len(bus.subscribers) == 1)
        publish(s, bus, {"t": 1.0, "node": "primary", "kind": "health", "service": "web", "server": "rs1",
                         "from": "up", "to": "down"},
                {"t": 1.5, "node": "primary", "kind": "admin", "action": "drain", "ok": True})
        assert json.loads(lines.readline())["kind"] == "health"
        assert json.loads(lines.readline()) == {"t": 1.5, "node": "primary", "kind": "admin", "action": "drain",
                                                "ok": True}
        # The rest of the socket still answers requests on other connections.
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        other.connect(s.path)
        other.sendall(b'{"cmd": "status"}\n')
        assert json.loads(other.makefile("rb").readline())["ok"] is True
        other.close()
        lines.close()  # the file holds the socket open too
        sock.close()
        wait_for(lambda: not bus.subscribers)  # a client that closes is unsubscribed
    finally:
        s.close()


def test_streams_are_capped(tmp_path: Path) -> None:
    bus = EventBus(max_subscribers=2)
    s = served(tmp_path, bus)
    try:
        held = [subscribe(s.path) for _ in range(2)]
        for _, lines in held:
            assert json.loads(lines.readline()) == {"ok": True}
        sock, lines = subscribe(s.path)
        answer = json.loads(lines.readline())
        assert answer["error"].startswith("busy") and lines.readline() == b""  # closed
        assert bus.refused == 1 and len(bus.subscribers) == 2
        lines.close()
        sock.close()
        for sock, lines in held:
            lines.close()
            sock.close()
    finally:
        s.close()


def test_a_reader_that_falls_behind_is_dropped_and_never_blocks_the_publisher(tmp_path: Path) -> None:
    bus = EventBus(lines=16)
    s = served(tmp_path, bus)
    try:
        slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(s.path)
        slow.sendall(b'{"cmd": "events"}\n')
        wait_for(lambda: len(bus.subscribers) == 1)
        big = {"kind": "table", "text": "x" * 4000}
        started = time.monotonic()
        for _ in range(200):  # far more than the socket buffers and the queue hold; never read
            publish(s, bus, *([big] * 10))
        assert time.monotonic() - started < 5
        wait_for(lambda: bus.dropped == 1 and not bus.subscribers)
        slow.settimeout(5)
        got = b""
        while chunk := slow.recv(1 << 20):  # whatever was in flight, then the end: the daemon closed it
            got += chunk
        slow.close()
    finally:
        s.close()


def test_publish_without_subscribers_costs_nothing_and_never_raises() -> None:
    bus = EventBus()
    bus.publish({"kind": "x", "bad": object()})
    assert bus.published == 0

    async def go() -> None:
        sub = bus.subscribe(lambda: None)
        assert sub is not None
        bus.publish({"kind": "x", "odd": object()})  # said as its type name, never a repr
        assert json.loads(sub.lines[0]) == {"kind": "x", "odd": "object"}

    asyncio.run(go())


def test_events_carry_the_trace_fields() -> None:
    web = ServiceKey("tcp", "10.50.0.100", 80)
    said = describe(AddDest(web, Dest(DestKey("10.50.0.11", 80), 3, name="rs1")))
    event = event_of(said.fields, said.text, 12.34567, "primary", 1000.0)
    assert event == {"t": 12.346, "time": 1000.0, "node": "primary", "kind": "table", "op": "add_dest",
                     "service": "TCP 10.50.0.100:80", "server": "rs1", "weight": 3,
                     "ipvsadm": "-a -t 10.50.0.100:80 -r 10.50.0.11:80 -m -w 3", "text": said.text}
    said = describe(DelService(web, "web"))
    event = event_of(said.fields, said.text, 1, "backup", 0)
    assert (event["op"], event["service"], event["server"], event["weight"]) == ("del_service", "web", None, None)
    said = describe(Notify("health", {"service": "web", "server": "rs1", "from": "up", "to": "down",
                                      "detail": "connection refused"}))
    event = event_of(said.fields, said.text, 2, "primary", 0)
    assert {k: event[k] for k in ("kind", "service", "server", "from", "to")} == {
        "kind": "health", "service": "web", "server": "rs1", "from": "up", "to": "down"}
    assert event["text"] == "health web/rs1: up -> down (connection refused)"


# ---------------------------------------------------------------- the overrides file


def test_overrides_round_trip_atomically_with_mode_0600(tmp_path: Path) -> None:
    assert overrides.load(str(tmp_path)) == ([], [])
    kept = (Override("web", "rs1", "drain"), Override("web", "rs2", "weight", 5),
            Override("dns", "rs1", "force_down"))
    overrides.save(str(tmp_path), kept, 7)
    assert overrides.load(str(tmp_path)) == (list(kept), [])
    path = tmp_path / "overrides.json"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["serial_no"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overrides.json"]  # no temporary left
    overrides.save(str(tmp_path), (), 8)
    assert overrides.load(str(tmp_path)) == ([], [])


def test_a_malformed_entry_is_skipped_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "overrides.json").write_text(json.dumps({"version": 1, "overrides": [
        {"virtual": "web", "server": "rs1", "action": "drain"},
        {"virtual": "web", "server": "rs2", "action": "weight", "weight": 70000},
        {"virtual": "web", "server": "rs3", "action": "weight", "weight": True},
        {"virtual": "web", "server": "rs4", "action": "explode"},
        {"virtual": "", "server": "rs5", "action": "drain"},
        "drain rs6",
    ]}))
    kept, skipped = overrides.load(str(tmp_path))
    assert kept == [Override("web", "rs1", "drain")]
    assert [s.split(":")[0] for s in skipped] == ["entry 2", "entry 3", "entry 4", "entry 5", "entry 6"]


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"version": 2, "overrides": []}', '{"version": 1}'])
def test_a_file_that_is_not_an_overrides_file_is_an_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "overrides.json").write_text(text)
    with pytest.raises(overrides.OverridesError):
        overrides.load(str(tmp_path))


def test_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.json").write_text('{"version": 1, "overrides": []}')
    (tmp_path / "overrides.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(overrides.OverridesError):
        overrides.load(str(tmp_path))


def test_the_keeper_writes_only_changes_and_says_what_a_reload_dropped(tmp_path: Path, caplog: Any) -> None:
    (tmp_path / "overrides.json").write_text(json.dumps({"version": 1, "overrides": [
        {"virtual": "web", "server": "rs1", "action": "drain"},
        {"virtual": "web", "server": "rs2", "action": "weight", "weight": 4}, {"bad": 1}]}))
    keeper = overrides.Keeper(str(tmp_path))
    with caplog.at_level("INFO", logger="shoal"):
        kept = keeper.read()
        assert kept == [Override("web", "rs1", "drain"), Override("web", "rs2", "weight", 4)]
        keeper.keep(tuple(kept), 3)  # the same set, but an entry was skipped: rewritten without it
        assert len(json.loads((tmp_path / "overrides.json").read_text())["overrides"]) == 2
        (tmp_path / "overrides.json").unlink()
        keeper.keep(tuple(kept), 3)  # unchanged: not written
        assert not (tmp_path / "overrides.json").exists()
        keeper.keep((Override("web", "rs2", "weight", 4),), 4, after_reload=True)
    assert overrides.load(str(tmp_path)) == ([Override("web", "rs2", "weight", 4)], [])
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("overrides: entry 3: ") and m.endswith(": skipped") for m in said), said
    assert "overrides: web/rs1 (drain) dropped: " + overrides.GONE in said, said
    assert not any("rs2" in m and "dropped" in m for m in said), said
