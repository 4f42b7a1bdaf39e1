"""`shoal run` for real: two daemons in namespaces with the nft dataplane,
a real server, a client.  Few tests, each deep (issue 4).

    client 10.50.0.250 --br0-- primary 10.50.0.1 (eth0) / backup 10.50.0.2 (eth0)
                                VIP 10.50.0.100 on eth0:1
    real server 10.51.0.11 --br1-- primary 10.51.0.1 / backup 10.51.0.2 (eth1)
                                nat_router 10.51.0.254 on eth1:1 (the real server's gateway)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapters import netns
from adapters.control import ask

CONFIG = """serial_no = 1
primary = 10.50.0.1
backup = 10.50.0.2
backup_active = 1
keepalive = 0.2
deadtime = 0.8
network = nat
nat_router = 10.51.0.254 eth1:1
nat_nmask = 255.255.255.0
arp_interval = 0.2
virtual web {
    address = 10.50.0.100 eth0:1
    vip_nmask = 255.255.255.0
    port = 80
    send = "GET / HTTP/1.0\\r\\n\\r\\n"
    expect = "HTTP/1.0 200"
    scheduler = rr
    timeout = 0.5
    reentry = 1
    server rs1 {
        address = 10.51.0.11
    }
}
"""

SERVER = """
import asyncio
async def handle(r, w):
    await r.read(100)
    w.write(b"HTTP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
    await w.drain(); w.close()
async def main():
    s = await asyncio.start_server(handle, "0.0.0.0", 80)
    async with s: await s.serve_forever()
asyncio.run(main())
"""


@dataclass
class Lab:
    topo: netns.Topology
    ns: dict[str, str]
    tmp: Path
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def state(self, node: str) -> str:
        return str(self.tmp / node)

    def start(self, node: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{node}.log", "ab")
        proc = self.topo.spawn(self.ns[node], [sys.executable, "-m", "shoal.cli", "run", "-c", str(self.tmp / "lvs.cf"),
                                               "--dataplane", "nft", "--state-dir", self.state(node)],
                               stdout=log, stderr=log)
        self.daemons[node] = proc
        return proc

    def log(self, node: str) -> str:
        return (self.tmp / f"{node}.log").read_text()

    def status(self, node: str) -> dict[str, Any]:
        return ask(self.state(node), {"cmd": "status"}, timeout_s=2)

    def wait(self, what: str, predicate: Any, timeout_s: float = 8.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            try:
                if predicate():
                    return time.monotonic() - start
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        logs = "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in self.daemons)
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def role(self, node: str) -> str:
        return str(self.status(node)["role"])

    def vips(self, node: str) -> set[str]:
        out = self.topo.run(self.ns[node], ["ip", "-j", "addr", "show", "dev", "eth0"]).stdout
        return {a["local"] for link in json.loads(out) for a in link.get("addr_info", [])}

    def get(self, timeout_s: float = 1.0) -> bool:
        code = (f"import socket;s=socket.create_connection(('10.50.0.100',80),{timeout_s});"
                "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n');print(s.recv(100).decode())")
        done = self.topo.run(self.ns["client"], [sys.executable, "-c", code], check=False, timeout_s=timeout_s + 3)
        return done.returncode == 0 and "200 OK" in done.stdout


@pytest.fixture
def lab(netns_ok: None, tmp_path: Path) -> Iterator[Lab]:
    (tmp_path / "lvs.cf").write_text(CONFIG)
    with netns.Topology() as topo:
        ns = {n: topo.namespace(n) for n in ("sw", "primary", "backup", "client", "rs1")}
        topo.bridge(ns["sw"], "br0")
        topo.bridge(ns["sw"], "br1")
        for i, node in enumerate(("primary", "backup"), 1):
            topo.veth(ns[node], "eth0", ns["sw"], f"p{i}", bridge="br0")
            topo.veth(ns[node], "eth1", ns["sw"], f"s{i}", bridge="br1")
            topo.address(ns[node], "eth0", f"10.50.0.{i}/24")
            topo.address(ns[node], "eth1", f"10.51.0.{i}/24")
            topo.sysctl(ns[node], "net.ipv4.ip_forward", "1")
        topo.veth(ns["client"], "eth0", ns["sw"], "c1", bridge="br0")
        topo.address(ns["client"], "eth0", "10.50.0.250/24")
        topo.sysctl(ns["client"], "net.ipv4.neigh.eth0.locktime", "0")
        topo.veth(ns["rs1"], "eth0", ns["sw"], "r1", bridge="br1")
        topo.address(ns["rs1"], "eth0", "10.51.0.11/24")
        topo.run(ns["rs1"], ["ip", "route", "add", "default", "via", "10.51.0.254"])
        (tmp_path / "server.py").write_text(SERVER)
        topo.spawn(ns["rs1"], [sys.executable, str(tmp_path / "server.py")])
        yield Lab(topo, ns, tmp_path)


def test_pair_serves_fails_over_reloads_and_stops(lab: Lab) -> None:
    primary, backup = lab.start("primary"), lab.start("backup")
    lab.wait("primary active", lambda: lab.role("primary") == "active" and lab.role("backup") == "standby")
    lab.wait("rs1 up in the primary's table", lambda: lab.status("primary")["services"][0]["servers"][0]["in_table"])
    lab.wait("a client request through the VIP", lab.get)
    assert "10.50.0.100" in lab.vips("primary") and "10.50.0.100" not in lab.vips("backup")
    table = ask(lab.state("primary"), {"cmd": "table"})["text"]
    assert "TCP  10.50.0.100:80 rr" in table and "10.51.0.11:80" in table, table
    assert subprocess.run([sys.executable, "-m", "shoal.cli", "status", "--state-dir", lab.state("primary")],
                          capture_output=True, text=True).stdout.startswith("primary: active")

    # Bad input on the control socket is answered and counted, never fatal.
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(os.path.join(lab.state("primary"), "control.sock"))
        sock.sendall(b"\xff not json\n")
        assert b"bad request" in sock.recv(1000)
    assert lab.role("primary") == "active"

    # An invalid new config is rejected on SIGHUP; the running one is kept.
    (lab.tmp / "lvs.cf").write_text(CONFIG.replace("deadtime = 0.8", "deadtime = 0.1"))
    primary.send_signal(signal.SIGHUP)
    lab.wait("the rejection logged", lambda: "reload rejected" in lab.log("primary"))
    assert primary.poll() is None and lab.role("primary") == "active"
    (lab.tmp / "lvs.cf").write_text(CONFIG.replace("serial_no = 1", "serial_no = 2"))
    primary.send_signal(signal.SIGHUP)
    backup.send_signal(signal.SIGHUP)
    lab.wait("serial 2 on both", lambda: lab.status("primary")["serial_no"] == 2 == lab.status("backup")["serial_no"])

    # The active router crashes: daemon killed, links down.  The backup takes over.
    os.killpg(primary.pid, signal.SIGKILL)
    primary.wait()
    lab.topo.run(lab.ns["primary"], ["ip", "link", "set", "eth0", "down"])
    lab.topo.run(lab.ns["primary"], ["ip", "link", "set", "eth1", "down"])
    took = lab.wait("backup active with the VIP",
                    lambda: lab.role("backup") == "active" and "10.50.0.100" in lab.vips("backup"))
    served = lab.wait("a client request through the backup", lab.get)
    print(f"backup active {took:.2f} s after the crash; client served again {took + served:.2f} s after it")

    # SIGTERM: the backup gives the VIPs up and exits cleanly.
    backup.send_signal(signal.SIGTERM)
    assert backup.wait(10) == 0
    assert "10.50.0.100" not in lab.vips("backup")
    out = lab.topo.run(lab.ns["backup"], ["ip", "-j", "addr", "show", "dev", "eth1"]).stdout
    assert "10.51.0.254" not in out  # nat_router released too


def test_restart_adopts_the_table_and_keeps_connections(lab: Lab) -> None:
    primary = lab.start("primary")
    lab.wait("primary active alone", lambda: lab.role("primary") == "active", timeout_s=10)
    lab.wait("rs1 in the table", lambda: lab.status("primary")["services"][0]["servers"][0]["in_table"])
    lab.wait("a client request through the VIP", lab.get)
    code = ("import socket,time,sys\n"
            "s=socket.create_connection(('10.50.0.100',80),2)\n"
            "print('open',flush=True)\n"
            "sys.stdin.readline()\n"
            "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n');print(s.recv(100).decode(),flush=True)\n")
    client = lab.topo.spawn(lab.ns["client"], [sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    assert client.stdout is not None and client.stdin is not None
    assert client.stdout.readline().strip() == b"open"
    os.killpg(primary.pid, signal.SIGKILL)  # the daemon only: addresses and table stay
    primary.wait()
    lab.start("primary")
    lab.wait("restarted daemon active", lambda: lab.role("primary") == "active", timeout_s=10)
    assert "adopted" in lab.log("primary")
    client.stdin.write(b"go\n")
    client.stdin.flush()
    assert b"200 OK" in client.stdout.readline()
    assert client.wait(5) == 0


def test_cannot_start_says_why(tmp_path: Path) -> None:
    cfg = tmp_path / "lvs.cf"
    cfg.write_text(CONFIG)  # neither 10.50.0.1 nor 10.50.0.2 is on this host
    done = subprocess.run([sys.executable, "-m", "shoal.cli", "run", "-c", str(cfg), "--dataplane", "dry-run",
                           "--state-dir", str(tmp_path / "s")], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "cannot tell which router it is" in done.stderr
    cfg.write_text(CONFIG.replace("deadtime = 0.8", "deadtime = 0.1"))
    done = subprocess.run([sys.executable, "-m", "shoal.cli", "run", "-c", str(cfg), "--dataplane", "dry-run",
                           "--state-dir", str(tmp_path / "s")], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "lvs.cf:6:12: deadtime (0.1 s) must be greater than keepalive (0.2 s)" in done.stderr, done.stderr
