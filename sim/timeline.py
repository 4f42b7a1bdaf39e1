"""The trace, printed: a timeline an operator reads as a story, or JSON
lines (SPEC.md, "Trace": one object a line, `t`, `node`, `kind` first)."""

from __future__ import annotations

import json
from typing import Any

FAULTS = {
    "crash": "the {v} router crashes (host down, addresses and table gone)",
    "restart": "the {v} router restarts (after a crash the host boots: no addresses, empty table; "
               "after a kill only the daemon starts, adopting what its kernel kept)",
    "kill": "the {v} router's daemon is killed (addresses and table stay in its kernel)",
    "server_down": "real server {v} goes down (refuses connections)",
    "server_up": "real server {v} is healthy again",
    "server_hang": "real server {v} hangs (accepts connections, never answers)",
    "server_wrong": "real server {v} answers, but wrongly",
    "server_slow": "real server {v} slows down: replies take {delay} s",
    "partition": "heartbeat path {v} is cut",
    "heal": "heartbeat path {v} is healed",
    "loss": "{pct} of the heartbeats on {path} are lost",
    "load": "real server {v}'s load is now {value}",
    "reload": "the configuration is reloaded on both routers {v}",
    "admin": "operator: {v}",
    "link_down": "the {v} router's interface {device} loses its link",
    "link_up": "the {v} router's interface {device} has its link again",
}

TABLE_OPS = {
    "add_service": "table: add service {service}",
    "edit_service": "table: edit service {service}",
    "del_service": "table: delete service {service}",
    "add_dest": "table: {service} + {server} (weight {weight})",
    "edit_dest": "table: {service} {server} now at weight {weight}",
    "del_dest": "table: {service} - {server}",
}


def describe_fault(text: str) -> str:
    kind, _, rest = text.partition(" ")
    words = rest.split(" ")
    value = words[0] if kind != "reload" else rest
    extra = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    template = FAULTS.get(kind, "{v}")
    if kind == "partition" and "from" in extra:
        template = "heartbeat path {v}: what the {from} router sends is lost (one-way failure)"
    if kind == "admin" and value == "failover":
        value = "failover (the active router hands over)"
    elif kind == "admin":
        value = rest
    if kind == "loss":
        pct = f"{float(value) * 100:g}%"
        return template.format(pct=pct, path=f"the {extra['path']} path" if "path" in extra else "both paths")
    return template.format(v=value, **extra)


def line(r: dict[str, Any]) -> str:
    kind = r["kind"]
    if kind == "fault":
        text = "FAULT  " + describe_fault(r["what"])
    elif kind == "role":
        verb = {"active": "becomes ACTIVE", "standby": "goes standby"}.get(r["to"], f"-> {r['to']}")
        text = f"{verb} ({r['reason']})"
    elif kind == "vip":
        text = f"{'takes' if r['op'] == 'add' else 'releases'} VIP {r['address']}"
    elif kind == "arp":
        text = f"gratuitous ARP for {r['address']}"
    elif kind == "table":
        text = TABLE_OPS.get(r["op"], "table: {op} {service} {server} {weight}").format(**r)
    elif kind == "health":
        detail = f" ({r['detail']})" if r.get("detail") else ""
        text = f"health {r['service']}/{r['server']}: {r['from']} -> {r['to']}{detail}"
    elif kind == "heartbeat_lost":
        text = f"no heartbeat on the {r['path']} path for deadtime"
    elif kind == "expect":
        text = f"{'PASS' if r['ok'] else 'FAIL'}   {r['what']}"
    else:
        text = kind + " " + " ".join(f"{k}={v}" for k, v in r.items() if k not in ("t", "node", "kind"))
    return f"{r['t']:9.3f}  {r['node']:<8} {text}"


def timeline(records: list[dict[str, Any]]) -> str:
    return "\n".join(line(r) for r in records)


def json_lines(records: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(r, separators=(",", ":")) for r in records)
