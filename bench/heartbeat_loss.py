"""No false failover at 20 ms heartbeats with loss on a path, under load (issue 13).

    PYTHONPATH=. .venv/bin/python bench/heartbeat_loss.py [--minutes 10] [--loss 0.1]
        [--keepalive 0.02] [--deadtime 0.1] [--paths 2] [--load 1] [--pin CPU] [--nice N] [--rt N] [--profile]
        [--keep-logs DIR] [--json]

Root.  The lab's network (`adapters/lab`: namespaces client, primary,
backup, two real servers; bridges), a shoal pair (`shoal run --dataplane
nft`, the lab's own daemons, JSON logs) with `keepalive`/`deadtime` as
given and two heartbeat paths (public and private; `--paths 1`: public
only).  Once the pair is settled (one active, one standby, each hearing
the other), the lab's bridge drops `--loss` of the heartbeats on the
public path, both ways (`numgen random mod 1000 < N drop`: this kernel has
no netem), and `--load` processes spin (`python3 -c 'while 1: pass'`,
pinned to CPU `--pin` with taskset when given).  Then it waits
`--minutes`, polling both daemons' status every second, and prints:

- failovers: role changes in either daemon's JSON log (kind `role`) from
  the moment the loss starts, and any poll that saw both active or neither;
- heartbeats: counted on the bridge (nft counters in the lab's rules):
  per path and direction, how many were seen and how many dropped;
- the loop's timing of both daemons, from their status
  (`loop.timing`, adapters/lateness.py, since each daemon started):
  deadline lateness (a step serving the engine's deadline, its start
  against the deadline), send lateness (a heartbeat sent in such a step),
  step duration, a step's commands from queued to done, gc pauses: p50,
  p99, max, and the steps over 5 ms by kind; with `--profile`
  (SHOAL_LOOP_PROFILE=1 in the daemons' environment) every asyncio
  callback timed and the slowest kinds named;
- the load average before and after.

Everything started here (daemons, servers, loaders) is stopped by its PID
and every namespace removed, on every exit path.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters import netns  # noqa: E402
from adapters.lab.plan import LabError  # noqa: E402
from adapters.lab.topology import LAB_TABLE, PREFIX, lab_namespaces, preflight  # noqa: E402
from adapters.lab.world import LabWorld, open_world  # noqa: E402
from engine.config import parse  # noqa: E402
from engine.model import Config  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from failover import CONFIG as FAILOVER_CONFIG  # noqa: E402

ROUTERS = ("primary", "backup")
OTHER = {"primary": "backup", "backup": "primary"}
POLL_S = 1.0

# bench/failover.py's pair, with the private path when asked for.
CONFIG = FAILOVER_CONFIG.replace("backup_active = 1\n", "{private}backup_active = 1\n")
PRIVATE = "primary_private = 10.11.12.1\nbackup_private = 10.11.12.2\n"


class BenchError(Exception):
    pass


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ------------------------------------------------------------------ heartbeat rules with counters


def rules(config: Config, loss: float) -> list[str]:
    """Every heartbeat counted on the bridge, per path and direction; on the
    public path `loss` of them dropped (the rule's second counter)."""
    port, out = config.heartbeat_port, []
    for path in ("public", "private"):
        for sender, receiver in (("primary", "backup"), ("backup", "primary")):
            src, dst = config.address_of(sender, path), config.address_of(receiver, path)  # type: ignore[arg-type]
            if not (src and dst):
                continue
            match = f"ip saddr {src} ip daddr {dst} udp dport {port}"
            if path == "public" and loss > 0:
                out.append(f"{match} counter numgen random mod 1000 < {round(loss * 1000)} counter drop "
                           f"comment \"{path} {sender}\"")
            else:
                out.append(f"{match} counter comment \"{path} {sender}\"")
    return out


def counted(world: LabWorld) -> dict[str, tuple[int, int]]:
    """`path sender` -> (heartbeats seen on the bridge, dropped)."""
    text = netns.run_in(world.topo.net_ns, ["nft", "-j", "list", "table", "bridge", LAB_TABLE],
                        timeout_s=None).stdout
    out: dict[str, tuple[int, int]] = {}
    for item in json.loads(text)["nftables"]:
        rule = item.get("rule")
        if not rule:
            continue
        counters = [e["counter"]["packets"] for e in rule["expr"] if "counter" in e]
        out[rule.get("comment", "?")] = (counters[0], counters[1] if len(counters) > 1 else 0)
    return out


# ------------------------------------------------------------------ the run


def roles_logged(world: LabWorld, name: str, since: float = 0.0) -> list[dict[str, Any]]:
    """The daemon's JSON log lines of kind `role` written at or after `since` (wall time), in order."""
    out: list[dict[str, Any]] = []
    try:
        text = world.routers[name].log_path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("kind") == "role" and float(record.get("t", 0)) >= since:
            out.append(record)
    return out


def settle(world: LabWorld, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = {r: world.status(r) for r in ROUTERS}
        active = [r for r in ROUTERS if status[r].get("role") == "active"]
        if len(active) == 1 and status[OTHER[active[0]]].get("role") == "standby" and \
                all(status[r].get("partner", {}).get("alive") is True for r in ROUTERS):
            return active[0]
        time.sleep(0.2)
    raise BenchError("the pair did not settle in %g s\n%s" % (timeout_s, "\n".join(
        f"--- {r}\n{world.log_tail(r)}" for r in ROUTERS)))


def loaders(n: int, pin: str | None) -> list[subprocess.Popen[bytes]]:
    procs = []
    for _ in range(n):
        argv = ["python3", "-c", "while 1: pass"]
        if pin is not None:
            argv = ["taskset", "-c", pin, *argv]
        procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True))
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass


def run(args: argparse.Namespace, echo: Any) -> dict[str, Any]:
    text = CONFIG.format(private=PRIVATE if args.paths == 2 else "", keepalive=args.keepalive,
                         deadtime=args.deadtime)
    config = parse(text, "heartbeat-loss.cf")
    if args.profile:
        os.environ["SHOAL_LOOP_PROFILE"] = "1"  # the daemons inherit it (adapters/lab/daemons.spawn)
    load: list[subprocess.Popen[bytes]] = []
    with open_world([config], 0.3, tag=f"hl{os.getpid()}", workdir_prefix="shoal-hbloss-") as world:
        try:
            world.start_servers()
            for r in ROUTERS:
                world.start_daemon(r)
            world.wait_daemons()
            for r in ROUTERS:  # the loop's thread (its tid is the pid); threads it starts later inherit it
                pid = world.routers[r].daemon.pid  # type: ignore[union-attr]
                if args.nice is not None:  # with autogroups (a session each), the group's nice is what counts
                    os.setpriority(os.PRIO_PROCESS, pid, args.nice)
                    Path(f"/proc/{pid}/autogroup").write_text(str(args.nice))
                if args.rt is not None:  # as `chrt -r -p N PID`
                    os.sched_setscheduler(pid, os.SCHED_RR, os.sched_param(args.rt))
            active = settle(world)
            echo(f"# settled: {active} active; loss {args.loss:g} on the public path, {args.load} loader(s)"
                 + (f" pinned to CPU {args.pin}" if args.pin is not None else ""))
            # counted from here: a start's own role line may be written after the status said active
            # (its notice is carried out behind the step), so not "every line after the settle"
            since = time.time()
            world.topo.set_heartbeat_rules(rules(config, args.loss))
            load_before = loadavg()
            load = loaders(args.load, args.pin)
            started = time.monotonic()
            end = started + args.minutes * 60
            odd_polls: list[str] = []
            load_samples = [load_before]
            next_report = started + 60
            while time.monotonic() < end:
                time.sleep(POLL_S)
                status = {r: world.status(r) for r in ROUTERS}
                roles = {r: status[r].get("role", "?") for r in ROUTERS}
                if sorted(roles.values()) != ["active", "standby"]:
                    odd_polls.append(f"{time.monotonic() - started:.1f} s: {roles}")
                if time.monotonic() >= next_report:
                    next_report += 60
                    load_samples.append(loadavg())
                    so_far = sum(len(roles_logged(world, r, since)) for r in ROUTERS)
                    echo(f"  {(time.monotonic() - started) / 60:4.1f} min: role changes {so_far}, "
                         f"load {load_samples[-1]}")
            elapsed_s = time.monotonic() - started
            load_after = loadavg()
            stop(load)
            hb = counted(world)
            status = {r: world.status(r) for r in ROUTERS}
            changes = {r: roles_logged(world, r, since) for r in ROUTERS}
            if args.keep_logs:
                keep = Path(args.keep_logs)
                keep.mkdir(parents=True, exist_ok=True)
                for r in ROUTERS:
                    shutil.copy(world.routers[r].log_path, keep / f"{r}.log")
        finally:
            stop(load)
    return {
        "minutes": round(elapsed_s / 60, 2), "nice": args.nice, "rt": args.rt, "keepalive_s": args.keepalive, "deadtime_s": args.deadtime,
        "paths": args.paths, "loss": args.loss, "loaders": args.load, "pin": args.pin, "settled_active": active,
        "load_before": load_before, "load_after": load_after, "load_each_minute": load_samples,
        "role_changes": {r: [c.get("msg") for c in changes[r]] for r in ROUTERS},
        "odd_polls": odd_polls,
        "heartbeats": {k: {"seen": v[0], "dropped": v[1]} for k, v in sorted(hb.items())},
        "timing": {r: status[r].get("loop", {}).get("timing") for r in ROUTERS},
        "lateness_window": {r: status[r].get("loop", {}).get("lateness_ms") for r in ROUTERS},
        "counters": {r: {k: v for k, v in status[r].get("counters", {}).items() if "heartbeat" in k or "probe" in k}
                     for r in ROUTERS},
        "drops": {r: {k: v for k, v in status[r].get("loop", {}).get("drops", {}).items() if v} for r in ROUTERS},
    }


def report(r: dict[str, Any]) -> str:
    failovers = sum(len(v) for v in r["role_changes"].values())
    lines = [f"heartbeat loss: keepalive {r['keepalive_s']:g} s, deadtime {r['deadtime_s']:g} s, "
             f"{r['paths']} path(s), {r['loss'] * 100:g}% dropped on the public path, "
             f"{r['loaders']} loader(s){'' if r['pin'] is None else ' on CPU ' + r['pin']}, "
             f"{'' if r['nice'] is None else 'daemons at nice %d, ' % r['nice']}"
             f"{'' if r['rt'] is None else 'daemons at SCHED_RR %d, ' % r['rt']}"
             f"{r['minutes']:g} min",
             f"load average: before {r['load_before']}, after {r['load_after']}; "
             f"each minute {' | '.join(r['load_each_minute'])}",
             f"failovers (role changes once the loss started; {r['settled_active']} active before): {failovers}"]
    for router, msgs in r["role_changes"].items():
        lines.extend(f"  {router}: {m}" for m in msgs)
    if r["odd_polls"]:
        lines.append(f"polls without one active and one standby: {len(r['odd_polls'])}")
        lines.extend(f"  {p}" for p in r["odd_polls"][:10])
    lines.append("heartbeats on the bridge (path sender: seen, dropped):")
    for k, v in r["heartbeats"].items():
        pct = f" ({100 * v['dropped'] / v['seen']:.1f}%)" if v["seen"] else ""
        lines.append(f"  {k:<16} {v['seen']:>8} {v['dropped']:>7}{pct}")
    lines.append(f"loop timing since each daemon started (ms)      {'p50':>7} {'p99':>7} {'max':>8} {'count':>8}")
    for router in ROUTERS:
        t = r["timing"][router] or {}
        for name, what in (("deadline", "deadline lateness"), ("send", "heartbeat send lateness"),
                           ("step", "step duration"), ("effects", "a step's commands, queued to done"),
                           ("gc", "gc pause"), ("callbacks", "callback duration")):
            h = t.get(name)
            if h:
                lines.append(f"  {router:<8} {what:<38} {h['p50']:>7} {h['p99']:>7} {h['max']:>8} {h['count']:>8}")
        for s in t.get("slow_steps", [])[:6]:
            lines.append(f"  {router:<8}   slow step: {s['what']}: {s['count']} over 5 ms, max {s['max_ms']} ms "
                         f"({s['cpu_ms']} ms of CPU)")
        for s in t.get("slow", [])[:6]:
            lines.append(f"  {router:<8}   slow: {s['where']}: {s['count']} over 5 ms, max {s['max_ms']} ms")
    for router in ROUTERS:
        if r["counters"][router] or r["drops"][router]:
            lines.append(f"  {router} counters: {r['counters'][router]} drops: {r['drops'][router]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/heartbeat_loss.py", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--loss", type=float, default=0.1, help="fraction of the public path's heartbeats dropped")
    parser.add_argument("--keepalive", type=float, default=0.02)
    parser.add_argument("--deadtime", type=float, default=0.1)
    parser.add_argument("--paths", type=int, choices=(1, 2), default=2)
    parser.add_argument("--load", type=int, default=1, help="busy-loop processes (default 1: a core)")
    parser.add_argument("--pin", help="taskset CPU list for the loaders (default: not pinned)")
    parser.add_argument("--profile", action="store_true", help="SHOAL_LOOP_PROFILE=1: time every loop callback")
    parser.add_argument("--nice", type=int, help="the daemons' nice value, set once they run (default: unchanged)")
    parser.add_argument("--rt", type=int, metavar="N",
                        help="the daemons' loop thread at SCHED_RR priority N, set once they run (as chrt -r -p N)")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy both daemons' JSON logs there at the end")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.pin is not None and shutil.which("taskset") is None:
        parser.error("taskset not found")
    echo = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        preflight()
        result = run(args, echo)
    except (LabError, BenchError) as e:
        print(f"bench/heartbeat_loss.py: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench/heartbeat_loss.py: interrupted; everything it started is stopped and removed", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        left = [ns for ns in lab_namespaces() if ns.startswith(f"{PREFIX}hl{os.getpid()}")]
        if left:
            print(f"bench/heartbeat_loss.py: namespaces left behind: {' '.join(left)}", file=sys.stderr)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
