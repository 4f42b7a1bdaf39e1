"""`shoal run` for real: two daemons in namespaces with the nft dataplane,
a real server, a client (tests/adapters/pairlab.py).  Few tests, each deep
(issue 4).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.control import ask
from tests.adapters.pairlab import CONFIG, Lab, make_lab


@pytest.fixture
def lab(netns_ok: None, tmp_path: Path) -> Iterator[Lab]:
    with make_lab(tmp_path) as built:
        yield built


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
    lab.wait("the refusal logged", lambda: "refused, the running configuration (serial_no 1) kept" in lab.log("primary"))
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
    nft = ["nft", "list", "ruleset"]
    lab.wait("rs1 in the kernel table", lambda: "10.51.0.11" in lab.topo.run(lab.ns["primary"], nft).stdout)
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
    assert "1 service(s) in the kernel adopted" in lab.log("primary")
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
