"""Engine throughput: inputs per second for a 2-router, 100 x 10 cluster.

    .venv/bin/python bench/engine.py [--inputs N]

Feeds one engine (the active primary) a realistic mix: heartbeats from the
backup every keepalive on two paths, and every health check result as its
interval comes round (one server in fifty failing and coming back), through
`Engine.step`, and prints inputs per second on one core.  Then times
`diff` of a 1,000-service x 10-destination table against itself with one
weight changed.  Target (issue 2): >= 50,000 inputs/s; diff < 5 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.diff import diff  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.events import CheckCompleted, HeartbeatReceived, StartCheck, Tick  # noqa: E402
from engine.model import Config, Server, Virtual  # noqa: E402
from engine.table import Dest, DestKey, Service, ServiceEntry, ServiceKey  # noqa: E402
from engine.wire import Heartbeat, encode  # noqa: E402


def cluster(virtuals: int = 100, servers: int = 10) -> Config:
    vs = []
    for v in range(virtuals):
        vs.append(Virtual(
            name=f"v{v}", address=f"10.0.{v // 250}.{v % 250 + 1}", device="eth0:1", port=80,
            servers=tuple(Server(name=f"s{s}", address=f"10.1.{v}.{s + 1}", weight=10) for s in range(servers)),
        ))
    return Config(primary="192.168.0.1", backup="192.168.0.2", primary_private="172.16.0.1",
                  backup_private="172.16.0.2", backup_active=True, virtuals=tuple(vs))


def bench_engine(total_inputs: int) -> float:
    config = cluster()
    engine = Engine(config, "primary", seq_start=1)
    now = 0
    ready = engine.step(now, Tick())
    seq = 0
    pending: list[int] = [c.check_id for c in ready.commands if isinstance(c, StartCheck)]
    fed = 0
    fail_every = 50
    started = time.perf_counter()
    while fed < total_inputs:
        # The backup's heartbeats (standby), both paths, each keepalive.
        seq += 1
        for path, source in (("public", "192.168.0.2"), ("private", "172.16.0.2")):
            payload = encode(Heartbeat("shoal", "standby", "backup", seq, seq, 0, private=path == "private"))
            ready = engine.step(now, HeartbeatReceived(path, source, payload))  # type: ignore[arg-type]
            fed += 1
            pending.extend(c.check_id for c in ready.commands if isinstance(c, StartCheck))
        # Answer every check started so far.
        for check_id in pending:
            ok = (check_id + seq // 5) % fail_every != 0
            ready = engine.step(now, CheckCompleted(check_id, ok, "ok" if ok else "refused"))
            fed += 1
        pending = []
        now += 1000
        ready = engine.step(now, Tick())
        fed += 1
        pending.extend(c.check_id for c in ready.commands if isinstance(c, StartCheck))
    elapsed = time.perf_counter() - started
    assert ready.status.role == "active", ready.status.role
    dropped = {k: v for k, v in ready.status.counters.items() if k.startswith("heartbeats_") and v
               and not k.startswith("heartbeats_received")}
    assert not dropped, f"the bench's heartbeats were not believed: {dropped}"
    return fed / elapsed


def table(services: int = 1000, dests: int = 10) -> dict[ServiceKey, ServiceEntry]:
    out = {}
    for i in range(services):
        key = ServiceKey("tcp", f"10.{i // 250}.{i % 250}.1", 80)
        ds = {}
        for d in range(dests):
            dk = DestKey(f"10.200.{i % 250}.{d + 1}", 8000 + i // 250)
            ds[dk] = Dest(dk, 10)
        out[key] = ServiceEntry(Service(key), ds)
    return out


def bench_diff(runs: int = 200) -> tuple[float, float]:
    applied = table()
    desired = dict(applied)
    key = sorted(desired)[500]
    entry = desired[key]
    dkey = sorted(entry.dests)[3]
    dests = dict(entry.dests)
    dests[dkey] = replace(dests[dkey], weight=20)
    desired[key] = ServiceEntry(entry.service, dests)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        ops = diff(applied, desired)
        times.append((time.perf_counter() - t0) * 1000)
    assert len(ops) == 1, ops
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=int, default=300_000)
    args = parser.parse_args()
    rate = bench_engine(args.inputs)
    print(f"engine, 2 routers, 100 virtuals x 10 servers: {rate:,.0f} inputs/s on one core (target >= 50,000)")
    median, worst = bench_diff()
    print(f"diff 1,000-service x 10-dest table vs one weight change: median {median:.3f} ms, worst {worst:.3f} ms (target < 5 ms)")


if __name__ == "__main__":
    main()
