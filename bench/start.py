"""How fast a daemon starts (issue 13): from the exec of `shoal run` to its first heartbeat on
the wire, and to its control socket answering a status.

    .venv/bin/python bench/start.py [--runs N] [--checkout DIR ...] [--empty] [--json]

Root (namespaces).  Two namespaces joined by a veth: the router's (10.0.0.1, the primary of a
pair, the daemon's `--dataplane nft`) and its partner's (10.0.0.2), where the bench listens on
the heartbeat port with no daemon behind it: the router never hears its partner.  Before every
start the router's namespace holds what a killed daemon leaves: its nft table with one service
of three real servers, which the daemon must read and adopt before its first step (`--empty`:
nothing, a cold boot).  Then, N times:

- t0: just before the `ip netns exec ROUTER PYTHON -m shoal run -c lvs.cf --dataplane nft
  --state-dir DIR` process is started (the lab's way, `adapters/lab/daemons.py`; `ip netns exec`
  is in the figure);
- first heartbeat: the bench's socket on 10.0.0.2:539 receives the daemon's first datagram (the
  daemon sends its first heartbeat in the step that adopts the kernel table: the table is
  adopted by then);
- control: the first `{"cmd": "status"}` on the control socket answered with a role (polled
  every 2 ms from a thread);
- the daemon is then stopped (SIGTERM) and the table put back.

The daemons' python writes and reads its bytecode in a cache of the bench's own
(PYTHONPYCACHEPREFIX; PYTHONDONTWRITEBYTECODE dropped), as an installed package has it compiled:
`--no-bytecode` keeps the environment's setting (with PYTHONDONTWRITEBYTECODE=1 and no
`__pycache__`, every start compiles every module of shoal).

`--checkout DIR` (repeatable) runs the daemon from another checkout of shoal (its directory as
working directory and PYTHONPATH, this python), e.g. a `git worktree` of an older commit:
the runs alternate between the checkouts so that the machine's load falls on all of them
alike, and the medians are printed side by side.  The load average is printed before and
after.  Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters import netns  # noqa: E402
from adapters.control import ask  # noqa: E402

CONFIG = """serial_no = 1
primary = 10.0.0.1
backup = 10.0.0.2
backup_active = 1
keepalive = 1
deadtime = 3
network = nat
nat_router = 10.1.0.254 eth1:1
virtual web {
    address = 10.0.0.100 eth0:1
    port = 80
    scheduler = wlc
    timeout = 2
    server web1 {
        address = 10.1.0.11
    }
    server web2 {
        address = 10.1.0.12
    }
    server web3 {
        address = 10.1.0.13
    }
}
"""
KILLED_TABLE = """add table ip shoal
add map ip shoal svc { type ipv4_addr . inet_proto . inet_service : verdict; }
add map ip shoal fwm { type mark : verdict; }
add chain ip shoal prerouting { type nat hook prerouting priority -100; policy accept; }
add rule ip shoal prerouting ip daddr . meta l4proto . th dport vmap @svc
add rule ip shoal prerouting meta mark vmap @fwm
add chain ip shoal s_tcp_10_0_0_100_80
add set ip shoal s_tcp_10_0_0_100_80_d { type ipv4_addr . inet_service; }
add element ip shoal s_tcp_10_0_0_100_80_d { 10.1.0.11 . 80 comment "w=1 f=masq", \
10.1.0.12 . 80 comment "w=1 f=masq", 10.1.0.13 . 80 comment "w=1 f=masq" }
add rule ip shoal s_tcp_10_0_0_100_80 meta l4proto tcp dnat ip addr . port to numgen inc mod 3 \
map { 0 : 10.1.0.11 . 80, 1 : 10.1.0.12 . 80, 2 : 10.1.0.13 . 80 } comment "shoal s=wlc"
add element ip shoal svc { 10.0.0.100 . tcp . 80 : jump s_tcp_10_0_0_100_80 }
"""
PORT = 539
TIMEOUT_S = 20.0


def _median(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f} ms" if values else "      -   "


def _range(values: list[float]) -> str:
    return f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f}" if values else "-"


class Bench:
    def __init__(self, topo: netns.Topology, workdir: Path, empty: bool, bytecode: bool = True) -> None:
        self.topo, self.workdir, self.empty, self.bytecode = topo, workdir, empty, bytecode
        self.router = topo.namespace("r")
        self.partner = topo.namespace("p")
        topo.veth(self.router, "eth0", self.partner, "eth0")
        topo.veth(self.router, "eth1", self.partner, "eth1")
        topo.address(self.router, "eth0", "10.0.0.1/24")
        topo.address(self.partner, "eth0", "10.0.0.2/24")
        topo.address(self.router, "eth1", "10.1.0.253/24")
        topo.address(self.partner, "eth1", "10.1.0.11/24")
        self.config = workdir / "lvs.cf"
        self.config.write_text(CONFIG)
        with netns.entered(self.partner):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("10.0.0.2", PORT))

    def _reset(self) -> None:
        """What a killed daemon leaves (or nothing): the table, no VIP, no heartbeat queued."""
        netns.run_entered(self.router, ["nft", "flush", "ruleset"])
        for vip in ("10.0.0.100/32", "10.1.0.254/32"):
            netns.ip("-n", self.router, "addr", "del", vip, "dev", "eth0" if vip.startswith("10.0") else "eth1",
                     check=False)
        if not self.empty:
            netns.run_entered(self.router, ["nft", "-f", "-"], input=KILLED_TABLE)
        self.sock.setblocking(False)
        while True:
            try:
                self.sock.recv(2048)
            except BlockingIOError:
                break
        self.sock.setblocking(True)

    def once(self, checkout: Path) -> tuple[float | None, float | None, str]:
        """(exec -> first heartbeat, exec -> control answering) in seconds, and a problem."""
        self._reset()
        state = self.workdir / "state"
        shutil.rmtree(state, ignore_errors=True)
        log = self.workdir / "daemon.log"
        env = dict(os.environ, PYTHONPATH=str(checkout), PYTHONUNBUFFERED="1")
        if self.bytecode:  # as an installed package: compiled once (in a cache of the bench's own)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.workdir / "pycache")
        control: list[float] = []
        stop = threading.Event()

        def poll(t0: float) -> None:
            while not stop.is_set():
                try:
                    if "role" in ask(str(state), {"cmd": "status"}, 1.0):
                        control.append(time.monotonic() - t0)
                        return
                except (OSError, ValueError):
                    pass
                time.sleep(0.002)

        self.sock.settimeout(TIMEOUT_S)
        with open(log, "wb") as out:
            t0 = time.monotonic()
            proc = subprocess.Popen(["ip", "netns", "exec", self.router, sys.executable, "-m", "shoal", "run",
                                     "-c", str(self.config), "--dataplane", "nft", "--state-dir", str(state)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=checkout,
                                    env=env, start_new_session=True)
        poller = threading.Thread(target=poll, args=(t0,), daemon=True)
        poller.start()
        heartbeat: float | None = None
        problem = ""
        try:
            self.sock.recv(2048)
            heartbeat = time.monotonic() - t0
        except socket.timeout:
            problem = f"no heartbeat in {TIMEOUT_S:g} s"
        poller.join(TIMEOUT_S)
        stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.returncode not in (0, -signal.SIGTERM):
            problem += f" exit {proc.returncode}: {log.read_text(errors='replace')[-500:]}"
        return heartbeat, (control[0] if control else None), problem.strip()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--checkout", action="append", default=[], help="another checkout to run (repeatable)")
    parser.add_argument("--empty", action="store_true", help="no table to adopt (a cold boot)")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="as the environment says (PYTHONDONTWRITEBYTECODE=1: every start compiles shoal)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    netns.require()
    checkouts = [ROOT] + [Path(c).resolve() for c in args.checkout]
    load_before = os.getloadavg()
    results: dict[Path, dict[str, list[float]]] = {c: {"heartbeat": [], "control": []} for c in checkouts}
    problems: list[str] = []
    with netns.Topology() as topo, tempfile.TemporaryDirectory(prefix="shoal-start-") as tmp:
        bench = Bench(topo, Path(tmp), args.empty, not args.no_bytecode)
        try:
            for c in checkouts:  # one start each first: the page cache and .pyc files warm
                bench.once(c)
            for _ in range(args.runs):
                for c in checkouts:
                    hb, ctl, problem = bench.once(c)
                    if hb is not None:
                        results[c]["heartbeat"].append(hb)
                    if ctl is not None:
                        results[c]["control"].append(ctl)
                    if problem:
                        problems.append(f"{c}: {problem}")
        finally:
            bench.sock.close()
    load_after = os.getloadavg()
    if args.json:
        print(json.dumps({str(c): r for c, r in results.items()} | {"load": [load_before, load_after]}))
        return 0
    print(f"# exec of `shoal run` to first heartbeat / control socket answering, {args.runs} starts each, "
          f"{'empty table' if args.empty else 'adopting a table of 1 service, 3 real servers'}, dataplane nft, "
          + ("bytecode as the environment says" if args.no_bytecode else "bytecode compiled once (as installed)"))
    print(f"# load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; {os.cpu_count()} CPUs")
    print(f"{'checkout':40} {'first heartbeat':>16} {'(range)':>12} {'control answers':>16} {'(range)':>12}")
    for c, r in results.items():
        print(f"{str(c)[-40:]:40} {_median(r['heartbeat']):>16} {_range(r['heartbeat']):>12} "
              f"{_median(r['control']):>16} {_range(r['control']):>12}")
    for p in problems:
        print("problem:", p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
