"""The status snapshot: everything the engine knows, as frozen data.

`shoal status`, the web tool, the simulator's checks and the tests read
this; nothing in it is ever mutated after it is built.

`StatusCache` keeps the services' part between snapshots: the engine tells
it which members and virtuals changed, and only those are rebuilt (building
every server's status on every step was most of a step's cost; rebuilding
a whole virtual for one member's change made a step cost more the larger
the pool, issue 13).  A new config rebuilds everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from engine.events import AddDest, AddService, DelDest, DelService, EditDest, EditService, TableOp
from engine.model import Config, Virtual
from engine.table import DestKey, Forward, Service, ServiceKey


@dataclass(frozen=True, slots=True)
class ServerStatus:
    name: str
    address: str
    port: int
    health: str  # "up" | "down" | "unknown" (after the operator's override)
    checked: str  # what the checks alone say: "up" | "down" | "unknown"
    admin: str  # "auto" | "force_up" | "force_down" | "drain" | "weight"
    weight: int  # the weight the table calls for (0 quiesced/drained; 0 when out)
    in_table: bool
    configured_weight: int
    last_check: bool | None
    last_detail: str
    checks_ok: int
    checks_failed: int
    admin_weight: int | None = None  # the operator's weight while `admin` is "weight"


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
class TableStatus:
    """The kernel's table read back and compared with what was applied.

    The engine reads it every `check_interval_ms` (0: never), on either
    role, and after a table command failed.  A read that differs is drift:
    counted, and reconciled by `last_drift`'s operations.
    """

    check_interval_ms: int = 0
    checks: int = 0  # reads compared with what was applied
    stale_reads: int = 0  # reads discarded: operations went out while they were in flight
    drifts: int = 0  # reads that differed from what was applied
    last_drift_ms: int | None = None  # engine time of the last one
    last_drift: tuple[str, ...] = ()  # the operations that reconciled it, as ipvsadm arguments


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
    table: TableStatus = TableStatus()
    auth: str = "none"  # heartbeat authentication: "hmac-sha256" (heartbeat_key_file) or "none"
    links_down: tuple[str, ...] = ()  # needed interfaces without link (LinksChanged), sorted
    unfit: bool = False  # monitor_links = 1 and a link is down: this router takes nothing

    def service(self, name: str) -> ServiceStatus:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(f"no service named {name!r}")


MemberKey = tuple[str, str]  # (virtual name, server name)


class StatusCache:
    """The services of the last snapshot, and what changed since.

    Each virtual's servers are kept as a row in config order; a changed
    member rebuilds its own status in its row, a changed virtual its whole
    row, and only the services with a change are made anew (their tuples
    copied, nothing else walked).
    """

    def __init__(self) -> None:
        self._rows: dict[str, list[ServerStatus]] = {}  # by virtual, in config order
        self._slots: dict[MemberKey, int] = {}  # a member's place in its virtual's row
        self._services: list[ServiceStatus] | None = None
        self._snapshot: tuple[ServiceStatus, ...] = ()
        self._dirty_members: set[MemberKey] = set()
        self._dirty_virtuals: set[str] = set()
        self._index: dict[str, int] = {}

    def reset(self, config: Config) -> None:
        """A new config: the next snapshot is built whole (what was marked changed may be gone)."""
        self._rows.clear()
        self._slots.clear()
        self._services = None
        self._dirty_members.clear()
        self._dirty_virtuals.clear()
        self._index = {v.name: i for i, v in enumerate(config.virtuals)}

    def members_changed(self, keys: Iterable[MemberKey]) -> None:
        self._dirty_members.update(keys)

    def member_changed(self, key: MemberKey) -> None:
        self._dirty_members.add(key)

    def virtual_changed(self, name: str) -> None:
        self._dirty_virtuals.add(name)

    def services(
        self, config: Config,
        rows: Callable[[Virtual], list[tuple[MemberKey, ServerStatus]]],
        server: Callable[[MemberKey], ServerStatus],
        service: Callable[[Virtual, tuple[ServerStatus, ...]], ServiceStatus],
    ) -> tuple[ServiceStatus, ...]:
        """Every virtual's status: `rows` builds a virtual's servers,
        `server` one member's, `service` a virtual's from its servers;
        each called only where something changed."""
        if self._services is not None and not self._dirty_members and not self._dirty_virtuals:
            return self._snapshot
        if self._services is None or len(self._services) != len(config.virtuals):
            self._rows.clear()
            self._slots.clear()
            self._services = [service(v, tuple(self._row(v, rows))) for v in config.virtuals]
        else:
            stale = {name for name in self._dirty_virtuals if name in self._index}
            for name in stale:
                self._row(config.virtuals[self._index[name]], rows)
            touched = set(stale)
            for key in self._dirty_members:
                if key[0] in stale or key[0] not in self._index:
                    continue
                slot = self._slots.get(key)
                if slot is None:  # not a member the last row knew: the whole row
                    self._row(config.virtuals[self._index[key[0]]], rows)
                else:
                    self._rows[key[0]][slot] = server(key)
                touched.add(key[0])
            for name in touched:
                index = self._index[name]
                self._services[index] = service(config.virtuals[index], tuple(self._rows[name]))
        self._dirty_members.clear()
        self._dirty_virtuals.clear()
        self._snapshot = tuple(self._services)
        return self._snapshot

    def _row(
        self, virtual: Virtual, rows: Callable[[Virtual], list[tuple[MemberKey, ServerStatus]]],
    ) -> list[ServerStatus]:
        built = rows(virtual)
        for slot, (key, _) in enumerate(built):
            self._slots[key] = slot
        row = self._rows[virtual.name] = [status for _, status in built]
        return row


_FORWARD_FLAG: Mapping[Forward, str] = {"masq": "-m", "route": "-g", "tunnel": "-i"}


def _service_spec(key: ServiceKey) -> str:
    if key.protocol == "fwmark":
        return f"-f {key.fwmark}" + (" -6" if key.family == 6 else "")
    host = f"[{key.address}]" if key.family == 6 else key.address
    return f"{'-u' if key.protocol == 'udp' else '-t'} {host}:{key.port}"


def _service_args(service: Service) -> str:
    text = f"{_service_spec(service.key)} -s {service.scheduler}"  # in `ipvsadm -Sn`'s order: -p, -M, then -b
    if service.persistent_s:
        text += f" -p {service.persistent_s}" + (f" -M {service.pmask}" if service.pmask else "")
    if service.sched_flags:
        text += f" -b {','.join(service.sched_flags)}"
    return text


def _dest_spec(key: DestKey) -> str:
    return f"-r {key}"


def op_text(op: TableOp) -> str:
    """One table operation as `ipvsadm` arguments (`-e -t 10.0.0.1:80 -r 10.1.0.11:80 -m -w 1`),
    for the status and the log."""
    match op:
        case AddService(service):
            return f"-A {_service_args(service)}"
        case EditService(service):
            return f"-E {_service_args(service)}"
        case DelService(key):
            return f"-D {_service_spec(key)}"
        case AddDest(key, dest):
            return f"-a {_service_spec(key)} {_dest_spec(dest.key)} {_FORWARD_FLAG[dest.forward]} -w {dest.weight}"
        case EditDest(key, dest):
            return f"-e {_service_spec(key)} {_dest_spec(dest.key)} {_FORWARD_FLAG[dest.forward]} -w {dest.weight}"
        case DelDest(key, dkey):
            return f"-d {_service_spec(key)} {_dest_spec(dkey)}"
    raise TypeError(f"not a table operation: {op!r}")
