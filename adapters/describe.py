"""What the daemon says about a command: one line for a person, the same
facts as fields for a machine.  Pure: no logging, no clock.

`describe(command, config)` gives a `Said`: `text`, the log line an operator
reads, naming things as `ipvsadm` and `lvs.cf` do; `fields`, the same facts
as JSON values (`{"kind": "table", "op": "-a", "service": "TCP
10.50.0.100:80", "server": "10.60.1.11:80", "method": "-m", "weight": 3}`);
`loud`, whether it is worth a warning.  Examples (docs/LOGS.md has them all):

    table: -A -t 10.50.0.100:80 -s wlc (web)
    table: -a -t 10.50.0.100:80 -r 10.60.1.11:80 -m -w 3 (web/rs1)
    vip: add 10.50.0.100/24 dev eth0:1
    arp: 10.50.0.100 on eth0
    health web/rs2: up -> down (connection refused)
    role: standby -> active (partner dead: no heartbeat for 5.0 s)

The rules that keep it honest:

- Every command type of `engine.events.Command` has a row in `_COMMANDS`
  and every notice kind the engine emits a row in `_NOTICES` (the tests fail
  otherwise); a notice kind without a row is still said, as `kind: key
  value, ...`, never dropped and never a repr.
- Nothing here formats a Python object with `repr` or `str` of a container:
  text from the outside (a check's reply, an operator's command) is quoted
  as lvs.cf quotes it (`quoted`), values with `plain`.
- Never raises: this runs on the daemon's log path.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

from engine.events import (
    AddDest, AddService, AddVip, Command, DelDest, DelService, DelVip, EditDest, EditService, Notify,
    ReadLoad, ReadTable, RunCommand, SendAdvert, SendGratuitousArp, SendHeartbeat, SetTimeouts, StartCheck,
    StartSyncDaemon, StopSyncDaemon, TableOp,
)
from engine.model import Config
from engine.table import ServiceKey

Value = str | int | float | bool | None
Fields = dict[str, Value]


@dataclass(frozen=True, slots=True)
class Said:
    """A command or notice as the daemon says it."""

    text: str  # the log line, without the logger's prefix
    fields: Fields = field(default_factory=dict)  # the same facts for the JSON log; always has "kind"
    loud: bool = False  # a warning, not information


# ---------------------------------------------------------------- values


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\r": "\\r", "\n": "\\n", "\t": "\\t"}


def quoted(text: str | bytes, limit: int = 120) -> str:
    """Outside text in double quotes with lvs.cf's escapes (`\\r \\n \\t \\\\ \\"`),
    anything unprintable (and, in bytes, anything not ASCII) as `\\xNN`; longer
    than `limit` characters: cut, `...` after."""
    raw = isinstance(text, bytes)
    chars = text.decode("latin-1") if isinstance(text, bytes) else text
    out = []
    for ch in chars[:limit]:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable() and not (raw and ord(ch) > 0x7E):
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return '"' + "".join(out) + '"' + ("..." if len(chars) > limit else "")


def plain(value: object) -> str:
    """A value as a log line shows it: booleans as lvs.cf's 1/0, None as `-`,
    floats without trailing noise; anything else must already be text."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (int, str)):
        return str(value)
    return type(value).__name__  # never a repr: a value of an unexpected type says only what it is


def _value(value: object) -> Value:
    """A value as the JSON log carries it (a JSON scalar)."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else plain(value)


def host_port(address: str, port: int) -> str:
    """`10.0.0.1:80`, `[2001:db8::1]:80`: as ipvsadm writes an endpoint."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def service_name(key: ServiceKey) -> str:
    """A service as `ipvsadm -Ln` heads it: `TCP 10.0.0.1:80`, `UDP [2001:db8::1]:53`, `FWM 5`."""
    return str(key)


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.1f} s"


# ---------------------------------------------------------------- the table


_METHOD = {"masq": "-m", "route": "-g", "tunnel": "-i"}
_OP = {AddService: "-A", EditService: "-E", DelService: "-D", AddDest: "-a", EditDest: "-e", DelDest: "-d"}


def ipvsadm_args(op: TableOp) -> str:
    """A table operation as `ipvsadm` arguments (`-a -t 10.0.0.1:80 -r 10.1.0.11:80 -m -w 1`),
    as the dry-run dataplane prints it; never raises (what ipvsadm cannot say,
    an unknown protocol or scheduler flag, is said in the table's own words)."""
    from adapters.dataplane.ipvsadm import restore_line

    try:
        return restore_line(op)
    except (ValueError, KeyError, TypeError):
        key = op.service.key if isinstance(op, (AddService, EditService)) else op.key if isinstance(op, DelService) \
            else op.service
        text = f"{_OP.get(type(op), '?')} {service_name(key)}"
        if isinstance(op, (AddDest, EditDest)):
            text += f" -r {op.dest.key} {_METHOD.get(op.dest.forward, '?')} -w {op.dest.weight}"
        elif isinstance(op, DelDest):
            text += f" -r {op.dest}"
        return text


def _table(op: TableOp, config: Config | None) -> Said:
    fields: Fields = {"kind": "table", "op": _OP[type(op)]}
    virtual = ""
    server = ""
    match op:
        case AddService(service) | EditService(service):
            fields.update(service=service_name(service.key), scheduler=service.scheduler)
            if service.persistent_s:
                fields.update(persistent=service.persistent_s, pmask=service.pmask)
            if service.sched_flags:
                fields["flags"] = ",".join(service.sched_flags)
            virtual = service.name
        case DelService(key, name):
            fields["service"] = service_name(key)
            virtual = name
        case AddDest(key, dest) | EditDest(key, dest):
            fields.update(service=service_name(key), server=str(dest.key), method=_METHOD.get(dest.forward, "?"),
                          weight=dest.weight)
            server = dest.name
        case DelDest(key, dkey, name):
            fields.update(service=service_name(key), server=str(dkey))
            server = name
    if not virtual and isinstance(op, (AddDest, EditDest, DelDest)):
        virtual = _virtual_of(op.service, config)
    if virtual:
        fields["virtual"] = virtual
    if server:
        fields["name"] = server
    names = "/".join(n for n in (virtual, server) if n)
    return Said(f"table: {ipvsadm_args(op)}" + (f" ({names})" if names else ""), fields)


def _virtual_of(key: ServiceKey, config: Config | None) -> str:
    """The `virtual NAME` of a service key, when the config says (destinations carry only the key)."""
    if config is None:
        return ""
    for v in config.virtuals:
        if key.protocol == "fwmark":
            if v.fwmark == key.fwmark:
                return v.name
        elif v.fwmark is None and v.address is not None and v.port == key.port and v.protocol == key.protocol:
            if _same_address(v.address, key.address):
                return v.name
    return ""


@functools.lru_cache(maxsize=65536)
def _same_address(a: str, b: str) -> bool:
    """Do two spellings name one address? (cached: every table operation asks, for every virtual)"""
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


# ---------------------------------------------------------------- the other commands


def _vip(cmd: AddVip | DelVip, config: Config | None) -> Said:
    op = "add" if isinstance(cmd, AddVip) else "del"
    where = cmd.label or cmd.device
    return Said(f"vip: {op} {cmd.address}/{cmd.prefix} dev {where}",
                {"kind": "vip", "op": op, "address": cmd.address, "prefix": cmd.prefix, "device": cmd.device,
                 "label": cmd.label})


def _arp(cmd: SendGratuitousArp, config: Config | None) -> Said:
    v6 = ":" in cmd.address
    return Said(f"arp: {cmd.address} on {cmd.device}" + (" (unsolicited neighbour advertisement)" if v6 else ""),
                {"kind": "arp", "address": cmd.address, "device": cmd.device})


def _heartbeat(cmd: SendHeartbeat, config: Config | None) -> Said:
    return Said(f"heartbeat: send to {host_port(cmd.address, cmd.port)} on the {cmd.path} path "
                f"({len(cmd.payload)} bytes)",
                {"kind": "heartbeat", "op": "send", "path": cmd.path, "address": cmd.address, "port": cmd.port,
                 "bytes": len(cmd.payload)})


def _advert(cmd: SendAdvert, config: Config | None) -> Said:
    priority = cmd.payload[2] if len(cmd.payload) > 2 else None
    return Said(f"vrrp: advert sent, priority {priority} ({len(cmd.payload)} bytes)",
                {"kind": "vrrp", "op": "send", "priority": priority, "bytes": len(cmd.payload)})


def _timeouts(cmd: SetTimeouts, config: Config | None) -> Said:
    return Said(f"timeouts: ipvsadm --set {cmd.tcp_s} {cmd.tcpfin_s} {cmd.udp_s}",
                {"kind": "timeouts", "tcp": cmd.tcp_s, "tcpfin": cmd.tcpfin_s, "udp": cmd.udp_s})


def _sync_start(cmd: StartSyncDaemon, config: Config | None) -> Said:
    return Said(f"syncd: ipvsadm --start-daemon {cmd.state} --mcast-interface {cmd.iface} --syncid {cmd.syncid}",
                {"kind": "syncd", "op": "start", "state": cmd.state, "iface": cmd.iface, "syncid": cmd.syncid})


def _sync_stop(cmd: StopSyncDaemon, config: Config | None) -> Said:
    return Said(f"syncd: ipvsadm --stop-daemon {cmd.state}", {"kind": "syncd", "op": "stop", "state": cmd.state})


def _read_table(cmd: ReadTable, config: Config | None) -> Said:
    return Said("table: read back from the kernel", {"kind": "table", "op": "read"})


def _check(cmd: StartCheck, config: Config | None) -> Said:
    spec = cmd.spec
    where = host_port(spec.address, spec.port)
    fields: Fields = {"kind": "check", "check_id": cmd.check_id, "type": spec.kind, "address": spec.address,
                      "port": spec.port, "timeout": spec.timeout_ms / 1000}
    if spec.send_program is not None:
        what = f"send_program {quoted(spec.send_program)} for {where}"
        fields["send_program"] = spec.send_program
    elif spec.kind in ("http", "https"):
        what = f"{spec.kind} {where}{spec.http_path}, status {spec.http_status} wanted"
        fields.update(path=spec.http_path, status=spec.http_status)
    else:
        what = f"{spec.kind} {where}"
    if spec.expect is not None:
        what += f", expect {quoted(spec.expect)}" + (" (regex)" if spec.use_regex else "")
        fields["expect"] = spec.expect
    return Said(f"check {cmd.check_id}: {what}, timeout {_seconds(spec.timeout_ms)}", fields)


def _load(cmd: ReadLoad, config: Config | None) -> Said:
    how = quoted(cmd.command) if cmd.command is not None else cmd.method
    fields: Fields = {"kind": "load", "load_id": cmd.load_id, "address": cmd.address, "method": cmd.method}
    if cmd.command is not None:
        fields["command"] = cmd.command
    return Said(f"load: read {cmd.address} by {how}", fields)


def _run(cmd: RunCommand, config: Config | None) -> Said:
    return Said(f"command: run {quoted(cmd.command)} ({cmd.reason})",
                {"kind": "command", "command": cmd.command, "reason": cmd.reason, "timeout": cmd.timeout_ms / 1000})


def _notify(cmd: Notify, config: Config | None) -> Said:
    data = {k: _value(v) for k, v in cmd.data.items()}
    row = _NOTICES.get(cmd.kind)
    if row is None:  # a kind this table does not know yet: said plainly, never dropped
        return Said(f"{cmd.kind}: " + ", ".join(f"{k} {plain(v)}" for k, v in data.items()),
                    {"kind": cmd.kind, **data})
    text, loud = row(data, config)
    if "reason" in data:
        data["reason"] = _reason(str(data["reason"]), config)
    if "what" in data:
        data["what"] = command_words(str(data["what"]))
    return Said(text, {"kind": cmd.kind, **data}, loud)


# ---------------------------------------------------------------- notices

Notice = Callable[[Fields, "Config | None"], "tuple[str, bool]"]


def _reason(reason: str, config: Config | None) -> str:
    """The engine's reason with the configured times it names: "no heartbeat
    for deadtime" -> "no heartbeat for 5.0 s"."""
    if config is not None:
        reason = reason.replace("for deadtime", f"for {_seconds(config.deadtime_ms)}")
        reason = reason.replace("within deadtime + keepalive",
                                f"within {_seconds(config.deadtime_ms + config.keepalive_ms)}")
    return reason


def _get(data: Fields, key: str) -> str:
    return plain(data.get(key))


def _role(data: Fields, config: Config | None) -> tuple[str, bool]:
    reason = _reason(_get(data, "reason"), config)
    return f"role: {_get(data, 'from')} -> {_get(data, 'to')} ({reason})", False


def _health(data: Fields, config: Config | None) -> tuple[str, bool]:
    detail = _get(data, "detail") if data.get("detail") else ""
    text = f"health {_get(data, 'service')}/{_get(data, 'server')}: {_get(data, 'from')} -> {_get(data, 'to')}"
    return text + (f" ({detail})" if detail else ""), data.get("to") == "down"


def _weight(data: Fields, config: Config | None) -> tuple[str, bool]:
    return f"weight {_get(data, 'service')}/{_get(data, 'server')}: {_get(data, 'weight')} (load_monitor)", False


def _partner(data: Fields, config: Config | None) -> tuple[str, bool]:
    alive = bool(data.get("alive"))
    reason = _reason(_get(data, "reason"), config) if data.get("reason") else ""
    return f"partner: {'alive' if alive else 'dead'}" + (f" ({reason})" if reason else ""), not alive


def _heartbeat_lost(data: Fields, config: Config | None) -> tuple[str, bool]:
    return f"heartbeat: nothing heard on the {_get(data, 'path')} path", True


def _heartbeat_ignored(data: Fields, config: Config | None) -> tuple[str, bool]:
    where = (f" from {_get(data, 'source')} on the {_get(data, 'path')} path" if data.get("source") else "")
    return f"heartbeat: ignored{where}: {_get(data, 'why')} (counted in {_get(data, 'counter')})", True


def _quorum(data: Fields, config: Config | None) -> tuple[str, bool]:
    ok = bool(data.get("ok"))
    return f"quorum {_get(data, 'service')}: {'met again' if ok else 'lost'}", not ok


def _config(data: Fields, config: Config | None) -> tuple[str, bool]:
    return f"config: serial_no {_get(data, 'serial_no')} in force", False


def _error(data: Fields, config: Config | None) -> tuple[str, bool]:
    return f"error: {command_words(_get(data, 'what'))}", True


def _admin_refused(data: Fields, config: Config | None) -> tuple[str, bool]:
    target = f" {_get(data, 'server')}" if data.get("server") else ""
    return f"admin: {_get(data, 'action')}{target} refused: {_get(data, 'reason')}", True


def _vip_cleanup(data: Fields, config: Config | None) -> tuple[str, bool]:
    return f"vip: cleanup at start of {_get(data, 'addresses')} ({_get(data, 'reason')})", False


def _drift(data: Fields, config: Config | None) -> tuple[str, bool]:
    return f"table: drift: {_get(data, 'what')}; {_get(data, 'ops')} operation(s): {_get(data, 'diff')}", True


def _stall(data: Fields, config: Config | None) -> tuple[str, bool]:
    return f"stall: {_get(data, 'reason')}", True


def _hold(data: Fields, config: Config | None) -> tuple[str, bool]:
    return f"role: active kept ({_reason(_get(data, 'reason'), config)})", True


def _links(data: Fields, config: Config | None) -> tuple[str, bool]:
    """`links: eth0 down (monitor_links = 1)`, `links: eth0 up, all up`."""
    went, came, down = str(data.get("went_down") or ""), str(data.get("came_up") or ""), str(data.get("down") or "")
    parts = [f"{' '.join(went.split())} down" if went else "", f"{' '.join(came.split())} up" if came else ""]
    state = f"down now: {down}" if down else "all up"
    watched = "monitor_links = 1" if data.get("monitor_links") else "monitor_links = 0: noted only"
    return f"links: {', '.join(p for p in parts if p)}; {state} ({watched})", bool(went)


def _overrides(data: Fields, config: Config | None) -> tuple[str, bool]:
    """`overrides: the partner's set taken (generation 3, 2 overrides)`."""
    return (f"overrides: the partner's set taken (generation {_get(data, 'generation')}, "
            f"{_get(data, 'count')} override(s))"), False


_NOTICES: Mapping[str, Notice] = {
    "role": _role, "health": _health, "weight": _weight, "partner": _partner,
    "heartbeat_lost": _heartbeat_lost, "heartbeat_ignored": _heartbeat_ignored, "quorum": _quorum,
    "config": _config, "error": _error, "admin_refused": _admin_refused, "vip_cleanup": _vip_cleanup,
    "drift": _drift, "stall": _stall, "hold": _hold, "links": _links,
    "overrides": _overrides,
}
"""Notify kind -> (its line, whether loud).  Data keys: engine/events.py's `Notify`."""

NOTICE_KINDS = tuple(_NOTICES)


# ---------------------------------------------------------------- the tables

Describer = Callable[..., Said]

_COMMANDS: Mapping[type, tuple[str, Describer]] = {
    AddService: ("table -A", _table), EditService: ("table -E", _table), DelService: ("table -D", _table),
    AddDest: ("table -a", _table), EditDest: ("table -e", _table), DelDest: ("table -d", _table),
    AddVip: ("vip add", _vip), DelVip: ("vip del", _vip), SendGratuitousArp: ("arp", _arp),
    SendHeartbeat: ("heartbeat send", _heartbeat), SendAdvert: ("vrrp advert", _advert),
    SetTimeouts: ("timeouts", _timeouts),
    StartSyncDaemon: ("syncd start", _sync_start), StopSyncDaemon: ("syncd stop", _sync_stop),
    ReadTable: ("table read", _read_table), StartCheck: ("check", _check), ReadLoad: ("load read", _load),
    RunCommand: ("command", _run), Notify: ("notify", _notify),
}
"""Command type -> (its name in operator words, its describer)."""

COMMAND_TYPES = tuple(_COMMANDS)
_WORDS = {t.__name__: words for t, (words, _) in _COMMANDS.items()}
_CLASS_NAME = re.compile(r"\b(" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")\b")


def command_words(text: str) -> str:
    """`text` with the engine's command type names in operator words
    ("AddDest failed: ..." -> "table -a failed: ...")."""
    return _CLASS_NAME.sub(lambda m: _WORDS[m.group(1)], text)


def describe(command: Command, config: Config | None = None) -> Said:
    """`command` as the daemon says it (see the module's docstring).  With
    `config`, names and times the command alone does not carry are added."""
    row = _COMMANDS.get(type(command))
    if row is None:
        return Said(f"{type(command).__name__}: no description", {"kind": "unknown",
                                                                  "type": type(command).__name__}, True)
    try:
        return row[1](command, config)
    except Exception as e:  # a log line must never stop the daemon; say what could not be said
        return Said(f"{row[0]}: cannot be described ({type(e).__name__})",
                    {"kind": "unknown", "type": type(command).__name__}, True)


def failed(command: Command, error: str, config: Config | None = None) -> Said:
    """A command an adapter failed on: its line, `failed: ERROR` after it; a warning."""
    said = describe(command, config)
    return Said(f"{said.text} failed: {command_words(error)}", {**said.fields, "failed": command_words(error)},
                True)
