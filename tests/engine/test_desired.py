"""The incremental paths (issue 13) against from-scratch computations.

A member's change updates its destination in place (`engine.desired`), the
kernel gets the operations of the destinations that changed
(`engine.diff.diff_service(..., only)`), the status cache rebuilds that
member's row (`engine.status.StatusCache`), the registry finds requests
and overrides through its indexes.  Each of those must give exactly what
the from-scratch computation gives; these property tests fail if one
drifts:

- `Desired` after random member changes (duplicate addresses, a sorry
  server sharing a member's address, a member named `sorry`, quorum with
  hysteresis, quiesce) against `engine.pool.desired_entry` of the same
  members, its operations against the whole service's diff;
- an `Engine` after random inputs (check results, timers, operator
  requests, load readings, reloads, kernel reads): its desired entries, its
  status snapshot, its applied table, its overrides and request matching
  against the same computed from nothing.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings, strategies as st

from engine.desired import Desired
from engine.diff import apply, diff, diff_service
from engine.engine import Engine
from engine.events import (
    TABLE_OPS, AdminRequested, CheckCompleted, ConfigLoaded, LoadRead, ReadLoad, StartCheck, TableRead, Tick,
)
from engine.model import Config, Server, Virtual
from engine.pool import Member, desired_entry, desired_table, quorum_state, service_key
from engine.overrides_wire import Entry as OverrideEntry
from engine.registry import SERVER_ACTIONS, Override, Registry
from engine.status import StatusCache

# Generating three virtuals and a schedule is slow on a loaded shared host: no health check for that.
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ADDRESSES = ["10.1.0.11", "10.1.0.12", "10.1.0.13", "10.1.0.14"]
NAMES = ["s1", "s2", "s3", "s4", "sorry"]
STANDINGS = ["unknown", "up", "down", "drained"]


@st.composite
def virtuals(draw: st.DrawFn, name: str = "web", index: int = 0) -> Virtual:
    count = draw(st.integers(1, 5))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=count, max_size=count, unique=True))
    servers = tuple(
        Server(name=n, address=draw(st.sampled_from(ADDRESSES)), weight=draw(st.integers(0, 5)),
               port=draw(st.sampled_from([None, None, 8080])))
        for n in names)
    quorum = draw(st.sampled_from([0, 0, 2, 4, 7]))
    return Virtual(
        name=name, address=f"10.0.0.{100 + index}", device="eth0:1", port=80, servers=servers,
        sorry_server=draw(st.sampled_from([None, "10.1.0.99", "10.1.0.11"])),
        quiesce_server=draw(st.booleans()), quorum=quorum, hysteresis=draw(st.integers(0, 2)) if quorum else 0,
        fwmark=draw(st.sampled_from([None, None, None, 7 + index])),
        load_monitor=draw(st.sampled_from(["none", "none", "uptime"])),
        check=draw(st.sampled_from(["auto", "auto", "auto", "none"])),
        timeout_ms=1_000, rise=draw(st.integers(1, 3)), fall=draw(st.integers(1, 2)),
    )


def members(virtual: Virtual, standings: list[str], weights: list[int]) -> list[Member]:
    out = []
    for server, standing, weight in zip(virtual.servers, standings, weights):
        assert server.address is not None
        port = server.port if server.port is not None else (0 if virtual.fwmark else virtual.port)
        out.append(Member(server.name, server.address, port, standing, weight, server.weight))  # type: ignore[arg-type]
    return out


@settings(SETTINGS, max_examples=300)
@given(virtuals(), st.data())
def test_desired_in_place_equals_from_scratch(virtual: Virtual, data: st.DataObject) -> None:
    config = Config(network=data.draw(st.sampled_from(["nat", "direct"])), virtuals=(virtual,))
    n = len(virtual.servers)
    views = members(virtual, data.draw(st.lists(st.sampled_from(STANDINGS), min_size=n, max_size=n)),
                    data.draw(st.lists(st.integers(0, 12), min_size=n, max_size=n)))
    key = service_key(virtual)
    desired = Desired()
    desired.rebuild(config, virtual, views, key)
    ok = desired.quorum[virtual.name]
    for _ in range(data.draw(st.integers(1, 30))):
        i = data.draw(st.integers(0, n - 1))
        views[i] = replace(views[i], standing=data.draw(st.sampled_from(STANDINGS)),
                           weight=data.draw(st.integers(0, 12)))
        change = desired.member(config, virtual, views[i])
        ok_before, ok = ok, quorum_state(virtual, views, ok)
        want = desired_entry(config, virtual, views, ok, key) if key else None
        got = desired.entries[virtual.name]
        assert got == want
        assert desired.quorum[virtual.name] == ok
        assert change.quorum == (ok if ok != ok_before else None)
        assert change.same == (change.old == want)
        sorry_in = want is not None and any(d.name == "sorry" for d in want.dests.values())
        assert desired.sorry_in[virtual.name] == sorry_in
        if key is not None and change.old is not None:
            # The kernel holds the entry replaced: the operations of the changed destinations are the whole diff's.
            assert diff_service(key, change.old, got, change.dests) == diff_service(key, change.old, got)


def config_of(vs: list[Virtual], load_interval_ms: int = 20_000) -> Config:
    return Config(primary="10.0.0.1", backup_active=False, serial_no=1, virtuals=tuple(vs),
                  load_interval_ms=load_interval_ms)


def fresh_status(engine: Engine) -> object:
    cache = StatusCache()
    cache.reset(engine.config)
    return cache.services(engine.config, engine._server_rows, engine._member_status, engine._service_status)


def check_against_scratch(engine: Engine, kernel: dict) -> None:  # type: ignore[type-arg]
    config = engine.config
    keeper, registry = engine.keeper, engine.registry
    for v in config.virtuals:
        views = registry.views(v)
        ok = keeper.quorum[v.name]
        assert quorum_state(v, views, ok) == ok, v.name  # the kept quorum is where hysteresis leaves it
        key = keeper.service_keys[v.name]
        assert keeper.entries[v.name] == (desired_entry(config, v, views, ok, key) if key else None), v.name
    status = engine.status
    assert status.services == fresh_status(engine)
    for service in status.services:
        entry = keeper.entries.get(service.name)
        assert service.sorry_in_table == (entry is not None and any(d.name == "sorry" for d in entry.dests.values()))
    assert kernel == engine.applied
    if engine.failover.role == "active":
        assert diff(engine.applied, desired_table(keeper.entries)) == []
    assert registry.overrides() == tuple(
        Override(k[0], k[1], m.admin, m.admin_weight if m.admin == "weight" else None)
        for k, m in registry.members.items() if m.admin != "auto")
    for name in NAMES:
        assert registry.matching(name, "") == [k for k in registry.members if k[1] == name]
        assert registry.matching(f"v1/{name}", "") == [k for k in registry.members if k == ("v1", name)]


steps = st.one_of(
    st.tuples(st.just("result"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("result"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("tick"), st.integers(1, 1500)),
    st.tuples(st.just("admin"), st.sampled_from(["drain", "undrain", "weight", "force_down", "force_up", "auto"]),
              st.sampled_from(NAMES), st.sampled_from(["", "v0", "v1"]), st.integers(0, 9)),
    st.tuples(st.just("load"), st.integers(0, 30), st.sampled_from([None, 0.1, 0.9, 2.5, 9.0])),
    st.tuples(st.just("reload"), st.integers(0, 2)),
    st.tuples(st.just("read"), st.sampled_from(["same", "emptied"])),
)


@settings(SETTINGS, max_examples=150)
@given(virtuals("v0", 0), virtuals("v1", 1), virtuals("v2", 2), st.lists(steps, min_size=10, max_size=60))
def test_engine_incremental_state_equals_from_scratch(
    v0: Virtual, v1: Virtual, v2: Virtual, schedule: list[tuple],  # type: ignore[type-arg]
) -> None:
    vs = [v0, v1, v2]
    config = config_of(vs)
    engine = Engine(config, "primary")
    now = 0
    kernel: dict = {}  # type: ignore[type-arg]
    in_flight: list[int] = []
    loads: list[int] = []

    def feed(event: object, check: bool = True) -> None:
        nonlocal kernel
        ready = engine.step(now, event)  # type: ignore[arg-type]
        kernel = apply(kernel, [c for c in ready.commands if isinstance(c, TABLE_OPS)])
        for c in ready.commands:
            if isinstance(c, StartCheck):
                in_flight.append(c.check_id)
            elif isinstance(c, ReadLoad) and c.load_id not in loads:
                loads.append(c.load_id)
        if check:
            check_against_scratch(engine, kernel)

    feed(TableRead({}))
    for step in schedule:
        match step:
            case ("result", i, ok) if in_flight:
                feed(CheckCompleted(in_flight.pop(i % len(in_flight)), ok, "ok" if ok else "refused"))
            case ("tick", ms):
                now += ms
                feed(Tick())
            case ("admin", action, server, virtual, weight):
                feed(AdminRequested(action, server, virtual, weight if action == "weight" else None))
            case ("load", i, load) if loads:
                feed(LoadRead(loads[i % len(loads)], load))
            case ("reload", which):
                # A reload that changes one virtual's weights, or drops the last virtual, or keeps all.
                changed = list(vs)
                if which == 0:
                    changed[0] = replace(vs[0], servers=tuple(replace(s, weight=s.weight + 1) for s in vs[0].servers))
                elif which == 1:
                    changed = vs[:2]
                feed(ConfigLoaded(replace(config_of(changed), serial_no=2 + which), None))
            case ("read", "same"):
                feed(TableRead(dict(kernel)))
            case ("read", "emptied"):
                # The kernel's table flushed behind the engine's back: the read that sees it may be
                # discarded as stale (another is asked), the next one reconciles.
                kernel = {}
                feed(TableRead({}), check=False)
                feed(TableRead(dict(kernel)))


def replace_overrides_from_scratch(registry: Registry, wanted: list[OverrideEntry]) -> list[str]:
    """`Registry.replace_overrides` as it was before its index: every member walked."""
    want = {(e.virtual, e.server): e for e in wanted}
    touched: list[str] = []
    for key, member in registry.members.items():
        entry = want.get(key)
        action, weight = (entry.action, entry.weight if entry.action == "weight" else 0) if entry else ("auto", 0)
        have = (member.admin, member.admin_weight if member.admin == "weight" else 0)
        if have != (SERVER_ACTIONS[action], weight):
            registry.override(key, action, weight if action == "weight" else None)
            if key[0] not in touched:
                touched.append(key[0])
    return touched


overrides = st.lists(st.builds(
    OverrideEntry, st.sampled_from(["v0", "v1", "v2", "gone"]), st.sampled_from(NAMES),
    st.sampled_from(["drain", "weight", "force_down", "force_up"]), st.integers(0, 9)), max_size=8)


@settings(SETTINGS, max_examples=200)
@given(virtuals("v0", 0), virtuals("v1", 1), virtuals("v2", 2), st.lists(overrides, min_size=1, max_size=4))
def test_partner_overrides_taken_as_from_scratch(
    v0: Virtual, v1: Virtual, v2: Virtual, sets: list[list[OverrideEntry]],
) -> None:
    config = config_of([v0, v1, v2])
    indexed, walked = Registry(), Registry()
    indexed.build(config)
    walked.build(config)
    for wanted in sets:
        assert indexed.replace_overrides(wanted) == replace_overrides_from_scratch(walked, wanted)
        assert indexed.overrides() == walked.overrides()
        assert [(m.admin, m.admin_weight, m.weight) for m in indexed.members.values()] == \
            [(m.admin, m.admin_weight, m.weight) for m in walked.members.values()]
