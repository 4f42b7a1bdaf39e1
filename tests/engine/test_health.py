"""nanny's rules, one by one, on the pure health functions."""

from __future__ import annotations

from hypothesis import given, strategies as st

from engine.health import (
    Health, effective, load_adjust, observe, slow_start_next, slow_start_weight,
)


def run(results: list[bool], rise: int = 3, fall: int = 1, start: Health | None = None) -> list[str]:
    health = start or Health()
    seen = []
    for ok in results:
        health = observe(health, ok, "", rise=rise, fall=fall)
        seen.append(health.status)
    return seen


def test_healthy_at_start_goes_in_at_once() -> None:
    assert run([True], rise=18) == ["up"]


def test_failing_at_start_is_down_and_must_rise() -> None:
    assert run([False, True, True, True], rise=3) == ["down", "down", "down", "up"]


def test_one_failure_while_up_takes_it_down() -> None:
    assert run([True, True, False]) == ["up", "up", "down"]


def test_fall_counts_consecutive_failures() -> None:
    assert run([True, False, True, False, False], fall=2) == ["up", "up", "up", "up", "down"]


def test_a_failure_restarts_the_rise_count() -> None:
    assert run([True, False, True, True, False, True, True, True], rise=3) == [
        "up", "down", "down", "down", "down", "down", "down", "up",
    ]


def test_counts_and_last_result() -> None:
    health = Health()
    for ok in (True, False, False):
        health = observe(health, ok, "refused" if not ok else "ok", rise=1, fall=1)
    assert (health.ok_total, health.fail_total, health.last_ok, health.last_detail) == (1, 2, False, "refused")


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 6), st.integers(1, 6))
def test_up_only_after_rise_successes_in_a_row(results: list[bool], rise: int, fall: int) -> None:
    health = Health()
    streak = 0
    for i, ok in enumerate(results):
        before = health.status
        health = observe(health, ok, "", rise=rise, fall=fall)
        streak = streak + 1 if ok else 0
        if before == "down" and health.status == "up":
            assert streak >= rise
        if before == "up" and health.status == "down":
            assert not ok
        if i == 0:
            assert health.status == ("up" if ok else "down")


def test_overrides() -> None:
    assert effective("down", "force_up") == "up"
    assert effective("up", "force_down") == "down"
    assert effective("up", "auto") == "up"
    assert effective("unknown", "drain") == "unknown"


def test_slow_start_doubles_from_weight_shift_5() -> None:
    weights = [slow_start_weight(100)]
    while weights[-1] < 100:
        weights.append(slow_start_next(weights[-1], 100))
    assert weights == [3, 6, 12, 24, 48, 96, 100]
    assert slow_start_weight(1) == 1
    assert slow_start_weight(0) == 0


def test_load_monitor_formula() -> None:
    w = 4  # s = 2
    assert load_adjust(4, w, 0.0) == 6  # +s * 1
    assert load_adjust(6, w, 9.0) == 4  # max(6 - 2 * 2, 4)
    assert load_adjust(40, w, 0.0) is None  # capped at 10 w: no change
    assert load_adjust(4, w, 1.0) is None  # L == 1: left alone
    assert load_adjust(4, w, None) is None  # unreadable: left alone
    assert load_adjust(4, w, 0.99) is None  # change under w/4
    assert load_adjust(2, w, 5.0) == 4  # below w: doubles, whatever the load


@given(st.integers(1, 1000), st.integers(1, 100), st.floats(0, 50))
def test_load_monitor_stays_in_bounds(last: int, weight: int, load: float) -> None:
    new = load_adjust(last, weight, load)
    if new is not None:
        assert new <= max(10 * weight, last)
        if last >= weight:
            assert new >= weight
