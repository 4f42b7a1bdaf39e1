"""Every key of lvs.cf: how many values it takes, what they mean, and how
they are written back.  One table per block; the parser and the writer
both read it, so a key is defined in exactly one place.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from engine.config.lexer import Token, quote
from engine.config.limits import (
    CHECK_FORBIDDEN, FORBIDDEN, MAX_CHECK_CHARS, MAX_IPVS_TIMEOUT_S, MAX_PATH_CHARS, MAX_STRING_CHARS, MAX_TIME_MS,
    U8, U16, U32, U64, character, shown,
)
from engine.model import SCHEDULERS

SERVICE_PORTS: Mapping[str, int] = {
    "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "dns": 53, "http": 80, "www": 80,
    "pop3": 110, "nntp": 119, "ntp": 123, "imap": 143, "imap2": 143, "snmp": 161, "ldap": 389,
    "https": 443, "smtps": 465, "submission": 587, "ldaps": 636, "imaps": 993, "pop3s": 995,
    "mysql": 3306, "postgresql": 5432, "http-alt": 8080,
}
SCHED_FLAGS = ("sh-fallback", "sh-port", "mh-fallback", "mh-port", "flag-1", "flag-2", "flag-3")
_DIGITS = re.compile(r"[0-9]+")
_TIME = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")


class ValueProblem(Exception):
    """A value that does not fit its key (`col`: where, when not the first value)."""

    def __init__(self, message: str, col: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.col = col


Parse = Callable[[list[Token]], dict[str, Any]]
Render = Callable[[Any], list[str] | None]


@dataclass(frozen=True, slots=True)
class Key:
    name: str
    counts: tuple[int, ...]  # allowed numbers of values (with `many`: at least counts[0])
    parse: Parse
    render: Render
    fields: tuple[str, ...]  # the model fields it sets and renders from
    many: bool = False


# ---------------------------------------------------------------- value kinds


def _int(token: Token, lo: int, hi: int) -> int:
    text = token.text
    if not _DIGITS.fullmatch(text):
        raise ValueProblem(f"expected a whole number, found {shown(text)}", token.col)
    digits = text.lstrip("0")
    if len(digits) > len(str(hi)):  # counted before converting: no cost, whatever its length
        raise ValueProblem(f"expected a number between {lo} and {hi}, found a number of {len(digits)} digits",
                           token.col)
    value = int(digits or "0")  # without its leading zeros: int() refuses more than 4300 digits
    if value < lo or value > hi:
        raise ValueProblem(f"expected a number between {lo} and {hi}, found {value}", token.col)
    return value


def _bool(token: Token) -> bool:
    if token.text not in ("0", "1"):
        raise ValueProblem(f"expected 0 or 1, found {shown(token.text)}", token.col)
    return token.text == "1"


def _seconds_ms(token: Token, positive: bool) -> int:
    m = _TIME.fullmatch(token.text)
    if not m or not (m.group(1) or m.group(2)):
        raise ValueProblem(f"expected a time in seconds (fractions allowed), found {shown(token.text)}", token.col)
    whole, frac = (m.group(1) or "0").lstrip("0") or "0", m.group(2) or ""
    if len(frac.rstrip("0")) > 3:
        raise ValueProblem(f"expected at most 3 decimals (milliseconds), found {shown(token.text)}", token.col)
    ms = MAX_TIME_MS + 1 if len(whole) > len(str(MAX_TIME_MS)) else int(whole) * 1000 + int((frac + "000")[:3])
    if ms > MAX_TIME_MS:
        raise ValueProblem(f"expected at most {MAX_TIME_MS // 1000} seconds (a day), found {shown(token.text)}",
                           token.col)
    if positive and ms <= 0:
        raise ValueProblem(f"expected a time above 0, found {shown(token.text)}", token.col)
    return ms


def _check_interval_ms(token: Token) -> int:
    """0 (off), or a time of at least 0.1 s: reading the whole kernel table more often is waste."""
    ms = _seconds_ms(token, positive=False)
    if 0 < ms < 100:
        raise ValueProblem(f"expected 0 (off) or a time of at least 0.1 s, found {shown(token.text)}", token.col)
    return ms


def _address(token: Token) -> str:
    text = token.text
    if _IPV4.fullmatch(text):  # the common case, without ipaddress (the same answer, ten times faster)
        return text
    if "%" in text or len(text) > 45:  # a scope (fe80::1%eth0) is not an address a VIP or a server can have
        raise ValueProblem(f"expected an IPv4 or IPv6 address (without a %scope), found {shown(text)}", token.col)
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        raise ValueProblem(f"expected an IPv4 or IPv6 address, found {shown(text)}", token.col) from None


def _port(token: Token) -> int:
    if token.text in SERVICE_PORTS:
        return SERVICE_PORTS[token.text]
    if not _DIGITS.fullmatch(token.text):
        known = ", ".join(sorted(SERVICE_PORTS))
        raise ValueProblem(f"expected a port number or a service name ({known}), found {shown(token.text)}",
                           token.col)
    return _int(token, 1, U16)


def _netmask(token: Token) -> str:
    """A dotted IPv4 netmask (contiguous ones), or a prefix length (0-128)."""
    text = token.text
    if re.fullmatch(r"[0-9]{1,3}", text) and int(text) <= 128:
        return str(int(text))
    try:
        mask = int(ipaddress.IPv4Address(text)) if len(text) <= 15 else -1
    except ValueError:
        mask = -1
    inverted = ~mask & 0xFFFFFFFF
    if mask < 0 or inverted & (inverted + 1):
        raise ValueProblem(f"expected a netmask (255.255.255.0) or a prefix length, found {shown(text)}", token.col)
    return text


def mask_family(mask: str) -> int | None:
    """4 for a dotted mask or a prefix up to 32, 6 for a longer prefix, None: either."""
    if "." in mask:
        return 4
    return 6 if int(mask) > 32 else None


def _choice(token: Token, choices: tuple[str, ...]) -> str:
    if token.text not in choices:
        raise ValueProblem(f"expected one of {', '.join(choices)}, found {shown(token.text)}", token.col)
    return token.text


def _string(token: Token, limit: int = MAX_STRING_CHARS, forbidden: re.Pattern[str] = FORBIDDEN) -> str:
    """Any text up to `limit` characters, without control characters (an
    escaped newline included: only `send` and `expect` may hold \\r \\n)."""
    if len(token.text) > limit:
        raise ValueProblem(f"at most {limit} characters, found {len(token.text)}", token.col)
    bad = forbidden.search(token.text)
    if bad:
        raise ValueProblem(f"{character(bad.group())} is not allowed here (only send and expect may hold "
                           f"\\r and \\n)", token.col)
    return token.text


def _check_string(token: Token) -> str:
    """`send`, `expect`: what goes on the wire, where \\r \\n \\t are the point."""
    return _string(token, MAX_CHECK_CHARS, CHECK_FORBIDDEN)


def _file(token: Token) -> str:
    """A file name: not empty, at most PATH_MAX."""
    if not token.text:
        raise ValueProblem("expected a file name, found an empty string", token.col)
    return _string(token, MAX_PATH_CHARS)


def _sorry(token: Token) -> tuple[str, int | None]:
    text = token.text
    m = re.fullmatch(r"\[([^\]]+)\](?::(.+))?", text) or re.fullmatch(r"([0-9]+(?:\.[0-9]+){3}):(.+)", text)
    if m:
        address_ = _address(Token(m.group(1), token.col))
        return address_, None if m.group(2) is None else _port(Token(m.group(2), token.col))
    return _address(token), None


def _fmt_ms(ms: int) -> str:
    seconds, rest = divmod(ms, 1000)
    return str(seconds) if rest == 0 else f"{seconds}.{rest:03d}".rstrip("0")


def _fmt_sorry(value: tuple[str | None, int | None]) -> list[str] | None:
    address, port = value
    if address is None:
        return None
    if port is None:
        return [address]
    return [f"[{address}]:{port}" if ":" in address else f"{address}:{port}"]


# ---------------------------------------------------------------- builders


def _one(field: str, conv: Callable[[Token], Any], fmt: Callable[[Any], str] = str) -> tuple[Parse, Render]:
    def parse(toks: list[Token]) -> dict[str, Any]:
        return {field: conv(toks[0])}

    def render(value: Any) -> list[str] | None:
        return None if value is None else [fmt(value)]

    return parse, render


def key(name: str, field: str, conv: Callable[[Token], Any], fmt: Callable[[Any], str] = str) -> Key:
    parse, render = _one(field, conv, fmt)
    return Key(name, (1,), parse, render, (field,))


def boolean(name: str, field: str | None = None) -> Key:
    return key(name, field or name, _bool, lambda v: "1" if v else "0")


def number(name: str, lo: int, hi: int, field: str | None = None) -> Key:
    return key(name, field or name, lambda t: _int(t, lo, hi))


def time_ms(name: str, positive: bool = True, field: str | None = None) -> Key:
    return key(name, field or f"{name}_ms", lambda t: _seconds_ms(t, positive), _fmt_ms)


def address(name: str, field: str | None = None) -> Key:
    return key(name, field or name, _address)


def string(name: str, field: str | None = None, conv: Callable[[Token], str] = _string) -> Key:
    return key(name, field or name, conv, quote)


def choice(name: str, choices: tuple[str, ...], field: str | None = None) -> Key:
    return key(name, field or name, lambda t: _choice(t, choices))


def address_device(name: str, field: str, device_field: str) -> Key:
    def parse(toks: list[Token]) -> dict[str, Any]:
        return {field: _address(toks[0]), device_field: _device(toks[1])}

    def render(value: tuple[str | None, str | None]) -> list[str] | None:
        return None if value[0] is None else [value[0], quote(value[1] or "")]

    return Key(name, (2,), parse, render, (field, device_field))


def _sched_flags(toks: list[Token]) -> dict[str, Any]:
    flags: list[str] = []
    for t in toks:
        if _choice(t, SCHED_FLAGS) in flags:
            raise ValueProblem(f"flag {t.text} given twice", t.col)
        flags.append(t.text)
    return {"sched_flags": tuple(flags)}


def _path(token: Token) -> str:
    if not token.text.startswith("/"):
        raise ValueProblem(f"expected a path starting with '/', found {shown(token.text)}", token.col)
    return _string(token)


def _device(token: Token) -> str:
    """An interface, with an optional alias label: eth0, eth0:1, bond0.100."""
    if len(token.text) > 15 or not re.fullmatch(r"[A-Za-z0-9_.@-]+(:[A-Za-z0-9_]+)?", token.text):
        raise ValueProblem(f"expected an interface with an optional alias (eth0:1, at most 15 characters), "
                           f"found {shown(token.text)}", token.col)
    return token.text


def _interface(token: Token) -> str:
    """An interface name as the kernel takes it (IFNAMSIZ): eth0, bond0.100."""
    if len(token.text) > 15 or not re.fullmatch(r"[A-Za-z0-9_.@-]+", token.text):
        raise ValueProblem(f"expected an interface name (eth0, at most 15 characters), found {shown(token.text)}",
                           token.col)
    return token.text


def _priority(token: Token) -> int:
    """VRRP priority 1-254: 255 belongs to the router that owns the addresses (RFC 5798 5.2.4)."""
    try:
        return _int(token, 1, 254)
    except ValueProblem:
        if not _DIGITS.fullmatch(token.text) or token.text.lstrip("0") != "255":
            raise
        raise ValueProblem("255 is reserved for the router that owns the virtual addresses (RFC 5798 5.2.4), "
                           "which a load balancer's VIPs never are: expected a number between 1 and 254", token.col) from None


def _vrrp_version(token: Token) -> int:
    if token.text not in ("2", "3"):
        raise ValueProblem(f"expected 2 (RFC 3768) or 3 (RFC 5798), found {shown(token.text)}", token.col)
    return int(token.text)


def _preempt_delay_ms(token: Token) -> int:
    """0-1000 seconds, as keepalived's preempt_delay."""
    ms = _seconds_ms(token, positive=False)
    if ms > 1_000_000:
        raise ValueProblem(f"expected at most 1000 seconds (keepalived's bound), found {shown(token.text)}",
                           token.col)
    return ms


def _sorry_parse(toks: list[Token]) -> dict[str, Any]:
    address_, port = _sorry(toks[0])
    return {"sorry_server": address_, "sorry_port": port}


GLOBAL_KEYS: tuple[Key, ...] = (
    number("serial_no", 0, U64),  # the heartbeat carries it as a u64
    choice("service", ("lvs",)),  # Piranha's `fos` (failover services) is not supported
    address("primary"), address("backup"), address("primary_private"), address("backup_private"),
    boolean("backup_active"), boolean("heartbeat"),
    key("heartbeat_port", "heartbeat_port", _port),
    time_ms("keepalive"), time_ms("deadtime"),
    choice("network", ("nat", "direct", "tunnel")),
    address_device("nat_router", "nat_router", "nat_router_device"),
    key("nat_nmask", "nat_nmask", _netmask),
    string("debug_level"), choice("rsh_command", ("rsh", "ssh")),  # read for compatibility, never run
    string("active_cmd"), string("inactive_cmd"),
    boolean("monitor_links"), boolean("hard_shutdown"), boolean("syncdaemon"),
    key("syncd_iface", "syncd_iface", _interface), number("syncd_id", 0, U8),
    number("tcp_timeout", 0, MAX_IPVS_TIMEOUT_S, field="tcp_timeout_s"),
    number("tcpfin_timeout", 0, MAX_IPVS_TIMEOUT_S, field="tcpfin_timeout_s"),
    number("udp_timeout", 0, MAX_IPVS_TIMEOUT_S, field="udp_timeout_s"),
    # shoal extensions
    boolean("preempt"), string("heartbeat_key_file", conv=_file),
    choice("heartbeat_format", ("shoal", "piranha")),
    number("heartbeat_min_ttl", 1, U8),
    number("arp_count", 1, 1000), time_ms("arp_interval"),
    string("notify_fifo", conv=_file), time_ms("command_timeout"),
    key("table_check_interval", "table_check_interval_ms", _check_interval_ms, _fmt_ms),
    time_ms("load_interval"),
    # VRRP (docs/CONFIG.md, "VRRP")
    choice("heartbeat_protocol", ("pulse", "vrrp")),
    key("vrrp_version", "vrrp_version", _vrrp_version),
    number("virtual_router_id", 1, U8),
    key("priority", "priority", _priority),
    key("preempt_delay", "preempt_delay_ms", _preempt_delay_ms, _fmt_ms),
    boolean("vrrp_unicast"), boolean("vrrp_v3_checksum_as_v2"),
)
# Keys that mean something only with `heartbeat_protocol = vrrp`.
VRRP_KEYS: tuple[str, ...] = ("vrrp_version", "virtual_router_id", "priority", "preempt_delay", "vrrp_unicast",
                              "vrrp_v3_checksum_as_v2")

VIRTUAL_KEYS: tuple[Key, ...] = (
    boolean("active"),
    address_device("address", "address", "device"),
    key("vip_nmask", "vip_nmask", _netmask),
    Key("sorry_server", (1,), _sorry_parse, _fmt_sorry, ("sorry_server", "sorry_port")),
    number("fwmark", 1, U32),
    choice("protocol", ("tcp", "udp")),
    key("port", "port", _port),
    choice("scheduler", SCHEDULERS),
    number("persistent", 0, MAX_IPVS_TIMEOUT_S, field="persistent_s"),
    key("pmask", "pmask", _netmask),
    string("send", conv=_check_string), string("expect", conv=_check_string),
    boolean("use_regex"),
    string("send_program"),
    choice("load_monitor", ("none", "uptime", "rup", "ruptime")),
    time_ms("timeout"), time_ms("reentry", positive=False),
    boolean("quiesce_server"),
    # shoal extensions
    number("rise", 1, U16), number("fall", 1, U16), time_ms("check_interval"),
    choice("check", ("auto", "tcp", "udp", "http", "https", "none")),
    key("http_path", "http_path", _path, quote), number("http_status", 100, 599),
    number("quorum", 0, U32), number("hysteresis", 0, U32),
    string("load_command"),
    Key("sched_flags", (1,), _sched_flags, lambda v: list(v) or None, ("sched_flags",), many=True),
)

SERVER_KEYS: tuple[Key, ...] = (
    address("address"), boolean("active"), number("weight", 0, U16),
    key("port", "port", _port),
    string("notify_up"), string("notify_down"),
)

TABLES: Mapping[str, Mapping[str, Key]] = {
    "global": {k.name: k for k in GLOBAL_KEYS},
    "virtual": {k.name: k for k in VIRTUAL_KEYS},
    "server": {k.name: k for k in SERVER_KEYS},
}


def render_value(k: Key, model: Any) -> list[str] | None:
    """The tokens of key `k` for `model` (None: nothing to write)."""
    if len(k.fields) == 1:
        return k.render(getattr(model, k.fields[0]))
    return k.render(tuple(getattr(model, n) for n in k.fields))
