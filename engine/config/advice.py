"""Warnings: a valid configuration that runs, but at a risk the operator
must hear about.  `shoal check-config` prints them (the file is still
valid: exit 0); the daemon logs the same text at start and shows it in
`shoal status`.  Each says what can go wrong and what fixes it.
"""

from __future__ import annotations

from engine.config.parser import Document
from engine.model import Config

KEY_EXAMPLE = "/etc/shoal/heartbeat.key"


def warnings(config: Config) -> list[str]:
    """What is risky in `config`, one sentence each, in a stable order."""
    out: list[str] = []
    pair = config.backup_active and config.backup is not None
    if config.heartbeat_protocol == "vrrp":
        return _vrrp(config, pair)
    if pair and config.heartbeat_format == "shoal" and not config.heartbeat_key_file:
        out.append(
            "heartbeats are not authenticated: this pair runs heartbeat_format = shoal without heartbeat_key_file, "
            "so any host on the LAN can send heartbeats in either router's name; only the sequence numbers "
            "the routers exchange stand in its way, and a host that sees them can take the VIPs from both "
            f"(heartbeat_min_ttl = {config.heartbeat_min_ttl} keeps out only hosts beyond a router; "
            "docs/SECURITY.md); "
            f"run `shoal keygen {KEY_EXAMPLE}`, copy that file to the other router, and set "
            f"heartbeat_key_file = {KEY_EXAMPLE} in lvs.cf on both")
    if pair and config.heartbeat_format == "piranha":
        out.append(
            "heartbeats cannot be authenticated: heartbeat_format = piranha has no room for a key, so any host "
            "that can reach heartbeat_port can forge heartbeats and take the VIPs from both routers; use it only "
            "while migrating from pulse, then set heartbeat_format = shoal and heartbeat_key_file "
            f"(made with `shoal keygen {KEY_EXAMPLE}`) on both routers")
    return out


def _vrrp(config: Config, pair: bool) -> list[str]:
    out: list[str] = []
    doc = config.source
    given = ((), "deadtime") in doc.positions if isinstance(doc, Document) else config.deadtime_ms != 5_000
    if given:
        out.append(
            "deadtime is not used with heartbeat_protocol = vrrp: a VRRP backup takes over after the RFC's "
            "master-down interval, 3 x keepalive (the advert interval) plus a skew of (256 - priority) / 256 x "
            "keepalive; remove the line, or change keepalive")
    if pair:
        out.append(
            "VRRP adverts are not authenticated (VRRPv3 has no authentication): any host on the routers' LAN can "
            "send adverts with a higher priority and take the VIPs; only the TTL of 255 that VRRP requires keeps out "
            "hosts beyond a router; keep the routers' VRRP traffic on a trusted segment (vrrp_unicast = 1 with a "
            "firewall rule that accepts IP protocol 112 only from the partner)")
    return out
