"""Small pieces shared by convert.py and servers.py: the notes (what did
not carry over, and why), and keepalived values read as lvs.cf takes
them (each checked by lvs.cf's own key rules, engine/config/keys.py)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from adapters.keepalived.syntax import Stmt, Where
from engine.config.keys import TABLES, ValueProblem
from engine.config.lexer import Token
from engine.config.limits import CHECK_FORBIDDEN, FORBIDDEN, MAX_CHECK_CHARS, MAX_STRING_CHARS

_WHY = {  # why a keepalived statement has no lvs.cf equivalent, by its word
    "notification_email": "mail notification: lvs.cf has none (notify_fifo or active_cmd can call a mailer)",
    "notification_email_from": "mail notification: lvs.cf has none",
    "smtp_server": "mail notification: lvs.cf has none", "smtp_connect_timeout": "mail notification: lvs.cf has none",
    "smtp_alert": "mail notification: lvs.cf has none",
    "router_id": "lvs.cf names its routers primary and backup",
    "authentication": "VRRP authentication is not supported (RFC 3768 removed it; VRRPv3 has none): remove it from "
                      "the keepalived partner too, or the two will not hear each other",
    "track_script": "lvs.cf has no tracked scripts: the router fails over only on its partner's silence or a link "
                    "down (monitor_links)",
    "track_interface": "not carried over: monitor_links = 1 is the nearest (a link down on an interface the router "
                       "needs makes it give up)",
    "track_file": "lvs.cf has no tracked files", "track_process": "lvs.cf has no tracked processes",
    "vrrp_script": "lvs.cf has no tracked scripts", "vrrp_sync_group": "lvs.cf has one VRRP instance: no sync groups",
    "virtual_server_group": "virtual_server_group is not supported: write one virtual per address and port",
    "virtual_routes": "lvs.cf adds no routes", "virtual_rules": "lvs.cf adds no rules",
    "static_routes": "lvs.cf adds no routes", "static_rules": "lvs.cf adds no rules",
    "static_ipaddress": "lvs.cf adds no static addresses",
    "virtual_ipaddress_excluded": "lvs.cf carries only the VIPs of its virtuals",
    "use_vmac": "VRRP virtual MAC addresses are not supported: the VIPs move by gratuitous ARP",
    "garp_master_delay": "gratuitous ARPs: lvs.cf has arp_count and arp_interval (5, 1 s apart)",
    "garp_master_repeat": "gratuitous ARPs: lvs.cf has arp_count and arp_interval",
    "garp_master_refresh": "gratuitous ARPs: lvs.cf has arp_count and arp_interval",
    "notify_fault": "lvs.cf runs active_cmd and inactive_cmd only (FAULT is shoal's standby)",
    "notify_stop": "lvs.cf runs active_cmd and inactive_cmd only", "notify": "lvs.cf runs active_cmd and "
    "inactive_cmd only (notify_fifo gives every state change)",
    "alpha": "lvs.cf checks a server before it goes in, and a healthy one goes in at once",
    "omega": "lvs.cf runs no quorum scripts", "quorum_up": "lvs.cf runs no quorum scripts",
    "quorum_down": "lvs.cf runs no quorum scripts",
    "virtualhost": "lvs.cf's http check sends the real server's address as Host",
    "delay_before_retry": "lvs.cf checks again after check_interval, not sooner",
    "warmup": "lvs.cf starts checking at once", "ha_suspend": "lvs.cf always checks",
}


@dataclass(frozen=True, slots=True)
class Note:
    where: Where
    what: str  # the statement, as keepalived.conf says it
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}: {self.why}"


class Reporter:
    """Collects the notes of one import."""

    def __init__(self) -> None:
        self.notes: list[Note] = []

    def note(self, stmt: Stmt, why: str, what: str | None = None) -> None:
        self.notes.append(Note(stmt.where, what or shown(stmt), why))

    def skip(self, stmt: Stmt, default: str = "lvs.cf has no equivalent") -> None:
        self.note(stmt, _WHY.get(stmt.word, default), stmt.word if stmt.block is not None else None)

    def unread(self, stmt: Stmt, known: tuple[str, ...], default: str) -> None:
        """A statement not carried over: a keyword the import reads, with a value it cannot take, or another."""
        if stmt.word in known:
            self.note(stmt, "a value lvs.cf cannot take: not carried over")
        else:
            self.skip(stmt, default)


def shown(stmt: Stmt) -> str:
    text = stmt.text()
    return text if len(text) <= 80 else text[:77] + "..."


def number(args: tuple[str, ...], lo: int, hi: int) -> int | None:
    if len(args) < 1 or not re.fullmatch(r"[0-9]{1,10}", args[0]):
        return None
    value = int(args[0])
    return value if lo <= value <= hi else None


def seconds_ms(args: tuple[str, ...]) -> int | None:
    if not args or not re.fullmatch(r"[0-9]{0,9}(\.[0-9]*)?", args[0]) or args[0] in ("", "."):
        return None
    return round(float(args[0]) * 1000)


def ip_of(args: tuple[str, ...]) -> str | None:
    if not args or "%" in args[0] or len(args[0]) > 45:
        return None
    try:
        ip = ipaddress.ip_address(args[0])
    except ValueError:
        return None
    return None if ip.is_unspecified else ip.compressed


def fits(kind: str, key: str, *values: str) -> str | None:
    """None when lvs.cf's `key` (of block `kind`) takes these values, else lvs.cf's own reason."""
    try:
        TABLES[kind][key].parse([Token(v, 1) for v in values])
    except ValueProblem as e:
        return e.message
    return None


def family(address: str) -> int:
    return 6 if ":" in address else 4


def command(text: str) -> str | None:
    """A command as lvs.cf can hold it."""
    return None if len(text) > MAX_STRING_CHARS or FORBIDDEN.search(text) else text


def check_text(text: str) -> str | None:
    return None if len(text) > MAX_CHECK_CHARS or CHECK_FORBIDDEN.search(text) else text
