"""The journal (adapters/journal.py, journal_codec.py) and its replay
(adapters/replay.py), in-process: every input and command type round-trips
through a JSON line; two engines driven by a tiny world are journaled and
replay identically; an edited input is named at its line; rotation keeps
its bound and says when a start was rotated away; the heartbeat key is
never written, and a wrong key is refused.
"""

from __future__ import annotations

import json
import time
import typing
from pathlib import Path

import pytest

from adapters.journal import FILES, NAME, Journal, JournalError, journal_files, read
from adapters.journal_codec import decode_command, decode_input, encode_command, encode_input, key_fingerprint
from adapters.replay import replay_paths
from engine.config import parse
from engine.engine import Engine
from engine.events import (
    AddDest, AddService, AddVip, AdminRequested, CheckCompleted, CheckSpec, Command, CommandFailed, ConfigLoaded,
    AdvertReceived, DelDest, DelService, DelVip, EditDest, EditService, HeartbeatReceived, Input, LinksChanged, LoadRead, Notify,
    ReadLoad, ReadTable, RunCommand, SendAdvert, SendGratuitousArp, SendHeartbeat, SetTimeouts, ShutdownRequested, StartCheck,
    StartSyncDaemon, StopSyncDaemon, TableRead, Tick,
)
from engine.table import Dest, DestKey, Service, ServiceEntry, ServiceKey
from shoal.replay_cli import main as replay_main

CONFIG = """serial_no = 1
primary = 10.0.0.1
backup = 10.0.0.2
backup_active = 1
keepalive = 1
deadtime = 3
network = nat
nat_router = 10.1.0.254 eth1:1
# a comment the journal keeps
virtual web {
    address = 10.0.0.100 eth0:1
    port = 80
    timeout = 2
    reentry = 4
    server rs1 {
        address = 10.1.0.11
    }
    server rs2 {
        address = 10.1.0.12
    }
}
"""

KEY6 = ServiceKey("tcp", "2001:db8::100", 443, family=6)
SERVICE = Service(ServiceKey("tcp", "10.0.0.100", 80), "sh", ("sh-fallback", "sh-port"), 300, "255.255.255.0", "web")
DEST = Dest(DestKey("10.1.0.11", 8080), 3, "route", "rs1")
TABLE = {SERVICE.key: ServiceEntry(SERVICE, {DEST.key: DEST, DestKey("10.1.0.12", 80): Dest(DestKey("10.1.0.12", 80),
                                                                                              0, "masq", "rs2")}),
         KEY6: ServiceEntry(Service(KEY6, "wlc", name="web6"), {}),
         ServiceKey("fwmark", "", 0, 7): ServiceEntry(Service(ServiceKey("fwmark", "", 0, 7)), {})}
SPEC = CheckSpec("10.1.0.11", 80, "http", "GET / HTTP/1.0\r\n\r\n", "^HTTP/1.. 200", True, None, 1500, "/health", 204)

COMMANDS: list[Command] = [
    SendHeartbeat("private", "192.168.0.2", 539, bytes(range(256))), SendAdvert(bytes(range(16))),
    AddVip("10.0.0.100", 24, "eth0", "eth0:1"), DelVip("2001:db8::100", 64, "eth0", "eth0"),
    SendGratuitousArp("10.0.0.100", "eth0"),
    AddService(SERVICE), EditService(SERVICE), DelService(KEY6, "web6"),
    AddDest(SERVICE.key, DEST), EditDest(SERVICE.key, DEST), DelDest(SERVICE.key, DEST.key, "rs1"),
    SetTimeouts(900, 120, 300), StartSyncDaemon("master", "eth2", 7), StopSyncDaemon("backup"), ReadTable(),
    StartCheck(12, SPEC), StartCheck(13, CheckSpec("10.1.0.12", 53, "udp", send_program="/bin/check %h")),
    ReadLoad(4, "10.1.0.11", "command", "ssh %h cat /proc/loadavg"), RunCommand("/sbin/tell 'active'", "active_cmd", 5000),
    Notify("health", {"service": "web", "server": "rs1", "from": "up", "to": "down", "detail": "timeout \u00e9\n",
                      "weight": 0, "load": 1.25, "ok": False, "none": None}),
]

INPUTS: list[Input] = [
    Tick(), HeartbeatReceived("public", "10.0.0.2", b"\x00\xffSHOL\n"), CheckCompleted(7, True, "connected"),
    AdvertReceived("fe80::1", "ff02::12", 255, bytes(range(24))),
    CheckCompleted(8, False, 'status 500 (expected 200) "\\x00"'), LoadRead(3, 0.75), LoadRead(4, None),
    ConfigLoaded(parse(CONFIG, "lvs.cf")), *(CommandFailed(c, "EEXIST: exists") for c in COMMANDS),
    TableRead(TABLE), TableRead({}), AdminRequested("weight", "rs1", "web", 5),
    AdminRequested("drain", "web/rs2", replayed=True), AdminRequested("failover"), ShutdownRequested(),
    LinksChanged(frozenset({"eth1", "eth0"})), LinksChanged(frozenset()),
]


def _through_json(value: object) -> object:
    return json.loads(json.dumps(value, separators=(",", ":")))


def test_every_command_type_round_trips_through_a_json_line() -> None:
    assert {type(c) for c in COMMANDS} == set(typing.get_args(Command))  # a new command type needs a row
    for command in COMMANDS:
        value = _through_json(encode_command(command))
        assert decode_command(value) == command
        assert encode_command(decode_command(value)) == value  # canonical: a fresh encoding compares equal


def test_every_input_type_round_trips_through_a_json_line() -> None:
    assert {type(i) for i in INPUTS} == set(typing.get_args(Input))  # a new input type needs a row
    for event in INPUTS:
        value = _through_json(encode_input(event))
        back = decode_input(value)
        assert back == event
        assert encode_input(back) == value
    reload = decode_input(_through_json(encode_input(ConfigLoaded(parse(CONFIG), b"k3y"))),
                          {key_fingerprint(b"k3y") or "": b"k3y"})
    assert isinstance(reload, ConfigLoaded) and reload.heartbeat_key == b"k3y"
    assert "# a comment the journal keeps" in encode_input(reload)[1]  # the text as read, comments and all
    names = [d.name for d in next(iter(decode_input(_through_json(encode_input(TableRead(TABLE))))
                                       .table.values())).dests.values()]  # type: ignore[union-attr]
    assert names == ["rs1", "rs2"]  # names (not part of equality) kept too


# ---------------------------------------------------------------- a tiny world


def drive(directory: Path, end_ms: int = 30_000, down: tuple[int, int] = (10_000, 20_000), max_bytes: int = 10**7,
          key: bytes | None = None, config_text: str = CONFIG, cut: tuple[int, int] = (0, 0)) -> dict[str, Journal]:
    """Two engines journaled as the daemon journals them: heartbeats delivered in 1 ms,
    checks answered in 5 ms, rs1 refusing connections from `down[0]` to `down[1]`, the
    primary's heartbeats lost from `cut[0]` to `cut[1]`."""
    config = parse(config_text, "lvs.cf")
    engines = {n: Engine(config, n, heartbeat_key=key, seq_start=(i + 1) << 32)  # type: ignore[arg-type]
               for i, n in enumerate(("primary", "backup"))}
    journals = {n: Journal(directory / n, max_bytes) for n in engines}
    origin = time.monotonic()  # engine time 0, as the daemon's `started`
    for n, j in journals.items():
        j.start(config=config, node=n, dataplane="dry-run", config_file="lvs.cf", key=key,
                seq_start=engines[n].failover.seq, origin=origin)
    queue: list[tuple[int, int, str, Input]] = [(0, i, n, TableRead({})) for i, n in enumerate(engines)]
    wake: dict[str, int | None] = {}
    serial = len(queue)
    while True:
        due = [(t, i, n, e) for t, i, n, e in queue] + [(w, 10**9, n, Tick()) for n, w in wake.items() if w is not None]
        if not due:
            break
        t, i, n, event = min(due, key=lambda d: (d[0], d[1]))
        if t > end_ms:
            break
        if i < 10**9:
            queue.remove(next(q for q in queue if q[1] == i))
        ready = engines[n].step(t, event)
        journals[n].step(t, event, ready)
        wake[n] = ready.next_deadline_ms
        for c in ready.commands:
            serial += 1
            if isinstance(c, StartCheck):
                ok = not (c.spec.address == "10.1.0.11" and down[0] <= t < down[1])
                queue.append((t + 5, serial, n, CheckCompleted(c.check_id, ok, "connected" if ok else
                                                                "connection refused")))
            elif isinstance(c, SendHeartbeat) and not (n == "primary" and cut[0] <= t < cut[1]):
                other = "backup" if n == "primary" else "primary"
                source = config.address_of("primary" if n == "primary" else "backup", c.path) or ""
                queue.append((t + 1, serial, other, HeartbeatReceived(c.path, source, c.payload)))
    for j in journals.values():
        j.close()
    return journals


def test_two_engines_journaled_replay_identically(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journals = drive(tmp_path)
    for node in ("primary", "backup"):
        outcome = replay_paths([tmp_path / node])
        assert outcome.identical and outcome.starts == 1, outcome.summary()
        assert outcome.steps == journals[node].counters["records"] - 1 > 50  # every step but the start record
        assert outcome.commands > 20
    assert replay_main([str(tmp_path / "primary")]) == 0
    assert capsys.readouterr().out.startswith("identical: 1 start(s), ")


def test_an_edited_input_is_named_at_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drive(tmp_path)
    path = tmp_path / "primary" / NAME
    lines = path.read_text().splitlines()
    at = next(n for n, line in enumerate(lines) if '"CheckCompleted"' in line and ',false,' in line)
    lines[at] = lines[at].replace(',false,"connection refused"', ',true,"connected"')
    path.write_text("\n".join(lines) + "\n")
    assert replay_main([str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:{at + 1}: the primary's step {at} since its start" in out, out
    assert "the result of check" in out and "(ok: connected)" in out
    assert "replayed: (none)" in out  # the daemon took rs1 out here; with the edit, nothing happens


def test_rotation_keeps_its_bound_and_says_when_the_start_is_gone(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    journals = drive(tmp_path, end_ms=120_000, max_bytes=40_000)
    directory = tmp_path / "primary"
    names = sorted(p.name for p in directory.iterdir())
    assert names == [NAME] + [f"{NAME}.{i}" for i in range(1, FILES)]
    assert journals["primary"].counters["rotations"] >= FILES
    assert all(p.stat().st_size <= 40_000 // FILES for p in directory.iterdir())
    assert [p.name for p in journal_files([directory])] == [f"{NAME}.3", f"{NAME}.2", f"{NAME}.1", NAME]
    with pytest.raises(JournalError, match="no start record: nothing can be replayed .* rotated away"):
        replay_paths([directory])
    assert replay_main([str(directory)]) == 2
    assert "rotated away" in capsys.readouterr().err
    # A bound the run fits in: the start is in the oldest file, the whole run replays.
    drive(tmp_path / "big", end_ms=120_000, max_bytes=160_000)
    outcome = replay_paths([tmp_path / "big" / "primary"])
    assert outcome.identical and len(list((tmp_path / "big" / "primary").iterdir())) > 1


def test_the_key_is_never_written_and_a_wrong_key_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = b"0123456789abcdef-a-heartbeat-key"
    key_file = tmp_path / "hb.key"
    key_file.write_bytes(key + b"\n")
    config = CONFIG.replace("network = nat", f"network = nat\nheartbeat_key_file = {key_file}")
    drive(tmp_path, end_ms=8_000, key=key, config_text=config)
    text = (tmp_path / "primary" / NAME).read_bytes()
    assert key not in text and key.hex().encode() not in text
    assert json.loads(text.splitlines()[0])["key"] == key_fingerprint(key)
    assert replay_paths([tmp_path / "primary"]).identical  # the key read from heartbeat_key_file
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(b"another key")
    assert replay_main([str(tmp_path / "primary"), "--key", str(wrong)]) == 2
    err = capsys.readouterr().err
    assert f"has fingerprint {key_fingerprint(b'another key')}, the daemon's key had {key_fingerprint(key)}" in err
    key_file.unlink()
    assert replay_main([str(tmp_path / "backup")]) == 2
    assert "cannot be read here" in capsys.readouterr().err
    assert replay_main([str(tmp_path / "backup"), "--key", str(tmp_path / "nokey")]) == 2


def test_gaps_torn_lines_and_raising_steps(tmp_path: Path) -> None:
    config = parse(CONFIG, "lvs.cf")
    engine = Engine(config, "primary", seq_start=5)
    journal = Journal(tmp_path, 10**6)
    journal.start(config=config, node="primary", dataplane="dry-run", config_file="lvs.cf", key=None, seq_start=5,
                  origin=0.0)
    journal.step(0, TableRead({}), engine.step(0, TableRead({})))
    journal.step(100, Tick(), engine.step(100, Tick()))
    try:
        engine.step(50, Tick())  # time going backwards: the engine raises, the daemon journals it
    except Exception as e:
        journal.raised(50, Tick(), e)
    journal.step(200, Tick(), engine.step(200, Tick()))
    journal.close()
    outcome = replay_paths([tmp_path])
    assert outcome.identical and outcome.steps == 4, outcome.summary()
    path = tmp_path / NAME
    assert '"raised":"EngineMisuse: time went backwards' in path.read_text()
    # an input the codec cannot encode is a gap: what follows is not compared, and said
    journal = Journal(tmp_path / "gap", 10**6)
    journal.start(config=config, node="primary", dataplane="dry-run", config_file="lvs.cf", key=None, seq_start=5,
                  origin=0.0)
    engine = Engine(config, "primary", seq_start=5)
    journal.step(0, TableRead({}), engine.step(0, TableRead({})))
    journal.step(100, object(), engine.step(100, Tick()))  # type: ignore[arg-type]
    journal.step(200, Tick(), engine.step(200, Tick()))
    journal.close()
    assert journal.counters["lost"] == 1
    outcome = replay_paths([tmp_path / "gap"])
    assert outcome.identical and outcome.steps == 1
    assert any("1 record(s) lost here" in note for note in outcome.notes)
    assert any("1 step(s) from" in note for note in outcome.notes)
    # a last line cut short (the daemon died writing it) is left out and said
    with path.open("a") as f:
        f.write('{"t":300,"i":["Ti')
    outcome = replay_paths([path])
    assert outcome.identical and outcome.steps == 4 and "cut short" in outcome.notes[0]
    assert len(read([path]).records) == 5


def test_journals_become_a_scenario_the_simulator_runs(tmp_path: Path) -> None:
    from adapters.incident import scenario_text
    from scenario.model import loads
    from shoal.sim_cli import main as sim_main

    drive(tmp_path, end_ms=40_000, cut=(22_000, 30_000))
    text = scenario_text(tmp_path / "backup", tmp_path / "primary")
    scenario = loads(text, "incident.toml")
    faults = [(round(f.at_ms / 1000), f.kind, f.value, f.extra) for f in scenario.faults]
    assert faults == [(10, "server_down", "rs1", {}), (20, "server_up", "rs1", {}),
                      (22, "partition", "public", {"from": "primary"}), (30, "heal", "public", {})], faults
    assert "# the primary's heartbeats on the public path stop being heard" in text
    assert scenario.config == parse(CONFIG)
    roles = next(e for e in scenario.expects if e.kind == "role")
    assert roles.value == {"primary": "standby", "backup": "active"}  # the backup took over during the cut
    (tmp_path / "incident.toml").write_text(text)
    assert sim_main([str(tmp_path / "incident.toml")]) == 0
