"""The status snapshot: everything the engine knows, as frozen data.

`shoal status`, the web tool, the simulator's checks and the tests read
this; nothing in it is ever mutated after it is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True, slots=True)
class ServerStatus:
    name: str
    address: str
    port: int
    health: str  # "up" | "down" | "unknown" (after the operator's override)
    checked: str  # what the checks alone say: "up" | "down" | "unknown"
    admin: str  # "auto" | "force_up" | "force_down" | "drain"
    weight: int  # the weight the table calls for (0 quiesced/drained; 0 when out)
    in_table: bool
    configured_weight: int
    last_check: bool | None
    last_detail: str
    checks_ok: int
    checks_failed: int


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    address: str | None
    port: int
    protocol: str
    fwmark: int | None
    scheduler: str
    active: bool
    sorry_in_table: bool
    quorum_ok: bool
    servers: tuple[ServerStatus, ...]


@dataclass(frozen=True, slots=True)
class PartnerStatus:
    alive: bool
    state: str | None  # "active" | "standby" | "leaving" | None (never heard)
    serial_no: int | None
    last_heard_ms: int | None  # engine time; `shoal status` shows seconds ago
    deaf: bool  # it cannot hear us (one-way failure)
    drift: bool  # its serial_no differs from ours


@dataclass(frozen=True, slots=True)
class Status:
    node: str  # "primary" | "backup"
    role: str  # "active" | "standby"
    now_ms: int
    serial_no: int
    vips: tuple[str, ...]  # the addresses this router holds (as commanded)
    partner: PartnerStatus
    services: tuple[ServiceStatus, ...]
    counters: Mapping[str, int]

    def service(self, name: str) -> ServiceStatus:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(f"no service named {name!r}")
