"""adapters/lateness.py's arithmetic: buckets, percentiles, the hooks' bookkeeping (no clock read)."""

from __future__ import annotations

import math

import pytest

from adapters.lateness import FLOOR_MS, RATIO, Histogram, LoopTiming, step_kind


def test_a_percentile_is_within_a_bucket_above_the_true_value() -> None:
    h = Histogram()
    for i in range(1, 1001):
        h.note(i / 10)  # 0.1 .. 100 ms
    for p, true in ((50, 50.0), (99, 99.0), (100, 100.0)):
        got = h.percentile(p)
        assert true <= got <= true * RATIO + 1e-9, (p, got)
    assert h.max_ms == 100.0 and h.count == 1000
    assert h.summary() == {"p50": round(h.percentile(50), 2), "p99": round(h.percentile(99), 2), "max": 100.0,
                           "count": 1000}


def test_the_max_caps_a_percentile_and_small_and_negative_samples_count_at_the_floor() -> None:
    h = Histogram()
    h.note(3.0)
    assert h.percentile(50) == 3.0 == h.percentile(99)  # the bucket's edge is above 3: capped at the max
    h.note(-1.0)
    h.note(0.0)
    assert h.counts[0] == 2 and h.count == 3 and h.percentile(50) == FLOOR_MS
    assert Histogram().percentile(99) == 0.0  # empty


@pytest.mark.parametrize("ms", [0.0011, 0.02, 1.0, 19.99, 20.0, 20.01, 1e4, 1e9])
def test_a_sample_lands_in_the_bucket_whose_edges_hold_it(ms: float) -> None:
    i = Histogram.bucket(ms)
    assert Histogram.edge(i - 1) < ms <= Histogram.edge(i) or (ms > Histogram.edge(i) and i == len(Histogram().counts) - 1)
    assert math.isclose(Histogram.edge(i + 1) / Histogram.edge(i), RATIO)


def test_only_steps_serving_a_deadline_and_their_sends_are_counted() -> None:
    t = LoopTiming()
    t.wake(now_ms=95.0, deadline_ms=100)  # woken early (an input): not a deadline served
    t.sent(96.0)
    assert t.deadline.count == 0 and t.send.count == 0
    t.wake(now_ms=103.0, deadline_ms=100)
    t.sent(104.5)
    t.sent(105.0)
    assert t.deadline.count == 1 and t.deadline.max_ms == 3.0
    assert t.send.count == 2 and t.send.max_ms == 5.0
    t.wake(now_ms=110.0, deadline_ms=None)
    t.sent(111.0)
    assert t.send.count == 2


def test_slow_steps_are_kept_by_kind_with_the_cpu_of_the_longest() -> None:
    t = LoopTiming()
    asked = []

    def what() -> str:
        asked.append(1)
        return "Tick -> ReadTable"

    t.stepped(0.2, 0.2, what)
    assert not asked and t.slow_steps == {}
    t.stepped(12.0, 1.0, what)
    t.stepped(30.0, 0.5, what)
    t.stepped(8.0, 8.0, what)
    assert t.summary()["slow_steps"] == [{"what": "Tick -> ReadTable", "count": 3, "max_ms": 30.0, "cpu_ms": 0.5}]
    assert t.step.count == 4


def test_a_step_is_named_by_types_only() -> None:
    from engine.events import SendHeartbeat, Tick

    class Ready:
        commands = (SendHeartbeat("public", "10.0.0.2", 539, b"x" * 20), SendHeartbeat("private", "10.1.0.2", 539, b"y"))

    assert step_kind(Tick(), Ready()) == "Tick -> SendHeartbeat x2"
    assert step_kind(Tick(), None) == "Tick -> nothing"
