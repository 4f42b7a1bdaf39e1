"""An incident as a scenario: the journals of both routers turned into a
scenario file (SPEC.md's format) that `shoal sim` runs, so that what really
happened can be replayed and explored with variations (docs/JOURNAL.md).

    text = scenario_text("/run/shoal-a", "/run/shoal-b")   # journal paths, either order

What the inputs show, and the fault each becomes (times on the routers'
wall clocks, taken as agreeing; 0 is the first step of either journal):

| seen in a journal | fault |
|---|---|
| a check that passed then failed (refused, timeout, a wrong answer) | `server_down`, `server_hang`, `server_wrong`, at the start of the first check that saw it; `server_up` when one passes again |
| a router's first start later than its partner's | `crash` at 0, `restart` then |
| a start after an earlier life | the end of that life: `kill` when the new start adopted a table (the kernel kept it), else `crash`; then `restart`; a different lvs.cf: `reload` first |
| `ShutdownRequested` (SIGTERM) | `crash` (the format has no clean stop: said in a comment) |
| a journal that stops before the other's | `kill` |
| heartbeats sent on a path and not received (three or more in a row) | `partition` PATH `from` the sender, `heal` when they pass again; scattered losses: `loss` on that path |
| `ConfigLoaded` | `reload` with the new text (once, whichever router read it first) |
| `AdminRequested` | `admin = "failover"`, `"drain V/S"`, `"undrain V/S"` (others: a comment) |
| `LinksChanged` | `link_down` / `link_up` with the device (one the scenario names; others: a comment) |

Each fault carries a comment saying what it was read from.  The
expectations are what the routers really did: `single_owner`, and the
roles (and VIP owner) last seen while both journals ran.  What a journal
cannot show: a server's slowness within its timeout, the clients, loads
(`load` faults are not written), a partition's exact start (a daemon hears
nothing, and a silent partner looks the same), which of a crash or a kill
ended a life that never started again.
"""

from __future__ import annotations

import bisect
import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.journal import JournalError, Record, read, wall_of
from engine.config import ConfigError, parse
from engine.model import Config
from scenario.devices import devices

START_SLACK_S = 1.0  # a router starting this much after its partner is written as crashed until then
LOST_RUN = 3  # heartbeats lost in a row that make a partition
DELIVERY_S = 0.25  # a heartbeat heard within this (or keepalive) of its sending was delivered
STARTING_S = 1.0  # heartbeats to a daemon this young are not judged
LOSS_MIN = 0.02  # scattered losses below this share are not written
PRIORITY = {"crash": 0, "kill": 0, "reload": 1, "restart": 2}  # at one time: an end, a reload, then a start


@dataclass
class _Life:
    node: str
    start: Record
    first_wall: float
    end_wall: float
    config_text: str
    steps: int = 0
    adopted: bool = False  # the first input was a table the kernel kept
    stopped: float | None = None  # a ShutdownRequested, when
    role: str = "standby"
    roles: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class _Seen:
    """What one router's journal shows."""

    node: str
    source: str
    lives: list[_Life] = field(default_factory=list)
    checks: list[tuple[float, str, int, bool, str]] = field(default_factory=list)  # start, address, port, ok, detail
    received: dict[str, list[float]] = field(default_factory=dict)  # path -> walls
    sent: dict[str, list[float]] = field(default_factory=dict)
    reloads: list[tuple[float, str]] = field(default_factory=list)
    admin: list[tuple[float, list[Any]]] = field(default_factory=list)
    links: list[tuple[float, frozenset[str]]] = field(default_factory=list)
    skipped: int = 0


@dataclass(frozen=True, order=True)
class _Fault:
    at: float
    priority: int
    lines: tuple[str, ...] = field(compare=False)  # the [[fault]]'s keys, TOML
    comment: str = field(compare=False)


# ---------------------------------------------------------------- reading


def _seen(path: str | Path) -> _Seen:
    journal = read([path])
    seen = _Seen("", str(path))
    life: _Life | None = None
    started: dict[int, float] = {}
    specs: dict[int, tuple[str, int]] = {}
    for record in journal.records:
        data = record.data
        if record.kind == "start":
            if seen.node and data["node"] != seen.node:
                raise JournalError(record.file, record.line, f"a {data['node']} start in the {seen.node}'s journal")
            seen.node = str(data["node"])
            opened = float(data["wall"])
            life = _Life(seen.node, record, opened, opened, str(data["config"]))
            seen.lives.append(life)
            started, specs = {}, {}
            continue
        if life is None or record.kind == "gap":
            seen.skipped += record.kind == "step"
            continue
        wall = wall_of(life.start.data, data["t"])
        if not life.steps:
            life.first_wall = wall
            life.adopted = data["i"][0] == "TableRead" and bool(data["i"][1])
        life.steps += 1
        life.end_wall = wall
        _input(seen, life, wall, data["i"], specs, started)
        for command in data.get("o", ()):
            _command(seen, life, wall, command, specs, started)
    if not seen.lives:
        raise JournalError(str(path), 0, "no start record: the daemon's start was rotated away")
    return seen


def _input(seen: _Seen, life: _Life, wall: float, event: list[Any], specs: dict[int, tuple[str, int]],
           started: dict[int, float]) -> None:
    match event:
        case ["CheckCompleted", check_id, ok, detail] if check_id in specs:
            address, port = specs[check_id]
            if not _links_down(seen, wall):  # a router cut from the servers says nothing of them
                seen.checks.append((started.get(check_id, wall), address, port, bool(ok), str(detail)))
        case ["HeartbeatReceived", path, _source, _payload]:
            seen.received.setdefault(path, []).append(wall)
        case ["ConfigLoaded", text, _key]:
            seen.reloads.append((wall, str(text)))
        case ["AdminRequested", *request] if not request[4]:  # replayed: put back at start, not a request
            seen.admin.append((wall, request))
        case ["LinksChanged", down]:
            seen.links.append((wall, frozenset(down)))
        case ["ShutdownRequested"]:
            life.stopped = wall


def _command(seen: _Seen, life: _Life, wall: float, command: list[Any], specs: dict[int, tuple[str, int]],
             started: dict[int, float]) -> None:
    match command:
        case ["StartCheck", check_id, [address, port, *_]]:
            specs[check_id], started[check_id] = (address, port), wall
        case ["SendHeartbeat", path, *_]:
            seen.sent.setdefault(path, []).append(wall)
        case ["Notify", "role", {"to": to}]:
            life.role = str(to)
            life.roles.append((wall, life.role))


def _links_down(seen: _Seen, wall: float) -> bool:
    """A link of this router was down at `wall` (its LinksChanged inputs)."""
    i = bisect.bisect_right(seen.links, wall, key=lambda change: change[0])
    return i > 0 and bool(seen.links[i - 1][1])


# ---------------------------------------------------------------- the faults


class _Names:
    """Real servers by (address, port), and the names a scenario may use."""

    def __init__(self, configs: Sequence[Config]) -> None:
        self.by_endpoint: dict[tuple[str, int], str] = {}
        self.valid: set[str] = set()
        counts: dict[str, int] = {}  # in how many virtuals of one config a name is, at most
        for config in configs:
            here: dict[str, int] = {}
            for v in config.virtuals:
                for s in v.servers:
                    here[s.name] = here.get(s.name, 0) + 1
                    self.valid |= {s.name, f"{v.name}/{s.name}"}
            for name, n in here.items():
                counts[name] = max(n, counts.get(name, 0))
        for config in configs:
            for v in config.virtuals:
                for s in v.servers:
                    if s.address:
                        name = s.name if counts[s.name] == 1 else f"{v.name}/{s.name}"
                        self.by_endpoint.setdefault((s.address, s.port if s.port is not None else v.port), name)


def _mode(ok: bool, detail: str) -> str:
    if ok:
        return "up"
    if "timeout" in detail:
        return "hang"
    if detail.startswith(("status ", "not an HTTP", "connection closed mid")) or "does not match" in detail:
        return "wrong"
    return "down"


def _server_faults(seen: Sequence[_Seen], names: _Names, t0: float) -> list[_Fault]:
    observed = sorted((start, s.node, address, port, ok, detail) for s in seen
                      for start, address, port, ok, detail in s.checks)
    state: dict[str, str] = {}
    out = []
    for start, node, address, port, ok, detail in observed:
        name = names.by_endpoint.get((address, port))
        mode = _mode(ok, detail)
        if name is None or state.get(name, "up") == mode:
            continue
        state[name] = mode
        said = "passed" if ok else f"failed: {detail[:80]}"
        out.append(_Fault(start - t0, 3, (f"server_{mode} = {_q(name)}",),
                          f"the {node}'s check of {name} ({address}:{port}) {said}"))
    return out


def _life_faults(seen: _Seen, t0: float, end: float, current: list[str]) -> list[_Fault]:
    out = []
    lives = seen.lives
    if lives[0].first_wall - t0 > START_SLACK_S:
        out.append(_Fault(0.0, 0, (f"crash = {_q(seen.node)}",), f"the {seen.node} had not started yet"))
    elif lives[0].config_text != current[0]:
        out.append(_Fault(0.0, 1, _reload(lives[0].config_text), f"the {seen.node} started with another lvs.cf"))
        current[0] = lives[0].config_text
    for i, life in enumerate(lives):
        if i or lives[0].first_wall - t0 > START_SLACK_S:
            if life.config_text != current[0]:
                out.append(_Fault(life.first_wall - t0, 1, _reload(life.config_text),
                                  f"the {seen.node}'s next start read another lvs.cf"))
                current[0] = life.config_text
            out.append(_Fault(life.first_wall - t0, 2, (f"restart = {_q(seen.node)}",),
                              f"the {seen.node}'s daemon started ({life.start.where})"
                              + (", adopting the table its kernel kept" if life.adopted else "")))
        following = lives[i + 1] if i + 1 < len(lives) else None
        if life.stopped is not None:
            out.append(_Fault(life.stopped - t0, 0, (f"crash = {_q(seen.node)}",),
                              f"the {seen.node}'s daemon was stopped (SIGTERM): the format has no clean stop; "
                              f"crash is the nearest (its partner hears it leave only after deadtime)"))
        elif following is not None:
            kind = "kill" if following.adopted else "crash"
            why = ("its next start adopted the table its kernel kept" if following.adopted else
                   "its next start found an empty table: its host restarted (or the daemon died and the table "
                   "was emptied)")
            out.append(_Fault(life.end_wall - t0, 0, (f"{kind} = {_q(seen.node)}",),
                              f"the {seen.node}'s journal stops here: its daemon died; {why}"))
        elif end - life.end_wall > START_SLACK_S:
            out.append(_Fault(life.end_wall - t0, 0, (f"kill = {_q(seen.node)}",),
                              f"the {seen.node}'s journal stops here: its daemon (or its host) died"))
    return out


def _heartbeat_faults(seen: dict[str, _Seen], configs: Sequence[Config], t0: float) -> tuple[list[_Fault], list[str]]:
    """Partitions (a run of heartbeats sent and not heard) and scattered loss, per path and direction."""
    config = configs[0]
    cuts: list[tuple[float, str, str, bool]] = []  # when, path, sender, cut?
    notes: list[str] = []
    loss: dict[str, list[int]] = {}
    for sender, receiver in (("primary", "backup"), ("backup", "primary")):
        if sender not in seen or receiver not in seen:
            continue
        for path in ("public", "private"):
            if config.address_of(sender, path) is None:  # type: ignore[arg-type]
                continue
            heard = sorted(seen[receiver].received.get(path, []))
            within = max(DELIVERY_S, config.keepalive_ms / 1000)
            run: list[float] = []
            counts = loss.setdefault(path, [0, 0])
            for sent in sorted(seen[sender].sent.get(path, [])):
                if not _listening(seen[receiver], sent, within) or _links_down(seen[sender], sent) \
                        or _links_down(seen[receiver], sent):
                    continue
                i = bisect.bisect_left(heard, sent - 0.05)
                delivered = i < len(heard) and heard[i] <= sent + within
                counts[0 if delivered else 1] += 1
                if not delivered:
                    run.append(sent)
                    continue
                if len(run) >= LOST_RUN:
                    cuts += [(run[0] - 0.001, path, sender, True), (sent, path, sender, False)]
                    counts[1] -= len(run)
                run = []
            if len(run) >= LOST_RUN:
                cuts.append((run[0] - 0.001, path, sender, True))
                counts[1] -= len(run)
    out = _cut_faults(sorted(cuts), t0)
    for path, (heard_n, lost_n) in sorted(loss.items()):
        if heard_n + lost_n >= 20 and lost_n / (heard_n + lost_n) >= LOSS_MIN:
            share = round(lost_n / (heard_n + lost_n), 3)
            out.append(_Fault(0.0, 4, (f"loss = {share}", f"path = {_q(path)}"),
                              f"{lost_n} of {heard_n + lost_n} heartbeats on the {path} path were sent and not "
                              f"heard, scattered over the run (their share, from the start)"))
            notes.append(path)
    return out, notes


def _listening(seen: _Seen, wall: float, within: float) -> bool:
    """The router was running and past its start (a starting loop hears late) from `wall` to `wall + within`."""
    return any(life.first_wall + STARTING_S <= wall and wall + within <= (life.stopped or life.end_wall)
               for life in seen.lives)


def _cut_faults(cuts: list[tuple[float, str, str, bool]], t0: float) -> list[_Fault]:
    """One-way cuts as partition/heal faults: a heal heals both ways, so a cut
    still on the other way is made again at once."""
    out = []
    now: dict[str, set[str]] = {}
    for when, path, sender, cut in cuts:
        senders = now.setdefault(path, set())
        at = max(0.0, when - t0)
        if cut:
            senders.add(sender)
            out.append(_Fault(at, 5, (f"partition = {_q(path)}", f"from = {_q(sender)}"),
                              f"the {sender}'s heartbeats on the {path} path stop being heard"))
            continue
        senders.discard(sender)
        out.append(_Fault(at, 5, (f"heal = {_q(path)}",), f"the {sender}'s heartbeats on the {path} path are "
                                                           f"heard again"))
        for other in sorted(senders):
            out.append(_Fault(at, 6, (f"partition = {_q(path)}", f"from = {_q(other)}"),
                              f"(the {other}'s still are not)"))
    return out


def _reload_faults(seen: Sequence[_Seen], t0: float, current: list[str]) -> list[_Fault]:
    out = []
    for wall, node, text in sorted((w, s.node, t) for s in seen for w, t in s.reloads):
        if text == current[0]:
            continue
        current[0] = text
        serial = _parse(text).serial_no
        out.append(_Fault(wall - t0, 1, _reload(text), f"the {node} reloaded its lvs.cf (serial_no {serial}); a "
                                                       f"scenario's reload reaches both routers"))
    return out


def _admin_faults(seen: Sequence[_Seen], names: _Names, t0: float) -> list[_Fault]:
    out = []
    last: dict[tuple[str, str], float] = {}
    for wall, node, request in sorted((w, s.node, r) for s in seen for w, r in s.admin):
        action, server, virtual, weight = request[:4]
        name = f"{virtual}/{server}" if virtual and "/" not in server else server
        if wall - last.get((action, name), -1e9) < 2.0:
            continue  # the same request to both routers
        last[(action, name)] = wall
        said = f"the operator asked the {node}: {action} {name}".rstrip() + (f" {weight}" if weight is not None else "")
        if action == "failover":
            out.append(_Fault(wall - t0, 7, ('admin = "failover"',), said))
        elif action in ("drain", "undrain") and name in names.valid:
            out.append(_Fault(wall - t0, 7, (f"admin = {_q(f'{action} {name}')}",), said))
        else:
            out.append(_Fault(wall - t0, 7, (), said + " (not in the scenario's vocabulary)"))
    return out


def _link_faults(seen: Sequence[_Seen], configs: Sequence[Config], t0: float) -> list[_Fault]:
    known = devices(configs[0]).names
    out = []
    for s in seen:
        before: frozenset[str] = frozenset()
        for wall, down in s.links:
            for device, kind in [(d, "link_down") for d in sorted(down - before)] + \
                                [(d, "link_up") for d in sorted(before - down)]:
                said = f"the {s.node}'s {device} {'lost' if kind == 'link_down' else 'got back'} its link"
                if device in known:
                    out.append(_Fault(wall - t0, 8, (f"{kind} = {_q(s.node)}", f"device = {_q(device)}"), said))
                else:
                    out.append(_Fault(wall - t0, 8, (), f"{said} (not an interface a scenario names: "
                                                        f"{', '.join(known)})"))
            before = down
    return out


# ---------------------------------------------------------------- the file


def scenario_text(*journals: str | Path) -> str:
    """The scenario of the incident the journals (one per router) saw."""
    seen = [_seen(j) for j in journals]
    nodes = [s.node for s in seen]
    if len(set(nodes)) != len(nodes):
        raise JournalError(str(journals[1]), 0, f"both journals are the {nodes[0]}'s: give one of each router")
    by_node = {s.node: s for s in seen}
    ordered = [by_node[n] for n in ("primary", "backup") if n in by_node]
    first = ordered[0].lives[0]
    t0 = min(life.first_wall for s in seen for life in s.lives)
    end = max(life.end_wall for s in seen for life in s.lives)
    current = [first.config_text]
    configs = [_parse(first.config_text)] + [_parse(t) for s in seen for _, t in s.reloads] + \
              [_parse(life.config_text) for s in seen for life in s.lives]
    names = _Names(configs)
    faults = []
    for s in ordered:
        faults += _life_faults(s, t0, end, current)
    faults += _reload_faults(ordered, t0, current)
    faults += _server_faults(ordered, names, t0)
    heartbeat, _ = _heartbeat_faults(by_node, configs, t0)
    faults += heartbeat + _admin_faults(ordered, names, t0) + _link_faults(ordered, configs, t0)
    duration = round(end - t0 + 0.5, 1)
    return _render(ordered, first.config_text, sorted(faults), duration, t0, _expectations(ordered, end, t0))


def _expectations(seen: Sequence[_Seen], end: float, t0: float) -> list[str]:
    """The roles last seen while every journal ran (before the first final stop)."""
    last = [s.lives[-1] for s in seen]
    at = min([end] + [life.stopped - 0.01 for life in last if life.stopped is not None]
             + [life.end_wall for life in last])
    roles = {s.node: _role_at(s, at) for s in seen}
    out = ['[[expect]]', 'always = "single_owner"', "", '[[expect]]', 'always = "table_matches_health"', ""]
    if len(roles) == 2:
        when = max(0.0, round(at - t0, 3))
        out += [f"# what the routers really did at {when:g} s", "[[expect]]", f"at = {when:g}",
                "role = { " + ", ".join(f"{n} = {_q(r)}" for n, r in roles.items()) + " }", ""]
        owners = [n for n, r in roles.items() if r == "active"]
        if len(owners) <= 1:
            out += ["[[expect]]", f"at = {when:g}", f"vip_owner = {_q(owners[0] if owners else 'none')}", ""]
    return out


def _role_at(seen: _Seen, at: float) -> str:
    for life in reversed(seen.lives):
        if life.first_wall <= at:
            if at > (life.stopped or life.end_wall) + 1e-6:
                return "down"
            return next((role for wall, role in reversed(life.roles) if wall <= at), "standby")
    return "down"


def _render(seen: Sequence[_Seen], config: str, faults: list[_Fault], duration: float, t0: float,
            expects: list[str]) -> str:
    when = datetime.datetime.fromtimestamp(t0, datetime.timezone.utc).isoformat(timespec="milliseconds")
    sources = "; ".join(f"the {s.node}'s {s.source} ({len(s.lives)} start(s))" for s in seen)
    lines = [
        "# An incident, as the routers' journals saw it: written by `shoal replay --scenario`",
        f"# from {sources}.",
        f"# Time 0 is {when}, the first step of either journal (the routers' wall clocks",
        "# taken as agreeing).  The faults are what the engines' inputs show: check results",
        "# (server_*), heartbeats sent and not heard (partition, heal, loss), daemon starts and",
        "# ends (crash, kill, restart), reloads, operator requests and links; each says what it",
        "# was read from.  A journal cannot show a server's slowness within its timeout, the",
        "# clients, or which of a crash or a kill ended a daemon that never started again.",
        "# The last expectations are what the routers really did: the simulator should agree.",
        "",
        f"title = {_q('incident of ' + when)}",
        "seed = 1",
        f"duration = {duration:g}",
        f"config = {_literal(config)}",
        "",
        "[network]",
        "latency = 0.001",
        "",
    ]
    for fault in faults:
        at = min(max(0.0, round(fault.at, 3)), duration)
        if fault.lines:
            lines += [f"# {fault.comment}", "[[fault]]", f"at = {at:g}", *fault.lines, ""]
        else:
            lines += [f"# at {at:g} s: {fault.comment}", ""]
    return "\n".join(lines + expects)


def _parse(text: str) -> Config:
    try:
        return parse(text, "lvs.cf")
    except ConfigError as e:
        raise JournalError("lvs.cf", e.issues[0].line, f"a journaled lvs.cf does not parse: {e.issues[0]}") from None


def _reload(text: str) -> tuple[str, ...]:
    return (f"reload = {_literal(text)}",)


def _q(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text)


def _literal(text: str) -> str:
    """An lvs.cf as a TOML multi-line literal string, or a basic one when it holds what a literal cannot."""
    if "'''" not in text and all(ch in "\n\t" or ch >= " " and ch != "\x7f" for ch in text):
        return "'''\n" + text + ("" if text.endswith("\n") else "\n") + "'''"
    return '"""\n' + json.dumps(text)[1:-1] + '"""'
