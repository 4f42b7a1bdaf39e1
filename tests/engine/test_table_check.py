"""table_check_interval: the key, the engine's schedule, drift in the status.

The interaction files `testdata/table_drift.txt` and `table_adopt.txt` show
the schedule, drift, adoption and stale reads as traces; this file checks
the key's parsing and errors, the corners those traces do not reach (a
failed read, the status in JSON and text), and `op_text`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from adapters.control import status_json, status_text
from engine.config import ConfigError, parse, render
from engine.engine import Engine
from engine.events import (
    AddDest, AddService, CommandFailed, DelDest, DelService, EditDest, EditService, ReadTable, TableRead,
    Tick,
)
from engine.model import Config
from engine.status import op_text
from engine.table import Dest, DestKey, Service, ServiceEntry, ServiceKey
from tests.engine.world import World

BASE = (Path(__file__).parent / "testdata" / "_base.cf").read_text()


def with_line(line: str) -> str:
    return line + "\n" + BASE


# ---------------------------------------------------------------- the key


def test_default_is_five_seconds() -> None:
    assert Config().table_check_interval_ms == 5_000
    assert parse(BASE, "lvs.cf").table_check_interval_ms == 5_000


@pytest.mark.parametrize("text, ms", [("0", 0), ("0.1", 100), ("2.5", 2_500), ("60", 60_000), (".25", 250)])
def test_values(text: str, ms: int) -> None:
    assert parse(with_line(f"table_check_interval = {text}"), "lvs.cf").table_check_interval_ms == ms


@pytest.mark.parametrize("text, message", [
    ("0.05", "lvs.cf:1:24: table_check_interval: expected 0 (off) or a time of at least 0.1 s, found '0.05'"),
    ("soon", "lvs.cf:1:24: table_check_interval: expected a time in seconds (fractions allowed), found 'soon'"),
    ("1.0001", "lvs.cf:1:24: table_check_interval: expected at most 3 decimals (milliseconds), found '1.0001'"),
])
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(with_line(f"table_check_interval = {text}"), "lvs.cf")
    assert str(caught.value) == message


def test_two_values_is_an_error() -> None:
    with pytest.raises(ConfigError, match="lvs.cf:1:"):
        parse(with_line("table_check_interval = 1 2"), "lvs.cf")


def test_written_back() -> None:
    config = parse(with_line("table_check_interval = 2.5"), "lvs.cf")
    assert "table_check_interval = 2.5" in render(config)
    fresh = replace(parse(BASE, "lvs.cf"), table_check_interval_ms=0, source=None)
    assert parse(render(fresh), "again.cf").table_check_interval_ms == 0


# ---------------------------------------------------------------- the engine


def single(interval: str = "5") -> Config:
    return parse(with_line(f"table_check_interval = {interval}").replace("backup_active = 1", "backup_active = 0"),
                 "lvs.cf")


def test_reads_on_schedule_and_a_failed_read_does_not_block_the_next() -> None:
    engine = Engine(single("2"), "primary")
    ready = engine.step(0, TableRead({}))
    assert ready.next_deadline_ms is not None and ready.next_deadline_ms <= 2_000
    ready = engine.step(2_000, Tick())
    assert ReadTable() in ready.commands
    # The read fails (the netlink socket broke): noted, and the next one still goes out.
    failed = engine.step(2_010, CommandFailed(ReadTable(), "EPERM"))
    assert [c for c in failed.commands if isinstance(c, ReadTable)] == []
    assert engine.step(4_000, Tick()).commands.count(ReadTable()) == 1
    assert engine.status.table.checks == 0


def test_one_read_at_a_time() -> None:
    engine = Engine(single("1"), "primary")
    engine.step(0, TableRead({}))
    assert ReadTable() in engine.step(1_000, Tick()).commands
    # No answer yet: the next due check does not pile another read on.
    assert ReadTable() not in engine.step(2_000, Tick()).commands
    engine.step(2_001, TableRead(dict(engine.applied)))
    assert ReadTable() in engine.step(3_000, Tick()).commands


def test_off_means_never() -> None:
    engine = Engine(single("0"), "primary")
    ready = engine.step(0, TableRead({}))
    for t in range(1, 200):
        ready = engine.step(t * 1_000, Tick())
        assert ReadTable() not in ready.commands
    assert engine.status.table.check_interval_ms == 0


def drifted_world() -> World:
    world = World(single("5"))
    world.boot("primary")
    world.run_until(5_500)
    key = ServiceKey("tcp", "10.0.0.100", 80)
    world.tamper("primary", EditDest(key, Dest(DestKey("10.1.0.11", 80), 9)))
    world.tamper("primary", AddService(Service(ServiceKey("udp", "10.0.0.200", 53), "rr")))
    world.run_until(10_500)
    return world


def test_drift_in_the_status_and_reconciled() -> None:
    world = drifted_world()
    engine = world.engines["primary"]
    table = engine.status.table
    assert (table.checks, table.drifts, table.last_drift_ms) == (2, 1, 10_001)
    assert table.last_drift == ("-e -t 10.0.0.100:80 -r 10.1.0.11:80 -m -w 1", "-D -u 10.0.0.200:53")
    assert world.tables["primary"] == engine.applied
    assert any("primary drift what=kernel table differs" in line for line in world.take_log())


def test_status_json_and_text_show_drift() -> None:
    world = drifted_world()
    status = world.engines["primary"].status
    data = status_json(status)
    assert data["table"] == {
        "check_interval": 5.0, "checks": 2, "stale_reads": 0,
        "drift": {"count": 1, "last_ms": 10_001, "last_ago": round((status.now_ms - 10_001) / 1000, 3),
                  "ops": ["-e -t 10.0.0.100:80 -r 10.1.0.11:80 -m -w 1", "-D -u 10.0.0.200:53"]},
    }
    text = status_text(data)
    assert "kernel table: checked every 5 s (2 checks), drift 1 time(s)" in text
    assert "  ipvsadm -D -u 10.0.0.200:53" in text
    quiet = status_json(Engine(single(), "primary").status)
    assert "no drift" in status_text(quiet)


def test_many_reconciling_operations_are_cut_short() -> None:
    engine = Engine(single("1"), "primary")
    engine.step(0, TableRead({}))
    stray = {ServiceKey("tcp", "10.9.0.1", port): ServiceEntry(Service(ServiceKey("tcp", "10.9.0.1", port)), {})
             for port in range(1, 31)}
    engine.step(1_000, Tick())
    ready = engine.step(1_001, TableRead({**engine.applied, **stray}))
    assert sum(isinstance(c, DelService) for c in ready.commands) == 30
    kept = engine.status.table.last_drift
    assert len(kept) == 21 and kept[-1] == "... 10 more"


def test_status_stays_lazy() -> None:
    engine = Engine(single("1"), "primary")
    engine.step(0, TableRead({}))
    for t in range(1, 5):
        engine.step(t * 1_000, Tick())
        engine.step(t * 1_000 + 1, TableRead(dict(engine.applied)))
    assert engine._status is None  # no step built a status nobody read
    assert engine.status.table.checks == 4


# ---------------------------------------------------------------- op_text


def test_op_text() -> None:
    web = ServiceKey("tcp", "10.0.0.1", 80)
    v6 = ServiceKey("udp", "2001:db8::1", 53, family=6)
    mark = ServiceKey("fwmark", "", 0, 7, 6)
    sticky = Service(web, "sh", ("sh-port",), 300, "255.255.255.0")
    assert op_text(AddService(sticky)) == "-A -t 10.0.0.1:80 -s sh -p 300 -M 255.255.255.0 -b sh-port"
    assert op_text(EditService(Service(v6, "rr"))) == "-E -u [2001:db8::1]:53 -s rr"
    assert op_text(DelService(mark)) == "-D -f 7 -6"
    assert op_text(AddDest(web, Dest(DestKey("10.1.0.1", 8080), 3, "route"))) == \
        "-a -t 10.0.0.1:80 -r 10.1.0.1:8080 -g -w 3"
    assert op_text(EditDest(v6, Dest(DestKey("2001:db8::11", 53), 0, "tunnel"))) == \
        "-e -u [2001:db8::1]:53 -r [2001:db8::11]:53 -i -w 0"
    assert op_text(DelDest(web, DestKey("10.1.0.1", 8080))) == "-d -t 10.0.0.1:80 -r 10.1.0.1:8080"
