"""shoal's ipvs adapter against `ipvsadm -R` on a real kernel (issue 5).

    .venv/bin/python bench/ipvs.py [--runs N] [--changes M]

On the host (no IPVS) it boots the kernel-test guest (tests/kernel/harness.py)
and runs itself there; in the guest (SHOAL_IN_GUEST=1) it measures, in one
boot, in a fresh network namespace each time:

- whole table: a 1,000-service x 10-destination NAT table (wlc, weights 1-5)
  applied from empty through `Ipvs.apply(diff({}, table))`, and restored by
  `ipvsadm -R` from the same table's `ipvsadm -S` lines (written by
  adapters/dataplane/ipvsadm.format_save); N runs each, interleaved, median
  and worst.  Each run is checked: the kernel's table read back equals the
  table.
- one change: one destination's weight edited on the full table through
  `Ipvs.apply(diff(applied, desired))`, M runs, median and worst: the
  adapter's apply alone, and with the engine's diff of the whole table
  (0.28 ms on the host, bench/diff.py; many times that under TCG).

Targets (issue 5): the adapter no slower than `ipvsadm -R` for the whole
table; under 5 ms for one change.  Figures are wall time inside a TCG
guest (software emulation): slower than on real hardware for both sides.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVICES = 1000
DESTS = 10


def build_table() -> dict:  # type: ignore[type-arg]
    from engine.table import Dest, DestKey, Service, ServiceEntry, ServiceKey

    table = {}
    for s in range(SERVICES):
        key = ServiceKey("tcp", f"10.{100 + s // 250}.{s % 250}.1", 80)
        dests = {}
        for d in range(DESTS):
            dk = DestKey(f"10.200.{s % 250}.{10 + d + 20 * (s // 250)}", 8000 + d)
            dests[dk] = Dest(dk, 1 + (s + d) % 5, "masq")
        table[key] = ServiceEntry(Service(key, "wlc"), dests)
    return table


def netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)


def ms(seconds: list[float]) -> str:
    return f"median {statistics.median(seconds) * 1000:.1f} ms, worst {max(seconds) * 1000:.1f} ms"


def guest(runs: int, changes: int) -> int:
    from adapters.dataplane.ipvs import Ipvs
    from adapters.dataplane.ipvsadm import format_save
    from engine.diff import diff

    table = build_table()
    restore = format_save(table)
    ops = diff({}, table)
    print(f"kernel {os.uname().release}; table {SERVICES} services x {DESTS} destinations "
          f"({len(ops)} operations, {len(restore.splitlines())} ipvsadm -R lines)", flush=True)
    ours: list[float] = []
    theirs: list[float] = []
    name = "bench-ipvs"
    for run in range(runs):
        netns(name)
        dp = Ipvs(netns=name)
        t0 = time.perf_counter()
        dp.apply(ops)
        ours.append(time.perf_counter() - t0)
        if dp.read() != table:
            print("FAIL: the adapter's table read back differs", file=sys.stderr)
            return 1
        dp.close()
        netns(name)
        t0 = time.perf_counter()
        subprocess.run(["ip", "netns", "exec", name, "ipvsadm", "-R"], input=restore, text=True, check=True)
        theirs.append(time.perf_counter() - t0)
        dp = Ipvs(netns=name)
        if dp.read() != table:
            print("FAIL: ipvsadm -R's table read back differs", file=sys.stderr)
            return 1
        dp.close()
        print(f"  run {run + 1}: shoal {ours[-1]:.3f} s, ipvsadm -R {theirs[-1]:.3f} s", flush=True)
    # ipvsadm -R includes `ip netns exec` + ipvsadm's start (a few ms under TCG): measured alone below.
    t0 = time.perf_counter()
    subprocess.run(["ip", "netns", "exec", name, "ipvsadm", "-v"], capture_output=True, check=True)
    startup = time.perf_counter() - t0

    dp = Ipvs(netns=name)
    applied = dp.read()
    one: list[float] = []
    one_apply: list[float] = []
    key = next(iter(applied))
    for i in range(changes):
        entry = applied[key]
        dk = next(iter(entry.dests))
        dest = entry.dests[dk]
        desired = dict(applied)
        desired[key] = replace(entry, dests={**entry.dests, dk: replace(dest, weight=dest.weight % 5 + 1)})
        t0 = time.perf_counter()
        change = diff(applied, desired)
        t1 = time.perf_counter()
        dp.apply(change)
        t2 = time.perf_counter()
        one.append(t2 - t0)
        one_apply.append(t2 - t1)
        assert len(change) == 1, change
        applied = desired
        key = list(applied)[(i * 37) % len(applied)]
    if dp.read() != applied:
        print("FAIL: after the one-destination changes the kernel's table differs", file=sys.stderr)
        return 1
    dp.close()
    subprocess.run(["ip", "netns", "del", name], check=True)

    print()
    print(f"whole table, shoal adapter (diff from empty + netlink): {ms(ours)} ({runs} runs)")
    print(f"whole table, ipvsadm -R (incl. ip netns exec, {startup * 1000:.0f} ms for `ipvsadm -v`): {ms(theirs)} ({runs} runs)")
    print(f"ratio shoal / ipvsadm -R: median {statistics.median(ours) / statistics.median(theirs):.2f}")
    print(f"one destination's weight changed, the adapter's apply (one netlink message): {ms(one_apply)} ({changes} runs)")
    print(f"one destination's weight changed, diff of the 1,000-service table + apply: {ms(one)} ({changes} runs)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--changes", type=int, default=200)
    a = ap.parse_args()
    if os.environ.get("SHOAL_IN_GUEST") == "1":
        return guest(a.runs, a.changes)
    sys.path.insert(0, str(ROOT))
    from tests.kernel.harness import GuestFailure, boot

    try:
        run = boot(["python", "bench/ipvs.py", "--runs", str(a.runs), "--changes", str(a.changes)], stream=True)
    except GuestFailure as e:
        print(f"bench/ipvs.py: {e}", file=sys.stderr)
        return 2
    print(f"(guest: kernel {run.kernel}, accelerator {run.accel}, {run.wall_s:.0f} s wall)")
    return run.rc


if __name__ == "__main__":
    sys.exit(main())
