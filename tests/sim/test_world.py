"""The world's parts: nanny's check semantics, schedulers, and invariant
checkers that catch a broken world (the checks can fail)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.events import CheckSpec, DelDest, DelVip, SendGratuitousArp
from engine.table import Dest, DestKey, Service, ServiceEntry, ServiceKey
from scenario.model import load
from sim.clients import SchedState, schedule
from sim.costs import Costs
from sim.runner import run
from sim.servers import ServerModel, check_result
from sim.world import World

ROOT = Path(__file__).resolve().parents[2]


def spec(**kw: object) -> CheckSpec:
    base: dict[str, object] = {"address": "10.1.0.1", "port": 80, "kind": "tcp", "timeout_ms": 2000}
    base.update(kw)
    return CheckSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode, kw, expected", [
    (ServerModel("up"), {}, (2, True)),
    (ServerModel("down"), {}, (2, False)),
    (ServerModel("hang"), {}, (2, True)),  # connect-only: a hung server still accepts
    (ServerModel("hang"), {"expect": "HTTP"}, (2000, False)),
    (ServerModel("wrong"), {"expect": "HTTP/1.0 200"}, (2, False)),
    (ServerModel("wrong"), {"expect": "HTTP"}, (2, False)),  # issue 10: a wrong answer is not HTTP at all
    (ServerModel("wrong"), {"expect": "^HTTP/1.. 200", "use_regex": True}, (2, False)),
    (ServerModel("wrong"), {"expect": ".*", "use_regex": True}, (2, True)),
    (ServerModel("wrong"), {"expect": "*"}, (2, True)),
    (ServerModel("wrong"), {"send_program": "/bin/check %h %p", "expect": "OK"}, (2, False)),
    (ServerModel("slow", 1500), {"expect": "HTTP"}, (1502, True)),
    (ServerModel("slow", 2000), {"expect": "HTTP"}, (2000, False)),
    (ServerModel("down"), {"kind": "udp"}, (2, False)),
    (ServerModel("hang"), {"kind": "udp"}, (2, True)),
    (ServerModel("wrong"), {"kind": "http"}, (2, False)),
])
def test_check_semantics(mode: ServerModel, kw: dict[str, object], expected: tuple[int, bool]) -> None:
    delay, ok, _ = check_result(spec(**kw), mode, 2)
    assert (delay, ok) == expected


def _entry(weights: dict[str, int]) -> ServiceEntry:
    key = ServiceKey("tcp", "10.0.0.100", 80)
    dests = {DestKey(f"10.1.0.{i}", 80): Dest(DestKey(f"10.1.0.{i}", 80), w, name=n)
             for i, (n, w) in enumerate(weights.items())}
    return ServiceEntry(Service(key), dests)


@pytest.mark.parametrize("scheduler, weights, expected", [
    ("rr", {"a": 1, "b": 5, "c": 1}, ["a", "b", "c", "a", "b", "c"]),
    ("rr", {"a": 1, "b": 0, "c": 1}, ["a", "c", "a", "c", "a", "c"]),
    ("wrr", {"a": 2, "b": 1}, ["a", "b", "a", "a", "b", "a"]),
    ("fo", {"a": 1, "b": 3}, ["b"] * 6),
])
def test_schedulers(scheduler: str, weights: dict[str, int], expected: list[str]) -> None:
    entry, state = _entry(weights), SchedState()
    picks = []
    for i in range(len(expected)):
        dest = schedule(scheduler, entry, state, f"198.51.100.{i}")
        assert dest is not None
        picks.append(dest.name)
    assert picks == expected


def test_least_connection_counts_open_connections() -> None:
    entry, state = _entry({"a": 1, "b": 2}), SchedState()
    picks = []
    for t in range(6):
        dest = schedule("wlc", entry, state, "x")
        assert dest is not None
        state.open(t, dest.key)
        picks.append(dest.name)
    assert picks.count("b") == 4 and picks.count("a") == 2
    state.expire(10_000)
    assert all(v == 0 for v in state.active.values())
    lc = schedule("lc", entry, state, "x")
    assert lc is not None and lc.name == "a"


def test_source_hash_is_sticky_and_nothing_is_none() -> None:
    entry = _entry({"a": 1, "b": 1, "c": 1})
    first = schedule("sh", entry, SchedState(), "198.51.100.7")
    assert all(schedule("sh", entry, SchedState(), "198.51.100.7") == first for _ in range(5))
    assert schedule("wlc", _entry({"a": 0}), SchedState(), "x") is None


# ---------------------------------------------------------------- broken worlds


def _break(monkeypatch: pytest.MonkeyPatch, dropped: type) -> None:
    """A world that silently does not carry out one kind of command."""
    original = World.carry_out

    def carry_out(self: World, router, engine, command) -> None:  # type: ignore[no-untyped-def]
        if isinstance(command, dropped):
            return
        original(self, router, engine, command)

    monkeypatch.setattr(World, "carry_out", carry_out)


def test_a_kernel_that_ignores_deletes_breaks_table_matches_health(monkeypatch: pytest.MonkeyPatch) -> None:
    _break(monkeypatch, DelDest)
    result = run(load(ROOT / "scenarios" / "server-down-reentry.toml"))
    bad = [v for v in result.verdicts if v.ok is False]
    assert any("table_matches_health" in v.what for v in bad), [v.what for v in bad]
    assert any("not_in_table" in v.what for v in bad)


def test_addresses_never_released_break_single_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    _break(monkeypatch, DelVip)
    result = run(load(ROOT / "scenarios" / "primary-return-preempt.toml"))
    assert any("single_owner" in v.what and v.ok is False for v in result.verdicts)


def test_no_gratuitous_arp_breaks_liveness_and_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    _break(monkeypatch, SendGratuitousArp)
    result = run(load(ROOT / "scenarios" / "active-crash-takeover.toml"))
    assert not result.ok
    assert any(v.name == "liveness" for v in result.violations) or any(
        "client_success" in v.what and v.ok is False for v in result.verdicts)


def test_a_backup_that_never_takes_over_breaks_takeover(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.failover

    original = engine.failover.Failover.tick

    def deaf_tick(self, now_ms):  # type: ignore[no-untyped-def]
        verdicts, notes = original(self, now_ms)
        return [v for v in verdicts if "partner dead" not in v.reason], notes

    monkeypatch.setattr(engine.failover.Failover, "tick", deaf_tick)
    result = run(load(ROOT / "scenarios" / "active-crash-takeover.toml"))
    takeover = [v for v in result.violations if v.name == "takeover"]
    scenario = load(ROOT / "scenarios" / "active-crash-takeover.toml")
    bound = 4001 + Costs().takeover_ms(scenario.config)  # deadtime + keepalive + latency + C (sim/costs.py)
    assert takeover and f"backup still standby {bound} ms" in takeover[0].message
    assert takeover[0].context  # the events that led there


@pytest.mark.parametrize("rise, extra_falls, broken", [(1, 0, "reentry"), (None, 5, "server_out")])
def test_early_reentry_and_late_removal_are_caught(monkeypatch: pytest.MonkeyPatch, rise: int | None,
                                                  extra_falls: int, broken: str) -> None:
    import engine.health

    original = engine.health.observe

    def hasty(health, ok, detail, *, rise: int, fall: int):  # type: ignore[no-untyped-def]
        return original(health, ok, detail, rise=rise if hasty_rise is None else hasty_rise, fall=fall + extra_falls)

    hasty_rise = rise
    monkeypatch.setattr(engine.health, "observe", hasty)
    result = run(load(ROOT / "scenarios" / "server-down-reentry.toml"))
    assert broken in {v.name for v in result.violations}
