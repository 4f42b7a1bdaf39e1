"""Run a scenario in the simulated world: faults on time, expectations
judged, a trace in time order (SPEC.md, "Trace").  Partial (issue 3):
`client_success` is refused as not yet supported (exit 2)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Generator

import simpy

from engine.pool import service_key
from scenario.model import Expect, Scenario, ScenarioError
from sim.world import ROUTERS, World


@dataclass
class Result:
    records: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[tuple[bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(ok for ok, _ in self.verdicts)


def run(scenario: Scenario, seed: int | None = None, until_ms: int | None = None) -> Result:
    for e in scenario.expects:
        if e.kind == "client_success":
            raise ScenarioError(scenario.file, e.line, "client_success: clients are not simulated yet (issue 3)")
    result = Result()

    def trace(t: int, node: str, kind: str, data: dict[str, Any]) -> None:
        result.records.append({"t": round(t / 1000, 3), "node": node, "kind": kind, **data})

    world = World(scenario.config, scenario.seed if seed is None else seed, scenario.latency_ms, scenario.loss, trace)
    env = world.env
    single_owner = [e for e in scenario.expects if e.kind == "always" and e.value == "single_owner"]
    matches = [e for e in scenario.expects if e.kind == "always" and e.value == "table_matches_health"]
    dual_since: dict[str, int] = {}
    failures: dict[str, str] = {}

    def check_always() -> None:
        now = env.now
        if single_owner:
            allowed = world.config.keepalive_ms + world.latency_ms
            live = [r for r in world.routers.values() if r.state == "up"]
            all_cut = all((s, p) in world.cut for s in ROUTERS for p in ("public", "private"))
            for address in sorted(set.intersection(*(r.vips for r in live)) if len(live) == 2 else set()):
                start = dual_since.setdefault(address, now)
                if now - start > allowed and not all_cut and "single_owner" not in failures:
                    failures["single_owner"] = f"{address} held by both routers since {start / 1000:.3f} s"
            for address in list(dual_since):
                if len(live) < 2 or address not in live[0].vips or address not in live[1].vips:
                    del dual_since[address]
        if matches:
            for r in world.routers.values():
                if r.engine is not None and r.table != r.engine.applied and "table_matches_health" not in failures:
                    failures["table_matches_health"] = f"{r.name}'s table differs from what its engine applied at {now / 1000:.3f} s"

    world.after_step.append(check_always)

    def faults() -> Generator[simpy.Event, Any, None]:
        for fault in scenario.faults:
            yield env.timeout(max(0, fault.at_ms - env.now))
            extra = "".join(f" {k}={v}" for k, v in fault.extra.items())
            value = "(new config)" if fault.kind == "reload" else fault.value
            trace(env.now, "world", "fault", {"what": f"{fault.kind} {value}{extra}"})
            try:
                world.apply_fault(fault)
            except KeyError as e:
                raise ScenarioError(scenario.file, fault.line, str(e.args[0])) from None

    def expectation(e: Expect) -> Generator[simpy.Event, Any, None]:
        assert e.at_ms is not None
        yield env.timeout(e.at_ms)
        ok, what = judge(world, e, scenario)
        result.verdicts.append((ok, what))
        trace(env.now, "world", "expect", {"ok": ok, "what": what})

    world.boot("primary")
    world.boot("backup")
    env.process(faults())
    for e in scenario.expects:
        if e.at_ms is not None:
            env.process(expectation(e))
    env.run(until=min(scenario.duration_ms, until_ms or scenario.duration_ms) + 1)
    for e in scenario.expects:
        if e.kind == "always":
            problem = failures.get(e.value)
            what = f"always {e.value}" + (f": {problem}" if problem else "")
            result.verdicts.append((problem is None, what))
            trace(env.now, "world", "expect", {"ok": problem is None, "what": what})
    return result


def judge(world: World, e: Expect, scenario: Scenario) -> tuple[bool, str]:
    at = f"at {e.at_ms / 1000:g} s" if e.at_ms is not None else ""
    if e.kind == "vip_owner":
        vips = sorted({v.address for v in world.config.virtuals if v.active and v.address})
        holders = {a: sorted(r.name for r in world.routers.values() if r.state != "down" and a in r.vips) for a in vips}
        want = [] if e.value == "none" else [e.value]
        ok = all(h == want for h in holders.values())
        seen = ", ".join(f"{a}: {'+'.join(h) or 'nobody'}" for a, h in holders.items())
        return ok, f"vip_owner {e.value} {at} ({seen})"
    if e.kind == "role":
        seen = {n: (r.engine.failover.role if r.engine else "down") for n, r in world.routers.items()}
        ok = all(seen.get(n) == want for n, want in e.value.items())
        return ok, f"role {e.value} {at} (saw {seen})"
    active = [r for r in world.routers.values() if r.engine is not None and r.engine.failover.role == "active"]
    if len(active) != 1:
        return False, f"{e.kind} {e.value} {at}: {len(active)} active routers, cannot read the table"
    table = active[0].table
    weights: dict[str, int] = {}
    for v in world.config.virtuals:
        key = service_key(v)
        entry = table.get(key) if key else None
        for d in (entry.dests.values() if entry else ()):
            weights[f"{v.name}/{d.name}"] = d.weight
            weights.setdefault(d.name, d.weight)
    if e.kind == "in_table":
        missing = [s for s in e.value if s not in weights]
        return not missing, f"in_table {e.value} {at}" + (f" (missing {missing})" if missing else "")
    if e.kind == "not_in_table":
        present = [s for s in e.value if s in weights]
        return not present, f"not_in_table {e.value} {at}" + (f" (present {present})" if present else "")
    if e.kind == "weight":
        wrong = {s: weights.get(s) for s, w in e.value.items() if weights.get(s) != w}
        return not wrong, f"weight {e.value} {at}" + (f" (saw {wrong})" if wrong else "")
    raise ScenarioError(scenario.file, e.line, f"{e.kind}: not supported")


def timeline(records: list[dict[str, Any]]) -> str:
    lines = []
    for r in records:
        rest = {k: v for k, v in r.items() if k not in ("t", "node", "kind")}
        if r["kind"] == "role":
            text = f"role {rest['from']} -> {rest['to']} ({rest['reason']})"
        elif r["kind"] == "health":
            text = f"health {rest['service']}/{rest['server']} {rest['from']} -> {rest['to']}"
        elif r["kind"] == "expect":
            text = f"{'PASS' if rest['ok'] else 'FAIL'} {rest['what']}"
        elif r["kind"] == "fault":
            text = f"FAULT {rest['what']}"
        else:
            text = f"{r['kind']} " + " ".join(f"{k}={v}" for k, v in rest.items() if v is not None)
        lines.append(f"{r['t']:9.3f}  {r['node']:<8} {text}")
    return "\n".join(lines)


def json_lines(records: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(r, sort_keys=True, separators=(",", ":")) for r in records)
