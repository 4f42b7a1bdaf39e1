"""Checks that need the whole file: what each key alone cannot tell."""

from __future__ import annotations

import ipaddress
import re
from typing import Callable

from engine.config.parser import Block, Document, Issue
from engine.model import Config, Virtual


def validate(config: Config, doc: Document, file: str) -> list[Issue]:
    issues: list[Issue] = []

    def at(block: Block, key: str | None, message: str, value: bool = False) -> None:
        pos = doc.positions.get((block, key)) if key else None
        if pos is not None:
            issues.append(Issue(file, pos[0], pos[2] if value else pos[1], message))
        else:
            line, col = doc.blocks.get(block, (1, 1))
            issues.append(Issue(file, line, col, message))

    _globals(config, at)
    seen_keys: dict[tuple[object, ...], str] = {}
    for virtual in config.virtuals:
        _virtual(config, virtual, at, seen_keys)
    return issues


def _globals(c: Config, at: Callable[..., None]) -> None:
    g: Block = ()
    if c.primary is None:
        at(g, None, "missing 'primary': the primary router's address is required")
    if c.backup_active and c.backup is None:
        at(g, "backup_active", "backup_active = 1 but no 'backup' address is set")
    if (c.primary_private is None) != (c.backup_private is None):
        have = "primary_private" if c.primary_private else "backup_private"
        missing = "backup_private" if c.primary_private else "primary_private"
        at(g, have, f"{have} is set but {missing} is not: the private heartbeat path needs both")
    if c.primary is not None and c.primary == c.backup:
        at(g, "backup", "backup has the same address as primary")
    if c.deadtime_ms <= c.keepalive_ms:
        at(g, "deadtime", f"deadtime ({c.deadtime_ms / 1000:g} s) must be greater than keepalive "
                          f"({c.keepalive_ms / 1000:g} s)", True)
    if c.heartbeat_format == "piranha" and c.heartbeat_key_file:
        at(g, "heartbeat_key_file", "heartbeat_key_file needs heartbeat_format = shoal "
                                    "(the piranha format has no room for a MAC)")


def _virtual(c: Config, v: Virtual, at: Callable[..., None], seen: dict[tuple[object, ...], str]) -> None:
    b: Block = (v.name,)
    if v.active and v.address is None and v.fwmark is None:
        at(b, None, f"virtual {v.name} has no 'address' (nor 'fwmark'): an active virtual needs one")
    if v.address and v.device == "":
        at(b, "address", "address needs an interface after the VIP (eth0:1)", True)
    if v.fwmark is not None:
        key: tuple[object, ...] = ("fwmark", v.fwmark)
        what = f"fwmark {v.fwmark}"
    else:
        key = (v.protocol, v.address, v.port)
        what = f"{v.protocol} {v.address}:{v.port}"
    if v.active and (v.address or v.fwmark) and key in seen:
        at(b, "fwmark" if v.fwmark else "address", f"virtual {v.name} has the same service ({what}) "
                                                    f"as virtual {seen[key]}")
    seen.setdefault(key, v.name)
    if v.pmask is not None and not v.persistent_s:
        at(b, "pmask", "pmask without persistent: set persistent (seconds) for it to mean anything")
    if v.use_regex and v.expect is not None:
        try:
            re.compile(v.expect)
        except re.error as e:
            at(b, "expect", f"expect is not a valid regular expression: {e}", True)
    if v.sched_flags and v.scheduler not in ("sh", "mh"):
        at(b, "sched_flags", f"sched_flags apply to the sh and mh schedulers, not {v.scheduler}")
    for flag in v.sched_flags:
        if not flag.startswith(v.scheduler + "-") and not flag.startswith("flag-"):
            at(b, "sched_flags", f"flag {flag} does not belong to scheduler {v.scheduler}", True)
    vip_family = _family(v.address) if v.address else None
    if v.sorry_server and vip_family and _family(v.sorry_server) != vip_family and c.network == "nat":
        at(b, "sorry_server", "sorry_server and the VIP are of different IP versions (NAT cannot translate)", True)
    for s in v.servers:
        sb: Block = (v.name, s.name)
        if s.address is None:
            if s.active:
                at(sb, None, f"server {s.name} in virtual {v.name} has no 'address'")
            continue
        if vip_family and _family(s.address) != vip_family and c.network == "nat":
            at(sb, "address", f"server {s.name} is IPv{_family(s.address)} but the VIP of {v.name} is "
                              f"IPv{vip_family}: NAT cannot translate between them", True)


def _family(address: str) -> int:
    return ipaddress.ip_address(address).version
