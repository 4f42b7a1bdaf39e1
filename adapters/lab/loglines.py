"""Nothing hides: the daemons' logs of a lab run, judged against the scenario.

The lab's daemons log JSON lines (`LabWorld.daemon_args`; docs/LOGS.md).  A line *counts*
when its level is `warning` or `error` (or above), or when it is not a JSON line at all (a
traceback, or anything written to standard error outside the log: never expected).  A line
that counts fails the run unless the scenario *expects* it, and a scenario expects a line only
through what it says itself -- its configuration and its faults, at or before the line's
scenario time -- by these rules (`RULES`, by the line's `kind`):

| kind                  | expected when                                                     |
|-----------------------|-------------------------------------------------------------------|
| `warning`             | always: the configuration's own warnings (`shoal check-config`    |
|                       | says the same); the scenario chose that configuration             |
| `health`, `quorum`    | a server fault (`server_down`, `server_hang`, `server_wrong`,     |
|                       | `server_slow`) naming that server (`health`) or a server of that  |
|                       | virtual (`quorum`), or a `link_down` of the router that logged it |
| `partner`,            | a fault that cuts the routers apart: `crash`, `kill` or `restart` |
| `heartbeat_lost`,     | of either router, `partition`, `loss`, `link_down` of either      |
| `heartbeat_ignored`   | router; the scenario's `[network] loss` (from 0 s); and before    |
|                       | scenario time 0, the routers' boot (both boot at 0 s: the lab     |
|                       | starts the two daemons together and waits for both, and one may   |
|                       | be up a deadtime before the other)                                |
| `hold`                | an `admin = "failover"` fault                                     |
| `admin_refused`       | an `admin` fault (the lab's timeline shows the refusal too)       |
| `links`               | a `link_down` or `link_up` of the router that logged it           |

Everything else that counts fails the run: a table operation that failed, a drift, an engine
error, a failed task or check that raised, a command that failed, a reload refused, a stall
(the daemon's loop woke late), a line outside the log.  A fault explains a line from its
scenario time to the end of the run (`at` as the scenario file says it; a line is caused after
its fault, never before).  The rules need no new key in the scenario file.

`unexplained(lines, scenario)` gives the lines that count and that nothing in the scenario
explains, each with its router and scenario time; the runner makes one failed verdict per
router of them (`verdict_text`).  Pure: no clock, no files (`parse` takes the log's text).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from scenario.model import Fault, Scenario

COUNTED = ("warning", "error", "critical")
SERVER_FAULTS = ("server_down", "server_hang", "server_wrong", "server_slow")
APART_FAULTS = ("crash", "kill", "restart", "partition", "loss", "link_down")


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a daemon's log."""

    router: str
    t_s: float | None  # scenario seconds (None: a line without a time, outside the log)
    level: str  # info, warning, error...; "raw" for a line that is not JSON
    kind: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> bool:
        return self.level in COUNTED or self.level == "raw"


def parse(router: str, text: str, t0_unix: float, scale: float) -> list[Line]:
    """The lines of a JSON log (`t` Unix seconds; scenario time 0 at `t0_unix`, divided by the
    time `scale`); a non-empty line that is not a JSON object is kept as `raw`."""
    out = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            t = float(record["t"])
            level, msg = str(record.get("level", "info")), str(record.get("msg", ""))
        except (ValueError, KeyError, TypeError):
            out.append(Line(router, None, "raw", "raw", raw))
            continue
        fields = {k: v for k, v in record.items() if k not in ("t", "level", "msg")}
        out.append(Line(router, (t - t0_unix) / scale, level, str(record.get("kind", "")), msg, fields))
    return out


# ---------------------------------------------------------------- the rules

Rule = Callable[[Line, Fault, Scenario], bool]


def _names_server(fault: Fault, virtual: str, server: str) -> bool:
    """A fault's SERVER or VIRTUAL/SERVER names this server of this virtual."""
    value = str(fault.value)
    return value == server or value == f"{virtual}/{server}" or (server == "sorry" and value == "sorry")


def _server_of_line(line: Line, fault: Fault, scenario: Scenario) -> bool:
    if fault.kind == "link_down":
        return fault.value == line.router
    return fault.kind in SERVER_FAULTS and _names_server(fault, str(line.fields.get("service", "")),
                                                         str(line.fields.get("server", "")))


def _server_of_virtual(line: Line, fault: Fault, scenario: Scenario) -> bool:
    if fault.kind == "link_down":
        return fault.value == line.router
    if fault.kind not in SERVER_FAULTS:
        return False
    virtual = str(line.fields.get("service", ""))
    configs = [scenario.config] + [f.value for f in scenario.faults if f.kind == "reload"]
    servers = {s.name for c in configs for v in c.virtuals if v.name == virtual for s in v.servers} | {"sorry"}
    return any(_names_server(fault, virtual, s) for s in servers)


def _apart(line: Line, fault: Fault, scenario: Scenario) -> bool:
    return fault.kind in APART_FAULTS


def _failover(line: Line, fault: Fault, scenario: Scenario) -> bool:
    return fault.kind == "admin" and str(fault.value).split()[:1] == ["failover"]


def _admin(line: Line, fault: Fault, scenario: Scenario) -> bool:
    return fault.kind == "admin"


def _own_links(line: Line, fault: Fault, scenario: Scenario) -> bool:
    return fault.kind in ("link_down", "link_up") and fault.value == line.router


RULES: dict[str, tuple[str, Rule]] = {
    "health": ("a fault of that server", _server_of_line),
    "quorum": ("a fault of a server of that virtual", _server_of_virtual),
    "partner": ("a fault between the routers", _apart),
    "heartbeat_lost": ("a fault between the routers", _apart),
    "heartbeat_ignored": ("a fault between the routers", _apart),
    "hold": ("an operator's failover", _failover),
    "admin_refused": ("an operator's order", _admin),
    "links": ("a link fault of that router", _own_links),
}
"""kind -> (what explains it, whether this fault does).  `warning` (the config's) is always
explained; a kind not here never is."""


def explanation(line: Line, scenario: Scenario) -> str | None:
    """What in `scenario` explains `line` (a line that counts), or None."""
    if line.level == "raw":
        return None
    if line.kind == "warning":
        return "the scenario's configuration"
    rule = RULES.get(line.kind)
    if rule is None or line.t_s is None:
        return None
    if line.t_s < 0 and rule[1] is _apart:
        return "the routers' boot at 0 s"
    if scenario.loss > 0 and rule[1] is _apart:
        return f"the network's loss of {scenario.loss:g}"
    for fault in scenario.faults:
        if fault.at_ms <= line.t_s * 1000 and rule[1](line, fault, scenario):
            return f"{fault.describe()} at {fault.at_ms / 1000:g} s"
    return None


def unexplained(lines: Iterable[Line], scenario: Scenario) -> list[Line]:
    """The lines that count and that nothing in the scenario explains, in log order."""
    return [line for line in lines if line.counts and explanation(line, scenario) is None]


def verdict_text(router: str, lines: list[Line]) -> str:
    """One failed verdict for a router's unexplained lines: the first, and how many more."""
    first = lines[0]
    when = f"at {first.t_s:.3f} s" if first.t_s is not None else "(a line outside the log)"
    level = "" if first.level == "raw" else f"{first.level}: "
    more = f" (and {len(lines) - 1} more unexplained line(s))" if len(lines) > 1 else ""
    return f"log of {router} {when}: {level}{first.text}{more}"
