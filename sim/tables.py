"""table_matches_health's two questions, judged incrementally (sim.invariants).

1. Does the kernel's table (the world's model of it) equal what the engine
   applied?
2. Does the table hold, per active virtual, exactly what the router's
   health calls for (`service_problem`)?

Both are asked after every step that emitted table operations or notices
(sim.invariants), and a whole-table answer walked every real server: at
10,000 servers, every server's first check result (a health notice each)
walked all 10,000, and the hour's start took longer than the hour.

`TableJudge` asks the same questions of only what changed since it last
found everything right, by identity: tables, entries, destinations,
configs and status snapshots are values, never mutated once built
(engine/table.py, engine/status.py, engine/model.py), and every question
is a pure function of them, so a part whose inputs are the very objects
that were judged right before is right again.  The parts are judged in
the same order as the whole-table walk, so the first problem reported is
the same one.  What is not skipped: the sets of keys are compared every
time (a service added or dropped behind the engine's back), and every
entry that is not the one judged before (replaced in either table, as
anything that writes a table does) is judged in full.

The one thing identity cannot see is a table mutated in place; nothing in
shoal does that (`engine.diff.apply`, the simulator's kernel, copies), and
`TableJudge.full` judges from scratch for whoever doubts it (the tests
compare both on every step of the scenarios).
"""

from __future__ import annotations

from engine.model import Config, Virtual
from engine.pool import service_key
from engine.status import ServiceStatus, Status
from engine.table import ServiceEntry, ServiceKey, Table


def service_problem(v: Virtual, key: ServiceKey, svc: ServiceStatus, entry: ServiceEntry | None) -> str | None:
    """What is wrong with one active virtual's entry given its health (None: nothing)."""
    if entry is None:
        return f"service {v.name} ({key}) missing"
    if entry.service.scheduler != v.scheduler:
        return f"service {v.name} has scheduler {entry.service.scheduler}, not {v.scheduler}"
    by_name = {d.name: d for d in entry.dests.values()}
    expected: dict[str, tuple[int, int]] = {}  # name -> (min weight, max weight)
    for s in svc.servers:
        cap = 10 * s.configured_weight
        if s.health == "up" and (svc.quorum_ok or not v.sorry_server):
            low = 0 if s.admin == "drain" or s.configured_weight == 0 else 1
            high = 0 if s.admin == "drain" else max(cap, s.configured_weight)
            expected[s.name] = (low, high)
        elif s.health == "down" and v.quiesce_server and (svc.quorum_ok or not v.sorry_server):
            expected[s.name] = (0, 0)
    serving = any(high > 0 and by_name.get(n) is not None and by_name[n].weight > 0
                  for n, (_, high) in expected.items())
    if v.sorry_server and not serving:
        expected["sorry"] = (1, 1)
    if set(by_name) != set(expected):
        extra = sorted(set(by_name) - set(expected))
        missing = sorted(set(expected) - set(by_name))
        return f"service {v.name}: in table but not called for {extra}, called for but missing {missing}"
    for name, (low, high) in expected.items():
        if not low <= by_name[name].weight <= high:
            return f"{v.name}/{name} at weight {by_name[name].weight}, expected {low}..{high}"
    for s in svc.servers:
        if s.name in by_name and s.health == "up" and s.weight != by_name[s.name].weight:
            return f"{v.name}/{s.name}: table weight {by_name[s.name].weight}, status says {s.weight}"
    return None


def table_problem(config: Config, status: Status, table: Table) -> str | None:
    """What is wrong with a router's `table` given its health (None: nothing): the whole
    table walked, as `TableJudge.problem` judges it."""
    wanted_keys = set()
    for v in config.virtuals:
        key = service_key(v)
        if key is None:
            continue
        wanted_keys.add(key)
        problem = service_problem(v, key, status.service(v.name), table.get(key))
        if problem:
            return problem
    stray = sorted(str(k) for k in table if k not in wanted_keys)
    if stray:
        return f"services not in the config: {', '.join(stray)}"
    return None


class TableJudge:
    """One router's table_matches_health, judged on what changed since it last found it right.

    Entries are found by their place in the tables' and the snapshot's order, worked out
    again only when the keys (or the config) change: a key's hash is a Python call, and
    looking every service up on every judged step cost more than judging what changed."""

    def __init__(self) -> None:
        # differs: the keys of both tables as last seen, where each of the table's keys is in
        # `applied`, and the (kernel's, applied) entries found equal at each place
        self._keys: tuple[list[ServiceKey], list[ServiceKey]] = ([], [])
        self._place: list[int] = []
        self._same: list[tuple[ServiceEntry, ServiceEntry] | None] = []
        # problem: the config's virtuals with a service, where each is in the table's keys as
        # last seen, and the (virtual, status, entry) judged right at each
        self._config: Config | None = None
        self._keyed: list[tuple[int, Virtual, ServiceKey]] = []  # (index in config.virtuals, virtual, key)
        self._wanted: frozenset[ServiceKey] = frozenset()
        self._table_keys: list[ServiceKey] | None = None
        self._slot: list[int | None] = []
        self._right: list[tuple[Virtual, ServiceStatus, ServiceEntry] | None] = []

    def differs(self, table: Table, applied: Table) -> bool:
        """`table != applied`, comparing only the entries not found equal before."""
        if table is applied:
            return False
        if len(table) != len(applied):
            return True
        keys, applied_keys = list(table), list(applied)
        if keys != self._keys[0] or applied_keys != self._keys[1]:  # (identical keys: no hash, no __eq__)
            where = {key: i for i, key in enumerate(applied_keys)}
            if any(key not in where for key in keys):
                return True
            self._keys, self._place = (keys, applied_keys), [where[key] for key in keys]
            self._same = [None] * len(keys)
        ours, theirs, same = list(table.values()), list(applied.values()), self._same
        for i, j in enumerate(self._place):
            entry, other = ours[i], theirs[j]
            if entry is other:
                continue
            known = same[i]
            if known is not None and known[0] is entry and known[1] is other:
                continue
            if entry != other:
                return True
            same[i] = (entry, other)
        return False

    def problem(self, config: Config, status: Status, table: Table) -> str | None:
        """`table_problem(config, status, table)`, judging again only the virtuals whose
        config, status or entry is not the one judged right before."""
        if config is not self._config:
            self._config = config
            self._keyed = [(i, v, key) for i, v in enumerate(config.virtuals) if (key := service_key(v)) is not None]
            self._wanted = frozenset(key for _, _, key in self._keyed)
            self._table_keys = None
        keys = list(table)
        if keys != self._table_keys:
            where = {key: i for i, key in enumerate(keys)}
            self._table_keys, self._slot = keys, [where.get(key) for _, _, key in self._keyed]
            self._right = [None] * len(self._keyed)
        entries, services, right = list(table.values()), status.services, self._right
        for n, (i, v, key) in enumerate(self._keyed):
            slot = self._slot[n]
            entry = entries[slot] if slot is not None else None
            svc = services[i] if i < len(services) and services[i].name == v.name else status.service(v.name)
            known = right[n]
            if known is not None and known[0] is v and known[1] is svc and known[2] is entry:
                continue
            problem = service_problem(v, key, svc, entry)
            if problem:
                right[n] = None
                return problem
            assert entry is not None  # (a missing entry is a problem)
            right[n] = (v, svc, entry)
        if len(table) != len(self._wanted):  # every wanted key is in it (else "missing"): the rest are strays
            stray = sorted(str(k) for k in table if k not in self._wanted)
            return f"services not in the config: {', '.join(stray)}"
        return None
