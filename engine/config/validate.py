"""Checks that need the whole file: what each key alone cannot tell.

They run on what the parser could read, also when some lines had errors;
a check that depends on a key whose line had an error (or on a block with
an unknown key) is skipped, so one mistake does not cause a second error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.config.keys import VRRP_KEYS, mask_family
from engine.config.parser import Block, Document, Issue
from engine.model import Config, Virtual

Service = tuple[object, ...]


@dataclass
class _Checker:
    config: Config
    doc: Document
    file: str
    issues: list[Issue]

    def at(self, block: Block, key: str | None, message: str, *, value: bool = False,
           needs: tuple[str, ...] = ()) -> None:
        """Report at `key` of `block` (or the block's opening line), unless a
        key it depends on (`key` and `needs`) had an error of its own."""
        if not self.doc.ok(block, *needs, *([key] if key else [])):
            return
        pos = self.doc.positions.get((block, key)) if key else None
        if pos is not None:
            self.issues.append(Issue(self.file, pos[0], pos[2] if value else pos[1], message))
        else:
            line, col = self.doc.blocks.get(block, (1, 1))
            self.issues.append(Issue(self.file, line, col, message))


def validate(config: Config, doc: Document, file: str) -> list[Issue]:
    check = _Checker(config, doc, file, [])
    _globals(check, config)
    seen: dict[Service, str] = {}
    for virtual in config.virtuals:
        _virtual(check, config, virtual, seen)
    return check.issues


def _globals(check: _Checker, c: Config) -> None:
    g: Block = ()
    if c.primary is None:
        check.at(g, None, "missing 'primary': the primary router's address is required", needs=("primary",))
    if c.backup_active and c.backup is None:
        check.at(g, "backup_active", "backup_active = 1 but no 'backup' address is set", needs=("backup",))
    if (c.primary_private is None) != (c.backup_private is None):
        have = "primary_private" if c.primary_private else "backup_private"
        missing = "backup_private" if c.primary_private else "primary_private"
        check.at(g, have, f"{have} is set but {missing} is not: the private heartbeat path needs both",
                 needs=(missing,))
    for mine, partner in (("primary", "backup"), ("primary_private", "backup_private")):
        a, b = getattr(c, mine), getattr(c, partner)
        if a is not None and a == b:
            check.at(g, partner, f"{partner} has the same address as {mine}", value=True)
        elif a is not None and b is not None and _family(a) != _family(b):
            check.at(g, partner, f"{partner} is IPv{_family(b)} but {mine} is IPv{_family(a)}: "
                                 f"the routers cannot heartbeat each other", value=True)
    if c.heartbeat_protocol == "pulse" and c.deadtime_ms <= c.keepalive_ms:
        check.at(g, "deadtime", f"deadtime ({c.deadtime_ms / 1000:g} s) must be greater than keepalive "
                                f"({c.keepalive_ms / 1000:g} s)", value=True, needs=("keepalive", "heartbeat_protocol"))
    _vrrp(check, c)
    if c.heartbeat_format == "piranha" and c.heartbeat_key_file:
        check.at(g, "heartbeat_key_file", "heartbeat_key_file needs heartbeat_format = shoal "
                                          "(the piranha format has no room for a MAC)", needs=("heartbeat_format",))
    if c.nat_nmask is not None and c.nat_router is not None:
        _mask_fits(check, g, "nat_nmask", c.nat_nmask, c.nat_router, "nat_router")
    if not c.heartbeat and c.backup_active:
        check.at(g, "heartbeat", "heartbeat = 0 turns the heartbeat off, but backup_active = 1 needs it: the routers "
                                 "fail over by heartbeat (for a single router, set backup_active = 0)",
                 value=True, needs=("backup_active",))
    if not c.hard_shutdown:
        check.at(g, "hard_shutdown", "hard_shutdown = 0 is not supported: a shoal router that stops, or gives up "
                                     "on a link failure (monitor_links), always releases its VIPs and its table at "
                                     "once and tells its partner; remove the line or set hard_shutdown = 1",
                 value=True)


def _vrrp(check: _Checker, c: Config) -> None:
    """The VRRP keys: only with `heartbeat_protocol = vrrp`, and what VRRP can carry."""
    g: Block = ()
    given = [k for k in VRRP_KEYS if ((), k) in check.doc.positions]
    if c.heartbeat_protocol != "vrrp":
        for k in given:
            check.at(g, k, f"{k} is a VRRP key: it needs heartbeat_protocol = vrrp (the pulse heartbeat does not "
                           f"use it)", needs=("heartbeat_protocol",))
        return
    if ((), "heartbeat_format") in check.doc.positions:
        check.at(g, "heartbeat_format", "heartbeat_format does not apply with heartbeat_protocol = vrrp: VRRP has "
                                        "its own format (vrrp_version); remove the line", needs=("heartbeat_protocol",))
    if c.heartbeat_key_file is not None:
        check.at(g, "heartbeat_key_file", "heartbeat_key_file does not apply with heartbeat_protocol = vrrp: VRRPv3 "
                                          "has no authentication and VRRPv2's (keepalived's authentication block) is "
                                          "not supported; remove the line", needs=("heartbeat_protocol",))
    if c.virtual_router_id is None:
        check.at(g, "heartbeat_protocol", "heartbeat_protocol = vrrp needs virtual_router_id (1-255, the same on both "
                                          "routers and unique on their LAN)", value=True,
                 needs=("virtual_router_id",))
    version = c.vrrp_version
    if version == 2 and (c.keepalive_ms % 1000 or not 1000 <= c.keepalive_ms <= 255_000):
        check.at(g, "keepalive", f"keepalive ({c.keepalive_ms / 1000:g} s) is the VRRP advert interval: "
                                 f"vrrp_version 2 needs whole seconds from 1 to 255", value=True,
                 needs=("vrrp_version", "heartbeat_protocol"))
    if version == 3 and (c.keepalive_ms % 10 or not 10 <= c.keepalive_ms <= 40_950):
        check.at(g, "keepalive", f"keepalive ({c.keepalive_ms / 1000:g} s) is the VRRP advert interval: "
                                 f"vrrp_version 3 needs hundredths of a second from 0.01 to 40.95", value=True,
                 needs=("vrrp_version", "heartbeat_protocol"))
    if version == 2:
        for k in ("primary", "backup"):
            a = getattr(c, k)
            if a is not None and _family(a) == 6:
                check.at(g, "vrrp_version", f"vrrp_version 2 is IPv4 only (RFC 3768) but {k} is IPv6: use "
                                            f"vrrp_version 3", value=True, needs=(k,))
                break
        if c.vrrp_v3_checksum_as_v2:
            check.at(g, "vrrp_v3_checksum_as_v2", "vrrp_v3_checksum_as_v2 applies to vrrp_version 3 only",
                     needs=("vrrp_version",))
    if c.preempt_delay_ms and not c.preempt:
        check.at(g, "preempt_delay", "preempt_delay needs preempt = 1 (without it the router never takes over "
                                     "from a live master, so there is nothing to delay)", needs=("preempt",))
    if c.vrrp_unicast and c.backup is None:
        check.at(g, "vrrp_unicast", "vrrp_unicast = 1 sends adverts to the partner's address, but no 'backup' "
                                    "address is set", needs=("backup",))


def _mask_fits(check: _Checker, block: Block, key: str, mask: str, address: str, address_key: str) -> None:
    family = mask_family(mask)
    if family is not None and family != _family(address):
        check.at(block, key, f"{key} {mask} is an IPv{family} mask but the {address_key} is IPv{_family(address)}"
                             + ("" if family == 4 else " (write a prefix length for IPv6)"),
                 value=True, needs=(address_key,))


def _virtual(check: _Checker, c: Config, v: Virtual, seen: dict[Service, str]) -> None:
    b: Block = (v.name,)
    if v.active and v.address is None and v.fwmark is None:
        check.at(b, None, f"virtual {v.name} has no 'address' (nor 'fwmark'): an active virtual needs one",
                 needs=("address", "fwmark", "active"))
    if v.active and v.address is not None and _unspecified(v.address):
        check.at(b, "address", f"address {v.address} is not a usable VIP", value=True, needs=("active",))
    _service_unique(check, v, seen)
    if v.vip_nmask is not None and v.address is not None:
        _mask_fits(check, b, "vip_nmask", v.vip_nmask, v.address, "address")
    if v.pmask is not None and v.address is not None:
        _mask_fits(check, b, "pmask", v.pmask, v.address, "address")
    if v.pmask is not None and not v.persistent_s:
        check.at(b, "pmask", "pmask without persistent: set persistent (seconds) for it to mean anything",
                 needs=("persistent",))
    if v.use_regex and v.expect is not None:
        try:
            re.compile(v.expect)
        except re.error as e:
            check.at(b, "expect", f"expect is not a valid regular expression: {e}", value=True, needs=("use_regex",))
        else:
            beyond = _BEYOND_RE2.search(v.expect)
            if beyond:
                check.at(b, "expect", f"expect uses {beyond.group(0)}, which the health checks' regular expressions "
                                      "(RE2: linear time) do not have: no backreferences, no lookaround",
                         value=True, needs=("use_regex",))
    if v.sched_flags and v.scheduler not in ("sh", "mh"):
        check.at(b, "sched_flags", f"sched_flags apply to the sh and mh schedulers, not {v.scheduler}",
                 needs=("scheduler",))
    elif v.sched_flags:
        for flag in v.sched_flags:
            if not flag.startswith(v.scheduler + "-") and not flag.startswith("flag-"):
                check.at(b, "sched_flags", f"flag {flag} does not belong to scheduler {v.scheduler}", value=True,
                         needs=("scheduler",))
    if v.check in ("http", "https") and v.protocol == "udp":
        check.at(b, "check", f"check = {v.check} needs protocol = tcp", value=True, needs=("protocol",))
    _families(check, c, v)
    _servers(check, v)


def _service_unique(check: _Checker, v: Virtual, seen: dict[Service, str]) -> None:
    """Two active virtuals may not claim the same IPVS service."""
    if not v.active or (v.address is None and v.fwmark is None):
        return
    if v.fwmark is not None:
        family = _family(v.address) if v.address else 4
        service: Service = ("fwmark", v.fwmark, family)
        what, key = f"fwmark {v.fwmark}", "fwmark"
    else:
        assert v.address is not None
        service = (v.protocol, v.address, v.port)
        host = f"[{v.address}]" if ":" in v.address else v.address
        what, key = f"{v.protocol} {host}:{v.port}", "address"
    if service in seen:
        check.at((v.name,), key, f"virtual {v.name} has the same service ({what}) as virtual {seen[service]}",
                 needs=("port", "protocol", "fwmark", "active"))
    seen.setdefault(service, v.name)


def _families(check: _Checker, c: Config, v: Virtual) -> None:
    """NAT and direct routing cannot cross IP versions (only tunnels can)."""
    if v.address is None or c.network == "tunnel" or not check.doc.ok((), "network"):
        return
    b: Block = (v.name,)
    vip = _family(v.address)
    how = "NAT cannot translate" if c.network == "nat" else "direct routing cannot forward"
    if v.sorry_server and _family(v.sorry_server) != vip:
        check.at(b, "sorry_server", f"sorry_server is IPv{_family(v.sorry_server)} but the VIP of {v.name} is "
                                    f"IPv{vip}: {how} between them", value=True, needs=("address",))
    for s in v.servers:
        sb: Block = (v.name, s.name)
        if s.address is not None and _family(s.address) != vip and not _unspecified(s.address) and check.doc.ok(b, "address"):
            check.at(sb, "address", f"server {s.name} is IPv{_family(s.address)} but the VIP of {v.name} is "
                                    f"IPv{vip}: {how} between them", value=True)


def _servers(check: _Checker, v: Virtual) -> None:
    for s in v.servers:
        sb: Block = (v.name, s.name)
        if s.address is None:
            if s.active:
                check.at(sb, None, f"server {s.name} in virtual {v.name} has no 'address'", needs=("address", "active"))
        elif s.active and _unspecified(s.address):
            check.at(sb, "address", f"address {s.address} is not a usable real server address", value=True,
                     needs=("active",))


# What Python's `re` accepts and RE2 (adapters/checks.py) refuses: backreferences and lookaround.
_BEYOND_RE2 = re.compile(r"\\[1-9]|\\g<|\(\?P=|\(\?<?[=!]|\(\?>|\(\?\(")


def _family(address: str) -> int:
    """Of a normalised address (the parser's)."""
    return 6 if ":" in address else 4


def _unspecified(address: str) -> bool:
    return address in ("0.0.0.0", "::")
