"""`shoal run` for real: two daemons in namespaces with the nft dataplane,
a real server, a client (tests/adapters/pairlab.py).  Few tests, each deep
(issue 4).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from adapters.control import ask
from tests.adapters.pairlab import CONFIG, Lab


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
    refusal = "refused, the running configuration (serial_no 1) kept"
    lab.wait("the refusal logged", lambda: refusal in lab.log("primary"))
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


# ---------------------------------------------------------------- the loop's parts, without namespaces


def test_heartbeats_are_served_first_and_both_queues_are_bounded() -> None:
    from adapters.inputs import HEARTBEAT_BURST, Inputs
    from engine.events import HeartbeatReceived, Tick

    async def main() -> tuple[list[str], dict[str, int]]:
        inputs = Inputs(heartbeat_bound=40, bound=2)
        for i in range(50):
            inputs.heartbeat(HeartbeatReceived("public", "10.50.0.2", bytes([i])))
        for _ in range(3):
            inputs.put(Tick())
        order = []
        while (event := await inputs.get(0.01)) is not None:
            order.append("h" if isinstance(event, HeartbeatReceived) else "t")
        return order, inputs.drops

    order, drops = asyncio.run(main())
    assert order == ["h"] * HEARTBEAT_BURST + ["t"] + ["h"] * (40 - HEARTBEAT_BURST) + ["t"]
    assert drops == {"heartbeat-queue-full": 10, "input-queue-full": 1, "engine-error": 0}


def test_lateness_keeps_a_window() -> None:
    from adapters.inputs import Lateness

    late = Lateness(window=100)
    for i in range(1000):
        late.note(float(i % 100))
    assert late.summary() == {"p50": 50.0, "p99": 99.0, "max": 99.0, "samples": 100}
    assert Lateness().summary()["samples"] == 0


def test_reloads_are_coalesced() -> None:
    from adapters.reload import Reloads

    async def main() -> tuple[int, list[dict[str, Any]]]:
        runs = 0

        async def once() -> dict[str, Any]:
            nonlocal runs
            runs += 1
            mine = runs
            await asyncio.sleep(0.05)
            return {"ok": True, "detail": f"run {mine}"}

        reloads = Reloads(once)
        waiters = []
        for i in range(100):
            waiter = asyncio.get_running_loop().create_future() if i in (0, 99) else None
            reloads.request(waiter)
            if waiter is not None:
                waiters.append(waiter)
            await asyncio.sleep(0)
        answers = [await w for w in waiters]
        await asyncio.sleep(0.01)
        assert reloads.task is None
        return runs, answers

    runs, answers = asyncio.run(main())
    assert runs == 2  # the first, and exactly one more for the 99 requests made while it ran
    assert answers == [{"ok": True, "detail": "run 1"}, {"ok": True, "detail": "run 2"}]


def test_read_config_is_bounded_and_says_why(tmp_path: Path) -> None:
    from adapters.reload import MAX_CONFIG_BYTES, Refused, read_config

    def refused(path: Path, timeout_s: float = 5.0) -> Refused:
        with pytest.raises(Refused) as caught:
            asyncio.run(read_config(str(path), timeout_s))
        return caught.value

    good = tmp_path / "lvs.cf"
    good.write_text(CONFIG)
    config, key = asyncio.run(read_config(str(good)))
    assert config.serial_no == 1 and key is None
    big = tmp_path / "big.cf"
    with open(big, "wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)
    assert f"{MAX_CONFIG_BYTES + 1} bytes, more than the {MAX_CONFIG_BYTES}" in str(refused(big))
    os.mkfifo(tmp_path / "fifo")
    assert "must be a regular file" in str(refused(tmp_path / "fifo"))
    assert "No such file" in str(refused(tmp_path / "missing"))
    bad = tmp_path / "bad.cf"
    bad.write_text(CONFIG.replace("deadtime = 0.8", "deadtime = 0.1"))
    e = refused(bad)
    assert "1 error(s)" in str(e) and e.errors[0].endswith("deadtime (0.1 s) must be greater than keepalive (0.2 s)")
    slow = tmp_path / "slow.cf"
    servers = "".join(f"    server s{i} {{\n        address = 10.52.{i // 250}.{i % 250 + 1}\n    }}\n"
                      for i in range(20_000))
    slow.write_text(CONFIG.replace("    server rs1 {", servers + "    server rs1 {"))
    started = time.monotonic()
    assert "took longer than 0.05 s" in str(refused(slow, 0.05))
    assert time.monotonic() - started < 1
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # the child was reaped
    key_file = tmp_path / "key"
    key_file.write_text("  \n")
    good.write_text(CONFIG.replace("serial_no = 1", f"serial_no = 1\nheartbeat_key_file = {key_file}"))
    assert "is empty" in str(refused(good))
    key_file.write_text("s3cret\n")
    assert asyncio.run(read_config(str(good)))[1] == b"s3cret"


def test_changes_and_warnings_speak_lvs_cf() -> None:
    from adapters.reload import changes, config_warnings
    from engine.config import parse

    old = parse(CONFIG)
    new = parse(CONFIG.replace("serial_no = 1", "serial_no = 2\nheartbeat_port = 1539")
                .replace("    server rs1 {", "    server rs2 {\n        address = 10.51.0.12\n    }\n    server rs1 {"))
    assert changes(old, new) == "serial_no 1 -> 2; heartbeat_port 539 -> 1539; virtual web: server rs2 added"
    assert changes(old, old) == "nothing changed"
    assert changes(old, parse(CONFIG.replace("scheduler = rr", "scheduler = wlc"))) == "virtual web: scheduler rr -> wlc"
    other = parse(CONFIG.replace("keepalive = 0.2", "keepalive = 0.25\npreempt = 1")
                  .replace("address = 10.51.0.11", "address = 10.51.0.11\n        weight = 4"))
    assert changes(old, other) == "keepalive 0.2 -> 0.25; preempt 0 -> 1; virtual web: server rs1 weight 1 -> 4"
    assert any("heartbeats are not authenticated" in w for w in config_warnings(old))


def test_the_state_directory_is_made_safely(tmp_path: Path) -> None:
    from adapters.startup import StartError, prepare_state_dir

    prepare_state_dir(str(tmp_path / "new" / "state"))
    assert (tmp_path / "new" / "state").stat().st_mode & 0o777 == 0o700
    (tmp_path / "link").symlink_to(tmp_path / "new" / "state")
    (tmp_path / "file").write_text("")
    (tmp_path / "open").mkdir(mode=0o777)
    os.chmod(tmp_path / "open", 0o777)
    for name, why in (("link", "is a symbolic link"), ("file", "is not a directory"), ("open", "writable by others")):
        with pytest.raises(StartError, match=why):
            prepare_state_dir(str(tmp_path / name))


def test_an_input_the_engine_raises_on_is_logged_and_dropped(caplog: Any) -> None:
    from adapters.daemon import Daemon
    from engine.events import HeartbeatReceived, Tick

    class Broken:
        def step(self, now_ms: int, event: Any) -> Any:
            raise RuntimeError("a bug")

    daemon = Daemon("lvs.cf", "dry-run", "/nonexistent")
    daemon.engine = Broken()  # type: ignore[assignment]
    with caplog.at_level("ERROR", logger="shoal"):
        assert daemon._engine_step(HeartbeatReceived("public", "10.50.0.66", b"x" * 60_000)) is None
        for _ in range(100):
            daemon._engine_step(Tick())
    assert daemon.inputs.drops["engine-error"] == 101
    first = caplog.records[0].getMessage()
    assert first.startswith("dropped a heartbeat from 10.50.0.66 on the public path (60000 bytes): "
                            "the engine failed on it: RuntimeError: a bug"), first
    assert "xxxx" not in first and len(caplog.records) <= 11  # rate-limited
