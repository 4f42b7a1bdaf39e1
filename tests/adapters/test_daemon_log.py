"""The daemon's log as an operator reads it (issue 10, part 4): one real
`shoal run` (dry-run dataplane, one namespace, no partner) taken through a
start, health changes, an operator's drain and a refused failover, a
reload and a shutdown, with `--log-format json`.  Every line is checked
against the operator grammar of docs/LOGS.md (no Python repr anywhere) and
every line's JSON fields against its text; `shoal status` too.

    solo 10.50.0.1/24 fd50::1/64 eth0  <-veth->  servers 10.50.0.11 .12, fd50::11 (eth0), on port 80
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters import netns
from adapters.lab import daemons
from adapters.control import ask
from adapters.logs import JsonFormatter

CONFIG = """serial_no = 1
primary = 10.50.0.1
backup_active = 0
network = nat
virtual web {
    address = 10.50.0.100 eth0:1
    vip_nmask = 255.255.255.0
    port = 80
    scheduler = wlc
    timeout = 0.3
    reentry = 0.3
    server rs1 {
        address = 10.50.0.11
        weight = 3
    }
    server rs2 {
        address = 10.50.0.12
        port = 81
    }
}
virtual web6 {
    address = fd50::100 eth0
    port = 80
    scheduler = rr
    timeout = 0.3
    reentry = 0.3
    server v6a {
        address = fd50::11
    }
}
virtual dns {
    address = 10.50.0.100 eth0:1
    protocol = udp
    port = 53
    check = none
    server rs1 {
        address = 10.50.0.11
    }
}
virtual marked {
    address = 10.50.0.101 eth0:2
    fwmark = 5
    persistent = 60
    check = none
    server rs1 {
        address = 10.50.0.11
    }
}
"""

SERVER = """
import asyncio
async def handle(r, w):
    w.write(b"HTTP/1.0 200 OK\\r\\n\\r\\n"); await w.drain(); w.close()
async def main():
    s = await asyncio.start_server(handle, None, 80)
    async with s: await s.serve_forever()
asyncio.run(main())
"""

# What no line may hold: a dataclass or call repr (`AddDest(service=`), a dict,
# tuple or bytes repr, an object's default repr, Python's None/True/False.
REPR = re.compile(r"[A-Z][A-Za-z]+\([a-z_]+=|\{'|\('|\[\(|b'|b\"|<[\w.]+ object at|\bNone\b|\bTrue\b|\bFalse\b")

# The first words of every line the daemon says (docs/LOGS.md), by its kind.
GRAMMAR: dict[str, str] = {
    "start": r"starting as (primary|backup), dataplane \S+, \d+ service\(s\) in the kernel adopted$",
    "stop": r"stopped$",
    "warning": r"WARNING: ",
    "reload": r"(reloaded \S+ \(serial_no \d+\): |reload of \S+ refused)",
    "table": r"table: (-[AEDaed] (-[tu] (\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\]):\d+|-f \d+( -6)?)|read back|drift: |\d+ later)",
    "vip": r"vip: (add|del) [0-9a-f.:]+/\d+ dev \S+$",
    "vip_cleanup": r"(vip: |WARNING: VIPs left)",
    "arp": r"arp: [0-9a-f.:]+ on \S+",
    "role": r"role: (standby|active) -> (standby|active) \(.+\)$",
    "health": r"health [\w.-]+/[\w.-]+: (up|down|unknown) -> (up|down|unknown)( \(.+\))?$",
    "admin_refused": r"admin: \w+( \S+)? refused: .+",
    "config": r"config: serial_no \d+ in force$",
    "command": r"command: ",
}


def fragments(f: dict[str, Any]) -> list[str]:
    """What a line's text must say, from its JSON fields (the fields carry the line)."""
    kind = f["kind"]
    if kind == "table" and f.get("op") in ("-A", "-E", "-D", "-a", "-e", "-d"):
        proto, _, where = f["service"].partition(" ")
        spec = f"-f {where.removesuffix(' IPv6')}" if proto == "FWM" else f"-{proto[0].lower()} {where}"
        out = [f"table: {f['op']} {spec}"]
        if "server" in f:
            out.append(f"-r {f['server']}")
        if "weight" in f:
            out.append(f"{f['method']} -w {f['weight']}")
        if "scheduler" in f:
            out.append(f"-s {f['scheduler']}")
        if f.get("persistent"):
            out.append(f"-p {f['persistent']}")
        names = "/".join(f[k] for k in ("virtual", "name") if k in f)
        return out + ([f"({names})"] if names else [])
    said: dict[str, Callable[[], list[str]]] = {
        "vip": lambda: [f"vip: {f['op']} {f['address']}/{f['prefix']} dev {f['label'] or f['device']}"],
        "arp": lambda: [f"arp: {f['address']} on {f['device']}"],
        "role": lambda: [f"role: {f['from']} -> {f['to']} ({f['reason']})"],
        "health": lambda: [f"health {f['service']}/{f['server']}: {f['from']} -> {f['to']}", f["detail"]],
        "admin_refused": lambda: [f"admin: {f['action']}", f"refused: {f['reason']}"],
        "config": lambda: [f"config: serial_no {f['serial_no']} in force"],
        "reload": lambda: [f"serial_no {f['serial_no']}"],
        "start": lambda: [f"starting as {f['node']}, dataplane {f['dataplane']}", f"{f['adopted']} service(s)"],
        "warning": lambda: [f["warning"]],
    }
    return said[kind]() if kind in said else []


def wait(what: str, predicate: Callable[[], bool], log: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-4000:]}")


def servers(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{s['name']}/{r['name']}": r for s in status["services"] for r in s["servers"]}


def test_a_daemon_log_speaks_ipvsadm_and_lvs_cf(netns_ok: None, tmp_path: Path) -> None:
    (tmp_path / "lvs.cf").write_text(CONFIG)
    (tmp_path / "server.py").write_text(SERVER)
    log, state = tmp_path / "daemon.log", str(tmp_path / "state")
    with netns.Topology() as topo:
        solo, lan = topo.namespace("solo"), topo.namespace("lan")
        topo.veth(solo, "eth0", lan, "eth0")
        topo.address(solo, "eth0", "10.50.0.1/24")
        topo.address(solo, "eth0", "fd50::1/64")
        for cidr in ("10.50.0.11/24", "10.50.0.12/24", "fd50::11/64"):
            topo.address(lan, "eth0", cidr)
        server = topo.spawn(lan, [sys.executable, str(tmp_path / "server.py")])
        daemon = daemons.start(solo, tmp_path / "lvs.cf", state, log, dataplane="dry-run",
                               args=["--log-format", "json"])

        def status() -> dict[str, Any]:
            return ask(state, {"cmd": "status"}, timeout_s=2)

        def settled() -> bool:
            s = servers(status())
            return bool(s["web/rs1"]["health"] == s["web6/v6a"]["health"] == "up" and s["web/rs2"]["health"] == "down")

        try:
            _walk(daemon, state, tmp_path, log, server, status, settled)
        finally:
            daemon.stop()
    _judge(log)


def _walk(daemon: daemons.Daemon, state: str, tmp_path: Path, log: Path, server: subprocess.Popen[bytes],
          status: Callable[[], dict[str, Any]], settled: Callable[[], bool]) -> None:
    """Start, health, drain, a refused failover, `shoal status`, a reload, a server dying, a stop."""
    wait("rs1 and v6a up, rs2 down", settled, log)
    assert ask(state, {"cmd": "admin", "action": "drain", "server": "web/rs1"}) == {"ok": True}
    assert ask(state, {"cmd": "admin", "action": "failover"})["ok"] is False  # no partner: refused
    wait("rs1 drained", lambda: servers(status())["web/rs1"]["weight"] == 0, log)
    text = subprocess.run([sys.executable, "-m", "shoal.cli", "status", "--state-dir", state],
                          capture_output=True, text=True, timeout=30).stdout
    (tmp_path / "lvs.cf").write_text(CONFIG.replace("serial_no = 1", "serial_no = 2").replace("weight = 3", "weight = 4"))
    daemon.signal(signal.SIGHUP)
    wait("serial_no 2", lambda: status()["serial_no"] == 2, log)
    server.kill()  # every server of the lan down: connection refused
    wait("v6a down", lambda: servers(status())["web6/v6a"]["health"] == "down", log)
    assert daemon.stop() == 0, log.read_text()[-4000:]
    (tmp_path / "status.txt").write_text(text)


def _judge(log: Path) -> None:
    text = (log.parent / "status.txt").read_text()
    raw = log.read_text().splitlines()
    # daemons.start gives the daemon one log for both streams: the dry-run dataplane's
    # ipvsadm lines on stdout, the JSON log on stderr.
    dry_run = [line for line in raw if not line.startswith("{")]
    assert dry_run and all(re.match(r"-[AEDaed] ", line) for line in dry_run), dry_run
    lines = [json.loads(line) for line in raw if line.startswith("{")]
    said = [line["msg"] for line in lines]
    for line in lines:
        msg = line["msg"]
        assert not REPR.search(msg), f"a Python repr in the log: {msg}"
        assert "kind" in line, f"a line without its kind: {line}"
        assert set(line) >= {"t", "level", "msg", "kind"} and "exc" not in line, line
        grammar = GRAMMAR.get(line["kind"])
        assert grammar is None or re.match(grammar, msg), f"{line['kind']} line off the grammar: {msg}"
        for part in fragments(line):
            assert part in msg, f"the JSON fields say {part!r}, the text does not: {line}"
    kinds = {line["kind"] for line in lines}
    assert {"start", "table", "vip", "arp", "role", "health", "admin_refused", "reload", "config", "stop"} <= kinds, kinds
    expected = [
        "table: -A -t 10.50.0.100:80 -s wlc (web)",
        "table: -A -t [fd50::100]:80 -s rr (web6)",
        "table: -A -u 10.50.0.100:53 -s wlc (dns)",
        "table: -A -f 5 -s wlc -p 60 (marked)",
        "table: -a -t 10.50.0.100:80 -r 10.50.0.11:80 -m -w 3 (web/rs1)",
        "table: -a -t [fd50::100]:80 -r [fd50::11]:80 -m -w 1 (web6/v6a)",
        "table: -a -f 5 -r 10.50.0.11:0 -m -w 1 (marked/rs1)",
        "table: -e -t 10.50.0.100:80 -r 10.50.0.11:80 -m -w 0 (web/rs1)",
        "vip: add 10.50.0.100/24 dev eth0:1",
        "vip: add fd50::100/128 dev eth0",
        "arp: 10.50.0.100 on eth0",
        "arp: fd50::100 on eth0 (unsolicited neighbour advertisement)",
        "role: standby -> active (no failover (backup_active = 0))",
        "health web/rs1: unknown -> up (connected)",
        "health web/rs2: unknown -> down (connection refused)",
        "health web6/v6a: up -> down (connection refused)",
        "admin: failover refused: ",
        "config: serial_no 2 in force",
        "role: active -> standby (shutting down)",
        "table: -D -t 10.50.0.100:80 (web)",
        "vip: del 10.50.0.100/24 dev eth0:1",
        "stopped",
    ]
    missing = [e for e in expected if not any(m.startswith(e) for m in said)]
    assert not missing, "lines not said:\n" + "\n".join(missing) + "\n--- said:\n" + "\n".join(said)
    assert any(m.startswith("reloaded ") and "serial_no 1 -> 2" in m for m in said), said

    # `shoal status`: the services as ipvsadm names them, no repr either.
    assert "virtual web (TCP 10.50.0.100:80 wlc)" in text and "virtual marked (FWM 5 wlc)" in text, text
    assert "[fd50::11]:80" in text and not REPR.search(text), text


def test_the_json_formatter_carries_the_fields_and_the_text_formatter_the_line() -> None:
    record = logging.LogRecord("shoal", logging.WARNING, __file__, 1, "%s", ("health web/rs2: up -> down",), None)
    record.fields = {"kind": "health", "service": "web", "server": "rs2", "t": "not this"}
    out = json.loads(JsonFormatter().format(record))
    assert out["msg"] == "health web/rs2: up -> down" and out["level"] == "warning" and out["t"] != "not this"
    assert (out["kind"], out["service"], out["server"]) == ("health", "web", "rs2")
    assert logging.Formatter("shoal[%(process)d]: %(message)s").format(record).endswith(
        ": health web/rs2: up -> down")


def test_a_failed_table_batch_says_what_was_done_what_failed_and_what_is_unknown(caplog: Any) -> None:
    import io

    from adapters.daemon import Daemon
    from adapters.dataplane.dryrun import DryRun
    from engine.events import AddDest, AddService, CommandFailed, DelService
    from engine.table import Dest, DestKey, Service, ServiceKey

    web, rs1 = ServiceKey("tcp", "10.50.0.100", 80), DestKey("10.50.0.11", 80)
    daemon = Daemon("lvs.cf", "dry-run", "/nonexistent")
    daemon.dataplane = DryRun(io.StringIO())
    bad = AddDest(web, Dest(rs1, 5, name="rs1"))
    async def write() -> None:  # in the dataplane's thread (adapters/offloop.py), said when done
        daemon._apply_table([AddService(Service(web, name="web")), AddDest(web, Dest(rs1, 1, name="rs1")), bad,
                             DelService(web, "web")])
        await daemon.worker.idle()

    with caplog.at_level(logging.INFO, logger="shoal"):
        asyncio.run(write())
    daemon.worker.close()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "table: -A -t 10.50.0.100:80 -s wlc (web)"),
        ("INFO", "table: -a -t 10.50.0.100:80 -r 10.50.0.11:80 -m -w 1 (rs1)"),
        ("WARNING", "table: -a -t 10.50.0.100:80 -r 10.50.0.11:80 -m -w 5 (rs1) failed: "
                    "EEXIST: destination 10.50.0.11:80 exists in TCP 10.50.0.100:80"),
        ("WARNING", "table: 1 later operation(s) of the batch not known to be carried out; "
                    "the kernel's table is read back"),
    ]
    assert caplog.records[2].fields["failed"].endswith("exists in TCP 10.50.0.100:80")
    assert list(daemon.inputs.others) == [CommandFailed(bad, "EEXIST: destination 10.50.0.11:80 exists in TCP 10.50.0.100:80")]
