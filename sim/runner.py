"""Run a scenario in the simulated world: faults on time, expectations
judged (by `scenario.checks`, the code `shoal lab` shares), invariants after
every step (`sim.invariants`), and a trace in time order (SPEC.md, "Trace").

At one instant, faults come first (in file order), then the engines' own
reactions, and expectations last: an expectation at `t` sees everything
that happened at `t`.  A `client_success` window is judged once the
connections opened in it have finished (`Costs.connection_ms` after its
end, or at the end of the run), as the lab judges it.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import simpy

from scenario.checks import RouterView, View, judge
from scenario.model import Expect, Scenario
from scenario.verdicts import Verdict, Verdicts, all_hold
from sim.costs import Costs
from sim.invariants import Invariants, Violation
from sim.world import World

LATE = 10  # simpy priority after NORMAL (1): runs after everything else at that instant


@dataclass
class Result:
    records: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    steps: int = 0

    @property
    def ok(self) -> bool:
        return all_hold(self.verdicts) and not self.violations


def view_of(world: World, clients: tuple[int, int] | None = None) -> View:
    routers = {
        name: RouterView(name, r.engine is not None, r.host_up, r.role, frozenset(r.vips), dict(r.table))
        for name, r in world.routers.items()
    }
    return View(world.now, world.config, routers, clients)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while the world runs, back as it was after.

    The engines' state (every real server's, on both routers) is long-lived, and the
    collector's full passes walked all of it again and again as the simpy events (short
    lived, but promoted before they are done) piled up: 40 % of a run at 10,000 real
    servers.  A running world makes no cyclic garbage step by step (measured, bench/sim.py
    at 100 x 100 for 0.3 simulated hours: the same peak memory with the collector on or
    off, and the same garbage left over at the end); what a finished world leaves is
    collected once the collector is back.  The switch is the process's: a run in a thread
    beside other work (the web tool's what-if) pauses it for everyone meanwhile, which
    costs memory for that long and changes nothing else; two runs at once leave it on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run(scenario: Scenario, seed: int | None = None, until_ms: int | None = None,
        costs: Costs | None = None) -> Result:
    """`costs`: what the world's commands, starts and connections cost (default: `Costs()`, as
    measured in the lab; `sim.costs.ZERO`: nothing costs time)."""
    result = Result()
    records = result.records

    def trace(t: int, node: str, kind: str, data: dict[str, Any]) -> None:
        records.append({"t": round(t / 1000, 3), "node": node, "kind": kind, **data})

    reloads = tuple(f.value for f in scenario.faults if f.kind == "reload")
    world = World(scenario.config, scenario.seed if seed is None else seed, scenario.latency_ms, scenario.loss,
                  trace, reloads, costs)
    invariants = Invariants(world, records)
    reported: set[str] = set()

    def report_violations() -> None:
        for name, v in invariants.violations.items():
            if name not in reported:
                reported.add(name)
                trace(v.at_ms, "world", "expect", {"ok": False, "what": f"invariant {name}: {v.message}"})

    class Reporter:
        def after_step(self, *_: Any) -> None:
            result.steps += 1
            if len(invariants.violations) != len(reported):
                report_violations()

    world.observers.append(Reporter())
    end_ms = scenario.duration_ms if until_ms is None else min(until_ms, scenario.duration_ms)

    def fault_at(fault: Any) -> None:
        trace(world.now, "world", "fault", {"what": fault.describe()})
        invariants.before_fault(fault)
        world.apply_fault(fault)
        invariants.after_fault(fault)
        report_violations()

    def fault_action(fault: Any) -> Callable[[], None]:
        return lambda: fault_at(fault)

    for fault in scenario.faults:
        world.at(fault.at_ms, fault_action(fault))

    verdicts = Verdicts(scenario.expects)

    def expectation(index: int, e: Expect) -> None:
        invariants.check_dual()
        clients = world.clients.window(*e.window_ms) if world.clients and e.window_ms else None
        v = verdicts.judged(index, *judge(e, view_of(world, clients)))
        trace(world.now, "world", "expect", {"ok": v.ok, "what": v.what})
        report_violations()

    def late(at_ms: int, action: Any) -> None:
        event = simpy.Event(world.env)
        event.callbacks.append(lambda _: action())
        event._ok, event._value = True, None
        world.env.schedule(event, LATE, at_ms)  # type: ignore[arg-type]

    for index, e in enumerate(scenario.expects):
        if e.at_ms is not None and e.at_ms <= end_ms:
            at = e.at_ms
            if e.kind == "client_success":  # judged once the window's last connections have finished
                at = min(at + world.costs.connection_ms, end_ms)
            late(at, lambda i=index, x=e: expectation(i, x))
    if any(e.kind == "client_success" for e in scenario.expects):
        world.start_clients()

    with collector_paused():
        world.boot("primary")
        if world.config.backup:  # a single director has no backup router: its role is "down", as in the lab
            world.boot("backup")
        world.env.run(until=end_ms + 1)
    invariants.check_dual()
    invariants.check_liveness(world.config.deadtime_ms + 2 * world.config.keepalive_ms + 2 * world.latency_ms
                              + invariants.slack_ms + world.costs.daemon_start_ms)
    report_violations()

    for index, e in enumerate(scenario.expects):
        if e.kind == "always":
            violation = invariants.violations.get(e.value)
            v = verdicts.always(index, violation.message if violation else None)
            trace(end_ms, "world", "expect", {"ok": v.ok, "what": v.what})
    result.verdicts = verdicts.close(end_ms)
    always = {e.value for e in scenario.expects if e.kind == "always"}
    result.violations = [v for name, v in invariants.violations.items() if name not in always]
    return result
