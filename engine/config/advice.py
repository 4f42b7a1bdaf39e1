"""Warnings: a valid configuration that runs, but at a risk the operator
must hear about.  `shoal check-config` prints them (the file is still
valid: exit 0); the daemon logs the same text at start and shows it in
`shoal status`.  Each says what can go wrong and what fixes it.
"""

from __future__ import annotations

from engine.model import Config

KEY_EXAMPLE = "/etc/shoal/heartbeat.key"


def warnings(config: Config) -> list[str]:
    """What is risky in `config`, one sentence each, in a stable order."""
    out: list[str] = []
    pair = config.backup_active and config.backup is not None
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
