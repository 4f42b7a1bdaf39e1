"""diff(applied, desired): applying it gives desired, and it is minimal."""

from __future__ import annotations

from hypothesis import given, strategies as st

from engine.diff import TableOpError, apply, diff
from engine.events import AddDest, AddService, DelDest, DelService, EditDest, EditService
from engine.table import Dest, DestKey, Service, ServiceEntry, ServiceKey, Table

import pytest

KEYS = [
    ServiceKey("tcp", "10.0.0.1", 80), ServiceKey("tcp", "10.0.0.1", 443), ServiceKey("udp", "10.0.0.2", 53),
    ServiceKey("fwmark", "", 0, 21), ServiceKey("tcp", "2001:db8::1", 80, 0, 6),
]
DKEYS = [DestKey(f"10.1.0.{i}", 80) for i in range(1, 6)] + [DestKey("10.1.0.1", 8080)]


def entry(key: ServiceKey, scheduler: str = "wlc", **weights: int) -> ServiceEntry:
    dests = {DestKey(a.replace("_", "."), 80): Dest(DestKey(a.replace("_", "."), 80), w) for a, w in weights.items()}
    return ServiceEntry(Service(key, scheduler), dests)


def test_weight_change_is_one_edit() -> None:
    k = KEYS[0]
    applied = {k: entry(k, **{"10_1_0_1": 1, "10_1_0_2": 1})}
    desired = {k: entry(k, **{"10_1_0_1": 1, "10_1_0_2": 5})}
    assert diff(applied, desired) == [EditDest(k, Dest(DestKey("10.1.0.2", 80), 5))]


def test_scheduler_change_is_one_service_edit() -> None:
    k = KEYS[0]
    assert diff({k: entry(k, **{"10_1_0_1": 1})}, {k: entry(k, "rr", **{"10_1_0_1": 1})}) == [EditService(Service(k, "rr"))]


def test_moving_a_destination_adds_before_it_deletes() -> None:
    k = KEYS[0]
    ops = diff({k: entry(k, **{"10_1_0_1": 1})}, {k: entry(k, **{"10_1_0_2": 1})})
    assert [type(op) for op in ops] == [AddDest, DelDest]


def test_removing_a_service_is_one_delete() -> None:
    k = KEYS[0]
    assert diff({k: entry(k, **{"10_1_0_1": 1, "10_1_0_2": 1})}, {}) == [DelService(k)]


def test_new_service_then_its_destinations() -> None:
    k = KEYS[1]
    ops = diff({}, {k: entry(k, **{"10_1_0_2": 1, "10_1_0_1": 1})})
    assert [type(op) for op in ops] == [AddService, AddDest, AddDest]
    assert [op.dest.key.address for op in ops[1:]] == ["10.1.0.1", "10.1.0.2"]  # type: ignore[union-attr]


def test_apply_refuses_what_the_kernel_refuses() -> None:
    k = KEYS[0]
    table = {k: entry(k, **{"10_1_0_1": 1})}
    with pytest.raises(TableOpError, match="EEXIST"):
        apply(table, [AddService(Service(k))])
    with pytest.raises(TableOpError, match="ENOENT"):
        apply(table, [DelDest(k, DestKey("10.9.9.9", 80))])
    with pytest.raises(TableOpError, match="ENOENT"):
        apply({}, [EditService(Service(k))])


@st.composite
def tables(draw: st.DrawFn) -> Table:
    out = {}
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True)):
        dkeys = draw(st.lists(st.sampled_from(DKEYS), unique=True))
        dests = {d: Dest(d, draw(st.integers(0, 3)), draw(st.sampled_from(["masq", "route", "tunnel"]))) for d in dkeys}
        service = Service(key, draw(st.sampled_from(["wlc", "rr"])), persistent_s=draw(st.sampled_from([0, 60])))
        out[key] = ServiceEntry(service, dests)
    return out


def minimal_count(applied: Table, desired: Table) -> int:
    count = len(applied.keys() ^ desired.keys())  # a DelService or an AddService each
    for key in desired.keys() - applied.keys():
        count += len(desired[key].dests)  # a new service's destinations
    for key in applied.keys() & desired.keys():
        old, new = applied[key], desired[key]
        count += old.service != new.service
        count += len(old.dests.keys() ^ new.dests.keys())
        count += sum(old.dests[d] != new.dests[d] for d in old.dests.keys() & new.dests.keys())
    return count


@given(tables(), tables())
def test_diff_applied_gives_desired_and_is_minimal(applied: Table, desired: Table) -> None:
    snapshot = {k: (v.service, dict(v.dests)) for k, v in applied.items()}
    ops = diff(applied, desired)
    assert apply(applied, ops) == desired
    assert len(ops) == minimal_count(applied, desired)
    assert {k: (v.service, dict(v.dests)) for k, v in applied.items()} == snapshot  # never mutated
    assert diff(desired, desired) == []
