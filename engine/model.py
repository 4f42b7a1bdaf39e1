"""The configuration model: what an `lvs.cf` says, as frozen dataclasses.

Everything here is plain data with the original's defaults (see
../shared/PIRANHA.md).  The parser (`engine.config`) builds it, the writer
renders it back, and the engine reads it.  Times are integer milliseconds
(`*_ms`): the file takes seconds, fractional seconds allowed.  Kernel
timeouts and persistence stay whole seconds (`*_s`) because IPVS takes
seconds.

Addresses are normalised text (`ipaddress.ip_address(x).compressed`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Network = Literal["nat", "direct", "tunnel"]
Protocol = Literal["tcp", "udp"]
LoadMonitor = Literal["none", "uptime", "rup", "ruptime"]
CheckKind = Literal["auto", "tcp", "udp", "http", "https", "none"]
HeartbeatFormat = Literal["shoal", "piranha"]
HeartbeatProtocol = Literal["pulse", "vrrp"]
Node = Literal["primary", "backup"]

SCHEDULERS: tuple[str, ...] = (
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh",
    "sed", "nq", "mh", "fo", "ovf", "twos",
)


def default_min_ttl(heartbeat_format: HeartbeatFormat) -> int:
    """`heartbeat_min_ttl` when the file does not set it."""
    return 255 if heartbeat_format == "shoal" else 1


@dataclass(frozen=True, slots=True)
class Server:
    """`server NAME { }` inside a virtual."""

    name: str
    address: str | None = None
    active: bool = True
    weight: int = 1
    port: int | None = None  # None: the virtual's port
    # shoal extensions
    notify_up: str | None = None  # command run when this server goes up
    notify_down: str | None = None  # command run when it goes down


@dataclass(frozen=True, slots=True)
class Virtual:
    """`virtual NAME { }`: one IPVS virtual service and its real servers."""

    name: str
    active: bool = True
    address: str | None = None  # the VIP
    device: str | None = None  # "eth0:1" (interface:alias) from `address`
    vip_nmask: str | None = None
    sorry_server: str | None = None
    sorry_port: int | None = None  # shoal: `sorry_server = IP:PORT`; None = the virtual's port
    fwmark: int | None = None
    protocol: Protocol = "tcp"
    port: int = 80
    scheduler: str = "wlc"
    sched_flags: tuple[str, ...] = ()  # shoal: e.g. ("sh-fallback", "sh-port")
    persistent_s: int = 0
    pmask: str | None = None
    send: str | None = None
    expect: str | None = None
    use_regex: bool = False
    send_program: str | None = None
    load_monitor: LoadMonitor = "none"
    timeout_ms: int = 10_000
    reentry_ms: int = 180_000
    quiesce_server: bool = False
    # shoal extensions
    rise: int | None = None  # successes to go up; None: max(1, ceil(reentry / interval))
    fall: int | None = None  # failures to go down; None: 1
    check_interval_ms: int | None = None  # None: timeout
    check: CheckKind = "auto"  # auto: tcp or udp by `protocol`
    http_path: str = "/"
    http_status: int = 200
    quorum: int = 0  # minimum total weight of healthy servers; 0: off
    hysteresis: int = 0
    load_command: str | None = None  # shoal: load read by running this (%h %p)
    servers: tuple[Server, ...] = ()

    @property
    def interval_ms(self) -> int:
        """Time between two checks of one real server."""
        return self.check_interval_ms if self.check_interval_ms is not None else self.timeout_ms

    @property
    def rise_count(self) -> int:
        """Consecutive successes that bring a failed server back."""
        if self.rise is not None:
            return self.rise
        return max(1, -(-self.reentry_ms // self.interval_ms))

    @property
    def fall_count(self) -> int:
        return self.fall if self.fall is not None else 1


@dataclass(frozen=True, slots=True)
class Config:
    """A whole `lvs.cf`: globals, then virtuals in file order."""

    serial_no: int = 0
    service: str = "lvs"
    primary: str | None = None
    backup: str | None = None
    primary_private: str | None = None
    backup_private: str | None = None
    backup_active: bool = False
    heartbeat: bool = True
    heartbeat_port: int = 539
    keepalive_ms: int = 2_000
    deadtime_ms: int = 5_000
    network: Network = "nat"
    nat_router: str | None = None  # address
    nat_router_device: str | None = None  # "eth1:1"
    nat_nmask: str | None = None
    debug_level: str = "NONE"
    rsh_command: str = "rsh"
    active_cmd: str | None = None
    inactive_cmd: str | None = None
    monitor_links: bool = False
    hard_shutdown: bool = True
    syncdaemon: bool = False
    syncd_iface: str = "eth0"
    syncd_id: int = 0
    tcp_timeout_s: int = 0
    tcpfin_timeout_s: int = 0
    udp_timeout_s: int = 0
    # shoal extensions
    preempt: bool = False
    heartbeat_key_file: str | None = None
    heartbeat_format: HeartbeatFormat = "shoal"
    # Partner heartbeats are accepted only with an IP TTL (hop limit) of at
    # least this.  0 here means "the format's default", and construction
    # puts the effective value in its place: 255 for shoal (both routers
    # send 255, so an off-link host cannot forge one), 1 (not enforced) for
    # piranha, whose pulse sends with the system's default TTL.
    heartbeat_min_ttl: int = 0
    arp_count: int = 5
    arp_interval_ms: int = 1_000
    notify_fifo: str | None = None
    command_timeout_ms: int = 30_000
    table_check_interval_ms: int = 5_000  # read the kernel table back this often (drift); 0: never
    load_interval_ms: int = 20_000  # load_monitor reads a real server's load this often (nanny: about 20 s)
    # VRRP (issue 14; docs/CONFIG.md, "VRRP"): `heartbeat_protocol = vrrp`
    # replaces the heartbeat on `heartbeat_port` with VRRP adverts (IP
    # protocol 112), every `keepalive`, so that either router may be a
    # keepalived one.  The others are read only with it.
    heartbeat_protocol: HeartbeatProtocol = "pulse"
    vrrp_version: int = 3  # 2 (RFC 3768, IPv4 only) or 3 (RFC 5798)
    virtual_router_id: int | None = None  # 1-255; required with vrrp
    priority: int | None = None  # 1-254; None: vrrp_priority()'s default by node
    preempt_delay_ms: int = 0  # with preempt = 1: wait this long before taking over from a lower priority
    vrrp_unicast: bool = False  # False: multicast 224.0.0.18 / ff02::12; True: to the partner's address
    vrrp_v3_checksum_as_v2: bool = False  # keepalived's v3_checksum_as_v2: no IPv4 pseudo-header in the sum
    virtuals: tuple[Virtual, ...] = ()
    # The parsed document (comments, order) the writer renders into.  Not
    # part of the model's identity.
    source: object | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.heartbeat_min_ttl == 0:
            object.__setattr__(self, "heartbeat_min_ttl", default_min_ttl(self.heartbeat_format))

    def address_of(self, node: Node, path: Literal["public", "private"]) -> str | None:
        """This node's address on a heartbeat path (None: path not configured)."""
        if path == "public":
            return self.primary if node == "primary" else self.backup
        return self.primary_private if node == "primary" else self.backup_private

    def virtual(self, name: str) -> Virtual:
        for virtual in self.virtuals:
            if virtual.name == name:
                return virtual
        raise KeyError(f"no virtual named {name!r}")


DEFAULT_PRIORITY: dict[Node, int] = {"primary": 150, "backup": 100}


def vrrp_priority(config: Config, node: Node) -> int:
    """This router's VRRP priority: `priority` when the file sets it, else
    150 on the primary and 100 on the backup (the primary wins a cold start,
    as Piranha's primary does)."""
    return config.priority if config.priority is not None else DEFAULT_PRIORITY[node]
