"""Soak (issue 9): one lab pair under the explorer's random faults for half an hour.

    .venv/bin/python bench/soak.py [--minutes 30] [--seed 9000] [--time-scale 1]
                                   [--spare primary|backup|none] [--out DIR] [--live] [--no-sim]

Root.  One pair of real `shoal run --dataplane nft` daemons on the lab's
namespaces (`adapters/lab`) lives through one long scenario made of the
explorer's schedules back to back, while every daemon process is sampled
from outside.  What it shows: no growth (memory, file descriptors,
threads, loop lateness) and no stuck state.

The scenario.  `sim.explore.generate(RandomDraw(random.Random(s)), s)` for
s = SEED, SEED+1, ... gives 65-second schedules (a random cluster, faults
from 2 to 40 s, everything healed at 45 s: paths, loss, servers, dead
routers restarted; then the liveness phase).  Schedule k is shifted to
start at k x 65 s: its faults keep their times plus the offset, its
heal comes at offset + 45 s, and its cluster arrives as a `reload` of its
config at the offset (schedule 0's config is the scenario's config), so one
pair lives through all of them and also sees a reload to a different
cluster (1 or 2 virtuals, other timers and checks) every 65 s.  `serial_no`
is renumbered to rise: schedule k's config is 2k+1, its own reloads 2k+2.
Every fault kind the explorer writes is one the lab carries out (crash,
restart, kill, partition either way, heal, loss, server faults, reload,
admin); nothing is dropped or mapped.  `always = "single_owner"` and
`always = "table_matches_health"` are judged over the whole run, by the
lab's runner.  `--minutes N` takes round(N x 60 / (65 x scale)) schedules
(at least one): 28 schedules (1,820 s) for 30 minutes.  The scenario file
is written to the output directory: `shoal sim` or `shoal lab` replay it.
Before the lab, the same scenario runs in the simulator (seconds; `--no-sim`
skips it) as a reference: a schedule the engine itself fails there is not
a soak finding.

Long-lived processes.  Growth shows only in a process that lives long, but
an explorer schedule crashes, kills or restarts a given router in about
four schedules of ten, so no daemon of either router would live more than
a few minutes.  `--spare primary` (the default) skips the schedules that
crash, kill or restart the primary (their seeds are listed): the primary's
daemon lives through the whole soak (partitions, loss, server faults,
reloads, operator orders, and every crash, kill and restart of its
partner, a new boot each time), and the backup's daemons come and go as
the schedules say.  `--spare none` takes every seed.  Samples are per
process (router, PID); growth is judged on the longest-lived process of
each router, and only when it lived `MIN_LIFE_S` (10 minutes); shorter
lives are reported, not judged.

Time scale 1 (the default): the schedules' own timers (keepalive 1-2 s,
deadtime 2-8 s, check timeouts 1-3 s).  A smaller scale packs more faults
into the half hour, but at 0.25 the keepalive is 0.25 s and a check
timeout 0.25 s: on this 2-core machine, often loaded by other engineers'
qemu guests, scheduling delays would then make false takeovers and false
check failures that say nothing about growth.

Sampling, from a thread of this process, every `TICK_S` (0.5 s): each
router's role (its control socket, `{"cmd": "status"}`, timed: the answer
time), the VIP holders (`ip -j addr` in its namespace), and whether a daemon
the lab did not kill has exited.  Every `SAMPLE_S` (5 s), for each running
daemon: VmRSS and Threads from /proc/PID/status, the number of entries of
/proc/PID/fd, and the loop lateness of `shoal status --json` (`loop.
lateness_ms`: p50/p99/max over the daemon's last 1,024 wake-ups; when a
daemon has no `loop` object, the status answer time is the proxy and the
table says so).  The lab's runner samples too, every 50 ms (status, table
and addresses of both routers: that load is part of the soak).

Judged (exit 1 on any):
- RSS growth: the least-squares slope of VmRSS over the longest-lived
  process of each router, after its first `WARMUP_S` (imports, caches and
  the allocator's first arenas), above `RSS_SLOPE_MB_H` (10 MB/hour).
  Ten MB an hour is 240 MB a day: a router would need restarting within
  days, which is a leak to find; below that, half an hour cannot tell a
  leak from the allocator's noise (RSS moves by a few hundred kB as
  arenas are taken and given back; 10 MB/h is 5 MB over the run).
- fd growth: the median open-fd count of the last tenth of that process's
  samples minus that of its first tenth after warm-up, above
  `FD_GROWTH` (10).  A daemon's fds jitter by a few with health checks
  and control connections in flight; ten more that stay is a leak (a
  socket or pipe per fault, per reload or per partner boot).
- thread growth, likewise, above `THREAD_GROWTH` (5).
- stuck: after each schedule's heal, once both daemons answer, no active
  router for longer than deadtime + keepalive + `STUCK_SLACK_S`; or, at
  the end of its liveness phase (20 s after the heal), not exactly one
  active router holding every VIP with its partner standby and holding
  none.
- a daemon that exited without the lab killing it (a crash);
- a failed expectation of the scenario (single_owner,
  table_matches_health).
Exit 2: the lab cannot run (not root, a daemon that does not start, a lab
error).

Code under test.  Others change the daemon while a soak runs, and every
restart in the schedules starts a new daemon from the checkout.  By default
the soak runs from a snapshot: `git archive HEAD` into a temporary
directory (this file copied over its `bench/soak.py`), re-executed from
there, so every daemon of the run is the same commit (printed).  `--live`
runs the working tree as it is.

Everything the lab starts is stopped by its PID and every namespace
removed (the lab's own cleanup), on every exit path; the daemons' logs,
the scenario, the samples (JSON lines) and the timeline are kept in the
output directory (default /tmp/shoal-soak-DATE-TIME).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.lab import runner as lab_runner  # noqa: E402
from adapters.lab.plan import LabError  # noqa: E402
from adapters.lab.world import ROUTERS, LabWorld  # noqa: E402
from scenario.checks import active_vips  # noqa: E402
from scenario.model import Fault, ScenarioError, loads  # noqa: E402
from scenario.verdicts import summary_lines  # noqa: E402
from sim.explore import DURATION_S, HEAL_AT_S, RandomDraw, generate  # noqa: E402

TICK_S = 0.5
SAMPLE_S = 5.0
ASK_TIMEOUT_S = 5.0
WARMUP_S = 120.0
MIN_LIFE_S = 600.0
RSS_SLOPE_MB_H = 10.0
FD_GROWTH = 10
THREAD_GROWTH = 5
STUCK_SLACK_S = 1.0
SNAPSHOT_ENV = "SHOAL_SOAK_SNAPSHOT"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# ------------------------------------------------------------------ the scenario


@dataclass
class Piece:
    """One explorer schedule inside the soak's scenario (scenario seconds)."""

    seed: int
    start_s: float
    keepalive_s: float
    deadtime_s: float
    faults: int

    @property
    def heal_s(self) -> float:
        return self.start_s + HEAL_AT_S

    @property
    def end_s(self) -> float:
        return self.start_s + DURATION_S


def _value(v: Any) -> str:
    """A TOML value as the explorer writes them."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        if "\n" in v:
            if "'''" in v:
                raise ValueError("a multi-line value holding ''' cannot be written as a literal string")
            return "'''\n" + v + "'''"
        return json.dumps(v)
    raise ValueError(f"cannot write {v!r} as TOML")


def _serial(config: str, serial_no: int) -> str:
    return re.sub(r"(?m)^serial_no = \d+$", f"serial_no = {serial_no}", config, count=1)


def _timers(config: str) -> tuple[float, float]:
    keepalive = float(re.search(r"(?m)^keepalive = (\S+)$", config).group(1))  # type: ignore[union-attr]
    deadtime = float(re.search(r"(?m)^deadtime = (\S+)$", config).group(1))  # type: ignore[union-attr]
    return keepalive, deadtime


def build(seed: int, count: int, spare: str | None) -> tuple[str, list[Piece], list[int]]:
    """The soak's scenario text: `count` explorer schedules from `seed` on, back to back;
    the pieces and the seeds skipped (they crash, kill or restart `spare`)."""
    pieces: list[Piece] = []
    skipped: list[int] = []
    faults_out: list[list[tuple[str, Any]]] = []
    first_config = ""
    s = seed
    while len(pieces) < count:
        data = tomllib.loads(generate(RandomDraw(random.Random(s)), s))
        faults = data.get("fault", [])
        if spare and any(f.get(k) == spare for f in faults for k in ("crash", "kill", "restart")):
            skipped.append(s)
            s += 1
            continue
        k = len(pieces)
        start = float(k * DURATION_S)
        config = _serial(data["config"], 2 * k + 1)
        keepalive, deadtime = _timers(config)
        if k == 0:
            first_config = config
        else:
            faults_out.append([("at", start), ("reload", config)])
        for f in faults:
            items: list[tuple[str, Any]] = [("at", float(f["at"]) + start)]
            for key, value in f.items():
                if key == "at":
                    continue
                items.append((key, _serial(value, 2 * k + 2) if key == "reload" else value))
            faults_out.append(items)
        pieces.append(Piece(s, start, keepalive, deadtime, len(faults)))
        s += 1
    out = [f"# The soak (bench/soak.py): {count} explorer schedules from seed {seed} back to back,",
           f"# each {DURATION_S} s (faults until 40 s, healed at 45 s), its cluster a reload at its start.",
           f"# Seeds: {', '.join(str(p.seed) for p in pieces)}.",
           *([f"# Skipped (they crash, kill or restart the {spare}): {', '.join(map(str, skipped))}."]
             if skipped else []),
           f'title = "soak: {count} explorer schedules from seed {seed}"', f"seed = {seed}",
           f"duration = {float(count * DURATION_S)}", f"config = {_value(first_config)}", "",
           "[network]", "latency = 0.001", ""]
    for items in faults_out:
        out.append("[[fault]]")
        out += [f"{key} = {_value(value)}" for key, value in items]
        out.append("")
    out += ["[[expect]]", 'always = "single_owner"', "", "[[expect]]", 'always = "table_matches_health"', ""]
    return "\n".join(out), pieces, skipped


# ------------------------------------------------------------------ samples


@dataclass
class Proc:
    """One daemon process (a router's life between two starts)."""

    router: str
    pid: int
    samples: list[dict[str, Any]] = field(default_factory=list)  # t, rss_kb, fds, threads, late, ask_ms

    @property
    def life_s(self) -> float:
        return self.samples[-1]["t"] - self.samples[0]["t"] if self.samples else 0.0


@dataclass
class Tick:
    t: float  # scenario seconds
    roles: dict[str, str]  # active / standby / down / "?" (no answer in time)
    holders: dict[str, list[str]]  # VIP -> routers (daemon running, host up) holding it
    cut: bool  # every heartbeat path cut or lossy


def _proc_status(pid: int) -> tuple[int, int] | None:
    """(VmRSS kB, Threads) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    threads = re.search(r"^Threads:\s+(\d+)", text, re.M)
    if not (rss and threads):
        return None
    return int(rss.group(1)), int(threads.group(1))


def _fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Soak(lab_runner.Hooks):
    """The observer, hooked into the lab's runner (`lab_runner.Hooks`): sampling from a thread
    once the daemons answer, faults carried out under its lock, the single_owner bound
    following the config in effect, the logs kept at the end."""

    def __init__(self, scale: float, out: Path, echo: Any) -> None:
        self.scale, self.out, self.echo = scale, out, echo
        self.world: LabWorld | None = None
        self.t0: float | None = None
        self.lock = threading.Lock()  # held while the lab carries out a fault
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.procs: dict[tuple[str, int], Proc] = {}
        self.ticks: list[Tick] = []
        self.deaths: list[str] = []  # daemons that exited without the lab killing them
        self.seen_dead: set[int] = set()
        self.admin_refused: list[str] = []
        self.no_answer: dict[str, int] = {r: 0 for r in ROUTERS}  # status timed out (a busy loop)
        self.not_listening: dict[str, int] = {r: 0 for r in ROUTERS}  # no control socket yet (starting)
        self.has_loop = False
        self.samples_file = open(out / "samples.jsonl", "w")
        self.last_print = -1e9
        self.bound_config: Any = None  # the config the single_owner bound was last taken from
        self.bound_previous: tuple[float, float] = (0, 0.0)  # (its predecessor's keepalive_ms, since)

    def now(self) -> float:
        assert self.t0 is not None
        return (time.monotonic() - self.t0) / self.scale

    # the lab's hooks

    def started(self, world: LabWorld, t0: float) -> None:
        self.world, self.t0 = world, t0
        self.thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self.thread.start()

    def carry_out(self, world: LabWorld, fault: Fault) -> None:
        with self.lock:
            try:
                world.apply(fault)
            except (LabError, OSError, ValueError) as e:
                # The lab raises when a daemon refuses an operator order (an operator failover
                # is refused unless the partner is heard both ways) or does not answer (being
                # restarted): the simulator's world drops such an order; so does the soak.
                if fault.kind != "admin":
                    raise
                t = self.now() if self.t0 is not None else 0.0
                self.admin_refused.append(f"{t:.1f} s admin {fault.value}: {e}")
                self.echo(f"{t:9.3f}  world    admin {fault.value} not carried out: {e}")

    def single_owner_bound_ms(self, world: LabWorld, bound_ms: float) -> float:
        """The runner's bound takes `keepalive` from the scenario's first config; the soak
        reloads to clusters with another keepalive, and the bound of the config before a reload
        still holds for a while after it."""
        c = world.config
        if c is not self.bound_config:
            previous = self.bound_config
            self.bound_previous = (previous.keepalive_ms if previous else 0, time.monotonic())
            self.bound_config = c
        prev_ms, since = self.bound_previous
        keep: float = c.keepalive_ms
        if time.monotonic() - since < 2 * max(prev_ms, keep) / 1000 + 1:
            keep = max(keep, prev_ms)
        return keep + lab_runner.SLACK_MS

    def closing(self, world: LabWorld) -> None:
        self.halt()
        logs = self.out / "logs"
        logs.mkdir(exist_ok=True)
        for f in world.workdir.glob("*.log"):
            shutil.copy(f, logs / f.name)

    def halt(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)
        self.samples_file.flush()

    # sampling

    def _run(self) -> None:
        next_tick = time.monotonic()
        next_sample = next_tick
        while not self.stop.is_set():
            try:
                resources = time.monotonic() >= next_sample
                if resources:
                    next_sample += SAMPLE_S
                self._tick(resources)
            except Exception as e:  # a sample must never stop the soak; say so
                self.echo(f"# soak sampler: {type(e).__name__}: {e}")
            next_tick += TICK_S
            self.stop.wait(max(0.0, next_tick - time.monotonic()))

    def _tick(self, resources: bool) -> None:
        world = self.world
        assert world is not None
        t = self.now()
        roles: dict[str, str] = {}
        statuses: dict[str, tuple[dict[str, Any], float]] = {}
        procs = {}
        with self.lock:  # a fault in flight (a kill, a restart) is never taken for a crash
            for r in ROUTERS:
                d = world.daemon(r)
                if d is not None and not d.running() and d.pid not in self.seen_dead and not d.stopped:
                    self.seen_dead.add(d.pid)
                    tail = world.log_tail(r, 15)
                    self.deaths.append(f"{t:.1f} s: the {r} daemon (pid {d.pid}) exited with "
                                       f"{d.returncode}, the lab did not kill it\n{tail}")
                    self.echo(f"{t:9.3f}  {r:<8} DAEMON EXITED with {d.returncode} (pid {d.pid})\n{tail}")
                procs[r] = d if d is not None and d.running() else None
        for r in ROUTERS:
            d = procs[r]
            if d is None:
                roles[r] = "down"
                continue
            started = time.monotonic()
            try:
                status = d.status(ASK_TIMEOUT_S)
            except (FileNotFoundError, ConnectionRefusedError):
                status = {}
                self.not_listening[r] += 1
            except (OSError, ValueError):  # a timeout, a reset, half an answer
                status = {}
                self.no_answer[r] += 1
            took_ms = (time.monotonic() - started) * 1000
            roles[r] = str(status.get("role", "?"))
            statuses[r] = (status, took_ms)
        config = world.config
        vips = active_vips(config) + ([config.nat_router] if config.nat_router else [])
        held = {r: (world.vips(r) if procs[r] is not None and world.host_up(r) else frozenset())
                for r in ROUTERS}
        holders = {v: [r for r in ROUTERS if v in held[r]] for v in vips}
        tick = Tick(round(t, 3), roles, holders, world.paths_all_cut())
        self.ticks.append(tick)
        self.samples_file.write(json.dumps({"kind": "tick", "t": tick.t, "roles": roles, "holders": holders,
                                            "cut": tick.cut}) + "\n")
        if not resources:
            return
        line = []
        for r in ROUTERS:
            proc = procs[r]
            if proc is None:
                line.append(f"{r} down")
                continue
            st, fds = _proc_status(proc.pid), _fds(proc.pid)
            if st is None or fds is None:
                continue
            status, took_ms = statuses.get(r, ({}, 0.0))
            loop = status.get("loop") if isinstance(status, dict) else None
            late = loop.get("lateness_ms") if isinstance(loop, dict) else None
            if late and not late.get("samples"):
                late = None  # no wake-up yet (a daemon just started)
            if late:
                self.has_loop = True
            sample = {"t": round(t, 3), "rss_kb": st[0], "threads": st[1], "fds": fds, "ask_ms": round(took_ms, 2),
                      "late": late, "role": roles[r]}
            key = (r, proc.pid)
            if key not in self.procs:
                self.procs[key] = Proc(r, proc.pid)
            self.procs[key].samples.append(sample)
            self.samples_file.write(json.dumps({"kind": "proc", "router": r, "pid": proc.pid, **sample}) + "\n")
            lat = f" late p99 {late['p99']:g} ms" if late else ""
            line.append(f"{r} pid {proc.pid} {roles[r]} rss {st[0] / 1024:.1f} MB fds {fds} thr {st[1]}{lat} "
                        f"ask {took_ms:.0f} ms")
        if t - self.last_print >= 60:
            self.last_print = t
            self.echo(f"{t:9.3f}  sample   " + " | ".join(line))
            self.samples_file.flush()


# ------------------------------------------------------------------ analysis


def slope_mb_h(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, kB) in MB per hour."""
    if len(points) < 10:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 3600 / 1024


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass
class Growth:
    router: str
    proc: Proc | None
    slope: float | None = None
    fd_growth: float | None = None
    thread_growth: float | None = None
    judged: bool = False
    problems: list[str] = field(default_factory=list)


def growth(router: str, procs: list[Proc]) -> Growth:
    mine = [p for p in procs if p.router == router and p.samples]
    if not mine:
        return Growth(router, None)
    p = max(mine, key=lambda q: q.life_s)
    g = Growth(router, p)
    first_t = p.samples[0]["t"]
    warm = [s for s in p.samples if s["t"] - first_t >= WARMUP_S]
    g.slope = slope_mb_h([(s["t"] * 1.0, s["rss_kb"] * 1.0) for s in warm])
    if len(warm) >= 20:
        n = max(3, len(warm) // 10)
        g.fd_growth = _median([s["fds"] for s in warm[-n:]]) - _median([s["fds"] for s in warm[:n]])
        g.thread_growth = _median([s["threads"] for s in warm[-n:]]) - _median([s["threads"] for s in warm[:n]])
    g.judged = p.life_s >= MIN_LIFE_S and g.slope is not None
    if g.judged:
        if g.slope is not None and g.slope > RSS_SLOPE_MB_H:
            g.problems.append(f"{router} pid {p.pid}: RSS grows {g.slope:.1f} MB/hour (limit {RSS_SLOPE_MB_H:g})")
        if g.fd_growth is not None and g.fd_growth > FD_GROWTH:
            g.problems.append(f"{router} pid {p.pid}: {g.fd_growth:g} more open fds (limit {FD_GROWTH})")
        if g.thread_growth is not None and g.thread_growth > THREAD_GROWTH:
            g.problems.append(f"{router} pid {p.pid}: {g.thread_growth:g} more threads (limit {THREAD_GROWTH})")
    return g


def stuck(pieces: list[Piece], ticks: list[Tick]) -> tuple[list[str], list[str]]:
    """(stuck findings, per-schedule liveness lines) from the 0.5 s ticks."""
    found, lines = [], []
    for p in pieces:
        mine = [t for t in ticks if p.heal_s <= t.t < p.end_s]
        if not mine:
            continue
        bound = p.deadtime_s + p.keepalive_s + STUCK_SLACK_S
        ready = next((t.t for t in mine if all(t.roles[r] in ("active", "standby") for r in ROUTERS)), None)
        if ready is None:
            found.append(f"seed {p.seed}: after the heal at {p.heal_s:g} s the two daemons never both answered "
                         f"before {p.end_s:g} s")
            continue
        gap_from, worst = None, 0.0
        for t in mine:
            if t.t < ready:
                continue
            if any(t.roles[r] == "active" for r in ROUTERS):
                gap_from = None
                continue
            gap_from = t.t if gap_from is None else gap_from
            worst = max(worst, t.t - gap_from + TICK_S)
        if worst > bound:
            found.append(f"seed {p.seed}: no active router for {worst:.1f} s after the heal at {p.heal_s:g} s "
                         f"(both daemons up at {ready:g} s; bound deadtime + keepalive + {STUCK_SLACK_S:g} = "
                         f"{bound:g} s)")
        last = mine[-1]
        active = [r for r in ROUTERS if last.roles[r] == "active"]
        settled = (len(active) == 1 and all(last.roles[r] == "standby" for r in ROUTERS if r not in active)
                   and all(h == active for h in last.holders.values()))
        if not settled:
            found.append(f"seed {p.seed}: at {last.t:g} s, {p.end_s - p.heal_s:g} s after the heal, not one active "
                         f"router holding every VIP: roles {last.roles}, holders {last.holders}")
        lines.append(f"seed {p.seed:>6} at {p.start_s:6g} s: {p.faults} faults; after the heal both up at "
                     f"+{ready - p.heal_s:.1f} s, longest with no active router {worst:.1f} s (bound {bound:g}), "
                     f"end: {'/'.join(last.roles[r] for r in ROUTERS)}")
    return found, lines


def owners(pieces: list[Piece], ticks: list[Tick]) -> dict[str, int]:
    """Ticks with a VIP held by nobody / by both, overall, outside cut windows, and in the settled
    part of a liveness phase (from heal + deadtime + keepalive + 5 s to the schedule's end)."""
    counts = {k: 0 for k in ("ticks", "zero", "zero_uncut", "zero_settled", "two", "two_uncut", "two_settled")}

    def settled(t: float) -> bool:
        return any(p.heal_s + p.deadtime_s + p.keepalive_s + 5 <= t < p.end_s for p in pieces)

    for t in ticks:
        counts["ticks"] += 1
        zero = any(len(h) == 0 for h in t.holders.values())
        two = any(len(h) == 2 for h in t.holders.values())
        for name, hit in (("zero", zero), ("two", two)):
            if hit:
                counts[name] += 1
                counts[f"{name}_uncut"] += not t.cut
                counts[f"{name}_settled"] += settled(t.t)
    return counts


def role_changes(ticks: list[Tick]) -> dict[str, int]:
    out = {r: 0 for r in ROUTERS}
    for a, b in zip(ticks, ticks[1:]):
        for r in ROUTERS:
            if a.roles[r] != b.roles[r] and "?" not in (a.roles[r], b.roles[r]):
                out[r] += 1
    return out


def _fmt_mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def report(soak: Soak, pieces: list[Piece], skipped: list[int], spare: str | None, verdicts: list[Any],
           wall_s: float, header: str) -> tuple[str, list[str]]:
    procs = list(soak.procs.values())
    problems: list[str] = []
    out = [header]
    out.append(f"schedules: {len(pieces)} (seeds {', '.join(str(p.seed) for p in pieces)}), "
               f"{sum(p.faults for p in pieces)} faults + {len(pieces) - 1} reloads between clusters; "
               + (f"skipped (crash, kill or restart the {spare}): {', '.join(map(str, skipped))}" if skipped
                  else "none skipped"))
    out.append(f"wall {wall_s:.0f} s; ticks every {TICK_S:g} s: {len(soak.ticks)}; resource samples every "
               f"{SAMPLE_S:g} s: {sum(len(p.samples) for p in procs)}")
    out.append("")
    late_what = "loop lateness (status loop.lateness_ms)" if soak.has_loop else \
        "lateness PROXY: status answer time (no loop object in status)"
    out.append(f"per router (RSS, fds, threads: its longest-lived daemon; {late_what} and answer times: every sample)")
    head = (f"{'router':<8} {'procs':>5} {'life s':>7} {'RSS first/last/max MB':>22} {'slope MB/h':>10} "
            f"{'fds f/l/max':>12} {'growth':>6} {'thr f/l/max':>11} {'late p50/p99/max ms':>20} "
            f"{'answer p50/max ms':>17} {'roles':>5}")
    out.append(head)
    changes = role_changes(soak.ticks)
    growths = {}
    for r in ROUTERS:
        g = growth(r, procs)
        growths[r] = g
        mine = [p for p in procs if p.router == r]
        every = [s for p in mine for s in p.samples]
        lates = [s["late"] for s in every if s.get("late")]
        if lates:
            late = (f"{_median([x['p50'] for x in lates]):.2f}/{max(x['p99'] for x in lates):.1f}/"
                    f"{max(x['max'] for x in lates):.1f}")
        else:
            asks = sorted(s["ask_ms"] for s in every) or [0.0]
            late = f"~{_median(asks):.1f}/{asks[min(len(asks) - 1, len(asks) * 99 // 100)]:.0f}/{asks[-1]:.0f}"
        asks = [s["ask_ms"] for s in every] or [0.0]
        p = g.proc
        if p is None:
            out.append(f"{r:<8} {len(mine):>5}  (no sample)")
            continue
        ss = p.samples
        rss = f"{_fmt_mb(ss[0]['rss_kb'])}/{_fmt_mb(ss[-1]['rss_kb'])}/{_fmt_mb(max(s['rss_kb'] for s in ss))}"
        fds = f"{ss[0]['fds']}/{ss[-1]['fds']}/{max(s['fds'] for s in ss)}"
        thr = f"{ss[0]['threads']}/{ss[-1]['threads']}/{max(s['threads'] for s in ss)}"
        slope = "-" if g.slope is None else f"{g.slope:+.2f}"
        fdg = "-" if g.fd_growth is None else f"{g.fd_growth:+g}"
        out.append(f"{r:<8} {len(mine):>5} {p.life_s:>7.0f} {rss:>22} {slope:>10} {fds:>12} {fdg:>6} {thr:>11} "
                   f"{late:>20} {f'{_median(asks):.1f}/{max(asks):.0f}':>17} {changes[r]:>5}")
        others = [q for q in mine if q is not p]
        if others:
            out.append(f"{'':8} other daemons: {len(others)}, lives {min(q.life_s for q in others):.0f}-"
                       f"{max(q.life_s for q in others):.0f} s, max RSS "
                       f"{_fmt_mb(max(s['rss_kb'] for q in others for s in q.samples))} MB, max fds "
                       f"{max(s['fds'] for q in others for s in q.samples)}")
        if not g.judged:
            out.append(f"{'':8} growth not judged: the longest-lived daemon lived {p.life_s:.0f} s "
                       f"(< {MIN_LIFE_S:g} s, or too few samples after the {WARMUP_S:g} s warm-up)")
        lp = [s["late"]["p99"] for s in ss if s.get("late")]
        if lp:
            n = max(1, min(60, len(lp) // 3))  # 5 minutes of samples, at most a third
            out.append(f"{'':8} its lateness p99 (median of the window p99s), first {n * SAMPLE_S:g} s: "
                       f"{_median(lp[:n]):.1f} ms, last {n * SAMPLE_S:g} s: {_median(lp[-n:]):.1f} ms; "
                       f"answer time median, same windows: {_median([s['ask_ms'] for s in ss[:n]]):.1f} / "
                       f"{_median([s['ask_ms'] for s in ss[-n:]]):.1f} ms")
        if soak.no_answer[r]:
            out.append(f"{'':8} status not answered (timeout {ASK_TIMEOUT_S:g} s, reset or half an answer): "
                       f"{soak.no_answer[r]} time(s)")
        if soak.not_listening[r]:
            out.append(f"{'':8} control socket not yet listening (a daemon starting): {soak.not_listening[r]} tick(s)")
        problems += g.problems
    out.append("")
    c = owners(pieces, soak.ticks)
    out.append(f"VIP owners ({c['ticks']} ticks): zero owners {c['zero']} (outside cut windows {c['zero_uncut']}, "
               f"in settled liveness phases {c['zero_settled']}); two owners {c['two']} (outside cut windows "
               f"{c['two_uncut']}, in settled liveness phases {c['two_settled']})")
    found, lines = stuck(pieces, soak.ticks)
    out.append("liveness after each heal:")
    out += ["  " + line for line in lines]
    out.append("stuck: " + ("none" if not found else ""))
    out += ["  " + f for f in found]
    problems += [f"stuck: {f}" for f in found]
    out.append("daemon exits the lab did not cause: " + ("none" if not soak.deaths else str(len(soak.deaths))))
    out += ["  " + d.splitlines()[0] for d in soak.deaths]
    problems += [f"daemon exit: {d.splitlines()[0]}" for d in soak.deaths]
    if soak.admin_refused:
        out.append(f"operator orders refused or unanswered (dropped, as the simulator does): {len(soak.admin_refused)}")
        out += ["  " + a for a in soak.admin_refused]
    out.append("expectations:")
    out += ["  " + text for text in summary_lines(verdicts)]
    problems += [f"expectation failed: {v.what}" for v in verdicts if v.ok is False]
    out.append("")
    out.append("verdict: " + ("PASS (no growth, no stuck state)" if not problems else "FAIL"))
    out += ["  " + p for p in problems]
    return "\n".join(out), problems


# ------------------------------------------------------------------ main


def snapshot(argv: list[str]) -> int:
    """Re-run this file from `git archive HEAD` (this file copied in): one commit for every daemon."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    tree = Path(tempfile.mkdtemp(prefix="shoal-soak-tree-"))
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    try:
        archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", commit], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise SystemExit("soak: git archive failed")
        shutil.copy(Path(__file__).resolve(), tree / "bench" / "soak.py")
        env = dict(os.environ, **{SNAPSHOT_ENV: commit})
        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            child = subprocess.Popen([sys.executable, str(tree / "bench" / "soak.py"), *argv], env=env, cwd=tree)
            return child.wait()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="about how long (default 30)")
    parser.add_argument("--seed", type=int, default=9000, help="first explorer seed (default 9000)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="the lab's time scale (default 1)")
    parser.add_argument("--spare", choices=("primary", "backup", "none"), default="primary",
                        help="skip the schedules that crash, kill or restart this router (default primary)")
    parser.add_argument("--out", help="output directory (default /tmp/shoal-soak-DATE-TIME)")
    parser.add_argument("--live", action="store_true", help="run the working tree, not a snapshot of HEAD")
    parser.add_argument("--no-sim", action="store_true", help="skip the simulator's run of the same scenario")
    args = parser.parse_args(argv)
    if not args.live and SNAPSHOT_ENV not in os.environ:
        return snapshot(argv)
    if os.geteuid() != 0:
        print("soak: needs root (the lab's namespaces)", file=sys.stderr)
        return 2
    commit = os.environ.get(SNAPSHOT_ENV) or subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() + \
        " + working tree"
    out = Path(args.out or f"/tmp/shoal-soak-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    scale = args.time_scale
    count = max(1, round(args.minutes * 60 / (DURATION_S * scale)))
    spare = None if args.spare == "none" else args.spare
    text, pieces, skipped = build(args.seed, count, spare)
    (out / "soak.toml").write_text(text)
    try:
        scenario = loads(text, str(out / "soak.toml"))
    except ScenarioError as e:
        print(f"soak: the scenario built from the explorer's schedules is refused:\n{e}", file=sys.stderr)
        return 2

    def echo(s: str) -> None:
        print(s, flush=True)

    load_start = os.getloadavg()
    header = (f"soak: lab pair (nft dataplane), {count} explorer schedules from seed {args.seed}, "
              f"{scenario.duration_ms / 1000:g} scenario s at time scale {scale:g}, code {commit}, "
              f"spare {args.spare}")
    echo(f"# {header}")
    echo(f"# started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load average {load_start[0]:.2f} "
         f"{load_start[1]:.2f} {load_start[2]:.2f}; output in {out}")
    if not args.no_sim:
        from sim.runner import run as sim_run

        started = time.monotonic()
        sim = sim_run(scenario)
        bad = [v.what for v in sim.verdicts if v.ok is False] + [f"invariant {v.name}: {v.message}"
                                                                  for v in sim.violations]
        echo(f"# the same scenario in the simulator: {'ok' if not bad else 'FAIL'} "
             f"({time.monotonic() - started:.1f} s)" + "".join(f"\n#   {b}" for b in bad))
    soak = Soak(scale, out, echo)
    timeline = open(out / "timeline.txt", "w")

    def echo_timeline(s: str) -> None:
        timeline.write(s + "\n")
        echo(s)

    previous = signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    code = 0
    verdicts: list[Any] = []
    failure = ""
    try:
        result = lab_runner.run(scenario, scale, keep_going=True, echo=echo_timeline, dataplane="nft", hooks=soak)
        verdicts = result.verdicts
    except LabError as e:
        failure = f"the lab stopped: {e}"
        code = 2
    except KeyboardInterrupt:
        failure = "interrupted (everything the lab made is removed)"
        code = 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        soak.halt()
        timeline.close()
    wall_s = time.monotonic() - started
    load_end = os.getloadavg()
    text_out, problems = report(soak, pieces, skipped, spare, verdicts, wall_s, header)
    text_out += (f"\nload average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}, at end "
                 f"{load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}; output in {out}")
    if failure:
        text_out += f"\nNOT COMPLETE: {failure}"
    echo("")
    echo(text_out)
    (out / "report.txt").write_text(text_out + "\n")
    if code:
        return code
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
