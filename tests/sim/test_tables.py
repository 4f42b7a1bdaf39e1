"""table_matches_health judged incrementally (sim.tables): the same answers as
the whole-table walk on every step, and a table broken behind the engine's
back still caught after its entries were judged right before."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from engine.events import Command, Input
from engine.table import Dest, ServiceEntry, ServiceKey
from scenario.model import Fault, load, loads
from sim import runner
from sim.explore import RandomDraw, generate
from sim.invariants import Invariants
from sim.runner import run
from sim.tables import TableJudge, table_problem
from sim.world import ROUTERS, Router, World

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))


class Both:
    """After every step of a running daemon (not only those the invariant judges): the
    incremental answers and the whole-table ones, side by side."""

    def __init__(self) -> None:
        self.judges = {r: TableJudge() for r in ROUTERS}
        self.compared = 0

    def after_step(self, router: Router, event: Input, role_before: str, commands: tuple[Command, ...]) -> None:
        engine = router.engine
        assert engine is not None
        judge = self.judges[router.name]
        differs = router.table != engine.applied
        assert judge.differs(router.table, engine.applied) == differs
        if not differs:  # on either role: the answers are compared, whatever they are
            whole = table_problem(engine.config, engine.status, router.table)
            assert judge.problem(engine.config, engine.status, router.table) == whole
        self.compared += 1


def _run_beside(monkeypatch: pytest.MonkeyPatch, text_or_path: str | Path) -> Both:
    both = Both()

    class Watched(Invariants):
        def __init__(self, world: World, records: list[dict[str, Any]]) -> None:
            super().__init__(world, records)
            world.observers.append(both)

    monkeypatch.setattr(runner, "Invariants", Watched)
    scenario = load(text_or_path) if isinstance(text_or_path, Path) else loads(text_or_path, "explore.toml")
    run(scenario)
    return both


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_the_same_answers_as_the_whole_table_on_every_step(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    both = _run_beside(monkeypatch, path)
    assert both.compared > 0


@pytest.mark.parametrize("seed", range(9100, 9112))
def test_the_same_answers_on_random_schedules(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    both = _run_beside(monkeypatch, generate(RandomDraw(random.Random(seed)), seed))
    assert both.compared > 0


TWO_VIRTUALS = """
# The table is never read back (table_check_interval = 0): the engine would put a table
# changed behind its back right (drift) before a step judged it.
title = "two virtuals, a server of b fails at 10 s"
seed = 1
duration = 20.0
config = '''
serial_no = 1
primary = 10.0.0.1
backup = 10.0.0.2
primary_private = 192.168.0.1
backup_private = 192.168.0.2
backup_active = 1
keepalive = 1
deadtime = 3
table_check_interval = 0
network = nat
nat_router = 10.1.0.254 eth1:1
virtual a {
    address = 10.0.0.100 eth0:1
    port = 80
    timeout = 2
    server a0 {
        address = 10.1.0.11
    }
    server a1 {
        address = 10.1.0.12
    }
}
virtual b {
    address = 10.0.0.101 eth0:2
    port = 80
    timeout = 2
    server b0 {
        address = 10.1.0.21
    }
    server b1 {
        address = 10.1.0.22
    }
}
'''

[network]
latency = 0.001

[[fault]]
at = 10.0
server_down = "b1"

[[expect]]
always = "table_matches_health"
"""


def _broken_at_the_fault(monkeypatch: pytest.MonkeyPatch, corrupt: Any) -> runner.Result:
    """Run TWO_VIRTUALS with the active primary's state broken (by `corrupt(router)`) just before
    b1 fails: the step that takes b1 out touches virtual b only, and virtual a's entry was
    judged right on every step before."""
    original = World.apply_fault

    def apply_fault(self: World, fault: Fault) -> None:
        if fault.kind == "server_down":
            primary = self.routers["primary"]
            assert primary.role == "active" and primary.table
            corrupt(primary)
        original(self, fault)

    monkeypatch.setattr(World, "apply_fault", apply_fault)
    return run(loads(TWO_VIRTUALS, "two.toml"))


def _key_of_a(router: Router) -> ServiceKey:
    return next(k for k, e in router.table.items() if e.service.name == "a")


def _verdict(result: runner.Result) -> str:
    bad = [v.what for v in result.verdicts if v.ok is False]
    assert len(bad) == 1 and "table_matches_health" in bad[0], bad
    return bad[0]


def test_the_unbroken_world_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _broken_at_the_fault(monkeypatch, lambda router: None).ok


def test_a_kernel_entry_changed_behind_the_engine_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def corrupt(router: Router) -> None:
        key = _key_of_a(router)
        entry = router.table[key]
        dest = next(iter(entry.dests.values()))
        router.table = {**router.table, key: ServiceEntry(entry.service, {**entry.dests, dest.key: Dest(
            dest.key, dest.weight + 1, dest.forward, dest.name)})}

    assert "differs from what its engine applied" in _verdict(_broken_at_the_fault(monkeypatch, corrupt))


def test_a_kernel_service_dropped_behind_the_engine_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def corrupt(router: Router) -> None:
        router.table = {k: e for k, e in router.table.items() if k != _key_of_a(router)}

    assert "differs from what its engine applied" in _verdict(_broken_at_the_fault(monkeypatch, corrupt))


def _both(router: Router, table: dict[ServiceKey, ServiceEntry]) -> None:
    """The kernel and what the engine believes it applied, broken alike."""
    assert router.engine is not None
    router.table = table
    router.engine.keeper.applied = dict(table)


def test_a_weight_the_health_does_not_call_for_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def corrupt(router: Router) -> None:
        key = _key_of_a(router)
        entry = router.table[key]
        dest = next(iter(entry.dests.values()))
        _both(router, {**router.table, key: ServiceEntry(entry.service, {**entry.dests, dest.key: Dest(
            dest.key, 0, dest.forward, dest.name)})})

    assert "a/a0 at weight 0, expected 1..10" in _verdict(_broken_at_the_fault(monkeypatch, corrupt))


def test_a_stray_service_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def corrupt(router: Router) -> None:
        entry = router.table[_key_of_a(router)]
        stray = ServiceKey("tcp", "10.0.0.200", 80)
        _both(router, {**router.table, stray: ServiceEntry(type(entry.service)(stray), {})})

    assert "services not in the config: TCP 10.0.0.200:80" in _verdict(_broken_at_the_fault(monkeypatch, corrupt))


def test_a_missing_service_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def corrupt(router: Router) -> None:
        _both(router, {k: e for k, e in router.table.items() if k != _key_of_a(router)})

    assert "service a (TCP 10.0.0.100:80) missing" in _verdict(_broken_at_the_fault(monkeypatch, corrupt))


def _settled(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, dict[ServiceKey, ServiceEntry], Any]:
    """The active primary's config, status, kernel table and applied table at the end of TWO_VIRTUALS."""
    last: dict[str, Any] = {}

    class Keep:
        def after_step(self, router: Router, *_: Any) -> None:
            if router.name == "primary" and router.engine is not None:
                last.update(engine=router.engine, router=router)

    class Watched(Invariants):
        def __init__(self, world: World, records: list[dict[str, Any]]) -> None:
            super().__init__(world, records)
            world.observers.append(Keep())

    monkeypatch.setattr(runner, "Invariants", Watched)
    run(loads(TWO_VIRTUALS, "two.toml"))
    engine, router = last["engine"], last["router"]
    return engine.config, engine.status, dict(router.table), dict(engine.applied)


def test_an_entry_judged_right_then_replaced_is_judged_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same status snapshot, the same config: only the entry differs (a step whose
    status did not change the virtual's)."""
    config, status, table, applied = _settled(monkeypatch)
    judge = TableJudge()
    assert not judge.differs(table, applied) and judge.problem(config, status, table) is None
    assert not judge.differs(table, applied) and judge.problem(config, status, table) is None
    key = next(k for k, e in table.items() if e.service.name == "a")
    entry = table[key]
    dest = next(iter(entry.dests.values()))
    broken = {**table, key: ServiceEntry(entry.service, {**entry.dests, dest.key: Dest(
        dest.key, 0, dest.forward, dest.name)})}
    assert judge.differs(broken, applied)
    assert judge.problem(config, status, broken) == "a/a0 at weight 0, expected 1..10" == table_problem(
        config, status, broken)
    assert not judge.differs(table, applied) and judge.problem(config, status, table) is None
    reordered = dict(reversed(list(broken.items())))
    assert judge.differs(reordered, applied) and judge.problem(config, status, reordered) is not None
    assert judge.differs({**table, ServiceKey("tcp", "10.0.0.9", 80): entry}, {**applied, key: entry})
