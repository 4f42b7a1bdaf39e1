"""The lab's timeline lines, in the layout of `shoal sim`'s (scenario seconds, node, story)."""

from __future__ import annotations

from typing import Any


def line(r: dict[str, Any]) -> str:
    kind = r["kind"]
    if kind == "fault":
        text = "FAULT  " + r["what"]
    elif kind == "role":
        verb = {"active": "becomes ACTIVE", "standby": "goes standby", "down": "is down"}.get(r["to"], r["to"])
        text = f"{verb} (seen)"
    elif kind == "vip":
        text = f"{'holds' if r['op'] == 'add' else 'no longer holds'} VIP {r['address']}"
    elif kind == "table":
        text = f"table now {r['dests']}"
    elif kind == "expect":
        text = f"{'PASS' if r['ok'] else 'FAIL'}   {r['what']}"
    elif kind in ("admin", "journal"):
        text = r["what"]
    elif kind == "log":
        text = "daemon log, last lines:" + r["tail"]
    else:
        text = kind + " " + " ".join(f"{k}={v}" for k, v in r.items() if k not in ("t", "node", "kind"))
    return f"{r['t']:9.3f}  {r['node']:<8} {text}"
