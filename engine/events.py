"""What goes into the engine (inputs, past tense) and what comes out
(commands, imperative).  Both are frozen dataclasses with slots.

The driver (daemon or simulator) calls `Engine.step(now_ms, input)` and
gets a `Ready`:

- `commands` must be carried out **in the order given**.  The engine emits
  them so that order is always safe:

  1. `SendHeartbeat` (`SendAdvert`) announcing a change of role comes
     first, so that a dual-active pair settles within one link latency;
     but in a step that adds or announces VIPs it comes right after the
     last `AddVip` / `SendGratuitousArp`: a partner handing over gives its
     VIPs up when it hears this router active, and by then they are
     announced here (make before break, whatever delays the driver);
  2. both roles keep the table that health and config call for (a
     standby's table is in step, as keepalived keeps its IPVS table on both
     routers; a router without the VIPs receives no traffic for them), and
     `SetTimeouts` goes out at start; going active is then, in order: the
     table operations that bring the kept table to the desired one (none
     when it is in step, the usual case: the table is always in the
     kernel before any client is told where the VIP is), `AddVip` (each
     VIP, then the `nat_router` address), `SendGratuitousArp` for each,
     and only then `Notify("role")`, `StopSyncDaemon`/`StartSyncDaemon`
     and `RunCommand(active_cmd)`: nothing delays the addresses;
  3. going standby: `RunCommand(inactive_cmd)` first, then `DelVip`
     (nat_router first, then VIPs in reverse), `StopSyncDaemon`; the table
     stays.  A shutdown gives up the VIPs the same way, then empties the
     table (as keepalived and the original's lvsd do on stop);
  4. table operations come in the order `engine.diff` documents (services
     added, services edited, destinations added, edited, deleted, services
     deleted);
  5. `StartCheck` / `ReadLoad` / `Notify` / `RunCommand(notify_*)` last.
     One exception at boot: a driver whose first input is a `TableRead`
     of an empty table gets `Notify("vip_cleanup")` and a `DelVip` for
     every configured VIP (leftovers of a previous life) before the rest.
     A `ReadTable` is carried out in command order like the rest: the
     table it reads is the kernel's at that point (see `ReadTable` for
     the reads that miss later operations).

- `next_deadline_ms` is when the engine next needs a `Tick` (None: only
  inputs will wake it).  Waking late is harmless; waking early is a no-op.
- `status` is a snapshot of everything the engine knows.

Every command that fails is reported back as `CommandFailed`; table
commands are then reconciled after the driver feeds a `TableRead`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Union

from engine.model import Config
from engine.table import Dest, DestKey, Service, ServiceKey, Table

Path = Literal["public", "private"]


# --------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has passed (a deadline may be due)."""


@dataclass(frozen=True, slots=True)
class HeartbeatReceived:
    """A datagram arrived on the heartbeat port.  `payload` is untrusted."""

    path: Path
    source: str  # the sender's address
    payload: bytes


@dataclass(frozen=True, slots=True)
class AdvertReceived:
    """A datagram of IP protocol 112 (VRRP, `heartbeat_protocol = vrrp`): its
    IP source and destination and TTL (hop limit) as it arrived.  `payload`
    (the IP payload) is untrusted."""

    source: str
    destination: str
    ttl: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class CheckCompleted:
    """A `StartCheck` finished (ok, or failed with a reason: timeout, refused, mismatch...)."""

    check_id: int
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LoadRead:
    """A `ReadLoad` finished: the host's 1-minute load average, None if unreadable."""

    load_id: int
    load: float | None


@dataclass(frozen=True, slots=True)
class ConfigLoaded:
    """A new configuration (SIGHUP, or a scenario's reload)."""

    config: Config
    heartbeat_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class CommandFailed:
    command: "Command"
    error: str


@dataclass(frozen=True, slots=True)
class TableRead:
    """What the kernel really holds (at start, after a failure, or on drift).

    As the first input (a driver that reads the kernel at start), with
    `vips`, those of the config's VIP and `nat_router` addresses that the
    host holds then: a table that is not empty is adopted; with a VIP held
    too, the previous life was active and the router claims the active role;
    without one, it was standby (a standby keeps the table too) and starts
    standby over it.  An empty table makes the engine remove every
    configured VIP first (a VIP left on an interface by a crashed previous
    run would be a second owner).  Later reads leave `vips` empty.
    """

    table: Table
    vips: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AdminRequested:
    """An operator's request.

    action: "failover" (the active router hands over), "drain" (weight 0,
    connections kept), "weight" (an operator weight, `weight` 0-65535,
    kept like a drain), "undrain" (back to the configured or health-derived
    weight), "force_down", "force_up", "auto" (as undrain).
    `virtual` may be "" to mean every virtual holding `server`.
    """

    action: Literal["failover", "drain", "undrain", "weight", "force_down", "force_up", "auto"]
    server: str = ""
    virtual: str = ""
    weight: int | None = None  # "weight" only
    replayed: bool = False  # put back from the state directory at start: not a new change (engine.sync)


@dataclass(frozen=True, slots=True)
class ShutdownRequested:
    """SIGTERM: give up the VIPs cleanly and tell the partner."""


@dataclass(frozen=True, slots=True)
class LinksChanged:
    """The interfaces this router needs whose link is down now, after every
    change (empty: all up).  Which interfaces a router needs is the
    driver's to say: the VIPs', `nat_router`'s and the heartbeat paths'
    (the daemon finds the last by address; scenario.devices names them in
    the simulator).  Acted on only with `monitor_links = 1`."""

    down: frozenset[str]


Input = Union[
    Tick, HeartbeatReceived, CheckCompleted, LoadRead, ConfigLoaded,
    CommandFailed, TableRead, AdminRequested, ShutdownRequested, LinksChanged, AdvertReceived,
]


# --------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class SendHeartbeat:
    path: Path
    address: str  # the partner's address on that path
    port: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class SendAdvert:
    """A VRRP advert (the IP payload of protocol 112) to the virtual router's
    destination: the multicast group, or the partner with `vrrp_unicast`."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class AddVip:
    address: str
    prefix: int  # from vip_nmask / nat_nmask; 32 (128) when unset
    device: str  # the interface ("eth0")
    label: str  # the alias ("eth0:1"), or the device when none


@dataclass(frozen=True, slots=True)
class DelVip:
    address: str
    prefix: int
    device: str
    label: str


@dataclass(frozen=True, slots=True)
class SendGratuitousArp:
    """One gratuitous ARP (IPv4) or unsolicited neighbour advertisement (IPv6)."""

    address: str
    device: str


@dataclass(frozen=True, slots=True)
class AddService:
    service: Service


@dataclass(frozen=True, slots=True)
class EditService:
    service: Service


@dataclass(frozen=True, slots=True)
class DelService:
    key: ServiceKey
    name: str = ""


@dataclass(frozen=True, slots=True)
class AddDest:
    service: ServiceKey
    dest: Dest


@dataclass(frozen=True, slots=True)
class EditDest:
    service: ServiceKey
    dest: Dest


@dataclass(frozen=True, slots=True)
class DelDest:
    service: ServiceKey
    dest: DestKey
    name: str = ""


TableOp = Union[AddService, EditService, DelService, AddDest, EditDest, DelDest]


@dataclass(frozen=True, slots=True)
class SetTimeouts:
    tcp_s: int
    tcpfin_s: int
    udp_s: int


@dataclass(frozen=True, slots=True)
class StartSyncDaemon:
    state: Literal["master", "backup"]
    iface: str
    syncid: int


@dataclass(frozen=True, slots=True)
class StopSyncDaemon:
    state: Literal["master", "backup"]


@dataclass(frozen=True, slots=True)
class ReadTable:
    """Read back what the kernel holds; answer with `TableRead`.

    Asked every `table_check_interval`, and after a table command failed;
    answered with one `TableRead`, or a `CommandFailed` naming it, in the
    order asked, the table read when the command is carried out (after the
    table operations before it).  A read answered after table operations
    of later steps went out may miss them: the engine discards it and asks
    again, rather than take it for drift.
    """


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One health check of one (address, port): shared by every virtual
    that checks the same thing the same way."""

    address: str
    port: int
    kind: Literal["tcp", "udp", "http", "https"]
    send: str | None = None
    expect: str | None = None
    use_regex: bool = False
    send_program: str | None = None
    timeout_ms: int = 10_000
    http_path: str = "/"
    http_status: int = 200


@dataclass(frozen=True, slots=True)
class StartCheck:
    """Run one check, with a hard timeout of `spec.timeout_ms`; answer with
    `CheckCompleted(check_id, ...)`."""

    check_id: int
    spec: CheckSpec


@dataclass(frozen=True, slots=True)
class ReadLoad:
    """Read a real server's 1-minute load; answer with `LoadRead(load_id, ...)`."""

    load_id: int
    address: str
    method: str  # "uptime" | "rup" | "ruptime" | "command"
    command: str | None = None


@dataclass(frozen=True, slots=True)
class RunCommand:
    """Run an operator's command (active_cmd, inactive_cmd, notify_up...).
    Commands run in order, one at a time, each with the configured timeout."""

    command: str
    reason: str
    timeout_ms: int = 30_000


@dataclass(frozen=True, slots=True)
class Notify:
    """A state change, for the log and the notify FIFO (one JSON line).

    kind: "role" (from, to, reason), "health" (service, server, from, to,
    detail), "weight" (service, server, weight), "partner" (alive, reason),
    "drift" (what, ops, diff: the kernel's table read back differed from the
    applied one; `diff` the reconciling operations as ipvsadm arguments),
    "heartbeat_lost" (path), "quorum" (service, ok),
    "config" (serial_no), "error" (what), "admin_refused" (action, server,
    reason: an operator's request the engine will not carry out; `weight`
    too for a "weight" request),
    "vip_cleanup" (reason, addresses: VIPs removed at start),
    "heartbeat_ignored" (counter, why, path, source: a heartbeat or a
    partner's claim not acted on; once per kind until the partner is heard
    trusted again, the counter in the status counts them all), "stall"
    (reason), "hold" (reason: an operator's hand-over ended without the
    partner taking over: this router kept the role and the VIPs).
    """

    kind: str
    data: Mapping[str, str | int | float | bool | None]


Command = Union[
    SendHeartbeat, SendAdvert, AddVip, DelVip, SendGratuitousArp,
    AddService, EditService, DelService, AddDest, EditDest, DelDest,
    SetTimeouts, StartSyncDaemon, StopSyncDaemon, ReadTable,
    StartCheck, ReadLoad, RunCommand, Notify,
]

TABLE_OPS = (AddService, EditService, DelService, AddDest, EditDest, DelDest)
