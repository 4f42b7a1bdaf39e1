"""Expectation checks (SPEC.md, "Scenario files"), pure.

A driver (the simulator, the lab) describes the world at one instant as a
`View` and asks `judge(expect, view)` for a verdict.  Nothing here knows how
the view was obtained, so `shoal sim` and `shoal lab` judge alike.

Reading of the expectations:

- `vip_owner = R`: every VIP of an active virtual is held by R and by no
  other router whose daemon runs ("none": by none of them).  A router whose
  daemon was killed still holds its addresses in the kernel; like
  `single_owner`, it is not counted until restarted (the verdict says what
  it still holds).
- `role`: `active`/`standby` as the daemon says; `down` when the host is
  crashed or its daemon killed.
- `in_table`, `not_in_table`, `weight`: the table of the one active router
  (no active router, or two: the verdict fails and says so).  A server in
  the table at weight 0 (quiesced, drained) is in the table.  Names:
  `SERVER` (in any virtual), `VIRTUAL/SERVER`, `sorry`, `VIRTUAL/sorry`.
- `client_success`: successes / connections opened in [from, to).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from engine.model import Config
from engine.pool import service_key
from engine.table import Table
from scenario.model import Expect

ROLE_DOWN = "down"


@dataclass(frozen=True, slots=True)
class RouterView:
    name: str
    daemon: bool  # the daemon runs (not crashed, not killed)
    host_up: bool  # the host runs (not crashed): its kernel holds `vips` and `table`
    role: str  # "active" | "standby" | "down"
    vips: frozenset[str]
    table: Table


@dataclass(frozen=True, slots=True)
class View:
    now_ms: int
    config: Config  # the configuration in force
    routers: Mapping[str, RouterView]
    clients: tuple[int, int] | None = None  # (succeeded, opened) in the expectation's window


def active_vips(config: Config) -> list[str]:
    return sorted({v.address for v in config.virtuals if v.active and v.address})


def judge(expect: Expect, view: View) -> tuple[bool, str]:
    """(holds?, one line saying what was expected and what was seen)."""
    what = expect.describe()
    ok, seen = _JUDGES[expect.kind](expect, view)
    return ok, f"{what}" + (f" ({seen})" if seen else "")


def _vip_owner(expect: Expect, view: View) -> tuple[bool, str]:
    want = [] if expect.value == "none" else [expect.value]
    ok, seen = True, []
    for address in active_vips(view.config):
        holders = [r.name for r in view.routers.values() if r.daemon and address in r.vips]
        stale = [r.name for r in view.routers.values() if not r.daemon and r.host_up and address in r.vips]
        ok = ok and holders == want
        note = f" (+{'+'.join(stale)} killed)" if stale else ""
        seen.append(f"{address}: {'+'.join(holders) or 'nobody'}{note}")
    return ok, ", ".join(seen)


def _role(expect: Expect, view: View) -> tuple[bool, str]:
    seen = {name: view.routers[name].role for name in sorted(expect.value)}
    ok = all(seen[n] == want for n, want in expect.value.items())
    return ok, "saw " + ", ".join(f"{n} {r}" for n, r in seen.items())


def table_weights(config: Config, table: Table) -> dict[str, int]:
    """Every destination of `table` by the names a scenario may use."""
    weights: dict[str, int] = {}
    for v in config.virtuals:
        key = service_key(v)
        entry = table.get(key) if key is not None else None
        if entry is None:
            continue
        for d in entry.dests.values():
            name = d.name or str(d.key)
            weights[f"{v.name}/{name}"] = d.weight
            weights.setdefault(name, d.weight)
    return weights


def _active_table(view: View) -> tuple[Table | None, str]:
    active = [r for r in view.routers.values() if r.role == "active"]
    if len(active) != 1:
        return None, f"{len(active)} active routers: no table to read"
    return active[0].table, ""


def _in_table(expect: Expect, view: View) -> tuple[bool, str]:
    table, problem = _active_table(view)
    if table is None:
        return False, problem
    weights = table_weights(view.config, table)
    missing = [s for s in expect.value if s not in weights]
    return not missing, f"missing {', '.join(missing)}" if missing else ""


def _not_in_table(expect: Expect, view: View) -> tuple[bool, str]:
    table, problem = _active_table(view)
    if table is None:
        return False, problem
    weights = table_weights(view.config, table)
    present = [f"{s} (weight {weights[s]})" for s in expect.value if s in weights]
    return not present, f"present: {', '.join(present)}" if present else ""


def _weight(expect: Expect, view: View) -> tuple[bool, str]:
    table, problem = _active_table(view)
    if table is None:
        return False, problem
    weights = table_weights(view.config, table)
    wrong = {s: weights.get(s) for s, w in expect.value.items() if weights.get(s) != w}
    seen = ", ".join(f"{s} {'not in table' if w is None else w}" for s, w in wrong.items())
    return not wrong, f"saw {seen}" if wrong else ""


def _client_success(expect: Expect, view: View) -> tuple[bool, str]:
    if view.clients is None:
        return False, "no client connections were recorded"
    succeeded, opened = view.clients
    if opened == 0:
        return False, "no connections opened in the window"
    share = succeeded / opened
    return share >= float(expect.value), f"{succeeded}/{opened} = {share:.4f}"


def _always(expect: Expect, view: View) -> tuple[bool, str]:
    raise ValueError("`always` expectations are judged by the driver after every step")


_JUDGES = {
    "vip_owner": _vip_owner, "role": _role, "in_table": _in_table, "not_in_table": _not_in_table,
    "weight": _weight, "client_success": _client_success, "always": _always,
}
