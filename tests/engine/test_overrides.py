"""The operator's overrides as the engine keeps them (`Engine.overrides`):
what a driver saves and replays after a restart (adapters/overrides.py).
Replayed as requests into a fresh engine, they give the same set and the
same table weights; a weight outside 0-65535 is refused and changes nothing."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import parse
from engine.engine import Engine
from engine.events import AdminRequested, CheckCompleted, TableRead, Tick
from engine.registry import MAX_WEIGHT, Override

BASE = parse((Path(__file__).parent / "testdata" / "_base.cf").read_text()
             .replace("backup_active = 1", "backup_active = 0"), "_base.cf")

requests = st.builds(
    lambda action, server, weight: AdminRequested(action, server, weight=weight if action == "weight" else None),
    st.sampled_from(["drain", "undrain", "weight", "force_down", "force_up", "auto"]),
    st.sampled_from(["s1", "s2", "web/s1", "web/s2", "web/s9", "nope/s1"]),
    st.integers(-2, MAX_WEIGHT + 2),
)


def started() -> Engine:
    """One router alone (backup_active = 0): active at once, both servers up."""
    engine = Engine(BASE, "primary")
    engine.step(0, TableRead({}))
    for check_id in sorted(engine.registry.checks):
        engine.step(1, CheckCompleted(check_id, True, "ok"))
    return engine


def weights(engine: Engine) -> dict[str, tuple[str, int, bool]]:
    return {s.name: (s.admin, s.weight, s.in_table) for v in engine.status.services for s in v.servers}


@settings(max_examples=200, deadline=None)
@given(st.lists(requests, max_size=12))
def test_replayed_overrides_give_the_same_state(history: list[AdminRequested]) -> None:
    engine = started()
    for request in history:
        engine.step(2, request)
    again = started()
    for override in engine.overrides:
        assert again.admin_refusal(override.request()) is None
        again.step(2, override.request())
    assert again.overrides == engine.overrides
    assert weights(again) == weights(engine)
    assert all(o.action != "auto" and (o.weight is None) == (o.action != "weight") for o in engine.overrides)


def test_a_weight_out_of_range_or_missing_is_refused_and_changes_nothing() -> None:
    engine = started()
    before = weights(engine)
    for request in (AdminRequested("weight", "web/s1", weight=MAX_WEIGHT + 1),
                    AdminRequested("weight", "web/s1", weight=-1), AdminRequested("weight", "web/s1"),
                    AdminRequested("drain", "web/s1", weight=3), AdminRequested("weight", "web/s9", weight=3)):
        assert engine.admin_refusal(request) is not None
        ready = engine.step(2, request)
        assert [c.kind for c in ready.commands if hasattr(c, "kind")] == ["admin_refused"]
    assert weights(engine) == before and engine.overrides == ()


def test_the_operator_weight_holds_against_slow_start_and_undrain_restores_the_configured_one() -> None:
    engine = started()
    engine.step(2, AdminRequested("weight", "web/s1", weight=9))
    assert engine.overrides == (Override("web", "s1", "weight", 9),)
    assert weights(engine)["s1"] == ("weight", 9, True)
    engine.step(3, Tick())
    engine.step(4, AdminRequested("undrain", "web/s1"))
    assert engine.overrides == () and weights(engine)["s1"] == ("auto", 1, True)
