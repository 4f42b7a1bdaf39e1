"""The IPVS table as data: services keyed like the kernel keys them.

A `Table` maps `ServiceKey` to `ServiceEntry` (the service's attributes and
its destinations).  `engine.pool` computes the desired table, `engine.diff`
turns (applied, desired) into operations, adapters carry them out and the
simulator keeps a `Table` as its model of the kernel.

Tables are treated as values: never mutate one you did not build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

Forward = Literal["masq", "route", "tunnel"]

FORWARD_OF_NETWORK: Mapping[str, Forward] = {"nat": "masq", "direct": "route", "tunnel": "tunnel"}


@dataclass(frozen=True, slots=True, order=True)
class ServiceKey:
    """How IPVS names a service: protocol + VIP + port, or a firewall mark.

    For a fwmark service `protocol` is "fwmark", `address` is "" and `port`
    is 0; `family` (4 or 6) is part of the key either way.
    """

    protocol: str
    address: str
    port: int
    fwmark: int = 0
    family: int = 4

    def __str__(self) -> str:
        if self.protocol == "fwmark":
            return f"FWM {self.fwmark}" + (" IPv6" if self.family == 6 else "")
        host = f"[{self.address}]" if self.family == 6 else self.address
        return f"{self.protocol.upper()} {host}:{self.port}"


@dataclass(frozen=True, slots=True, order=True)
class DestKey:
    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Service:
    """A virtual service's own attributes (what `ipvsadm -E` can change)."""

    key: ServiceKey
    scheduler: str = "wlc"
    sched_flags: tuple[str, ...] = ()
    persistent_s: int = 0
    pmask: str | None = None
    name: str = field(default="", compare=False)  # the `virtual NAME`, for logs


@dataclass(frozen=True, slots=True)
class Dest:
    """A real server in a service (what `ipvsadm -e` can change: weight, forward)."""

    key: DestKey
    weight: int
    forward: Forward = "masq"
    name: str = field(default="", compare=False)  # the `server NAME` (or "sorry"), for logs


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    service: Service
    dests: Mapping[DestKey, Dest]


Table = Mapping[ServiceKey, ServiceEntry]

EMPTY_TABLE: Table = {}
