"""A step's cost against the pool's size (issue 13): engine inputs per second
at 1,000, 3,000 and 10,000 real servers, side by side in one run.

    .venv/bin/python bench/scale.py [--servers 10,30,100] [--virtuals 100] [--seconds 240] [--repeat 3]
    .venv/bin/python bench/scale.py --root /tmp/before   # the same bench on another checkout's engine

One engine (the active primary) of a 2-router cluster of `--virtuals`
virtuals x N real servers at the original's default timers (keepalive 2 s,
check interval 10 s, reentry 180 s), fed, one simulated second at a time:
the backup's heartbeats every keepalive on both paths, every health-check
result as its interval comes round (one result in fifty a failure: those
servers go out at once and come back after reentry with slow start), and a
`Tick` that starts the checks due.  The first `--warmup` simulated seconds
(every server's first result) are not timed; then `--seconds` simulated
seconds are, the same for every size, so every size sees the same mix.

Two rows: inputs per second with `Ready.status` never read (the daemon
reads it when asked), and read after every step (as the simulator's
invariants do).  Seconds are the process's CPU time (`time.process_time`:
the machine is shared, and other processes' load should count as little
as it can), and each figure is the best of `--repeat` runs; the last
column is the figure at the largest pool over the one at the smallest
(goal: within ~20%, i.e. >= 0.8).

`--root DIR` imports the engine from another checkout (a worktree of an
older commit), so before and after run the same bench.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if "--root" in sys.argv:
    ROOT = Path(sys.argv[sys.argv.index("--root") + 1]).resolve()
sys.path.insert(0, str(ROOT))

from engine.engine import Engine  # noqa: E402
from engine.events import CheckCompleted, HeartbeatReceived, Input, StartCheck, Tick  # noqa: E402
from engine.model import Config, Server, Virtual  # noqa: E402
from engine.wire import Heartbeat, encode  # noqa: E402

FAIL_EVERY = 50  # one check result in fifty fails


def cluster(virtuals: int, servers: int) -> Config:
    vs = []
    for v in range(virtuals):
        vs.append(Virtual(
            name=f"v{v}", address=f"10.0.{v // 250}.{v % 250 + 1}", device="eth0:1", port=80,
            servers=tuple(Server(name=f"s{s}", address=f"10.{100 + v // 250}.{v % 250}.{s + 1}", weight=10)
                          for s in range(servers)),
        ))
    return Config(primary="192.168.0.1", backup="192.168.0.2", primary_private="172.16.0.1",
                  backup_private="172.16.0.2", backup_active=True, virtuals=tuple(vs))


def run(virtuals: int, servers: int, warmup_s: int, seconds: int, read_status: bool) -> tuple[int, float]:
    """Inputs fed in the timed window, and the CPU time they took."""
    config = cluster(virtuals, servers)
    engine = Engine(config, "primary", seq_start=1)
    ready = engine.step(0, Tick())
    pending = [c.check_id for c in ready.commands if isinstance(c, StartCheck)]
    seq = fed = 0
    started = 0.0
    for second in range(warmup_s + seconds):
        if second == warmup_s:
            fed, started = 0, time.process_time()
        now = second * 1000
        inputs: list[Input] = []
        if now % config.keepalive_ms == 0:  # the backup's heartbeats (standby), both paths
            seq += 1
            for path, source in (("public", "192.168.0.2"), ("private", "172.16.0.2")):
                payload = encode(Heartbeat("shoal", "standby", "backup", seq, seq, 0, private=path == "private"))
                inputs.append(HeartbeatReceived(path, source, payload))  # type: ignore[arg-type]
        for check_id in pending:  # the results of the checks started a second ago
            ok = (check_id + second // 5) % FAIL_EVERY != 0
            inputs.append(CheckCompleted(check_id, ok, "ok" if ok else "refused"))
        inputs.append(Tick())
        pending = []
        for event in inputs:
            ready = engine.step(now, event)
            if read_status:
                ready.status
            pending.extend(c.check_id for c in ready.commands if isinstance(c, StartCheck))
        fed += len(inputs)
    elapsed = time.process_time() - started
    status = ready.status
    assert status.role == "active", status.role
    dropped = {k: v for k, v in status.counters.items()
               if k.startswith("heartbeats_") and v and not k.startswith("heartbeats_received")}
    assert not dropped, f"the bench's heartbeats were not believed: {dropped}"
    return fed, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="10,30,100", help="real servers per virtual, comma-separated")
    parser.add_argument("--virtuals", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20, help="simulated seconds not timed")
    parser.add_argument("--seconds", type=int, default=240, help="simulated seconds timed")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose engine is measured")
    args = parser.parse_args()
    sizes = [int(s) for s in args.servers.split(",")]
    where = Path(sys.modules[Engine.__module__].__file__ or "").parent
    print(f"engine: {where}; {args.virtuals} virtuals; {args.seconds} simulated s timed after {args.warmup}; "
          f"best of {args.repeat}")
    header = ["real servers"] + [f"{args.virtuals * n:,}" for n in sizes] + \
        [f"{args.virtuals * sizes[-1]:,} / {args.virtuals * sizes[0]:,}"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for read_status in (False, True):
        rates = []
        for n in sizes:
            best = 0.0
            for _ in range(args.repeat):
                fed, elapsed = run(args.virtuals, n, args.warmup, args.seconds, read_status)
                best = max(best, fed / elapsed)
            rates.append(best)
        label = "inputs per CPU s, status read every step" if read_status else "inputs per CPU s"
        print("| " + " | ".join([label] + [f"{r:,.0f}" for r in rates] + [f"{rates[-1] / rates[0]:.2f}"]) + " |",
              flush=True)


if __name__ == "__main__":
    main()
