"""Adoption and drift on a real IPVS kernel (issue 5), with one real daemon.

    client 10.60.0.2 --(veth)-- director 10.60.0.1 eth0, VIP 10.60.0.100 (eth0:1)
                                director 10.61.0.1 br1 --+-- rs1 10.61.0.11 (HTTP)
                                                         +-- rs2 10.61.0.12 (HTTP)
    NAT: the real servers' default route is the director.

Before the daemon starts, the director's table is programmed with `ipvsadm`
exactly as the config wants it, and a client opens a keep-alive HTTP
connection through the VIP.  Then `python -m shoal run --dataplane ipvs`
starts over that table (a single router: `backup_active = 0`):

- adoption: it goes active without one table operation; the connection
  still works, on the same IPVS connection entry (`ipvsadm -Lnc`, same
  client port, same real server), and the service's connection counter
  (`ipvsadm -Ln --stats`) did not go back to 0: nothing was deleted and
  re-added;
- drift: a change made behind its back with `ipvsadm` (a weight edited, a
  destination deleted, a stray service added) shows in `shoal status
  --json` and the kernel table comes back to the desired one within a few
  check intervals (polled, generous deadline), with one log line per drift.

The real servers answer from threads of this process (their listening
sockets made inside their namespaces); the client's connection too.  Only
the daemon is another Python process (its start costs seconds under TCG:
it is started once for both tests).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from adapters import netns
from adapters.control import ask
from adapters.dataplane.ipvsadm import parse_save
from adapters.lab import daemons
from adapters.netns import entered

VIP = "10.60.0.100"
CLIENT = "10.60.0.2"
SERVERS = {"rs1": "10.61.0.11", "rs2": "10.61.0.12"}
CHECK_INTERVAL_S = 1
DAEMON_START_S = 120  # a generous deadline: python, pyroute2 and scapy import over 9p under TCG

CONFIG = f"""serial_no = 1
primary = 10.60.0.1
backup_active = 0
network = nat
keepalive = 1
deadtime = 3
arp_count = 1
table_check_interval = {CHECK_INTERVAL_S}
virtual web {{
    address = {VIP} eth0:1
    port = 80
    scheduler = wlc
    timeout = 2
    check_interval = 1
    server rs1 {{
        address = 10.61.0.11
        weight = 1
    }}
    server rs2 {{
        address = 10.61.0.12
        weight = 1
    }}
}}
"""

# What the config wants, as `ipvsadm -Sn` prints it; programmed before the daemon starts.
DESIRED = [
    f"-A -t {VIP}:80 -s wlc",
    f"-a -t {VIP}:80 -r 10.61.0.11:80 -m -w 1",
    f"-a -t {VIP}:80 -r 10.61.0.12:80 -m -w 1",
]
TAMPER = [  # behind the daemon's back, in one `ipvsadm -R`
    f"-e -t {VIP}:80 -r 10.61.0.11:80 -m -w 5",
    f"-d -t {VIP}:80 -r 10.61.0.12:80",
    "-A -t 10.60.0.200:8080 -s rr",
    "-a -t 10.60.0.200:8080 -r 10.61.0.11:8080 -m -w 1",
]
RECONCILE = {  # the operations that put it back, as the status shows them
    f"-a -t {VIP}:80 -r 10.61.0.12:80 -m -w 1",
    f"-e -t {VIP}:80 -r 10.61.0.11:80 -m -w 1",
    "-D -t 10.60.0.200:8080",
}
TABLE_OP_LOG = re.compile(r"table: -[AEDaed] ")  # a table operation in the daemon's log (docs/LOGS.md)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    timeout = 120

    def do_GET(self) -> None:  # noqa: N802
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, ns: str, name: str) -> None:
        self.name = name
        with entered(ns):
            super().__init__(("0.0.0.0", 80), _Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()


@dataclass
class Director:
    ns: dict[str, str]
    tmp: Path
    daemon: daemons.Daemon | None = None

    @property
    def state(self) -> str:
        return str(self.tmp / "state")

    @property
    def log_path(self) -> Path:
        return self.tmp / "daemon.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ipvsadm(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(["ip", "netns", "exec", self.ns["director"], "ipvsadm", *args], input=stdin,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"ipvsadm {' '.join(args)}: {done.stderr}"
        return done.stdout

    def saved(self) -> list[str]:
        """The kernel table as `ipvsadm -Sn` lines (read by ipvsadm, parsed back to check the format)."""
        text = self.ipvsadm("-Sn")
        parse_save(text)  # well-formed, as the adapter's reader understands it
        return sorted(line.strip() for line in text.splitlines() if line.strip())

    def status(self) -> dict[str, Any]:
        return ask(self.state, {"cmd": "status"}, timeout_s=10)

    def wait(self, what: str, predicate: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            if self.daemon is not None and not self.daemon.running():
                raise AssertionError(f"the daemon exited ({self.daemon.returncode}) waiting for {what}\n{self.log()}")
            try:
                last = predicate()
                if last:
                    return
            except (OSError, ValueError, KeyError) as e:
                last = e
            time.sleep(0.2)
        raise AssertionError(f"timed out ({timeout_s} s) waiting for {what} (last: {last!r})\n"
                             f"--- table\n{self.ipvsadm('-Ln')}--- daemon log\n{self.log()[-4000:]}")


class Connection:
    """One keep-alive HTTP connection from the client namespace through the VIP."""

    def __init__(self, ns: str) -> None:
        self.conn = http.client.HTTPConnection(VIP, 80, timeout=10)
        with entered(ns):
            self.conn.connect()
        assert self.conn.sock is not None
        self.port: int = self.conn.sock.getsockname()[1]

    def get(self) -> str:
        self.conn.request("GET", "/")
        resp = self.conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200 and not resp.will_close, (resp.status, body)
        return body


def conn_entries(director: Director) -> list[str]:
    """The IPVS connection entries (`ipvsadm -Lnc`) of the client's connections to the VIP."""
    return [line for line in director.ipvsadm("-Lnc").splitlines() if f"{CLIENT}:" in line and f"{VIP}:80" in line]


def service_conns(director: Director) -> int:
    """The service's total connection counter (`ipvsadm -Ln --stats`): back to 0 if it was re-added."""
    for line in director.ipvsadm("-Ln", "--stats", "-t", f"{VIP}:80").splitlines():
        fields = line.split()
        if fields[:2] == ["TCP", f"{VIP}:80"]:
            return int(fields[2])
    raise AssertionError("no service line in ipvsadm -Ln --stats")


@pytest.fixture(scope="module")
def director() -> Iterator[Director]:
    netns.require()
    assert Path("/proc/net/ip_vs").exists(), "ip_vs is not loaded in this kernel"
    t0 = time.monotonic()
    prefix = netns.new_prefix()  # netns.sweep() knows it
    ns = {name: prefix + name for name in ("client", "director", *SERVERS)}
    servers: list[_Server] = []
    lab = Director(ns, Path(tempfile.mkdtemp(prefix="shoal-adopt-")))
    try:
        d = ns["director"]
        netns.batch(None, [f"netns add {n}" for n in ns.values()]
                    + [f"link add eth0 netns {ns['client']} type veth peer name eth0 netns {d}"]
                    + [f"link add eth0 netns {ns[rs]} type veth peer name v{rs} netns {d}" for rs in SERVERS],
                    timeout_s=60)
        netns.batch(ns["client"], ["link set lo up", "link set eth0 up", f"addr add {CLIENT}/24 dev eth0"],
                    timeout_s=60)
        netns.batch(d, ["link set lo up", "link set eth0 up", "addr add 10.60.0.1/24 dev eth0",
                        f"addr add {VIP}/32 dev eth0 label eth0:1",
                        "link add br1 type bridge forward_delay 0", "link set br1 up", "addr add 10.61.0.1/24 dev br1"]
                    + [line for rs in SERVERS for line in (f"link set v{rs} master br1", f"link set v{rs} up")],
                    timeout_s=60)
        for rs, address in SERVERS.items():
            netns.batch(ns[rs], ["link set lo up", "link set eth0 up", f"addr add {address}/24 dev eth0",
                                 "route add default via 10.61.0.1"], timeout_s=60)
            servers.append(_Server(ns[rs], rs))
        netns.write_sysctl(d, "net.ipv4.ip_forward", "1")
        lab.ipvsadm("-R", stdin="\n".join(DESIRED) + "\n")
        (lab.tmp / "lvs.cf").write_text(CONFIG)
        print(f"namespaces, servers and table ready in {time.monotonic() - t0:.1f} s")
        yield lab
    finally:
        if lab.daemon is not None:
            lab.daemon.stop(grace_s=60)  # it gives the VIP up and empties its table; TCG is slow
        for server in servers:
            server.shutdown()
            server.server_close()
        netns.batch(None, [f"netns del {n}" for n in ns.values() if os.path.exists(f"/run/netns/{n}")],
                    timeout_s=60)  # and their tables


def start_daemon(lab: Director) -> None:
    lab.daemon = daemons.start(lab.ns["director"], lab.tmp / "lvs.cf", lab.state, lab.log_path, "ipvs",
                               name="director")


def test_daemon_adopts_the_table_without_flushing(director: Director) -> None:
    lab = director
    assert lab.saved() == sorted(DESIRED)
    conn = Connection(lab.ns["client"])
    first = conn.get()
    assert first in SERVERS
    entries = conn_entries(lab)
    mine = [e for e in entries if f"{CLIENT}:{conn.port} " in e]
    assert len(mine) == 1 and "ESTABLISHED" in mine[0], entries
    # The kernel folds its per-CPU counters into these every 2 s (the rate estimator).
    lab.wait("the connection counted", lambda: service_conns(lab) >= 1, timeout_s=20)
    conns_before = service_conns(lab)
    t0 = time.monotonic()

    start_daemon(lab)
    lab.wait("the daemon active", lambda: lab.status()["role"] == "active", timeout_s=DAEMON_START_S)
    print(f"daemon active {time.monotonic() - t0:.1f} s after its start")
    lab.wait("both servers checked up", lambda: all(
        s["health"] == "up" and s["checks_ok"] >= 1 for s in lab.status()["services"][0]["servers"]), timeout_s=30)

    # The connection still works, to the same server, on the same IPVS entry.
    assert conn.get() == first
    after = [e for e in conn_entries(lab) if f"{CLIENT}:{conn.port} " in e]
    assert len(after) == 1 and "ESTABLISHED" in after[0], after
    assert after[0].split()[-1] == mine[0].split()[-1], (mine, after)  # same real server
    # Nothing was deleted and re-added: the table is the same, its counter kept counting.
    assert lab.saved() == sorted(DESIRED)
    assert service_conns(lab) >= conns_before
    log = lab.log()
    assert "1 service(s) in the kernel adopted" in log, log
    assert not TABLE_OP_LOG.search(log), f"the daemon changed an adopted table that was right:\n{log}"
    # Read back on schedule, the adopted table is what the daemon believes it applied: no drift.
    lab.wait("two table checks", lambda: lab.status()["table"]["checks"] >= 2, timeout_s=30)
    assert lab.status()["table"]["drift"]["count"] == 0
    assert "drift" not in lab.log()
    conn.conn.close()


def test_drift_is_reported_and_put_back(director: Director) -> None:
    lab = director
    if lab.daemon is None or not lab.daemon.running():
        start_daemon(lab)  # this test alone: its own daemon
        lab.wait("the daemon active", lambda: lab.status()["role"] == "active", timeout_s=DAEMON_START_S)
    lab.wait("the table checked at least once", lambda: lab.status()["table"]["checks"] >= 1, timeout_s=20)
    before = lab.status()["table"]["drift"]["count"]

    t0 = time.monotonic()
    lab.ipvsadm("-R", stdin="\n".join(TAMPER) + "\n")  # (reading it back would race the next check)
    lab.wait("drift in the status", lambda: lab.status()["table"]["drift"]["count"] > before, timeout_s=30)
    lab.wait("the kernel table put back", lambda: lab.saved() == sorted(DESIRED), timeout_s=30)
    print(f"table put back {time.monotonic() - t0:.1f} s after the change (checks every {CHECK_INTERVAL_S} s)")

    done = subprocess.run([sys.executable, "-m", "shoal", "status", "--json", "--state-dir", lab.state],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)["table"]
    drift = table["drift"]
    assert table["check_interval"] == CHECK_INTERVAL_S
    assert drift["count"] >= before + 1 and drift["last_ms"] is not None
    # Each drift's reconciling operations; the tampering may span two checks, so look at all of them.
    lines = [line for line in lab.log().splitlines() if "table: drift: kernel table differs" in line]
    assert len(lines) == drift["count"], lines  # one log line per drift
    seen = set(drift["ops"]) | {op.strip() for line in lines for op in line.split("operation(s): ", 1)[1].split(";")}
    assert RECONCILE <= seen, (drift, lines)
    conn = Connection(lab.ns["client"])  # and it still serves
    assert conn.get() in SERVERS
    conn.conn.close()
