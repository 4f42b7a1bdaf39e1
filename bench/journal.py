"""What the journal costs (issue 12: under 5% of the daemon's CPU at 1,000
checks a second), measured two ways:

    .venv/bin/python bench/journal.py [--servers 1000] [--seconds 20] [--only step|daemon]

- `step`: the daemon's step path in-process: one engine with SERVERS real
  servers checked every second (1,000 checks a second), fed what a daemon
  feeds it (check results, the partner's heartbeats, ticks) for SECONDS of
  engine time as fast as it goes, with and without `Journal.step` after
  each step (the journal's writer thread included: process CPU time).
  Prints the CPU per step both ways and the journal's share of the step path.
- `daemon` (root): two real `shoal run` daemons (dry-run dataplane) at
  once, each in a namespace of its own, each making SERVERS tcp checks a
  second against real addresses in a third namespace, one with
  `--journal-size 0` and one with the default journal (swapped every
  round, four rounds); their CPU time (/proc/PID/stat) over the same
  SECONDS, so that the host's other load weighs on both alike.  Prints
  both daemons' CPU and the journal's share.
"""

from __future__ import annotations

import argparse
import heapq
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.journal import DEFAULT_MB, DIRECTORY, Journal  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.events import CheckCompleted, HeartbeatReceived, Input, StartCheck, TableRead, Tick  # noqa: E402
from engine.model import Config, Server, Virtual  # noqa: E402
from engine.wire import Heartbeat, encode  # noqa: E402


def config_of(servers: int) -> Config:
    per = 10
    virtuals = tuple(Virtual(name=f"v{v}", address=f"10.0.{v // 250}.{v % 250 + 1}", device="eth0:1", port=80,
                             timeout_ms=1000, check="tcp",
                             servers=tuple(Server(name=f"s{s}", address=f"10.1.{v}.{s + 1}") for s in range(per)))
                     for v in range(servers // per))
    return Config(primary="192.168.0.1", backup="192.168.0.2", backup_active=True, keepalive_ms=1000,
                  virtuals=virtuals)


def run_steps(config: Config, seconds: int, journal: Journal | None) -> tuple[int, float]:
    """Drive one engine for `seconds` of engine time; (steps, CPU seconds)."""
    engine = Engine(config, "primary", seq_start=1)
    pending: list[tuple[int, int, Input]] = []  # (when, order, input): check results and heartbeats
    counts = {"steps": 0, "checks": 0, "order": 0}
    deadline: list[int | None] = [None]
    started = time.process_time()

    def step(t: int, event: Input) -> None:
        ready = engine.step(t, event)
        counts["steps"] += 1
        deadline[0] = ready.next_deadline_ms
        if journal is not None:
            journal.step(t, event, ready)
        for c in ready.commands:
            if isinstance(c, StartCheck):
                counts["checks"] += 1
                ok = counts["checks"] % 50 != 0  # one check in fifty fails
                later(t + 3, CheckCompleted(c.check_id, ok, "connected" if ok else "connection refused"))

    def later(t: int, event: Input) -> None:
        counts["order"] += 1
        heapq.heappush(pending, (t, counts["order"], event))

    for seq in range(1, seconds + 1):  # the partner's heartbeat, each keepalive
        later(seq * 1000 - 500, HeartbeatReceived("public", "192.168.0.2",
                                                  encode(Heartbeat("shoal", "standby", "backup", seq, seq, 0))))
    step(0, TableRead({}))
    while True:
        wake = deadline[0]
        if pending and (wake is None or pending[0][0] < wake):
            now, _, event = heapq.heappop(pending)
        elif wake is not None:
            now, event = wake, Tick()
        else:
            break
        if now > seconds * 1000:
            break
        step(now, event)
    if journal is not None:
        journal.close()
    return counts["steps"], time.process_time() - started


def bench_steps(servers: int, seconds: int) -> None:
    config = config_of(servers)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for label in ("without", "with", "without", "with"):
            journal = Journal(Path(tmp) / label, int(DEFAULT_MB * 1_000_000)) if label == "with" else None
            steps, cpu = run_steps(config, seconds, journal)
            rows.append((label, steps, cpu))
            extra = ""
            if journal is not None:
                c = journal.counters
                extra = f", {c['bytes'] / steps:.0f} bytes a step, {c['rotations']} rotation(s), {c['lost']} lost"
            print(f"step path {label:7} journal: {steps} steps in {cpu:.2f} s CPU: {cpu / steps * 1e6:.1f} us a step"
                  f"{extra}")
    base = min(cpu / steps for label, steps, cpu in rows if label == "without")
    journaled = min(cpu / steps for label, steps, cpu in rows if label == "with")
    steps_per_s = rows[0][1] / seconds
    print(f"step path: the journal adds {(journaled - base) * 1e6:.1f} us a step, "
          f"{(journaled - base) / journaled * 100:.1f}% of the journaled step path; at {steps_per_s:.0f} steps a "
          f"second ({servers} checks a second) that is {steps_per_s * (journaled - base) * 100:.2f}% of a core")


# ---------------------------------------------------------------- a real daemon


def daemon_config(servers: int, router: str) -> str:
    lines = ["serial_no = 1", f"primary = {router}", "backup_active = 0", "network = direct", "keepalive = 1",
             "virtual web {", "    address = 10.60.9.100 eth0:1", "    port = 80", "    check = tcp",
             "    timeout = 1", "    reentry = 1"]
    for i in range(servers):
        lines += [f"    server s{i} {{", f"        address = {_server_address(i)}", "    }"]
    return "\n".join(lines + ["}", ""])


def _server_address(i: int) -> str:
    return f"10.61.{i // 200}.{i % 200 + 10}"


LISTENER = """
import asyncio
async def handle(r, w):
    w.close()
async def main():
    s = await asyncio.start_server(handle, "0.0.0.0", 80, backlog=4096)
    async with s: await s.serve_forever()
asyncio.run(main())
"""


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_daemon(servers: int, seconds: int, rounds: int = 4) -> None:
    """Two daemons at once, one journaling and one not, each checking SERVERS
    addresses a second (the same listener): measured over the same windows, so
    the host's other load weighs on both alike; the roles swap every round."""
    from adapters import netns
    from adapters.lab import daemons

    netns.require()
    tmp = Path(tempfile.mkdtemp(prefix="shoal-bench-journal-"))
    shares: dict[str, list[float]] = {"0": [], str(DEFAULT_MB): []}
    try:
        (tmp / "listener.py").write_text(LISTENER)
        with netns.Topology() as topo:
            rs = topo.namespace("s")
            routers = []
            for n in range(2):
                router = topo.namespace(f"r{n}")
                topo.veth(router, "eth0", rs, f"to{n}")
                topo.address(router, "eth0", f"10.60.{n}.1/24")
                topo.address(rs, f"to{n}", f"10.60.{n}.2/24")
                netns.ip("-n", router, "route", "add", "10.61.0.0/16", "via", f"10.60.{n}.2")
                (tmp / f"lvs{n}.cf").write_text(daemon_config(servers, f"10.60.{n}.1"))
                routers.append(router)
            netns.batch(rs, [f"address add {_server_address(i)}/32 dev lo" for i in range(servers)])
            topo.spawn(rs, [sys.executable, str(tmp / "listener.py")])
            for round_ in range(rounds):
                sizes = ("0", str(DEFAULT_MB)) if round_ % 2 == 0 else (str(DEFAULT_MB), "0")
                started = [daemons.start(routers[n], tmp / f"lvs{n}.cf", tmp / f"state{round_}-{n}",
                                         tmp / f"daemon{round_}-{n}.log", dataplane="dry-run",
                                         args=["--journal-size", sizes[n]]) for n in range(2)]
                try:
                    daemons.wait_ready(started, timeout_s=120)
                    time.sleep(3)  # every server's first checks done: the steady state
                    ups = [sum(s["health"] == "up" for s in d.status()["services"][0]["servers"]) for d in started]
                    cpu0, wall0 = [_cpu_s(d.pid) for d in started], time.monotonic()
                    time.sleep(seconds)
                    wall = time.monotonic() - wall0
                    cpu = [_cpu_s(d.pid) - c for d, c in zip(started, cpu0)]
                finally:
                    daemons.stop_all(started)
                for n in range(2):
                    shares[sizes[n]].append(cpu[n] / wall)
                    print(f"round {round_ + 1}, router {n}, --journal-size {sizes[n]:>3}: {ups[n]}/{servers} servers "
                          f"up, CPU {cpu[n] / wall * 100:.1f}% of a core over {wall:.0f} s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    off = sum(shares["0"]) / len(shares["0"])
    on = sum(shares[str(DEFAULT_MB)]) / len(shares[str(DEFAULT_MB)])
    print(f"daemon: without the journal {off * 100:.1f}% of a core, with it {on * 100:.1f}%: the journal costs "
          f"{(on - off) * 100:.2f}% of a core, {(on - off) / on * 100:.1f}% of the daemon's CPU "
          f"({servers} checks a second, {rounds} rounds of {seconds} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=1000, help="real servers, each checked every second")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--only", choices=("step", "daemon"))
    args = parser.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPU(s)")
    if args.only != "daemon":
        bench_steps(args.servers, args.seconds)
    if args.only != "step":
        bench_daemon(args.servers, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
