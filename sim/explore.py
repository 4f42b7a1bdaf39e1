"""Random fault schedules: a safety phase with faults, then a liveness phase.

`generate(draw, seed)` draws a small cluster (1-2 virtuals of 2-4 servers,
schedulers, checks, quiesce, sorry server, timers) and a schedule of faults
(crashes, restarts, kills, partitions either way, loss, server faults,
reloads, operator actions, links down and up, with `monitor_links` on or
off, heartbeats signed or not, and one pair in four speaking VRRP) over `FAULT_WINDOW_S`, then heals everything at `HEAL_AT_S` (paths,
loss, servers, links; dead routers restarted) and runs on for
the liveness bound and more.  The result is a scenario file's text: what
runs is exactly what is written, so a failing case replays with `shoal sim`.

Judged: `always` single_owner and table_matches_health, plus every
invariant of `sim.invariants` (liveness among them: one active router, the
VIPs and the clients with it, once the world is whole again).

`draw` is anything with `integer(lo, hi)` and `choice(options)`: a seeded
`RandomDraw` for `shoal sim --explore`, hypothesis's data for the property
test (which then shrinks the schedule).
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Protocol, Sequence, TypeVar

from scenario.model import ScenarioError, loads
from sim.runner import Result, run

T = TypeVar("T")
FAULT_WINDOW_S = (2, 40)
HEAL_AT_S = 45
DURATION_S = 65
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "sh")


class Draw(Protocol):
    def integer(self, lo: int, hi: int) -> int: ...
    def choice(self, options: Sequence[T]) -> T: ...


class RandomDraw:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]


def _config(draw: Draw, serial_no: int, weights: dict[str, int] | None = None) -> tuple[str, list[str]]:
    """An lvs.cf (deterministic for the same draws) and its real servers' names."""
    keepalive = draw.integer(1, 2)
    lines = [
        f"serial_no = {serial_no}", "primary = 10.0.0.1", "backup = 10.0.0.2",
        "primary_private = 192.168.0.1", "backup_private = 192.168.0.2", "backup_active = 1",
        f"keepalive = {keepalive}", f"deadtime = {keepalive * draw.integer(2, 4)}",
        f"preempt = {draw.integer(0, 1)}", "network = nat", "nat_router = 10.1.0.254 eth1:1",
    ]
    servers: list[str] = []
    for v in range(draw.integer(1, 2)):
        timeout = draw.integer(1, 3)
        lines += [f"virtual v{v} {{", f"    address = 10.0.0.{100 + v} eth0:{v + 1}", f"    port = {80 + v}",
                  f"    scheduler = {draw.choice(SCHEDULERS)}", f"    timeout = {timeout}",
                  f"    reentry = {timeout * draw.integer(1, 4)}", f"    quiesce_server = {draw.integer(0, 1)}"]
        check = draw.choice(("connect", "literal", "regex"))
        if check != "connect":
            lines += ['    send = "GET / HTTP/1.0\\r\\n\\r\\n"',
                      '    expect = "HTTP/1.0 200"' if check == "literal" else '    expect = "^HTTP/1.. 200"']
            if check == "regex":
                lines.append("    use_regex = 1")
        if draw.integer(0, 1):
            lines.append(f"    sorry_server = 10.1.0.{90 + v}")
        for s in range(draw.integer(2, 4)):
            name = f"s{s}"
            servers.append(f"v{v}/{name}")
            weight = (weights or {}).get(f"v{v}/{name}", 1)
            lines += [f"    server {name} {{", f"        address = 10.1.0.{10 + s}", f"        weight = {weight}",
                      "    }"]
        lines.append("}")
    lines.insert(lines.index("network = nat"), f"monitor_links = {draw.integer(0, 1)}")  # drawn last: the rest as before
    if draw.integer(0, 1):  # signed heartbeats and shared overrides (the simulator's key: sim.world.key_of)
        lines.insert(lines.index("network = nat"), "heartbeat_key_file = /etc/shoal/heartbeat.key")
    if draw.integer(0, 3) == 0:  # a VRRP pair (either router could be keepalived): drawn after the rest
        lines = [line for line in lines if not line.startswith(("heartbeat_key_file", "deadtime"))]
        lines[lines.index("network = nat"):lines.index("network = nat")] = [
            "heartbeat_protocol = vrrp", f"vrrp_version = {draw.choice((2, 3))}", "virtual_router_id = 51",
            f"priority = {draw.choice((100, 150))}" if draw.integer(0, 3) == 0 else "# default priorities"]
    return "\n".join(lines) + "\n", servers


def generate(draw: Draw, seed: int) -> str:
    """A whole scenario file: cluster, faults, heal, expectations."""
    config_state = draw.integer(0, 2**31)  # the config's own draws replay from this
    config, servers = _config(RandomDraw(random.Random(config_state)), 1)
    faults: list[tuple[float, str]] = []
    down: set[str] = set()
    links_down: set[tuple[str, str]] = set()
    n = draw.integer(0, 8)
    times = sorted(draw.integer(FAULT_WINDOW_S[0] * 2, FAULT_WINDOW_S[1] * 2) / 2 for _ in range(n))
    for at in times:
        kind = draw.choice(("crash", "restart", "kill", "partition", "heal", "loss", "server", "server",
                            "reload", "admin", "link"))
        router = draw.choice(("primary", "backup"))
        if kind in ("crash", "kill"):
            faults.append((at, f'{kind} = "{router}"'))
            down.add(router)
        elif kind == "restart":
            faults.append((at, f'restart = "{router}"'))
            down.discard(router)
        elif kind == "partition":
            path = draw.choice(("public", "private", "all"))
            way = draw.choice(("", "primary", "backup"))
            faults.append((at, f'partition = "{path}"' + (f'\nfrom = "{way}"' if way else "")))
        elif kind == "heal":
            faults.append((at, f'heal = "{draw.choice(("public", "private", "all"))}"'))
        elif kind == "loss":
            path = draw.choice(("", "public", "private"))
            faults.append((at, f"loss = {draw.integer(1, 6) / 10}" + (f'\npath = "{path}"' if path else "")))
        elif kind == "server":
            server = draw.choice(servers)
            what = draw.choice(("server_down", "server_up", "server_hang", "server_wrong", "server_slow"))
            extra = f"\ndelay = {draw.integer(1, 4) / 2}" if what == "server_slow" else ""
            faults.append((at, f'{what} = "{server}"{extra}'))
        elif kind == "reload":
            server = draw.choice(servers)
            text, _ = _config(RandomDraw(random.Random(config_state)), 2, {server: draw.integer(0, 5)})
            faults.append((at, f"reload = '''\n{text}'''"))
        elif kind == "link":
            device = draw.choice(("eth0", "eth1", "eth2"))
            if draw.integer(0, 2) and (router, device) not in links_down:
                faults.append((at, f'link_down = "{router}"\ndevice = "{device}"'))
                links_down.add((router, device))
            else:
                faults.append((at, f'link_up = "{router}"\ndevice = "{device}"'))
                links_down.discard((router, device))
        else:
            faults.append((at, draw.choice(("admin = \"failover\"", f'admin = "drain {draw.choice(servers)}"',
                                             f'admin = "undrain {draw.choice(servers)}"'))))
    heal = ['heal = "all"', "loss = 0.0"] + [f'server_up = "{s}"' for s in servers]
    heal += [f'restart = "{r}"' for r in sorted(down)]
    heal += [f'link_up = "{r}"\ndevice = "{d}"' for r, d in sorted(links_down)]
    out = [f'# A random fault schedule (shoal sim --explore / the hypothesis test), seed {seed}.',
           "# Faults until 40 s, everything healed at 45 s, then the liveness phase.",
           f'title = "random fault schedule {seed}"', f"seed = {seed}", f"duration = {DURATION_S}.0",
           f"config = '''\n{config}'''", "", "[network]", "latency = 0.001", ""]
    for at, fault in faults + [(float(HEAL_AT_S), h) for h in heal]:
        out += ["[[fault]]", f"at = {at}", fault, ""]
    out += ["[[expect]]", 'always = "single_owner"', "", "[[expect]]", 'always = "table_matches_health"', ""]
    return "\n".join(out)


def check(text: str, name: str = "explore.toml") -> Result:
    try:
        return run(loads(text, name))
    except ScenarioError as e:  # the generator wrote something the loader refuses: a bug here
        raise AssertionError(f"generated scenario refused: {e}\n{text}") from None


def explore_cli(n: int, seed: int, out_dir: str) -> int:
    """`shoal sim --explore N [--seed S]`: schedules seed S .. S+N-1."""
    failures = 0
    start = time.perf_counter()
    for i in range(n):
        s = seed + i
        text = generate(RandomDraw(random.Random(s)), s)
        result = check(text, f"explore-{s}.toml")
        if not result.ok:
            failures += 1
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            path = Path(out_dir) / f"explore-{s}.toml"
            path.write_text(text)
            what = [v.what for v in result.verdicts if v.ok is False] + [
                f"invariant {v.name}: {v.message}" for v in result.violations]
            print(f"seed {s}: FAIL -> {path} (replay: shoal sim {path})")
            for w in what:
                print(f"    {w}")
            sys.stdout.flush()
    elapsed = time.perf_counter() - start
    print(f"{n} schedules from seed {seed}: {failures} failing, {elapsed:.1f} s "
          f"({n / elapsed * 60 if elapsed else 0:.0f} schedules/minute)")
    return 1 if failures else 0
