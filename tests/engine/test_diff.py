"""diff(applied, desired): applying it gives desired, in the documented
order, with the fewest operations; apply behaves like IPVS."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace

import pytest
from hypothesis import given, strategies as st

from engine.diff import TableOpError, apply, diff, diff_service
from engine.events import AddDest, AddService, DelDest, DelService, EditDest, EditService, TableOp
from engine.table import Dest, DestKey, Forward, Service, ServiceEntry, ServiceKey, Table

KEYS = [
    ServiceKey("tcp", "10.0.0.1", 80), ServiceKey("tcp", "10.0.0.1", 443), ServiceKey("udp", "10.0.0.2", 53),
    ServiceKey("fwmark", "", 0, 21), ServiceKey("fwmark", "", 0, 21, 6),
    ServiceKey("tcp", "2001:db8::1", 80, 0, 6),
]
DKEYS = [DestKey(f"10.1.0.{i}", 80) for i in range(1, 6)] + [DestKey("10.1.0.1", 8080), DestKey("2001:db8::10", 80)]
K = KEYS[0]


def d(last_octet: int, weight: int = 1, forward: Forward = "masq", name: str = "") -> Dest:
    return Dest(DestKey(f"10.1.0.{last_octet}", 80), weight, forward, name)


def entry(key: ServiceKey, *dests: Dest, **attrs: object) -> ServiceEntry:
    """A service with `dests`; `attrs` are Service fields (scheduler="rr"...)."""
    return ServiceEntry(replace(Service(key), **attrs), {dest.key: dest for dest in dests})  # type: ignore[arg-type]


# ------------------------------------------------------------ examples


def test_weight_change_is_one_edit() -> None:
    assert diff({K: entry(K, d(1), d(2))}, {K: entry(K, d(1), d(2, 5))}) == [EditDest(K, d(2, 5))]


def test_forward_change_is_one_edit_not_a_delete_and_add() -> None:
    assert diff({K: entry(K, d(1))}, {K: entry(K, d(1, 1, "route"))}) == [EditDest(K, d(1, 1, "route"))]


@pytest.mark.parametrize("attrs", [
    {"scheduler": "rr"}, {"sched_flags": ("sh-port",)}, {"persistent_s": 300}, {"pmask": "255.255.255.0"},
])
def test_a_service_attribute_change_is_one_service_edit(attrs: dict[str, object]) -> None:
    desired = entry(K, d(1), **attrs)
    assert diff({K: entry(K, d(1))}, {K: desired}) == [EditService(desired.service)]


def test_names_are_for_logs_and_never_cause_an_operation() -> None:
    applied = {K: entry(K, d(1, name="web1"), name="www")}
    assert diff(applied, {K: entry(K, d(1, name="renamed"), name="other")}) == []


def test_moving_a_destination_adds_before_it_deletes() -> None:
    assert diff({K: entry(K, d(1))}, {K: entry(K, d(2))}) == [AddDest(K, d(2)), DelDest(K, d(1).key)]


def test_removing_a_service_is_one_delete() -> None:
    assert diff({K: entry(K, d(1), d(2), name="www")}, {}) == [DelService(K, "www")]


def test_new_service_then_its_destinations_in_key_order() -> None:
    k = KEYS[1]
    assert diff({}, {k: entry(k, d(2), d(1))}) == [AddService(Service(k)), AddDest(k, d(1)), AddDest(k, d(2))]


def test_a_changed_key_is_an_add_and_a_delete() -> None:
    new = KEYS[1]
    ops = diff({K: entry(K, d(1))}, {new: entry(new, d(1))})
    assert ops == [AddService(Service(new)), AddDest(new, d(1)), DelService(K)]


def test_groups_come_in_the_documented_order() -> None:
    a, b, c, e = KEYS[0], KEYS[1], KEYS[2], KEYS[3]
    applied = {a: entry(a, d(1), d(2), d(3)), b: entry(b, d(1)), c: entry(c, d(1))}
    desired = {a: entry(a, d(1, 2), d(2), d(4), scheduler="rr"), b: entry(b, d(1)), e: entry(e, d(5))}
    assert diff(applied, desired) == [
        AddService(Service(e)),
        EditService(Service(a, "rr")),
        AddDest(e, d(5)), AddDest(a, d(4)),  # ServiceKey order: "fwmark" < "tcp"
        EditDest(a, d(1, 2)),
        DelDest(a, d(3).key),
        DelService(c),
    ]


def test_diff_service_of_nothing_is_nothing() -> None:
    assert diff_service(K, None, None) == []
    same = entry(K, d(1))
    assert diff_service(K, same, same) == []


class Untouchable(Mapping[DestKey, Dest]):
    """Destinations that must not be looked at."""

    def __getitem__(self, key: DestKey) -> Dest:
        raise AssertionError("walked the destinations of an unchanged service")

    def __iter__(self) -> Iterator[DestKey]:
        raise AssertionError("walked the destinations of an unchanged service")

    def __len__(self) -> int:
        raise AssertionError("walked the destinations of an unchanged service")

    def __eq__(self, other: object) -> bool:
        raise AssertionError("compared the destinations of an unchanged service")

    __hash__ = None  # type: ignore[assignment]


def test_a_shared_entry_is_skipped_by_identity() -> None:
    """What keeps diff fast: an entry shared by both tables is never walked."""
    shared = ServiceEntry(Service(K), Untouchable())
    k = KEYS[1]
    assert diff({K: shared, k: entry(k, d(1))}, {K: shared, k: entry(k, d(1, 3))}) == [EditDest(k, d(1, 3))]


# ------------------------------------------------------------ apply = the kernel


def test_apply_refuses_what_the_kernel_refuses() -> None:
    table = {K: entry(K, d(1))}
    refused: list[tuple[TableOp, str]] = [
        (AddService(Service(K)), "EEXIST"),
        (AddDest(K, d(1)), "EEXIST"),
        (EditService(Service(KEYS[1])), "ESRCH"),
        (DelService(KEYS[1]), "ESRCH"),
        (AddDest(KEYS[1], d(1)), "ESRCH"),
        (EditDest(KEYS[1], d(1)), "ESRCH"),
        (DelDest(KEYS[1], d(1).key), "ESRCH"),
        (EditDest(K, d(2)), "ENOENT"),
        (DelDest(K, d(2).key), "ENOENT"),
    ]
    for op, code in refused:
        with pytest.raises(TableOpError, match=code) as caught:
            apply(table, [AddDest(K, d(3)), op])
        assert caught.value.code == code and isinstance(caught.value, ValueError)
    assert table == {K: entry(K, d(1))}  # a refused batch left the input alone


def test_deleting_a_service_deletes_its_destinations() -> None:
    table = apply({K: entry(K, d(1), d(2))}, [DelService(K), AddService(Service(K))])
    assert table == {K: entry(K)}


def test_apply_refuses_what_is_not_a_table_operation() -> None:
    with pytest.raises(TypeError):
        apply({}, ["AddService"])  # type: ignore[list-item]


# ------------------------------------------------------------ properties


@st.composite
def tables(draw: st.DrawFn) -> Table:
    out = {}
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True)):
        dests = {
            dkey: Dest(dkey, draw(st.integers(0, 3)), draw(st.sampled_from(["masq", "route", "tunnel"])),
                       draw(st.sampled_from(["", "a"])))
            for dkey in draw(st.lists(st.sampled_from(DKEYS), unique=True))
        }
        service = Service(
            key, draw(st.sampled_from(["wlc", "rr"])), draw(st.sampled_from([(), ("sh-port",)])),
            draw(st.sampled_from([0, 60])), draw(st.sampled_from([None, "255.255.255.0"])),
            draw(st.sampled_from(["", "v"])),
        )
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
        count += sum(old.dests[k] != new.dests[k] for k in old.dests.keys() & new.dests.keys())
    return count


def snapshot(table: Table) -> list[tuple[ServiceKey, Service, list[tuple[DestKey, Dest]]]]:
    return [(k, v.service, list(v.dests.items())) for k, v in table.items()]


GROUP = {AddService: 0, EditService: 1, AddDest: 2, EditDest: 3, DelDest: 4, DelService: 5}


def sort_key(op: TableOp) -> tuple[int, ServiceKey, DestKey | None]:
    match op:
        case AddService(service) | EditService(service):
            return GROUP[type(op)], service.key, None
        case DelService(key):
            return GROUP[type(op)], key, None
        case AddDest(key, dest) | EditDest(key, dest):
            return GROUP[type(op)], key, dest.key
        case DelDest(key, dkey):
            return GROUP[type(op)], key, dkey
    raise AssertionError(op)


@given(tables(), tables())
def test_diff_applied_gives_desired_and_is_minimal(applied: Table, desired: Table) -> None:
    before = snapshot(applied)
    ops = diff(applied, desired)
    assert apply(applied, ops) == desired
    assert len(ops) == minimal_count(applied, desired)
    assert snapshot(applied) == before  # neither diff nor apply mutates


@given(tables(), tables())
def test_diff_is_in_the_documented_order(applied: Table, desired: Table) -> None:
    ops = diff(applied, desired)
    keys = [sort_key(op) for op in ops]
    assert keys == sorted(keys, key=lambda k: (k[0], k[1], k[2] or DestKey("", -1)))


@given(tables(), tables())
def test_diff_is_diff_service_per_service(applied: Table, desired: Table) -> None:
    ops = diff(applied, desired)
    for key in applied.keys() | desired.keys():
        mine = [op for op in ops if sort_key(op)[1] == key]
        assert mine == diff_service(key, applied.get(key), desired.get(key))


@given(tables(), tables())
def test_a_surviving_service_is_never_left_without_destinations(applied: Table, desired: Table) -> None:
    """Adding before deleting: a service in both tables, with real servers in
    both, has at least one at every step in between."""
    watched = [k for k in applied.keys() & desired.keys() if applied[k].dests and desired[k].dests]
    table = applied
    for op in diff(applied, desired):
        table = apply(table, [op])
        assert all(table[k].dests for k in watched), op


@given(tables())
def test_no_change_is_no_operation(table: Table) -> None:
    assert diff(table, table) == []
    assert diff(table, dict(table)) == []
    rebuilt = {k: ServiceEntry(replace(v.service), dict(v.dests)) for k, v in table.items()}
    assert diff(table, rebuilt) == [] and diff(rebuilt, table) == []
