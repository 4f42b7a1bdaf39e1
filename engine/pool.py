"""The desired IPVS table: what config, health, load and role call for.

Everything that decides which destination is in a service, and at what
weight, lives here.  This module does not know how the table gets applied
(`engine.diff`) nor how health is decided (`engine.health`).

Per virtual (only while the router is active; a standby router wants an
empty table):

- an inactive virtual, or one with neither VIP nor fwmark, has no service;
- the service is keyed by protocol + VIP + port, or by fwmark;
- a real server is in at its current weight while up; while drained, in at
  weight 0; while down with `quiesce_server = 1`, in at weight 0 (existing
  connections and persistence survive); while down otherwise, or not yet
  checked, out;
- the `sorry_server` (weight 1) is in only while no real server of the
  virtual takes new connections (none up with a weight above 0), or while
  the quorum is lost;
- `quorum` (shoal, keepalived-style): when the total configured weight of
  healthy servers falls below `quorum - hysteresis`, the quorum is lost and
  the real servers give way to the sorry server (with no sorry server they
  stay: there is nothing better to send clients to); it is regained at
  `quorum + hysteresis`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

from engine.model import Config, Virtual
from engine.table import FORWARD_OF_NETWORK, Dest, DestKey, Service, ServiceEntry, ServiceKey, Table

Standing = Literal["unknown", "up", "down", "drained"]


@dataclass(frozen=True, slots=True)
class Member:
    """One real server of one virtual, as the table sees it."""

    name: str
    address: str
    port: int
    standing: Standing
    weight: int  # its current weight (slow start, load) while up
    configured_weight: int


def family(address: str) -> int:
    return ipaddress.ip_address(address).version


def prefix_of(mask: str | None, address: str) -> int:
    """A netmask ("255.255.255.0", "24" or None) as a prefix length."""
    bits = 32 if family(address) == 4 else 128
    if mask is None:
        return bits
    if mask.isdigit():
        return int(mask)
    return ipaddress.ip_network(f"0.0.0.0/{mask}").prefixlen


def service_key(virtual: Virtual) -> ServiceKey | None:
    """How IPVS keys this virtual's service (None: it has no service)."""
    if not virtual.active:
        return None
    if virtual.fwmark:
        addresses = [virtual.address] if virtual.address else [s.address for s in virtual.servers if s.address]
        fam = family(addresses[0]) if addresses else 4
        return ServiceKey("fwmark", "", 0, virtual.fwmark, fam)
    if virtual.address is None:
        return None
    return ServiceKey(virtual.protocol, virtual.address, virtual.port, 0, family(virtual.address))


def dest_port(virtual: Virtual, port: int | None) -> int:
    """A real server's port: its own, else the virtual's (0 for fwmark: any)."""
    if port is not None:
        return port
    return 0 if virtual.fwmark else virtual.port


def quorum_state(virtual: Virtual, members: Iterable[Member], was_ok: bool) -> bool:
    """Whether the quorum holds, with hysteresis (True when `quorum` is 0)."""
    if virtual.quorum <= 0:
        return True
    return quorum_holds(virtual, sum(m.configured_weight for m in members if m.standing == "up"), was_ok)


def quorum_holds(virtual: Virtual, up_weight: int, was_ok: bool) -> bool:
    """`quorum_state` given the total configured weight of the members up."""
    if virtual.quorum <= 0:
        return True
    if was_ok:
        return up_weight >= virtual.quorum - virtual.hysteresis
    return up_weight >= virtual.quorum + virtual.hysteresis


def desired_entry(
    config: Config, virtual: Virtual, members: Iterable[Member], quorum_ok: bool = True,
    key: ServiceKey | None = None,
) -> ServiceEntry | None:
    """The service this virtual calls for, with its destinations (`key`:
    its `service_key`, when the caller has it at hand)."""
    key = key if key is not None else service_key(virtual)
    if key is None:
        return None
    forward = FORWARD_OF_NETWORK[config.network]
    service = Service(
        key=key,
        scheduler=virtual.scheduler,
        sched_flags=virtual.sched_flags,
        persistent_s=virtual.persistent_s,
        pmask=virtual.pmask if virtual.persistent_s else None,
        name=virtual.name,
    )
    dests: dict[DestKey, Dest] = {}
    serving = False
    if quorum_ok or virtual.sorry_server is None:
        for member in members:
            weight = weight_in_table(virtual, member)
            if weight is None:
                continue
            dkey = DestKey(member.address, member.port)
            dests[dkey] = Dest(dkey, weight, forward, member.name)
            serving = serving or weight > 0
    if not serving and virtual.sorry_server is not None:
        skey = DestKey(virtual.sorry_server, dest_port(virtual, virtual.sorry_port))
        if skey not in dests:
            dests[skey] = Dest(skey, 1, forward, "sorry")
    return ServiceEntry(service, dests)


def weight_in_table(virtual: Virtual, member: Member) -> int | None:
    """A member's weight in its service while the members go in (None: out)."""
    if member.standing == "up":
        return member.weight
    if member.standing == "drained":
        return 0
    if member.standing == "down" and virtual.quiesce_server:
        return 0
    return None


def desired_table(entries: Mapping[str, ServiceEntry | None]) -> Table:
    """The whole table from each virtual's entry (by virtual name)."""
    return {entry.service.key: entry for entry in entries.values() if entry is not None}
