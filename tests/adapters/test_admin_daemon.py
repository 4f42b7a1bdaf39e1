"""`shoal admin` against a real `shoal run` (issue 11): one router in a
namespace (dry-run dataplane, `backup_active = 0`), its real servers in
another.  Drain and weight through the command, watched on the control
socket's event stream (the admin actions, the table operations, a health
change, a reload); a reload that drops a server drops its override from
`STATE_DIR/overrides.json`; a restarted daemon puts the others back.

    solo 10.50.0.1/24 eth0  <-veth->  lan 10.50.0.11 .12 .13 (eth0), a server on port 80
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters import netns
from adapters.control import ask
from adapters.lab import daemons

SERVERS = """
    server rs1 {
        address = 10.50.0.11
        weight = 3
    }
    server rs2 {
        address = 10.50.0.12
    }
"""
RS3 = """    server rs3 {
        address = 10.50.0.13
    }
"""
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
%s}
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


class Stream:
    """`{"cmd": "events"}` read on a thread: every event, in order."""

    def __init__(self, state_dir: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(f"{state_dir}/control.sock")
        self.sock.sendall(b'{"cmd": "events"}\n')
        self.file = self.sock.makefile("rb")
        assert json.loads(self.file.readline()) == {"ok": True}
        self.events: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.file:
            self.events.append(json.loads(line))

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.file.close()
        self.sock.close()
        self.thread.join(5)


def admin(state: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shoal.cli", "admin", *argv, "--state-dir", state],
                          capture_output=True, text=True, timeout=60, cwd=daemons.ROOT)


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


def servers(state: str) -> dict[str, dict[str, Any]]:
    status = ask(state, {"cmd": "status"}, timeout_s=2)
    return {f"{s['name']}/{r['name']}": r for s in status["services"] for r in s["servers"]}


def table_weights(state: str) -> dict[str, int]:
    """The kernel's (the dry-run dataplane's) weights, by real server address."""
    table = ask(state, {"cmd": "table"}, timeout_s=2)["table"]
    return {d["address"]: d["weight"] for service in table for d in service["dests"]}


def test_admin_drain_and_weight_survive_a_reload_and_a_restart(netns_ok: None, tmp_path: Path) -> None:
    cf = tmp_path / "lvs.cf"
    cf.write_text(CONFIG % (SERVERS + RS3))
    (tmp_path / "server.py").write_text(SERVER)
    state = str(tmp_path / "state")
    log1, log2 = tmp_path / "daemon1.log", tmp_path / "daemon2.log"
    with netns.Topology() as topo:
        solo, lan = topo.namespace("solo"), topo.namespace("lan")
        topo.veth(solo, "eth0", lan, "eth0")
        topo.address(solo, "eth0", "10.50.0.1/24")
        for cidr in ("10.50.0.11/24", "10.50.0.12/24", "10.50.0.13/24"):
            topo.address(lan, "eth0", cidr)
        server = topo.spawn(lan, [sys.executable, str(tmp_path / "server.py")])
        daemon = daemons.start(solo, cf, state, log1, dataplane="dry-run")
        try:
            daemon.wait_ready()
            wait("every server up", lambda: all(r["health"] == "up" for r in servers(state).values()), log1)
            stream = Stream(state)
            try:
                _operate(state, cf, server, log1, stream)
            finally:
                stream.close()
            _judge_stream(stream.events)
            assert daemon.stop() == 0, daemon.log_tail()
            kept = json.loads((Path(state) / "overrides.json").read_text())
            assert kept["overrides"] == [{"virtual": "web", "server": "rs1", "action": "drain"},
                                         {"virtual": "web", "server": "rs2", "action": "weight", "weight": 7}]
            assert "overrides: web/rs3 (drain) dropped: the configuration no longer has" in log1.read_text()

            # The restart: the overrides are back, in status and in the kernel's table; one the
            # config does not have (written while the daemon was stopped) is dropped from the file.
            kept["overrides"].append({"virtual": "web", "server": "gone", "action": "drain"})
            (Path(state) / "overrides.json").write_text(json.dumps(kept))
            server = topo.spawn(lan, [sys.executable, str(tmp_path / "server.py")])
            daemon = daemons.start(solo, cf, state, log2, dataplane="dry-run")
            daemon.wait_ready()
            wait("rs1 and rs2 in the table", lambda: table_weights(state) == {"10.50.0.11": 0, "10.50.0.12": 7},
                 log2)
            s = servers(state)
            assert (s["web/rs1"]["admin"], s["web/rs1"]["weight"]) == ("drain", 0)
            assert (s["web/rs2"]["admin"], s["web/rs2"]["admin_weight"], s["web/rs2"]["weight"]) == ("weight", 7, 7)
            assert "overrides: 2 restored from" in log2.read_text()
            text = subprocess.run([sys.executable, "-m", "shoal.cli", "status", "--state-dir", state],
                                  capture_output=True, text=True, timeout=30, cwd=daemons.ROOT).stdout
            assert "weight 0 [drain]" in text and "weight 7 [operator weight 7]" in text, text
            assert "overrides: web/gone (drain) dropped: no real server named gone in virtual web" in log2.read_text()
            assert [o["server"] for o in json.loads((Path(state) / "overrides.json").read_text())["overrides"]] \
                == ["rs1", "rs2"]

            # Undrain hands them back, and the file follows.
            assert admin(state, "undrain", "web/rs1").returncode == 0
            assert admin(state, "undrain", "web/rs2").returncode == 0
            wait("configured weights", lambda: table_weights(state) == {"10.50.0.11": 3, "10.50.0.12": 1}, log2)
            wait("an empty overrides file", lambda: json.loads(
                (Path(state) / "overrides.json").read_text())["overrides"] == [], log2)
        finally:
            daemon.stop()


def _operate(state: str, cf: Path, server: subprocess.Popen[bytes], log: Path, stream: Stream) -> None:
    drained = admin(state, "drain", "web/rs1")
    assert (drained.returncode, drained.stderr) == (0, "")
    assert servers(state)["web/rs1"]["admin"] == "drain"  # exit 0: the engine has carried it out already
    assert admin(state, "weight", "web/rs2", "7").returncode == 0
    assert servers(state)["web/rs2"]["admin_weight"] == 7
    assert admin(state, "drain", "web/rs3").returncode == 0
    refused = admin(state, "weight", "web/rs9", "3")
    assert refused.returncode == 1 and "no real server named web/rs9" in refused.stderr, refused
    bad = admin(state, "weight", "web/rs2", "70000")
    assert bad.returncode == 2 and "usage:" in bad.stderr, bad
    failover = admin(state, "failover")  # no partner: refused, with the reason
    assert failover.returncode == 1 and failover.stderr.strip(), failover
    wait("the table follows", lambda: table_weights(state) == {"10.50.0.11": 0, "10.50.0.12": 7, "10.50.0.13": 0},
         log)
    kept = json.loads((Path(state) / "overrides.json").read_text())
    assert [o["server"] for o in kept["overrides"]] == ["rs1", "rs2", "rs3"]

    # A reload without rs3: rs3's drain is dropped, the others kept.
    cf.write_text(CONFIG.replace("serial_no = 1", "serial_no = 2") % SERVERS)
    reloaded = admin(state, "reload")
    assert reloaded.returncode == 0 and "serial_no 1 -> 2" in reloaded.stdout, reloaded
    kept = json.loads((Path(state) / "overrides.json").read_text())
    assert [o["server"] for o in kept["overrides"]] == ["rs1", "rs2"]
    assert table_weights(state) == {"10.50.0.11": 0, "10.50.0.12": 7}

    # A reload of a broken file: refused, every error printed, nothing changes.
    good = cf.read_text()
    cf.write_text(good.replace("weight = 3", "weight = lots").replace("port = 80", "port = eighty"))
    broken = admin(state, "reload")
    assert broken.returncode == 1 and broken.stderr.count("lvs.cf:") >= 2, broken
    cf.write_text(good)

    server.kill()  # every real server down: connection refused
    wait("rs1 down", lambda: servers(state)["web/rs1"]["health"] == "down", log)
    wait("the health change streamed", lambda: any(e["kind"] == "health" and e["server"] == "rs1"
                                                   for e in stream.events), log)


def _judge_stream(events: list[dict[str, Any]]) -> None:
    assert all({"t", "time", "node", "kind", "text"} <= set(e) and e["node"] == "primary" for e in events), events
    admins = [(e["action"], e["server"], e["weight"], e["ok"]) for e in events if e["kind"] == "admin"]
    assert admins[:5] == [("drain", "web/rs1", None, True), ("weight", "web/rs2", 7, True),
                          ("drain", "web/rs3", None, True), ("weight", "web/rs9", 3, False),
                          ("failover", "", None, False)], admins
    table = [(e["op"], e["service"], e["server"], e["weight"]) for e in events if e["kind"] == "table"]
    assert ("edit_dest", "web", "rs1", 0) in table and ("edit_dest", "web", "rs2", 7) in table, table
    assert ("del_dest", "web", "rs3", None) in table, table
    reloads = [(e["ok"], e["serial_no"]) for e in events if e["kind"] == "reload"]
    assert reloads == [(True, 2), (False, 2)], reloads
    health = [(e["service"], e["server"], e["from"], e["to"]) for e in events if e["kind"] == "health"]
    assert ("web", "rs1", "up", "down") in health, health
    ts = [e["t"] for e in events]
    assert ts == sorted(ts)
