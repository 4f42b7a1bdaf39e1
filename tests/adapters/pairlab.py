"""A pair of real `shoal run` daemons in namespaces (nft dataplane), a real
server, a client and a third host on the LAN ("mallory"), for the tests
that drive real daemons (test_daemon, the hostile-input tests).

    client 10.50.0.250, mallory 10.50.0.66
          --br0-- primary 10.50.0.1 (eth0) / backup 10.50.0.2 (eth0)
                  VIP 10.50.0.100 on eth0:1
    real server 10.51.0.11, mallory 10.51.0.66
          --br1-- primary 10.51.0.1 / backup 10.51.0.2 (eth1)
                  nat_router 10.51.0.254 on eth1:1 (the real server's gateway)

`make_lab(tmp_path, config=...)` builds it (as a context manager); the
`lab` fixture of test_daemon.py uses the default CONFIG.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters import netns
from adapters.control import ask
from adapters.lab import daemons

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
    started: list[daemons.Daemon] = field(default_factory=list)  # every daemon started, stopped on exit
    running: dict[str, daemons.Daemon] = field(default_factory=dict)  # the last one per node

    @property
    def daemons(self) -> dict[str, subprocess.Popen[bytes]]:
        """The last daemon process started per node (a test may signal and wait for it)."""
        return {node: d.proc for node, d in self.running.items()}

    def state(self, node: str) -> str:
        return str(self.tmp / node)

    def start(self, node: str) -> subprocess.Popen[bytes]:
        """`shoal run` (nft dataplane) in `node`'s namespace (adapters/lab/daemons.py), not waited for."""
        d = daemons.start(self.ns[node], self.tmp / "lvs.cf", self.state(node), self.tmp / f"{node}.log",
                          "nft", name=node)
        self.started.append(d)
        self.running[node] = d
        return d.proc

    def close(self) -> None:
        """Stop every daemon started (SIGTERM, SIGKILL after a grace), by PID."""
        daemons.stop_all(self.started, grace_s=2.0)

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


@contextlib.contextmanager
def make_lab(tmp_path: Path, config: str = CONFIG, server: str = SERVER) -> Iterator[Lab]:
    (tmp_path / "lvs.cf").write_text(config)
    with netns.Topology() as topo:
        ns = {n: topo.namespace(n) for n in ("sw", "primary", "backup", "client", "rs1", "mallory")}
        topo.bridge(ns["sw"], "br0")
        topo.bridge(ns["sw"], "br1")
        for i, node in enumerate(("primary", "backup"), 1):
            topo.veth(ns[node], "eth0", ns["sw"], f"p{i}", bridge="br0")
            topo.veth(ns[node], "eth1", ns["sw"], f"s{i}", bridge="br1")
            topo.address(ns[node], "eth0", f"10.50.0.{i}/24")
            topo.address(ns[node], "eth1", f"10.51.0.{i}/24")
            topo.sysctl(ns[node], "net.ipv4.ip_forward", "1")
        topo.veth(ns["client"], "eth0", ns["sw"], "c1", bridge="br0")
        topo.veth(ns["mallory"], "eth0", ns["sw"], "m0", bridge="br0")
        topo.veth(ns["mallory"], "eth1", ns["sw"], "m1", bridge="br1")
        topo.address(ns["mallory"], "eth0", "10.50.0.66/24")
        topo.address(ns["mallory"], "eth1", "10.51.0.66/24")
        topo.address(ns["client"], "eth0", "10.50.0.250/24")
        topo.sysctl(ns["client"], "net.ipv4.neigh.eth0.locktime", "0")
        topo.veth(ns["rs1"], "eth0", ns["sw"], "r1", bridge="br1")
        topo.address(ns["rs1"], "eth0", "10.51.0.11/24")
        topo.run(ns["rs1"], ["ip", "route", "add", "default", "via", "10.51.0.254"])
        (tmp_path / "server.py").write_text(server)
        topo.spawn(ns["rs1"], [sys.executable, str(tmp_path / "server.py")])
        lab = Lab(topo, ns, tmp_path)
        try:
            yield lab
        finally:
            lab.close()
