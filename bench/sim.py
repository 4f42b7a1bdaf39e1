"""Simulator figures (issues 3 and 13).

1. One simulated hour of a 2-router cluster at the original's default
   timers (keepalive 2 s, deadtime 5 s, timeout 10 s, reentry 180 s),
   every invariant checked after every step, a server failure and an
   active-router crash on the way, at 1,000, 3,000 and 10,000 real servers
   (100 virtuals x 10, 30, 100) side by side: wall and CPU seconds,
   simulated seconds per wall second, and the hour's wall time (measured,
   or worked out from `--hours` when that is less than one; target: the
   hour at 10,000 servers in under 60 s).
2. The explorer: random fault schedules (sim/explore.py, 65 simulated s
   each) checked per minute (target: at least 3,000).

    .venv/bin/python bench/sim.py [--servers 10,30,100] [--virtuals 100] [--hours 1] [--schedules 200]
    .venv/bin/python bench/sim.py --root /tmp/before   # the same bench on another checkout's simulator

The machine is shared: the load average is printed before and after each
figure, and the process's CPU time beside the wall time.  `--root DIR`
imports the simulator, engine and scenario loader from another checkout
(a worktree of an older commit), so before and after run the same bench.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if "--root" in sys.argv:
    ROOT = Path(sys.argv[sys.argv.index("--root") + 1]).resolve()
sys.path.insert(0, str(ROOT))

from scenario.model import loads  # noqa: E402
from sim.explore import RandomDraw, check, generate  # noqa: E402
from sim.runner import run  # noqa: E402


def cluster(virtuals: int, servers: int, hours: float) -> str:
    lines = ["serial_no = 1", "primary = 10.0.0.1", "backup = 10.0.0.2", "primary_private = 192.168.0.1",
             "backup_private = 192.168.0.2", "backup_active = 1", "network = nat",
             "nat_router = 10.255.0.254 eth1:1"]
    for v in range(virtuals):
        lines += [f"virtual v{v} {{", f"    address = 10.0.{v // 250}.{v % 250 + 1} eth0:{v + 1}", "    port = 80",
                  "    scheduler = wlc", '    send = "GET / HTTP/1.0\\r\\n\\r\\n"', '    expect = "HTTP"']
        for s in range(servers):
            n = v * servers + s
            lines += [f"    server s{s} {{", f"        address = 10.{100 + n // 65000}.{n // 250 % 250}.{n % 250 + 1}",
                      "    }"]
        lines.append("}")
    config = "\n".join(lines) + "\n"
    duration = hours * 3600
    return f"""title = "bench: {virtuals} virtuals x {servers} servers, original default timers"
seed = 1
duration = {duration}
config = '''
{config}'''

[[fault]]
at = {duration * 0.25}
server_down = "v7/s3"

[[fault]]
at = {duration * 0.3}
server_up = "v7/s3"

[[fault]]
at = {duration * 0.5}
crash = "primary"

[[fault]]
at = {duration * 0.75}
restart = "primary"

[[expect]]
at = {duration * 0.5 + 10}
vip_owner = "backup"

[[expect]]
always = "single_owner"

[[expect]]
always = "table_matches_health"
"""


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def hour(virtuals: int, servers: int, hours: float) -> tuple[str, bool]:
    """One row of the cluster table."""
    scenario = loads(cluster(virtuals, servers, hours), "bench.toml")
    before = load()
    wall, cpu = time.perf_counter(), time.process_time()
    result = run(scenario)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    simulated = scenario.duration_ms / 1000
    row = [f"{virtuals * servers:,}", f"{virtuals} x {servers}", f"{simulated:.0f}", f"{result.steps:,}",
           f"{wall:.1f}", f"{cpu:.1f}", f"{simulated / wall:.0f}", f"{3600 * wall / simulated:.1f}",
           f"{3600 * cpu / simulated:.1f}", "all ok" if result.ok else "FAILED", f"{before} / {load()}"]
    return "| " + " | ".join(row) + " |", result.ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--virtuals", type=int, default=100)
    parser.add_argument("--servers", default="10,30,100", help="real servers per virtual, comma-separated")
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours per size")
    parser.add_argument("--schedules", type=int, default=200, help="explorer schedules (0: none)")
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose simulator is measured")
    args = parser.parse_args()

    where = Path(sys.modules[run.__module__].__file__ or "").parent
    print(f"simulator: {where}; 2 routers, default timers, a server failure and an active-router crash, "
          f"every invariant after every step")
    header = ["real servers", "virtuals x servers", "simulated s", "engine steps", "wall s", "CPU s",
              "simulated s per wall s", "the hour, wall s", "the hour, CPU s", "verdicts", "load before / after"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header), flush=True)
    ok = True
    for servers in (int(s) for s in args.servers.split(",")):
        row, fine = hour(args.virtuals, servers, args.hours)
        ok = ok and fine
        print(row, flush=True)

    if args.schedules:
        before = load()
        wall, cpu = time.perf_counter(), time.process_time()
        failing = 0
        for seed in range(1, args.schedules + 1):
            failing += not check(generate(RandomDraw(random.Random(seed)), seed)).ok
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"explorer: {args.schedules} schedules (65 simulated s each, seeds 1-{args.schedules}) in "
              f"{wall:.1f} s wall, {cpu:.1f} s CPU: {args.schedules / wall * 60:,.0f} schedules per minute "
              f"({args.schedules / cpu * 60:,.0f} per CPU minute), {failing} failing; load {before} / {load()}")
        ok = ok and not failing
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
