"""Connections survive failover (issue 5), on the guest's real IPVS.

Two `shoal run --dataplane ipvs` daemons with `syncdaemon = 1`: the active
router's kernel runs the IPVS sync daemon as master, the standby's as
backup (`ipvsadm -L --daemon` in each namespace), both on the private
network (`syncd_iface = eth2`).  A client holds two TCP connections to the
VIP, on a real server that echoes lines:

- A has carried data (3 packets in: the kernel's sync_threshold), so the
  master has sent its entry to the backup (`ipvsadm -Lnc` there shows it);
- B is open but idle (2 packets in): the master never sends its entry.

The primary crashes (daemon SIGKILLed, links down, as `shoal lab` does);
the backup takes the VIP and `nat_router` (the real servers' gateway, so
their replies reach it); its table was there already (a standby keeps
the table in step with health, as keepalived's backup does: `ipvsadm -Sn`
prints the same service and real servers on both routers before the
crash).  Then A still works, on
the same real server; B is reset by the backup (no entry: a mid-stream
segment to the VIP is answered by the backup's own stack); a new
connection is balanced as usual.

What it takes, found here: nothing beyond the config's `syncdaemon`,
`syncd_iface` and `syncd_id` and a `nat_router` that moves with the active
router (the engine adds it and sends gratuitous ARPs for it, as for a VIP,
so the real servers' replies reach the new director).  No conntrack:
`net.ipv4.vs.conntrack` stays 0; the synced entry carries the NAT mapping,
and the backup forwards with it though it had no service when it was
synced (the kernel keeps such an entry unbound, "but still handled").

    client 10.60.0.250 --br0-- primary 10.60.0.1 / backup 10.60.0.2 (eth0; VIP 10.60.0.100 on eth0:1)
                        --br2-- primary 192.168.60.1 / backup 192.168.60.2 (eth2: heartbeat, sync)
    rs1 10.61.0.11, rs2 10.61.0.12 --br1-- primary 10.61.0.1 / backup 10.61.0.2 (eth1;
                        nat_router 10.61.0.254 on eth1:1, the real servers' default gateway)
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from adapters import netns
from adapters.control import ask
from adapters.lab.daemons import Daemon, start as start_daemon, stop_all

VIP, PORT, NAT_ROUTER = "10.60.0.100", 7000, "10.61.0.254"
CLIENT = "10.60.0.250"
SERVERS = {"rs1": "10.61.0.11", "rs2": "10.61.0.12"}

CONFIG = f"""serial_no = 1
primary = 10.60.0.1
backup = 10.60.0.2
primary_private = 192.168.60.1
backup_private = 192.168.60.2
backup_active = 1
keepalive = 1
deadtime = 4
network = nat
nat_router = {NAT_ROUTER} eth1:1
nat_nmask = 255.255.255.0
arp_interval = 1
syncdaemon = 1
syncd_iface = eth2
syncd_id = 7
virtual echo {{
    address = {VIP} eth0:1
    vip_nmask = 255.255.255.0
    port = {PORT}
    scheduler = rr
    timeout = 3
    reentry = 3
    server rs1 {{
        address = {SERVERS["rs1"]}
    }}
    server rs2 {{
        address = {SERVERS["rs2"]}
    }}
}}
"""

ECHO = """
import asyncio, sys
NAME = sys.argv[1]
async def handle(r, w):
    while line := await r.readline():
        w.write(NAME.encode() + b" " + line)
        await w.drain()
    w.close()
async def main():
    s = await asyncio.start_server(handle, "0.0.0.0", int(sys.argv[2]))
    async with s: await s.serve_forever()
asyncio.run(main())
"""


@dataclass
class Pair:
    topo: netns.Topology
    ns: dict[str, str]
    tmp: Path
    daemons: dict[str, Daemon] = field(default_factory=dict)  # the last started per node
    started: list[Daemon] = field(default_factory=list)  # all of them, stopped at the end

    def state(self, node: str) -> str:
        return str(self.tmp / node)

    def start(self, node: str) -> None:
        self.daemons[node] = start_daemon(self.ns[node], self.tmp / "lvs.cf", self.state(node),
                                          self.tmp / f"{node}.log", "ipvs", name=node)
        self.started.append(self.daemons[node])

    def logs(self) -> str:
        return "\n".join(f"--- {n} log\n{(self.tmp / f'{n}.log').read_text()[-3000:]}" for n in self.daemons)

    def status(self, node: str) -> dict[str, Any]:
        return ask(self.state(node), {"cmd": "status"}, timeout_s=5)

    def wait(self, what: str, predicate: Callable[[], object], timeout_s: float = 60.0,
             detail: Callable[[], str] = lambda: "") -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            try:
                if predicate():
                    return time.monotonic() - start
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out ({timeout_s:g} s) waiting for {what}\n{detail()}\n{self.logs()}")

    def ipvsadm(self, node: str, *args: str) -> str:
        return self.topo.run(self.ns[node], ["ipvsadm", *args]).stdout

    def addresses(self, node: str) -> set[str]:
        out = self.topo.run(self.ns[node], ["ip", "-j", "addr", "show"]).stdout
        return {a["local"] for link in json.loads(out) for a in link.get("addr_info", [])}

    def crash(self, node: str) -> None:
        """As `shoal lab`'s crash: the daemon dies (SIGKILL, no goodbye) and the host's links go silent."""
        self.daemons[node].kill()
        for dev in ("eth0", "eth1", "eth2"):
            self.topo.run(self.ns[node], ["ip", "link", "set", dev, "down"])


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    netns.require()
    (tmp_path / "lvs.cf").write_text(CONFIG)
    (tmp_path / "echo.py").write_text(ECHO)
    with netns.Topology() as topo:
        ns = {n: topo.namespace(n) for n in ("sw", "primary", "backup", "client", *SERVERS)}
        for br in ("br0", "br1", "br2"):
            topo.bridge(ns["sw"], br)
        for i, node in enumerate(("primary", "backup"), 1):
            topo.veth(ns[node], "eth0", ns["sw"], f"p{i}", bridge="br0")
            topo.veth(ns[node], "eth1", ns["sw"], f"s{i}", bridge="br1")
            topo.veth(ns[node], "eth2", ns["sw"], f"h{i}", bridge="br2")
            topo.address(ns[node], "eth0", f"10.60.0.{i}/24")
            topo.address(ns[node], "eth1", f"10.61.0.{i}/24")
            topo.address(ns[node], "eth2", f"192.168.60.{i}/24")
            topo.sysctl(ns[node], "net.ipv4.ip_forward", "1")
        topo.veth(ns["client"], "eth0", ns["sw"], "c1", bridge="br0")
        topo.address(ns["client"], "eth0", f"{CLIENT}/24")
        topo.sysctl(ns["client"], "net.ipv4.neigh.eth0.locktime", "0")
        for i, (name, address) in enumerate(SERVERS.items(), 1):
            topo.veth(ns[name], "eth0", ns["sw"], f"r{i}", bridge="br1")
            topo.address(ns[name], "eth0", f"{address}/24")
            topo.run(ns[name], ["ip", "route", "add", "default", "via", NAT_ROUTER])
            topo.spawn(ns[name], [sys.executable, str(tmp_path / "echo.py"), name, str(PORT)])
        pair = Pair(topo, ns, tmp_path)
        try:
            yield pair
        finally:
            stop_all(pair.started, grace_s=60)  # TCG is slow


def connect(pair: Pair) -> socket.socket:
    with netns.entered(pair.ns["client"]):
        sock = socket.create_connection((VIP, PORT), timeout=10)
    sock.settimeout(10)
    return sock


def exchange(sock: socket.socket, line: str) -> str:
    sock.sendall(line.encode() + b"\n")
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = sock.recv(100)
        if not chunk:
            raise ConnectionResetError("closed by the far end")
        reply += chunk
    return reply.decode().strip()


def daemons(pair: Pair) -> str:
    return "\n".join(f"{n}: {pair.ipvsadm(n, '-L', '--daemon').strip() or '(no sync daemon)'}"
                     for n in ("primary", "backup"))


def conn_entry(listing: str, client_port: int) -> str | None:
    """The `ipvsadm -Lnc` line of the client's connection from `client_port`, if any."""
    for line in listing.splitlines():
        if re.search(rf"\s{re.escape(CLIENT)}:{client_port}\s", line):
            return line
    return None


def test_a_synced_connection_survives_the_active_routers_crash(pair: Pair) -> None:
    pair.start("primary")
    pair.start("backup")
    # Under TCG a daemon needs 30-40 s to start (imports over 9p: scapy, pyroute2): a generous bound.
    pair.wait("primary active, backup standby, both servers in the primary's table", timeout_s=240,
              predicate=lambda: pair.status("primary")["role"] == "active" and pair.status("backup")["role"] == "standby"
              and all(s["in_table"] for s in pair.status("primary")["services"][0]["servers"]))
    pair.wait("the VIP answering through the primary", lambda: exchange(connect(pair), "ping"))

    # The engine's StartSyncDaemon, carried out over netlink, as the kernel reports it.
    pair.wait("sync daemons: master on the primary, backup on the standby",
              lambda: "master sync daemon (mcast=eth2, syncid=7," in pair.ipvsadm("primary", "-L", "--daemon")
              and "backup sync daemon (mcast=eth2, syncid=7," in pair.ipvsadm("backup", "-L", "--daemon"),
              detail=lambda: daemons(pair))
    print(daemons(pair))
    assert "master" not in pair.ipvsadm("backup", "-L", "--daemon")

    idle = connect(pair)  # B: handshake only, 2 packets in: below sync_threshold, never synced
    kept = connect(pair)  # A: carries data
    first = exchange(kept, "before the crash")
    server = first.split()[0]
    assert first == f"{server} before the crash" and server in SERVERS, first
    kept_port, idle_port = kept.getsockname()[1], idle.getsockname()[1]

    entry = ""

    def synced() -> bool:
        nonlocal entry
        entry = conn_entry(pair.ipvsadm("backup", "-Lnc"), kept_port) or ""
        return bool(entry)

    took = pair.wait(f"the connection from port {kept_port} in the backup's connection table", synced, 30,
                     detail=lambda: "primary:\n" + pair.ipvsadm("primary", "-Lnc") + "backup:\n"
                     + pair.ipvsadm("backup", "-Lnc") + daemons(pair))
    backup_conns = pair.ipvsadm("backup", "-Lnc")
    print(f"synced to the backup after {took:.1f} s:\n{backup_conns}")
    assert "ESTABLISHED" in entry and f"{VIP}:{PORT}" in entry and f"{SERVERS[server]}:{PORT}" in entry, entry
    assert conn_entry(backup_conns, idle_port) is None, backup_conns
    assert conn_entry(pair.ipvsadm("primary", "-Lnc"), idle_port) is not None  # the primary does have it
    standby_table = pair.ipvsadm("backup", "-Sn")
    assert "-a -t" in standby_table and standby_table == pair.ipvsadm("primary", "-Sn"), \
        "the standby keeps the active router's table:\n" + standby_table + pair.ipvsadm("primary", "-Sn")

    pair.crash("primary")
    took = pair.wait("the backup active with the VIP and nat_router",
                     lambda: pair.status("backup")["role"] == "active"
                     and {VIP, NAT_ROUTER} <= pair.addresses("backup")
                     and all(s["in_table"] for s in pair.status("backup")["services"][0]["servers"]))
    print(f"backup active {took:.1f} s after the crash")
    pair.wait("the backup's sync daemon now master",
              lambda: "master sync daemon (mcast=eth2, syncid=7," in pair.ipvsadm("backup", "-L", "--daemon"),
              detail=lambda: daemons(pair))

    # A: the same TCP connection, the same real server, through the backup.
    assert exchange(kept, "after the crash") == f"{server} after the crash"
    assert exchange(kept, "and again") == f"{server} and again"
    # B: no entry on the backup, so its next segment meets the backup's own stack: reset.
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        exchange(idle, "unsynced")
    # A new connection is balanced by the backup as usual.
    fresh = exchange(connect(pair), "new")
    assert fresh.split()[0] in SERVERS and fresh.endswith(" new"), fresh
    print("after takeover, backup connections:\n" + pair.ipvsadm("backup", "-Lnc"))
    kept.close()
    idle.close()
