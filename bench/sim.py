"""Simulator figures (issue 3).

1. One simulated hour of a 2-router cluster with 100 virtuals x 10 real
   servers at the original's default timers (keepalive 2 s, deadtime 5 s,
   timeout 10 s, reentry 180 s), every invariant checked after every step,
   a server failure and an active-router crash on the way: simulated
   seconds per wall second (target: the hour in under 60 s).
2. The explorer: random fault schedules checked per minute.

    .venv/bin/python bench/sim.py [--virtuals 100] [--servers 10] [--hours 1] [--schedules 200]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--virtuals", type=int, default=100)
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--schedules", type=int, default=200)
    args = parser.parse_args()

    scenario = loads(cluster(args.virtuals, args.servers, args.hours), "bench.toml")
    start = time.perf_counter()
    result = run(scenario)
    wall = time.perf_counter() - start
    simulated = scenario.duration_ms / 1000
    print(f"cluster: 2 routers, {args.virtuals} virtuals x {args.servers} servers, default timers, "
          f"{simulated:.0f} simulated s")
    print(f"  wall {wall:.1f} s, {simulated / wall:.0f} simulated s per wall s, "
          f"{result.steps} engine steps ({result.steps / wall:.0f} steps/s), "
          f"{len(result.records)} trace records, verdicts {'all ok' if result.ok else 'FAILED'}")

    start = time.perf_counter()
    failing = 0
    for seed in range(1, args.schedules + 1):
        failing += not check(generate(RandomDraw(random.Random(seed)), seed)).ok
    wall = time.perf_counter() - start
    print(f"explorer: {args.schedules} schedules (65 simulated s each) in {wall:.1f} s: "
          f"{args.schedules / wall * 60:.0f} schedules per minute ({failing} failing)")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
