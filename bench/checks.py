"""Health checks at scale (issue 13): one daemon checking 1,000, 5,000 and
10,000 real servers every second, TCP and HTTP; checks a second achieved,
how late they start, CPU per check.

    .venv/bin/python bench/checks.py [--servers 1000,5000,10000] [--kinds tcp,http] [--seconds 20]
                                     [--impl shoal,keepalived] [--checkout DIR ...] [--dataplane dry-run|ipvs]
                                     [--json]

Root (namespaces).  Per size and kind, a fresh world: the router's
namespace and the servers' joined by a veth (10.60.0.1 <-> 10.60.0.2); the
real servers are SERVERS addresses 10.61.x.y/32 on the servers' `lo`, the
router routes 10.61.0.0/16 over the veth.  One listener process (this file,
`--serve`) holds one listening socket on 0.0.0.0:80 and answers every
address (a check's connect is a real TCP handshake over the veth): `tcp`
accepts and closes, `http` reads the request and answers `HTTP/1.0 200 OK`.

The checker under test runs in the router's namespace:

- `shoal`: one `shoal run` daemon (`--dataplane`, dry-run by default: the
  host has no IPVS; `ipvs` in the kernel guest), its config 100 virtuals
  (fewer below 1,000 servers) sharing the servers out, `check = tcp` or
  `http`, `timeout = 1` (so a check every second), `reentry = 0`, the
  journal as shipped.  `--checkout DIR` (repeatable) runs the daemon of
  another tree of shoal (e.g. a `git archive` of an older commit) in the
  same world, one after the other, for a before/after in one run.
- `keepalived` (where it can program IPVS: the kernel guest): keepalived's
  checker process, the same servers as `real_server`s of 100
  `virtual_server`s, `delay_loop 1`, `TCP_CHECK` or `HTTP_GET` (status 200),
  `connect_timeout 1`, NAT.

After a warm-up (`--warmup` s: every server checked, the first round's burst
passed), the listener's counters are reset and, over `--seconds` s:

- checks a second: connections the listener accepted, a second (and, for
  shoal, check results the daemon counted: `checks_ok + checks_failed` of
  its status, before and after);
- lateness: per address, the gap between two checks' arrivals minus the
  interval (1 s): how late each check came against the time it was due
  (the engine schedules a check's next round from the step that started
  it, so the gap's excess is that check's own lateness); p50, p99, max,
  with the listener's own delay in accepting included;
- CPU per check: the checker process's utime + stime (/proc/PID/stat; for
  keepalived its checker child) over the window, over the checks accepted;
  and its share of a core;
- shoal's own view: its loop's lateness (`shoal status`), its checker's
  start delay, in-flight peak and drops.

The load average is printed with every row; the host is shared.  Prints
figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
INTERVAL_S = 1.0
PORT = 80
ROUTER_ADDRESS, SERVERS_ADDRESS = "10.60.0.1", "10.60.0.2"
HTTP_ANSWER = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"


def server_address(i: int) -> str:
    return f"10.61.{i // 250}.{i % 250 + 1}"


# ---------------------------------------------------------------- the listener (`--serve`)


def serve(kind: str, stats_path: str) -> None:
    """One epoll loop, one listening socket for every address.  SIGUSR1:
    counters reset; SIGUSR2: counters written to `stats_path` (JSON)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", PORT))
    listener.listen(65535)
    listener.setblocking(False)
    poll = select.epoll()
    poll.register(listener.fileno(), select.EPOLLIN)
    open_: dict[int, tuple[socket.socket, bytearray]] = {}
    last: dict[str, float] = {}
    late_ms: dict[int, int] = {}  # lateness in whole ms (gap - interval, floor) -> arrivals
    counts = {"accepted": 0, "since": time.monotonic()}

    def reset(*_: Any) -> None:
        last.clear()
        late_ms.clear()
        counts.update(accepted=0, since=time.monotonic())

    def dump(*_: Any) -> None:
        data = {"accepted": counts["accepted"], "seconds": time.monotonic() - counts["since"],
                "addresses": len(last), "late_ms": sorted(late_ms.items())}
        Path(stats_path + ".tmp").write_text(json.dumps(data))
        os.replace(stats_path + ".tmp", stats_path)

    signal.signal(signal.SIGUSR1, reset)
    signal.signal(signal.SIGUSR2, dump)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    lfd = listener.fileno()
    while True:
        for fd, _ in poll.poll():
            if fd == lfd:
                while True:
                    try:
                        conn, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break  # EMFILE and the like: try again on the next wake-up
                    now = time.monotonic()
                    address = conn.getsockname()[0]
                    before = last.get(address)
                    last[address] = now
                    counts["accepted"] += 1
                    if before is not None:
                        bucket = int((now - before - INTERVAL_S) * 1000 // 1)
                        late_ms[bucket] = late_ms.get(bucket, 0) + 1
                    if kind == "tcp":
                        conn.close()
                        continue
                    conn.setblocking(False)
                    open_[conn.fileno()] = (conn, bytearray())
                    poll.register(conn.fileno(), select.EPOLLIN)
                continue
            conn, got = open_[fd]
            try:
                chunk = conn.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            got += chunk
            if chunk and b"\r\n\r\n" not in got:
                continue
            poll.unregister(fd)
            del open_[fd]
            if chunk:
                try:
                    conn.send(HTTP_ANSWER)
                except OSError:
                    pass
            conn.close()


def percentiles(late_ms: list[tuple[int, int]]) -> dict[str, float]:
    """p50, p99, max of a histogram of whole ms (each bucket's floor)."""
    total = sum(n for _, n in late_ms)
    if not total:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    out: dict[str, float] = {"n": total, "max": late_ms[-1][0]}
    for name, q in (("p50", 0.50), ("p99", 0.99)):
        seen, want = 0, q * total
        for bucket, n in late_ms:
            seen += n
            if seen >= want:
                out[name] = bucket
                break
    return out


# ---------------------------------------------------------------- configs


def virtual_count(servers: int) -> int:
    return 100 if servers >= 1000 else max(1, servers // 10)


def groups(servers: int) -> list[list[int]]:
    v = virtual_count(servers)
    return [list(range(k, servers, v)) for k in range(v)]


def shoal_config(servers: int, kind: str) -> str:
    lines = ["serial_no = 1", f"primary = {ROUTER_ADDRESS}", "backup_active = 0", "network = direct",
             "keepalive = 1", "table_check_interval = 0"]
    for k, members in enumerate(groups(servers)):
        lines += [f"virtual v{k} {{", f"    address = 10.60.9.{k + 1} eth0:{k + 1}", f"    port = {PORT}",
                  f"    check = {kind}", "    timeout = 1", "    reentry = 0"]
        for i in members:
            lines += [f"    server s{i} {{", f"        address = {server_address(i)}", "    }"]
        lines.append("}")
    return "\n".join(lines + [""])


def keepalived_config(servers: int, kind: str) -> str:
    check = ("        TCP_CHECK {\n            connect_timeout 1\n        }" if kind == "tcp" else
             "        HTTP_GET {\n            url {\n                path /\n                status_code 200\n"
             "            }\n            connect_timeout 1\n        }")
    lines = ["global_defs {", "    router_id shoal_bench", "}"]
    for k, members in enumerate(groups(servers)):
        lines += [f"virtual_server 10.60.9.{k + 1} {PORT} {{", "    delay_loop 1", "    lb_algo wlc",
                  "    lb_kind NAT", "    protocol TCP"]
        for i in members:
            lines += [f"    real_server {server_address(i)} {PORT} {{", "        weight 1", check, "    }"]
        lines.append("}")
    return "\n".join(lines + [""])


# ---------------------------------------------------------------- the world


def cpu_s(pid: int, part: str = "both") -> float:
    """A process's CPU seconds so far: utime + stime (`part`: "user", "system")."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    user, system = int(fields[11]), int(fields[12])
    ticks = {"both": user + system, "user": user, "system": system}[part]
    return ticks / os.sysconf("SC_CLK_TCK")


def idle_s() -> float:
    """The machine's idle CPU seconds so far, all CPUs (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class World:
    """Two namespaces, SERVERS addresses and the listener; all removed on close."""

    def __init__(self, servers: int, kind: str, tmp: Path) -> None:
        from adapters import netns

        self.servers, self.kind, self.tmp = servers, kind, tmp
        self.topo = netns.Topology()
        self.router = self.topo.namespace("r")
        self.rs = self.topo.namespace("s")
        self.topo.veth(self.router, "eth0", self.rs, "eth0")
        self.topo.address(self.router, "eth0", f"{ROUTER_ADDRESS}/24")
        self.topo.address(self.rs, "eth0", f"{SERVERS_ADDRESS}/24")
        netns.ip("-n", self.router, "route", "add", "10.61.0.0/16", "via", SERVERS_ADDRESS)
        netns.batch(self.rs, [f"address add {server_address(i)}/32 dev lo" for i in range(servers)])
        for ns in (self.router, self.rs):  # 10,000 connections a second leave many sockets in TIME_WAIT
            self.topo.sysctl(ns, "net.ipv4.ip_local_port_range", "1024 65535")
            self.topo.sysctl(ns, "net.ipv4.tcp_tw_reuse", "1")
        self.stats = tmp / "listener.json"
        self.listener = self.topo.spawn(self.rs, [sys.executable, str(Path(__file__).resolve()), "--serve", kind,
                                                  "--stats", str(self.stats)])
        time.sleep(0.5)

    def reset(self) -> None:
        os.kill(self.listener.pid, signal.SIGUSR1)

    def read(self) -> dict[str, Any]:
        self.stats.unlink(missing_ok=True)
        os.kill(self.listener.pid, signal.SIGUSR2)
        for _ in range(500):
            if self.stats.exists():
                return dict(json.loads(self.stats.read_text()))
            time.sleep(0.01)
        raise RuntimeError("the listener did not write its counters")

    def close(self) -> None:
        self.topo.close()


# ---------------------------------------------------------------- the checkers


class Shoal:
    name = "shoal"

    def __init__(self, world: World, checkout: Path, dataplane: str, tag: str, profile: str | None = None) -> None:
        from adapters.lab.daemons import Daemon

        self.world, self.tag = world, tag
        tmp = world.tmp / f"shoal-{tag}"
        tmp.mkdir()
        config = tmp / "lvs.cf"
        config.write_text(shoal_config(world.servers, world.kind))
        env = dict(os.environ, PYTHONPATH=str(checkout), PYTHONUNBUFFERED="1")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(world.tmp.parent / f"pycache-{tag}")
        log = tmp / "daemon.log"
        with open(log, "ab") as out:
            profiled = ["-m", "cProfile", "-o", f"{profile}/shoal-{tag}-{world.servers}-{world.kind}.prof"] if profile else []
            proc = subprocess.Popen(["ip", "netns", "exec", world.router, sys.executable, *profiled, "-m", "shoal", "run",
                                     "-c", str(config), "--dataplane", dataplane, "--state-dir", str(tmp / "state")],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=checkout,
                                    env=env, start_new_session=True)
        self.daemon = Daemon(f"shoal {tag}", proc, tmp / "state", log)
        self.pid = proc.pid
        self.ready_s = self.daemon.wait_ready(timeout_s=300)

    def counted(self) -> tuple[int, int, dict[str, Any]]:
        """(checks done, servers up, the status's loop/checker parts)."""
        status = self.daemon.status(timeout_s=30)
        done = up = 0
        for service in status["services"]:
            for s in service["servers"]:
                done += s["checks_ok"] + s["checks_failed"]
                up += s["health"] == "up"
        return done, up, {"loop": status.get("loop", {}), "checker": status.get("checker"),
                          "ready_s": round(self.ready_s, 1)}

    def close(self) -> None:
        self.daemon.stop()


class Keepalived:
    name = "keepalived"

    def __init__(self, world: World, tag: str) -> None:
        tmp = world.tmp / f"keepalived-{tag}"
        tmp.mkdir()
        config = tmp / "keepalived.conf"
        config.write_text(keepalived_config(world.servers, world.kind))
        self.log = tmp / "keepalived.log"
        pids = [tmp / n for n in ("keepalived.pid", "vrrp.pid", "checkers.pid")]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(["ip", "netns", "exec", world.router, "keepalived", "-n", "-l", "-C",
                                          "-f", str(config), "-p", str(pids[0]), "-r", str(pids[1]), "-c", str(pids[2])],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        end = time.monotonic() + 300
        while not pids[2].exists() or not pids[2].read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"keepalived did not start its checker:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        self.pid = int(pids[2].read_text().split()[0])  # the checker child: what does the checking
        time.sleep(1)
        if not Path(f"/proc/{self.pid}").exists():  # e.g. no IPVS in this kernel: it gives up
            self.close()
            raise RuntimeError(f"keepalived's checker exited:\n{self.log.read_text()[-1500:]}")

    def counted(self) -> tuple[int, int, dict[str, Any]]:
        return 0, 0, {}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


# ---------------------------------------------------------------- one measurement


def measure(checker: Any, world: World, warmup_s: float, seconds: float) -> dict[str, Any]:
    time.sleep(warmup_s)
    done0, _, _ = checker.counted()
    world.reset()
    cpu0, wall0, idle0, served0 = cpu_s(checker.pid), time.monotonic(), idle_s(), cpu_s(world.listener.pid)
    system0 = cpu_s(checker.pid, "system")
    time.sleep(seconds)
    cpu1, wall1, idle1, served1 = cpu_s(checker.pid), time.monotonic(), idle_s(), cpu_s(world.listener.pid)
    system1 = cpu_s(checker.pid, "system")
    stats = world.read()
    done1, up, extra = checker.counted()
    wall = wall1 - wall0
    accepted = stats["accepted"]
    row = {
        "impl": checker.name, "servers": world.servers, "kind": world.kind, "seconds": round(wall, 1),
        "accepted_per_s": round(accepted / stats["seconds"], 1),
        "results_per_s": round((done1 - done0) / wall, 1) if checker.name == "shoal" else None,
        "addresses_seen": stats["addresses"], "up": up if checker.name == "shoal" else None,
        "lateness_ms": percentiles([(int(b), int(n)) for b, n in stats["late_ms"]]),
        "cpu_share": round((cpu1 - cpu0) / wall, 3),
        "cpu_us_per_check": round((cpu1 - cpu0) / max(accepted, 1) * 1e6, 1),
        "system_us_per_check": round((system1 - system0) / max(accepted, 1) * 1e6, 1),
        "listener_cpu_share": round((served1 - served0) / wall, 3),
        "idle_cpus": round((idle1 - idle0) / wall, 2),
        "load": load(), "extra": extra,
    }
    return row


def show(row: dict[str, Any], label: str) -> None:
    lat = row["lateness_ms"]
    results = f", {row['results_per_s']:.0f} results/s" if row["results_per_s"] is not None else ""
    up = f", {row['up']} up" if row["up"] is not None else ""
    loop = row["extra"].get("loop", {})
    checker = row["extra"].get("checker")
    print(f"{label:22} {row['servers']:>6} {row['kind']:4}: {row['accepted_per_s']:8.0f} checks/s{results}{up}, "
          f"{row['addresses_seen']} addresses; lateness p50 {lat['p50']} ms p99 {lat['p99']} ms max {lat['max']} ms; "
          f"CPU {row['cpu_share'] * 100:.0f}% of a core, {row['cpu_us_per_check']:.1f} us/check "
          f"({row['system_us_per_check']:.1f} system); "
          f"(listener {row['listener_cpu_share'] * 100:.0f}%, idle {row['idle_cpus']:.2f} CPUs); load {row['load']}",
          flush=True)
    if loop:
        print(f"{'':22}   control socket ready {row['extra']['ready_s']} s after exec; loop lateness "
              f"{loop.get('lateness_ms')}, drops "
              f"{ {k: v for k, v in loop.get('drops', {}).items() if v} }"
              + (f", checker {checker}" if checker else ""), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", choices=("tcp", "http"), help=argparse.SUPPRESS)
    parser.add_argument("--stats", help=argparse.SUPPRESS)
    parser.add_argument("--servers", default="1000,5000,10000")
    parser.add_argument("--kinds", default="tcp,http")
    parser.add_argument("--impl", default="shoal", help="shoal, keepalived or both (comma-separated)")
    parser.add_argument("--checkout", action="append", default=[], help="another tree's shoal, run after this one's")
    parser.add_argument("--dataplane", default="dry-run", choices=("dry-run", "ipvs", "nft"))
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", metavar="DIR", help="run shoal's daemon under cProfile, its stats written to DIR")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.stats)
        return 0
    sys.path.insert(0, str(ROOT))
    from adapters import netns

    netns.require()
    rows = []
    impls = args.impl.split(",")
    trees = [("this", ROOT)] + [(Path(c).name, Path(c).resolve()) for c in args.checkout]
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load average {load()}, {os.cpu_count()} CPU(s)",
          flush=True)
    tmp_root = Path(tempfile.mkdtemp(prefix="shoal-bench-checks-"))
    try:
        for servers in (int(s) for s in args.servers.split(",")):
            for kind in args.kinds.split(","):
                tmp = tmp_root / f"{servers}-{kind}"
                tmp.mkdir()
                world = World(servers, kind, tmp)
                try:
                    runs: list[tuple[str, Any]] = []
                    if "shoal" in impls:
                        runs += [(f"shoal ({tag})" if len(trees) > 1 else "shoal", (tag, tree)) for tag, tree in trees]
                    if "keepalived" in impls:
                        runs.append(("keepalived", None))
                    for label, what in runs:
                        try:
                            checker: Any = (Keepalived(world, "k") if what is None else
                                            Shoal(world, what[1], args.dataplane, what[0], args.profile))
                        except Exception as e:
                            print(f"{label}: did not start: {e}", flush=True)
                            continue
                        try:
                            row = measure(checker, world, args.warmup, args.seconds)
                        finally:
                            checker.close()
                        row["label"] = label
                        rows.append(row)
                        show(row, label)
                        time.sleep(1)  # TIME_WAIT and the listener settle between two checkers
                finally:
                    world.close()
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
