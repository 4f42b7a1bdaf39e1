"""What a takeover, a release and a daemon start cost in the lab: the
figures the simulator's world is calibrated from (sim/costs.py,
docs/SIMULATOR.md).

One lab (adapters/lab: namespaces, the real servers, the client at 10
connections a second), the pair of scenarios/kill-daemon.toml unscaled, both
daemons with JSON logs (`--log-format json`, `debug_level = HIGH`: every
input the engine steps on is a line, each line stamped to the millisecond),
the client's neighbour table followed with `ip -ts monitor neigh`.  Per run:

1. both daemons started (exec -> `start` line, the table read and adopted
   -> the partner's log hears its first heartbeat -> the control socket
   answers);
2. `admin failover` twice (primary -> backup, backup -> primary): on the
   router that leaves, the request -> the table emptied (`table -D`) -> the
   VIPs removed; on the router that takes over, the heartbeat that tells it
   -> `vip add` -> `arp` -> the table written -> the role said; the client's
   neighbour entry for the VIP changing MAC; the connections that failed;
3. the active daemon SIGKILLed: the partner declares it dead and takes
   over (the same steps), the connections in flight;
4. the killed daemon started again over what its kernel kept (exec ->
   adoption -> first heartbeat).

    sudo .venv/bin/python bench/lab_costs.py [--runs 3]

Prints one line per measured interval per run, then min / median / max.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.control import ask  # noqa: E402
from adapters.lab import daemons  # noqa: E402
from adapters.lab.world import LabWorld, open_world  # noqa: E402
from engine.config import render  # noqa: E402
from scenario.model import load  # noqa: E402

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "kill-daemon.toml"
VIP = "10.0.0.100"


def start(world: LabWorld, name: str) -> float:
    """`shoal run` with JSON logs, as the lab starts it (daemons.start); the wall time of the exec."""
    r = world.routers[name]
    t = time.time()
    r.daemon = daemons.start(world.topo.ns(name), r.config_path, r.state_dir, r.log_path, world.dataplane,
                             name=name, python=world.python, args=["--log-format", "json"])
    world.procs.append(r.daemon.proc)
    return t


def lines(world: LabWorld, name: str) -> list[dict[str, Any]]:
    out = []
    for line in world.routers[name].log_path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def first(log: list[dict[str, Any]], after: float, pred: Any) -> dict[str, Any] | None:
    return next((e for e in log if e["t"] >= after and pred(e)), None)


def last_before(log: list[dict[str, Any]], before: float, pred: Any) -> dict[str, Any] | None:
    found = None
    for e in log:
        if e["t"] > before:
            break
        if pred(e):
            found = e
    return found


def role(world: LabWorld, name: str) -> str:
    try:
        return str(ask(str(world.routers[name].state_dir), {"cmd": "status"}, 2.0).get("role"))
    except (OSError, ValueError):
        return "down"


def wait_role(world: LabWorld, name: str, want: str, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while role(world, name) != want:
        if time.monotonic() > end:
            raise SystemExit(f"{name} never {want}")
        time.sleep(0.02)


def address_of(name: str) -> str:
    return {"primary": "10.0.0.1", "backup": "10.0.0.2"}[name]


def heard(log: list[dict[str, Any]], source: str, after: float) -> dict[str, Any] | None:
    return first(log, after, lambda e: e.get("kind") == "input" and f"from {source} " in e.get("input", ""))


def takeover(world: LabWorld, new: str, old: str, t_fault: float, trigger: str, out: dict[str, list[float]],
             moves: list[tuple[float, str]]) -> None:
    """The intervals of one takeover (`trigger`: what the new owner's decision is stepped on; `moves`:
    the client's neighbour entry for the VIP, (time, router) at each change)."""
    log_new, log_old = lines(world, new), lines(world, old)
    vip_add = first(log_new, t_fault, lambda e: e.get("kind") == "vip" and e.get("op") == "add")
    if vip_add is None:
        print(f"  {new}: no vip add after the fault", flush=True)
        return
    decided = last_before(log_new, vip_add["t"], lambda e: e.get("kind") == "input" and trigger in e.get("input", ""))
    arp = first(log_new, vip_add["t"], lambda e: e.get("kind") == "arp")
    vip_adds = [e for e in log_new if e.get("kind") == "vip" and e.get("op") == "add" and e["t"] <= (arp or vip_add)["t"]
                and e["t"] >= vip_add["t"]]
    arps = [e for e in log_new if e.get("kind") == "arp" and arp is not None and arp["t"] <= e["t"] <= arp["t"] + 0.5]
    table = [e for e in log_new if e.get("kind") == "table" and arp is not None and arp["t"] <= e["t"] <= arp["t"] + 2]
    said = first(log_new, vip_add["t"], lambda e: e.get("kind") == "role")
    if decided:
        out.setdefault("takeover: decision -> first vip add", []).append(vip_add["t"] - decided["t"])
    if arp and arps:
        out.setdefault(f"takeover: vip add x{len(vip_adds)} (first -> first arp)", []).append(arp["t"] - vip_add["t"])
        out.setdefault(f"takeover: arp x{len(arps)} (first -> last arp)", []).append(arps[-1]["t"] - arp["t"])
    if table and arps:
        out.setdefault(f"takeover: table written ({len(table)} ops, last arp -> last op)", []).append(
            table[-1]["t"] - arps[-1]["t"])
    if decided and table:
        out.setdefault("takeover: decision -> table written", []).append(table[-1]["t"] - decided["t"])
    if said and table:
        out.setdefault("takeover: table -> role said", []).append(said["t"] - table[-1]["t"])
    dels = [e for e in log_old if e.get("kind") == "table" and e.get("op") == "-D" and e["t"] >= t_fault]
    vdel = first(log_old, t_fault, lambda e: e.get("kind") == "vip" and e.get("op") == "del")
    asked = first(log_old, t_fault, lambda e: e.get("kind") == "input" and "admin request failover" in e.get("input", ""))
    if asked and dels and vdel:
        out.setdefault("release: request -> table emptied", []).append(dels[0]["t"] - asked["t"])
        out.setdefault("release: table emptied -> vips removed", []).append(vdel["t"] - dels[0]["t"])
        if decided:
            out.setdefault("handover: old vips removed -> new first vip add", []).append(vip_add["t"] - vdel["t"])
            out.setdefault("handover: old request -> new decision", []).append(decided["t"] - asked["t"])
    moved = next((t for t, who in moves if t >= vip_add["t"] - 0.05 and who == new), None)
    if moved is not None:
        out.setdefault("client: new owner's first vip add -> the client's entry on its MAC", []).append(
            moved - vip_add["t"])
        if table:
            out.setdefault("client: entry on the new MAC -> new owner's table written (connections refused)",
                           []).append(table[-1]["t"] - moved)
        if vdel:
            out.setdefault("client: old owner's vips removed -> entry on the new MAC", []).append(moved - vdel["t"])
        if dels:
            out.setdefault("client: old owner's table emptied -> entry on the new MAC", []).append(moved - dels[0]["t"])

    def at(e: dict[str, Any] | None) -> str:
        return f"{e['t']:.3f}" if e else "-"

    print(f"  {old} -> {new}: decided {at(decided)} vip {at(vip_add)} arp {at(arp)} "
          f"table {at(table[-1] if table else None)} said {at(said)} | old: asked {at(asked)} "
          f"-D {at(dels[0] if dels else None)} vip del {at(vdel)}", flush=True)


def netns_mac(world: LabWorld, name: str) -> str:
    out = subprocess.run(["ip", "-n", world.topo.ns(name), "-j", "link", "show", "eth0"], capture_output=True,
                         text=True).stdout
    return str(json.loads(out)[0]["address"]).lower()


def neigh_changes(path: Path) -> list[tuple[float, str]]:
    """(wall time, lladdr) of every change of the client's entry for the VIP."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = re.match(r"\[(\S+)\]\s*(.*)", line)
        if not m or not m.group(2).startswith(VIP + " "):
            continue
        stamp = time.mktime(time.strptime(m.group(1).split(".")[0], "%Y-%m-%dT%H:%M:%S"))
        stamp += float("0." + m.group(1).split(".")[1]) if "." in m.group(1) else 0.0
        mac = re.search(r"lladdr (\S+)", m.group(2))
        out.append((stamp, (mac.group(1) if mac else "-") + " " + m.group(2).split()[-1]))
    return out


def one_run(n: int, out: dict[str, list[float]]) -> None:
    offset = time.time() - time.monotonic()  # the client writes CLOCK_MONOTONIC
    scenario = load(str(SCENARIO))
    config = scenario.config
    text = render(config).replace("keepalive = 1\n", "keepalive = 1\ndebug_level = HIGH\n")
    with open_world([config], 0.75, tag=f"costs{n}") as world:
        for r in world.routers.values():
            r.config_path.write_text(text)
        world.start_servers()
        world.start_client()
        client_ns = world.topo.ns("client")
        monitor = subprocess.Popen(["ip", "-n", client_ns, "-ts", "monitor", "neigh"],
                                   stdout=open(world.workdir / "neigh.txt", "w"), stderr=subprocess.DEVNULL)
        world.procs.append(monitor)
        owners = {netns_mac(world, r): r for r in ("primary", "backup")}
        pending: list[tuple[str, str, float, str]] = []
        execs = {r: start(world, r) for r in ("primary", "backup")}
        ready = {}
        for r in ("primary", "backup"):
            world.routers[r].daemon.wait_ready()  # type: ignore[union-attr]
            ready[r] = time.time()
        wait_role(world, "primary", "active")
        wait_role(world, "backup", "standby")
        time.sleep(1.5)
        probe = ("import socket,time\nd=[]\nfor i in range(50):\n t=time.monotonic()\n"
                 " s=socket.create_connection(('10.0.0.100',80),2)\n s.sendall(b'GET / HTTP/1.0\\r\\nHost: lab\\r\\n\\r\\n')\n"
                 " s.makefile('rb').readline()\n s.close()\n d.append(time.monotonic()-t)\n time.sleep(0.02)\n"
                 "print(' '.join(f'{x:.5f}' for x in d))\n")
        done = subprocess.run(["ip", "netns", "exec", client_ns, sys.executable, "-c", probe], capture_output=True,
                              text=True, timeout=60)
        for x in done.stdout.split():
            out.setdefault("client: one connection, connect -> request -> status line -> close", []).append(float(x))
        for r in ("primary", "backup"):
            log = lines(world, r)
            started = first(log, 0, lambda e: e.get("kind") == "start")
            partner = "backup" if r == "primary" else "primary"
            hb = heard(lines(world, partner), address_of(r), 0)
            out.setdefault("start (both at once): exec -> table read, adopted (start line)", []).append(
                started["t"] - execs[r])  # type: ignore[index]
            if hb:
                out.setdefault("start (both at once): exec -> partner hears its first heartbeat", []).append(
                    hb["t"] - execs[r])
            out.setdefault("start (both at once): exec -> control socket answers", []).append(ready[r] - execs[r])
        # 2. operator failovers, both ways
        for old, new in (("primary", "backup"), ("backup", "primary")):
            t = time.time()
            print(f"  failover {old} -> {new} asked at {t:.3f}", flush=True)
            answer = ask(str(world.routers[old].state_dir), {"cmd": "admin", "action": "failover"}, 5.0)
            wait_role(world, new, "active")
            time.sleep(2.0)
            print(f" run {n}: failover {old} -> {new}: {answer}", flush=True)
            pending.append((new, old, t, f"from {address_of(old)} "))
            time.sleep(1.0)
        # 3. the active (primary) daemon killed
        t_kill = time.time()
        print(f"  kill primary at {t_kill:.3f}", flush=True)
        world.routers["primary"].daemon.kill()  # type: ignore[union-attr]
        wait_role(world, "backup", "active", 10)
        time.sleep(1.0)
        print(f" run {n}: kill primary", flush=True)
        pending.append(("backup", "primary", t_kill, "timer"))
        # 4. started again over its kernel's table
        t_exec = start(world, "primary")
        print(f"  restart primary (exec) at {t_exec:.3f}", flush=True)
        world.routers["primary"].daemon.wait_ready()  # type: ignore[union-attr]
        t_ready = time.time()
        wait_role(world, "primary", "standby")
        time.sleep(1.5)
        log = [e for e in lines(world, "primary") if e["t"] >= t_exec]
        started = first(log, t_exec, lambda e: e.get("kind") == "start")
        hb = heard(lines(world, "backup"), address_of("primary"), t_exec)
        yielded = first(log, t_exec, lambda e: e.get("kind") == "role")
        if started:
            out.setdefault("restart (one, after a kill): exec -> table read, adopted", []).append(started["t"] - t_exec)
        if hb:
            out.setdefault("restart (one, after a kill): exec -> partner hears its first heartbeat", []).append(
                hb["t"] - t_exec)
        out.setdefault("restart (one, after a kill): exec -> control socket answers", []).append(t_ready - t_exec)
        print(f" run {n}: restart: start {started and started['t'] - t_exec} hb {hb and hb['t'] - t_exec} "
              f"said {yielded and yielded.get('msg')}", flush=True)
        world.stop_client()
        monitor.terminate()
        monitor.wait()
        macs = neigh_changes(world.workdir / "neigh.txt")
        for stamp, what in macs:
            print(f"  neigh {stamp:.3f} {what}", flush=True)
        moves = [(stamp, owners.get(what.split()[0], what)) for stamp, what in macs]
        for new, old, t, trigger in pending:
            takeover(world, new, old, t, trigger, out, moves)
        for line in world.client_out.read_text().splitlines():
            opened, ok, _ = line.split()
            if ok == "0":
                print(f"  client: a connection opened at {float(opened) + offset:.3f} failed", flush=True)
        for r in ("primary", "backup"):
            for e in lines(world, r):
                if e.get("level") in ("warning", "error") or e.get("kind") in ("vip", "arp", "table", "role"):
                    print(f"  {r} {e['t']:.3f} {e.get('msg')}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    out: dict[str, list[float]] = {}
    print(f"lab_costs: {time.strftime('%Y-%m-%d %H:%M:%S')}, load {open('/proc/loadavg').read().strip()}", flush=True)
    for n in range(args.runs):
        one_run(n, out)
    print("\nms: min median max (runs)")
    for what, values in out.items():
        ms = sorted(v * 1000 for v in values)
        print(f"  {what}: {ms[0]:.0f} {statistics.median(ms):.0f} {ms[-1]:.0f} ({len(ms)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
