"""What if: the current lvs.cf run in the simulator with one chosen fault,
without touching the real pair.

    result = what_if(text, {"server_down": "web/web1"})
    result.timeline    # the simulator's story, one line each (as `shoal sim` prints it)
    result.table       # the active router's table at the end, as `ipvsadm -Ln` lays it out
    result.vip_owner   # "primary", "backup", "none", or "primary+backup" (both: a split brain)

How: a scenario is written in memory (SPEC.md, "Scenario files"): the
config, both routers booted at 0 s, the fault at 5 s (or at its own `at`),
`duration_s` simulated seconds, read by `scenario.model.loads` (which checks
every name the fault uses) and run by `sim.runner.run`.  The end state is
read from the run's trace (SPEC.md, "Trace"), the simulator's public
output: table operations, VIPs taken and released, roles, and the faults
that wipe a host (`crash`: no addresses, empty table; `kill`: the daemon
gone, the kernel's addresses and table kept but not counted as held).

Faults: one dict or a list of dicts, each one key of the scenario
vocabulary with its value, an optional `at` (seconds) and the key's extras:
`{"server_down": "web/web1"}`, `{"crash": "primary"}`,
`{"partition": "public"}` (or `"private"`, `"all"`; `"from": ROUTER` for a
one-way cut), `{"server_up": "web/web1", "at": 15}`, `{"admin": "drain web1"}`...

Nothing here opens a socket, reads a clock or writes a file: the
simulator is a pure, seeded world (the same input gives the same answer).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from adapters.dataplane.ipvsadm import format_ln
from adapters.describe import quoted
from adapters.web.configedit import set_value
from engine.config import ConfigError, parse
from engine.model import Config
from engine.pool import dest_port, desired_entry, service_key
from engine.registry import check_spec
from engine.table import FORWARD_OF_NETWORK, Dest, DestKey, ServiceEntry, ServiceKey, Table
from scenario.model import FAULT_KEYS, ScenarioError, loads
from sim.runner import run
from sim.servers import ServerModel, check_result
from sim.timeline import line

FAULT_AT_S = 5.0
MAX_DURATION_S = 600.0
MAX_FAULTS = 20
ROUTERS = ("primary", "backup")


class WhatIfError(ValueError):
    """The config or the fault cannot be simulated (the caller's mistake: HTTP 422)."""


@dataclass(frozen=True, slots=True)
class WhatIf:
    timeline: tuple[str, ...]  # `shoal sim`'s lines
    table: tuple[str, ...]  # the active router's table at the end (`ipvsadm -Ln` layout); () when none is active
    tables: Mapping[str, tuple[str, ...]]  # every router's kernel table at the end, the same way (a split brain has two)
    vip_owner: str  # primary, backup, none, or primary+backup
    roles: Mapping[str, str]  # primary/backup -> active, standby or down, at the end
    active: str | None  # the one active router at the end, if exactly one
    assumed: tuple[str, ...]  # what the simulation changed to start from healthy real servers (see `healthy_checks`)
    violations: tuple[str, ...]  # invariants the simulator saw broken (a split brain...)
    records: tuple[dict[str, Any], ...] = field(default=(), repr=False)  # the trace, as `shoal sim --json`
    scenario: str = field(default="", repr=False)  # the scenario file that was run: `shoal sim` replays it
    duration_s: float = 30.0

    def as_json(self) -> dict[str, Any]:
        """The answer as JSON values (the web tool's API), the trace left out: `timeline` says it."""
        return {"timeline": list(self.timeline), "table": list(self.table),
                "tables": {name: list(lines) for name, lines in self.tables.items()}, "vip_owner": self.vip_owner,
                "roles": dict(self.roles), "active": self.active, "assumed": list(self.assumed),
                "violations": list(self.violations), "duration_s": self.duration_s, "scenario": self.scenario}


def what_if(config_text: str, fault: Mapping[str, Any] | Sequence[Mapping[str, Any]], *,
            duration_s: float = 30, seed: int = 1, down: Sequence[str] = ()) -> WhatIf:
    """Run `config_text` in the simulator with `fault`; raises WhatIfError for
    an invalid config, an unknown fault or a name the config does not have.
    `down`: real servers (`VIRTUAL/SERVER`) down from the start, as the real
    pair sees them now; every other real server starts healthy."""
    try:
        config = parse(config_text)
    except ConfigError as e:
        raise WhatIfError(f"the configuration is invalid: {e.issues[0].line}:{e.issues[0].col}: "
                          f"{e.issues[0].message}") from None
    if not isinstance(duration_s, (int, float)) or isinstance(duration_s, bool) or not math.isfinite(duration_s) \
            or not 0 < duration_s <= MAX_DURATION_S:
        raise WhatIfError(f"duration must be between 0 and {MAX_DURATION_S:g} seconds, not {duration_s!r}")
    faults = [fault] if isinstance(fault, Mapping) else list(fault)
    if not faults or len(faults) > MAX_FAULTS:
        raise WhatIfError(f"give between 1 and {MAX_FAULTS} faults")
    simulated, assumed = healthy_checks(config_text, config)
    before = [{"server_down": name, "at": 0.0} for name in down]
    text = scenario_text(simulated, before + faults, float(duration_s), seed)
    try:
        scenario = loads(text, "what-if.toml")
    except ScenarioError as e:
        raise WhatIfError(e.message) from None
    result = run(scenario)
    records = tuple(result.records)
    end = _replay(records)
    roles = {name: end.role[name] for name in ROUTERS}
    active = [name for name in ROUTERS if roles[name] == "active"]
    owner = _owner(config, end)
    tables = {name: tuple(format_ln(_table(config, end.table[name])).splitlines()[1:]) for name in ROUTERS}
    return WhatIf(
        timeline=tuple(line(r) for r in records), table=tables[active[0]] if len(active) == 1 else (),
        tables=tables, vip_owner=owner, roles=roles,
        active=active[0] if len(active) == 1 else None, assumed=assumed,
        violations=tuple(f"{v.name}: {v.message}" for v in result.violations), records=records, scenario=text,
        duration_s=float(duration_s),
    )


def healthy_checks(config_text: str, config: Config) -> tuple[str, tuple[str, ...]]:
    """The config with each virtual's `expect` that a simulated healthy server
    would fail made one it passes, and what was changed, said.

    The simulator's real servers answer every check alike (an HTTP 200,
    `scenario.faults.HEALTHY_REPLY`; a `wrong` one answers garbage): an
    `expect = "220"` of an FTP virtual fails against them although the real
    FTP servers pass it.  A what-if starts from healthy servers, so such an
    `expect` becomes the healthy reply's status line (a `wrong` server still
    fails it; for an http check, `*`: the status is still checked)."""
    text = config_text
    notes: list[str] = []
    for virtual in config.virtuals:
        probe = next((check_spec(virtual, s) for s in virtual.servers if s.active and s.address), None)
        if probe is None or check_result(probe, ServerModel("up"), 1)[1]:
            continue
        loose = "*" if probe.kind in ("http", "https") else "HTTP/1.0 200"
        text = set_value(set_value(text, (virtual.name,), "expect", loose), (virtual.name,), "use_regex", None)
        notes.append(f"virtual {virtual.name}: expect {quoted(virtual.expect or '')} simulated as {quoted(loose)} "
                     f"(the simulated real servers answer as web servers)")
    return text, tuple(notes)


def scenario_text(config_text: str, faults: Sequence[Mapping[str, Any]], duration_s: float, seed: int = 1) -> str:
    """The scenario file, in memory.  Strings are TOML basic strings (JSON's
    escapes are TOML's), so no config or name can end a literal early."""
    out = ['title = "what if"', f"seed = {int(seed)}", f"duration = {duration_s!r}",
           f"config = {_toml_string(config_text)}", ""]
    for raw in faults:
        if not isinstance(raw, Mapping):
            raise WhatIfError(f"a fault is an object like {{\"crash\": \"primary\"}}, not {type(raw).__name__}")
        kinds = [k for k in raw if k in FAULT_KEYS]
        if len(kinds) != 1:
            raise WhatIfError(f"a fault takes exactly one of {', '.join(FAULT_KEYS)}")
        at = raw.get("at", FAULT_AT_S)
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at) \
                or not 0 <= at <= duration_s:
            raise WhatIfError(f"a fault's `at` must be between 0 and {duration_s:g} seconds, not {at!r}")
        out += ["[[fault]]", f"at = {float(at)!r}"]
        for key, value in raw.items():
            if key != "at":
                out.append(f"{_toml_key(key)} = {_toml_value(value)}")
        out.append("")
    return "\n".join(out)


def _toml_key(key: object) -> str:
    if not isinstance(key, str) or not key.replace("_", "").isalnum() or not key.isascii():
        raise WhatIfError(f"unknown fault key {key!r}")
    return key


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, bool):
        raise WhatIfError("a fault's value is a name, a path or a number, not true/false")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return repr(value)
    raise WhatIfError(f"a fault's value is a name, a path or a number, not {type(value).__name__}")


# ------------------------------------------------------------------ the end state, from the trace


@dataclass
class _End:
    role: dict[str, str] = field(default_factory=lambda: {r: "standby" for r in ROUTERS})
    daemon: dict[str, bool] = field(default_factory=lambda: {r: True for r in ROUTERS})
    vips: dict[str, set[str]] = field(default_factory=lambda: {r: set() for r in ROUTERS})
    # by router: virtual name -> server name -> weight (the order they came in)
    table: dict[str, dict[str, dict[str, int]]] = field(default_factory=lambda: {r: {} for r in ROUTERS})


def _replay(records: Sequence[Mapping[str, Any]]) -> _End:
    end = _End()
    for r in records:
        node, kind = r["node"], r["kind"]
        if kind == "fault":
            what, _, rest = str(r["what"]).partition(" ")
            target = rest.split(" ")[0]
            if what in ("crash", "kill") and target in ROUTERS:
                end.daemon[target] = False
                end.role[target] = "down"
                if what == "crash":
                    end.vips[target], end.table[target] = set(), {}
            elif what == "restart" and target in ROUTERS:
                end.daemon[target] = True
                end.role[target] = "standby"
        elif node not in ROUTERS:
            continue
        elif kind == "role":
            end.role[node] = r["to"]
        elif kind == "vip":
            (end.vips[node].add if r["op"] == "add" else end.vips[node].discard)(r["address"])
        elif kind == "table":
            table = end.table[node]
            op, service, server = r["op"], r["service"], str(r.get("server"))
            if op == "add_service":
                table.setdefault(service, {})
            elif op == "del_service":
                table.pop(service, None)
            elif op in ("add_dest", "edit_dest"):
                table.setdefault(service, {})[server] = r["weight"]
            elif op == "del_dest":
                table.get(service, {}).pop(server, None)
    return end


def _owner(config: Config, end: _End) -> str:
    """Who holds every active virtual's VIP (as the scenario's `vip_owner` judges: a killed daemon's don't count)."""
    vips = {v.address for v in config.virtuals if v.active and v.address}
    holders = {name for name in ROUTERS if end.daemon[name] and vips & end.vips[name]}
    return "+".join(name for name in ROUTERS if name in holders) or "none"


def _table(config: Config, replayed: Mapping[str, Mapping[str, int]]) -> Table:
    """The replayed table (names and weights) as the kernel's (keys, forwarding), from the config."""
    out: dict[ServiceKey, ServiceEntry] = {}
    forward = FORWARD_OF_NETWORK[config.network]
    for virtual in config.virtuals:
        if virtual.name not in replayed or service_key(virtual) is None:
            continue
        entry = desired_entry(config, virtual, [])
        assert entry is not None
        dests: dict[DestKey, Dest] = {}
        for name, weight in replayed[virtual.name].items():
            if name == "sorry" and virtual.sorry_server:
                key = DestKey(virtual.sorry_server, dest_port(virtual, virtual.sorry_port))
            else:
                server = next((s for s in virtual.servers if s.name == name and s.address), None)
                if server is None or server.address is None:
                    continue
                key = DestKey(server.address, dest_port(virtual, server.port))
            dests[key] = Dest(key, weight, forward, name)
        out[entry.service.key] = ServiceEntry(entry.service, dests)
    return out
