"""How long `engine.diff.diff` takes on a 1,000-service x 10-destination table.

    .venv/bin/python bench/diff.py [--runs N]

Three cases, each timed over N runs (default 200), median and worst:

- one change: the desired table shares every entry with the applied one
  except one service, whose one destination has a new weight (what the
  engine sees after a health change);
- no change: diff(t, t) (the same object: returns at once), and diff(t,
  dict(t)) (a copy of the mapping sharing every entry);
- one change, no shared entries: the desired table is an equal copy built
  from scratch (what the engine sees after reading the kernel's table back),
  so every entry is compared by value.

Target: well under 5 ms for the first case.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.diff import diff  # noqa: E402
from engine.events import EditDest, TableOp  # noqa: E402
from engine.table import Dest, DestKey, Service, ServiceEntry, ServiceKey  # noqa: E402

SERVICES = 1000
DESTS = 10


def build_table(services: int = SERVICES, dests: int = DESTS) -> dict[ServiceKey, ServiceEntry]:
    """A fresh table: no object shared with any other call."""
    out = {}
    for i in range(services):
        key = ServiceKey("tcp", f"10.{i // 250}.{i % 250}.1", 80)
        ds = {}
        for d in range(dests):
            dkey = DestKey(f"10.200.{i % 250}.{d + 1}", 8000 + i // 250)
            ds[dkey] = Dest(dkey, 10, "masq", f"s{d}")
        out[key] = ServiceEntry(Service(key, "wlc", name=f"v{i}"), ds)
    return out


def with_one_weight_change(table: dict[ServiceKey, ServiceEntry]) -> dict[ServiceKey, ServiceEntry]:
    out = dict(table)
    key = sorted(out)[len(out) // 2]
    entry = out[key]
    dkey = sorted(entry.dests)[3]
    dests = dict(entry.dests)
    dests[dkey] = replace(dests[dkey], weight=20)
    out[key] = ServiceEntry(entry.service, dests)
    return out


def time_ms(runs: int, call: Callable[[], list[TableOp]]) -> tuple[float, float, list[TableOp]]:
    times = []
    ops: list[TableOp] = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        ops = call()
        times.append((time.perf_counter_ns() - started) / 1e6)
    return statistics.median(times), max(times), ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    applied = build_table()
    changed = with_one_weight_change(applied)
    copied = with_one_weight_change(build_table())
    size = f"{SERVICES}x{DESTS}"
    cases: list[tuple[str, Callable[[], list[TableOp]], int]] = [
        (f"diff {size} one change", lambda: diff(applied, changed), 1),
        (f"diff {size} no change, same table", lambda: diff(applied, applied), 0),
        (f"diff {size} no change, copied mapping", lambda: diff(applied, dict(applied)), 0),
        (f"diff {size} one change, no shared entries", lambda: diff(applied, copied), 1),
    ]
    for label, call, expected in cases:
        median, worst, ops = time_ms(args.runs, call)
        assert len(ops) == expected and all(isinstance(op, EditDest) for op in ops), ops
        print(f"{label}: median {median:.3f} ms, worst {worst:.3f} ms ({args.runs} runs)")


if __name__ == "__main__":
    main()
