"""A scenario on the wall clock, in the lab: faults on time, expectations
judged by `scenario.checks` (the code `shoal sim` judges with), the two
`always` expectations sampled, and a timeline.

Scenario time 0 is when both daemons answer on their control sockets and
the active one has a first check result for each of its servers (on a host
a few milliseconds later; under qemu's software emulation, seconds), moved
on to the next start of the active router's check period (`_in_phase`):
as in the simulator, its checks start at 0 s and at every multiple of the
interval (`PHASE_SLACK_S` of wall time after it, so that a fault at a
multiple, carried out a few ms late, is in effect first, as a fault is
before a check started at the same instant in the simulator), so a fault
at a multiple meets the same check in both worlds.
Every time in the scenario and its configs is multiplied by the time scale
(`plan.scale_scenario`); the timeline prints scenario seconds (wall seconds
divided by the scale), so it reads like the scenario file.

Sampling (every `POLL_S` of wall time, or as often as half the time allows
when a sample takes longer): each router's VIPs (`ip -j addr` in
its namespace), role (control socket) and table (control socket: the
daemon reads it back from its dataplane, the nft ruleset or the IPVS table
of its namespace, so both dataplanes are observed the same way); changes
go to the timeline.  The `always` expectations, judged from the samples:

- single_owner: a VIP held by both routers whose daemons run, for longer
  than `keepalive` + latency + `SLACK_MS` (wall: sampling and process
  scheduling), while not every heartbeat path is cut or lossy;
- table_matches_health: a running daemon's kernel table (its real-server
  destinations) equals what its status says is in the table, at the
  weights it says (on either role: a standby keeps the table, as
  keepalived's backup does), and a standby holds no VIP; a mismatch counts
  when it lasts `STALE_MS` of wall time (a table op or a release in flight
  between two reads is not one).

`vip_owner` (naming a router) also reads the client's neighbour table: each
VIP's entry must carry the MAC of that router's interface (the gratuitous
ARPs of a takeover reached the client), not only the address on the router.

`client_success` is judged at the end, once every connection opened in the
window has finished.

What really happened replays: at the end of the run each router's daemon
journal (STATE_DIR/journal, every life of the run; docs/JOURNAL.md) is fed
to a fresh engine (`judge_journals`); the timeline says `journal replayed
identically` with its counts, and a journal that does not replay, cannot
be read or holds no step is a failed verdict naming its line, appended
like the log verdicts below.

Nothing hides: the daemons log JSON lines, and at the end of the run
every warning or error line of either daemon (and any line outside the
log: a traceback) must be expected by the scenario, or the run fails with
one verdict per router, `log of ROUTER at T s: LINE` (scenario seconds;
appended after the expectations' verdicts, only when one fails).  What
"expected" means is derived from the scenario alone, no key of its own
(`adapters/lab/loglines.py` has the table): the configuration's own
warnings; a server fault explains that server's health lines (and its
virtual's quorum lines); a crash, kill, restart, partition, loss or
link_down explains the partner and heartbeat lines (so do the network's
`loss`, and the routers' boot for the lines before scenario time 0); an
operator's order
its refusal, a failover its hold; a link fault that router's link lines;
each from the fault's scenario time on.  Anything else at warning or
above fails: a failed table operation, a drift, an engine error, a failed
task or command, a refused reload, a stall.

`Hooks` is what a caller may add to a run without reaching inside it
(bench/soak.py: an observer of the daemons, a fault wrapper, a single_owner
bound that follows reloads); `run` without hooks is `shoal lab`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from adapters.lab import loglines
from adapters.lab.plan import scale_scenario
from adapters.lab.world import ROUTERS, LabWorld, open_world
from engine.table import DestKey
from scenario.checks import View, active_vips, judge
from scenario.model import Expect, Fault, Scenario
from scenario.verdicts import Verdict, Verdicts, all_hold

POLL_S = 0.05
SLACK_MS = 300
STALE_MS = 600  # wall: a table op in flight (an nft run) between two reads is not a mismatch
CLIENT_TIMEOUT_MS = 3_000  # as the simulator's clients (sim/servers.py), scaled
PHASE_SLACK_S = 0.02  # wall: the active router's checks come this long after each multiple of their interval


@dataclass
class LabResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return all_hold(self.verdicts)


class Hooks:
    """What a caller of `run` may add to a lab run; every hook here does nothing more than the
    runner itself.  Subclass and override."""

    def started(self, world: LabWorld, t0: float) -> None:
        """Both daemons serve and the active one has its first check results: scenario time 0
        is `t0` (time.monotonic())."""

    def carry_out(self, world: LabWorld, fault: Fault) -> None:
        """Carry out one of the scenario's faults."""
        world.apply(fault)

    def single_owner_bound_ms(self, world: LabWorld, bound_ms: float) -> float:
        """How long (wall ms) a VIP may be held by both routers, asked at every sample;
        `bound_ms` is the runner's own: the scenario's first keepalive + `SLACK_MS`."""
        return bound_ms

    def closing(self, world: LabWorld) -> None:
        """The run is over, passed or not (or could not start): before the lab's processes are
        killed and its namespaces and working directory removed."""


class Sampler:
    """What the routers look like now, compared with the last look; the `always` checks."""

    def __init__(self, world: LabWorld, scale: float, trace: Callable[..., None], hooks: Hooks | None = None) -> None:
        self.world, self.trace = world, trace
        self.hooks = hooks or Hooks()
        c = world.config
        self.dual_bound_ms = c.keepalive_ms + SLACK_MS
        self.scale = scale
        self.roles: dict[str, str] = {r: "down" for r in ROUTERS}
        self.vips: dict[str, frozenset[str]] = {r: frozenset() for r in ROUTERS}
        self.dual_since: dict[str, float] = {}
        self.stale: dict[str, float | None] = {r: None for r in ROUTERS}
        self.violations: dict[str, str] = {}
        self.tables: dict[str, str] = {}

    def sample(self, now_ms: float) -> None:
        views = {r: self.world.router_view(r) for r in ROUTERS}
        for r, v in views.items():
            if v.role != self.roles[r]:
                self.trace(now_ms, r, "role", {"from": self.roles[r], "to": v.role})
                self.roles[r] = v.role
            for a in sorted(v.vips - self.vips[r]):
                self.trace(now_ms, r, "vip", {"op": "add", "address": a})
            for a in sorted(self.vips[r] - v.vips):
                self.trace(now_ms, r, "vip", {"op": "del", "address": a})
            self.vips[r] = v.vips
            dests = _table_text(v.table)
            if dests != self.tables.get(r, ""):
                self.trace(now_ms, r, "table", {"op": "now", "dests": dests or "(empty)"})
                self.tables[r] = dests
        self._single_owner(now_ms, views)
        for r, v in views.items():
            self._table_matches_health(now_ms, r, v)

    def _violate(self, name: str, now_ms: float, message: str) -> None:
        if name not in self.violations:
            self.violations[name] = f"at {now_ms / self.scale / 1000:.3f} s: {message}"
            self.trace(now_ms, "world", "expect", {"ok": False, "what": f"invariant {name}: {message}"})

    def _single_owner(self, now_ms: float, views: dict[str, Any]) -> None:
        running = [v for v in views.values() if v.daemon]
        both = frozenset.intersection(*(v.vips for v in running)) if len(running) == 2 else frozenset()
        if self.world.paths_all_cut():
            both = frozenset()
        for address in list(self.dual_since):
            if address not in both:
                del self.dual_since[address]
        bound_ms = self.hooks.single_owner_bound_ms(self.world, self.dual_bound_ms)
        wall_now = time.monotonic()
        for address in sorted(both):
            since = self.dual_since.setdefault(address, wall_now)
            held_ms = (wall_now - since) * 1000
            if held_ms > bound_ms:
                self._violate("single_owner", now_ms, f"{address} held by both routers for {held_ms:.0f} ms "
                                                      f"(wall) with a heartbeat path up")

    def _table_matches_health(self, now_ms: float, name: str, view: Any) -> None:
        problem = table_problem(self.world.last_status.get(name, {}), view.table, view.vips) if view.daemon else ""
        if not problem:
            self.stale[name] = None
            return
        since = self.stale[name]
        if since is None:
            self.stale[name] = time.monotonic()
        elif (time.monotonic() - since) * 1000 > STALE_MS:
            self._violate("table_matches_health", now_ms, f"{name}: {problem}")


def table_problem(status: dict[str, Any], table: Any, vips: frozenset[str] = frozenset()) -> str:
    """'' when the kernel table holds what the daemon's status says it applied, and a standby
    router (`vips`: the VIPs on its interfaces) holds no VIP."""
    if not status:
        return ""  # the control socket did not answer in time: no verdict from this sample
    if status.get("role") != "active" and vips:
        return f"a standby router holds {' '.join(sorted(vips))}"
    for s in status.get("services", []):
        entry = next((e for k, e in table.items()
                      if (k.address, k.port, k.protocol) == (s["address"], s["port"], s.get("protocol", "tcp"))
                      or (s.get("fwmark") and k.fwmark == s["fwmark"])), None)
        want = {DestKey(r["address"], r["port"]): r["weight"] for r in s["servers"] if r["in_table"]}
        if entry is None:
            if want:
                return f"service {s['name']} missing from the kernel table"
            continue
        names = {DestKey(r["address"], r["port"]) for r in s["servers"]}
        have = {k: d.weight for k, d in entry.dests.items() if k in names}
        if have != want:
            return (f"{s['name']}: kernel {_dests(have)}, status calls for {_dests(want)}")
    return ""


def _table_text(table: Any) -> str:
    return "; ".join(f"{key}: " + " ".join(f"{d.name or d.key}/{d.weight}" for _, d in sorted(e.dests.items()))
                     for key, e in sorted(table.items()))


def _dests(d: dict[DestKey, int]) -> str:
    return "{" + ", ".join(f"{k} w{w}" for k, w in sorted(d.items())) + "}"


def _client_arp(world: LabWorld, view: View, ok: bool, what: str, owner: str) -> tuple[bool, str]:
    """A real observation the simulator has no need of: the client's
    neighbour entry for each VIP points at the MAC of the router that should
    hold it (after the gratuitous ARPs of a takeover; a few ms of slack)."""
    for _ in range(10):
        seen = {vip: world.arp_holder(vip) for vip in active_vips(view.config)}
        if all(holder == owner for holder in seen.values()):
            return ok, what
        time.sleep(0.02)
    wrong = ", ".join(f"{vip} -> {holder}" for vip, holder in seen.items() if holder != owner)
    return False, f"{what}; the client's neighbour table: {wrong}"


def run(scenario: Scenario, scale: float = 1.0, keep_going: bool = False,
        echo: Callable[[str], None] | None = None, dataplane: str = "nft", hooks: Hooks | None = None) -> LabResult:
    """Run `scenario` for real, the daemons on `dataplane` ("nft" or "ipvs").  LabError when the
    lab cannot run (exit 2)."""
    from adapters.lab.timeline import line

    hooks = hooks or Hooks()
    scaled = scale_scenario(scenario, scale)
    configs = [scaled.config] + [f.value for f in scaled.faults if f.kind == "reload"]
    result = LabResult()
    started = time.monotonic()
    t0 = started

    def trace(now_ms: float, node: str, kind: str, data: dict[str, Any]) -> None:
        record = {"t": round(now_ms / scale / 1000, 3), "node": node, "kind": kind, **data}
        result.records.append(record)
        if echo is not None:
            echo(line(record))

    with open_world(configs, max(0.2, CLIENT_TIMEOUT_MS * scale / 1000), dataplane) as world:
        try:
            t0 = _start(world, scaled)
            hooks.started(world, t0)
            end_ms = _loop(world, scaled, scenario.expects, scale, keep_going, t0, trace, result, hooks)
            t0_unix = time.time() - (time.monotonic() - t0)
            replayed = judge_journals(world)
            for router, outcome in replayed:
                if isinstance(outcome, str):
                    continue
                trace(end_ms, router, "journal", {"what": f"journal replayed identically: {outcome.starts} start(s), "
                                                          f"{outcome.steps} step(s), {outcome.commands} command(s)"})
            for router, what in [*judge_logs(world, scenario, t0_unix, scale),
                                 *((r, o) for r, o in replayed if isinstance(o, str))]:
                result.verdicts.append(Verdict(False, what))
                trace(end_ms, router, "expect", {"ok": False, "what": what})
            if not result.ok:
                for r in world.plan.routers:
                    trace(end_ms, r, "log", {"tail": "\n" + world.log_tail(r)})
        finally:
            hooks.closing(world)
    result.wall_s = time.monotonic() - started
    return result


def _start(world: LabWorld, scenario: Scenario) -> float:
    world.start_servers()
    if any(e.kind == "client_success" for e in scenario.expects):
        world.start_client()
    # The primary first, the backup once the primary serves (a single director has no backup).
    # In the simulator both boot at 0 s and hear each other one latency later; in the lab a
    # daemon's start takes from 0.15 s (idle host) to seconds (loaded, or under qemu), and a
    # backup up a deadtime before its primary takes the VIPs first, which the simulator never
    # does.  Started in this order, the primary hears its backup's first heartbeat, or goes
    # active alone after deadtime: as in the simulator, the primary is active either way.
    for r in world.plan.routers:
        world.wait_daemon(world.start_daemon(r))
    world.wait_first_checks()
    return _in_phase(world, time.monotonic())


def _in_phase(world: LabWorld, now: float) -> float:
    """Scenario time 0 at a start of the active router's check period at or after `now` (wall,
    time.monotonic()), less `PHASE_SLACK_S`, as in the simulator, where every check of a router
    starts at 0 s and then every interval, and a fault at the same instant comes first (the
    slack: the runner carries a fault out a few ms late, and a check racing it saw the server
    as it was half the time); `now` when it cannot be told.  A daemon checks each server at its first step
    and then every interval from it (`engine.timers`), and its first step follows its `starting
    as ...` log line: with time 0 taken when the lab saw the first results instead, each check
    fell a little before each multiple of the interval (the lab polls), so a server healed at a
    multiple was seen one interval later than in the simulator (quiesce-server, server-flapping)."""
    periods = [v.interval_ms for v in world.config.virtuals if v.active and v.servers and v.interval_ms > 0]
    # The active router's checks (their results make the table); none active yet (a pair's
    # primary goes active when it hears its partner, which may come after the first checks):
    # the first router's, the primary's, which a cold start makes active.
    active = [r for r in world.plan.routers if world.status(r).get("role") == "active"] or list(world.plan.routers)
    if not periods or not active:
        return now
    period_s = math.lcm(*periods) / 1000
    if period_s > 2 * max(periods) / 1000:  # intervals out of step: the longest one's period
        period_s = max(periods) / 1000
    try:
        lines = loglines.parse(active[0], world.routers[active[0]].log_path.read_text(errors="replace"), 0.0, 1.0)
    except OSError:
        return now
    starts = [line.t_s for line in lines if line.kind == "start" and line.t_s is not None]
    if not starts:
        return now
    first_step = starts[-1] - (time.time() - time.monotonic()) - PHASE_SLACK_S  # Unix -> monotonic
    periods_since = math.ceil(max(0.0, now - first_step) / period_s)
    t0 = first_step + periods_since * period_s
    time.sleep(max(0.0, t0 - time.monotonic()))
    return t0


def _sample(sampler: Sampler, now_ms: float) -> float:
    """One sample; how long it took (wall seconds)."""
    started = time.monotonic()
    sampler.sample(now_ms)
    return time.monotonic() - started


def _loop(world: LabWorld, scenario: Scenario, original: tuple[Expect, ...], scale: float, keep_going: bool,
          t0: float, trace: Callable[..., None], result: LabResult, hooks: Hooks) -> float:
    """The scenario's faults and expectations on time; the verdicts in `result`; the scenario's
    end (or where a failure stopped it), wall ms after `t0`."""
    def now_ms() -> float:
        return (time.monotonic() - t0) * 1000

    sampler = Sampler(world, scale, trace, hooks)
    steps: list[tuple[int, int, Fault | tuple[int, Expect]]] = [(f.at_ms, 0, f) for f in scenario.faults]
    steps += [(e.at_ms, 1, (i, e)) for i, e in enumerate(scenario.expects)
              if e.at_ms is not None and e.kind != "client_success" and e.at_ms <= scenario.duration_ms]
    steps.sort(key=lambda s: (s[0], s[1]))
    verdicts = Verdicts(original)
    stopped_at: float | None = None
    # Between two samples a pause of `POLL_S`, or as long as the last sample took when that was
    # longer: looking never takes more than half the time (under qemu's software emulation a
    # sample costs far more than `POLL_S`, and the daemons looked at need the CPU).  No sample is
    # started that would end after the next step is due: faults and expectations stay on time.
    took_s = 0.0
    for at_ms, _, step in steps:
        while now_ms() < at_ms:
            if (at_ms - now_ms()) / 1000 > took_s:
                took_s = _sample(sampler, now_ms())
            time.sleep(max(0.0, min(max(POLL_S, took_s), (at_ms - now_ms()) / 1000)))
        if isinstance(step, Fault):
            trace(now_ms(), "world", "fault", {"what": step.describe()})
            hooks.carry_out(world, step)
            for router, what in world.refusals:
                trace(now_ms(), router, "admin", {"what": what})
            world.refusals.clear()
            continue
        index, e = step
        view = View(round(now_ms()), world.config, {r: world.router_view(r) for r in ROUTERS})
        ok, what = judge(original[index], view)  # described in scenario time
        if e.kind == "vip_owner" and e.value != "none":
            ok, what = _client_arp(world, view, ok, what, str(e.value))
        verdicts.judged(index, ok, what)
        trace(now_ms(), "world", "expect", {"ok": ok, "what": what})
        if not ok and not keep_going:
            stopped_at = now_ms()
            break
    else:
        while now_ms() < scenario.duration_ms:
            time.sleep(max(POLL_S, _sample(sampler, now_ms())))
    end_ms = now_ms() if stopped_at is None else stopped_at
    world.stop_client()
    records = [((t - t0) * 1000, ok) for t, ok in world.client_records()]
    for index, e in enumerate(scenario.expects):
        if e.kind == "client_success" and e.window_ms is not None and e.window_ms[1] <= end_ms + 1:
            lo, hi = e.window_ms
            window = [ok for t, ok in records if lo <= t < hi]
            view = View(round(end_ms), world.config, {}, (sum(window), len(window)))
            ok, what = judge(original[index], view)
            if not ok:
                failed = [f"{t / scale / 1000:.1f}" for t, good in records if lo <= t < hi and not good]
                what += f"; failed connections opened at {', '.join(failed[:20])}" + (" ..." if len(failed) > 20 else "")
            verdicts.judged(index, ok, what)
            trace(end_ms, "world", "expect", {"ok": ok, "what": what})
        elif e.kind == "always" and stopped_at is None:
            v = verdicts.always(index, sampler.violations.get(e.value))
            trace(end_ms, "world", "expect", {"ok": v.ok, "what": v.what})
    result.verdicts = verdicts.close(end_ms, scale)
    return end_ms


def judge_journals(world: LabWorld) -> list[tuple[str, Any]]:
    """Each router's daemon journal (STATE_DIR/journal, every life of the run) replayed in a fresh
    engine (`adapters.journal.replay_dir`): (router, its Outcome) when it replays identically,
    (router, a failed verdict's text) when it does not, cannot be read or holds no step.  Read
    while the daemons still run: the journal's last moments (its writer's buffer, a line being
    written) are not judged."""
    from adapters.journal import JournalError, replay_dir

    out: list[tuple[str, Any]] = []
    for r in world.plan.routers:
        try:
            outcome = replay_dir(world.routers[r].state_dir)
        except JournalError as e:
            out.append((r, f"journal of {r} cannot be replayed: {e}"))
            continue
        if not outcome.identical:
            out.append((r, f"journal of {r} does not replay identically: {outcome.difference}"))
        elif outcome.steps == 0:
            out.append((r, f"journal of {r} holds no step (the daemon ran: its journal should have them)"))
        else:
            out.append((r, outcome))
    return out


def judge_logs(world: LabWorld, scenario: Scenario, t0_unix: float, scale: float) -> list[tuple[str, str]]:
    """(router, verdict) for each router whose log has a warning or error line the scenario
    does not explain (`adapters.lab.loglines`: the rules); nothing when every line is explained."""
    out = []
    for r in world.plan.routers:
        try:
            text = world.routers[r].log_path.read_text(errors="replace")
        except OSError:
            continue
        lines = loglines.unexplained(loglines.parse(r, text, t0_unix, scale), scenario)
        if lines:
            out.append((r, loglines.verdict_text(r, lines)))
    return out
