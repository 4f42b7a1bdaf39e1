"""The lab's network, derived from a scenario's configs, and the time scale.

Pure: no processes, no kernel.  Three networks, each a /24 around the
addresses the configs put on it:

- public: the routers (`primary`, `backup`), the VIPs and the client (a
  free address, .250 if free); the routers' interface is named as the
  VIPs' device (`address = VIP eth0:1` -> `eth0`);
- private (only when `primary_private`/`backup_private` are set): the
  second heartbeat path;
- server: the real servers, each with a default route via `nat_router`;
  the routers' interface is named as the `nat_router` device, each router
  has an address of its own there (free addresses from .253 down) for its
  health checks, and the active router adds `nat_router` itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from engine.model import Config, Virtual
from scenario.model import Expect, Fault, Scenario


class LabError(Exception):
    """The lab cannot run this (a clear message, exit 2)."""


@dataclass(frozen=True, slots=True)
class Iface:
    name: str  # inside the node's namespace
    net: str  # "public" | "private" | "server"
    addresses: tuple[str, ...]  # each "A.B.C.D/24"


@dataclass(frozen=True, slots=True)
class Node:
    name: str  # "client", "primary", "backup", or a real server's address key ("srv-10.1.0.11")
    ifaces: tuple[Iface, ...]
    gateway: str | None = None  # default route
    ports: tuple[int, ...] = ()  # real servers: TCP ports to listen on
    servers: tuple[str, ...] = ()  # real servers: the config names served here


@dataclass(frozen=True, slots=True)
class Plan:
    nets: tuple[str, ...]
    nodes: tuple[Node, ...]
    client_address: str
    vips: tuple[str, ...]  # every VIP of every config, and nat_router
    targets: tuple[tuple[str, int], ...]  # the client's (VIP, port), first config's active virtuals

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def servers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.name.startswith("srv-"))


def _net(address: str) -> ipaddress.IPv4Network:
    ip = ipaddress.ip_address(address)
    if ip.version != 4:
        raise LabError(f"the lab builds IPv4 networks only, not {address}")
    return ipaddress.ip_network(f"{address}/24", strict=False)


def _free(net: ipaddress.IPv4Network, used: set[str], start: int) -> str:
    for host in range(start, 0, -1):
        a = str(net.network_address + host)
        if a not in used:
            used.add(a)
            return a
    raise LabError(f"no free address left on {net}")


def _device(virtuals: list[Virtual]) -> str:
    devices = sorted({(v.device or "eth0").split(":", 1)[0] for v in virtuals if v.address})
    if len(devices) > 1:
        raise LabError(f"the lab puts every VIP on one interface; the config names {', '.join(devices)}")
    return devices[0] if devices else "eth0"


def plan(configs: list[Config]) -> Plan:
    first = configs[0]
    for c in configs:
        if c.network != "nat":
            raise LabError(f"the lab builds NAT routers only (network = {c.network})")
        if (c.primary, c.backup, c.nat_router) != (first.primary, first.backup, first.nat_router):
            raise LabError("a reload that moves the routers or nat_router is not supported by the lab")
    if not (first.primary and first.backup and first.nat_router):
        raise LabError("the lab needs primary, backup and nat_router in the config")
    virtuals = [v for c in configs for v in c.virtuals]
    pub_dev = _device(virtuals)
    srv_dev = (first.nat_router_device or "eth1").split(":", 1)[0]
    if srv_dev == pub_dev:
        raise LabError(f"the VIPs and nat_router share the interface {pub_dev}: not supported by the lab")
    pub, srv = _net(first.primary), _net(first.nat_router)
    used = {first.primary, first.backup, first.nat_router}
    vips = sorted({v.address for v in virtuals if v.address} | {first.nat_router})
    for v in vips:
        if v != first.nat_router and _net(v) != pub:
            raise LabError(f"VIP {v} is not on the public network {pub}")
    used |= set(vips)
    servers: dict[str, tuple[set[int], set[str]]] = {}
    for c in configs:
        for v in c.virtuals:
            for s in v.servers:
                if s.address:
                    ports, names = servers.setdefault(s.address, (set(), set()))
                    ports.add(s.port or v.port)
                    names |= {s.name, f"{v.name}/{s.name}"}
            if v.sorry_server:
                ports, names = servers.setdefault(v.sorry_server, (set(), set()))
                ports.add(v.sorry_port or v.port)
                names |= {"sorry", f"{v.name}/sorry"}
    for address in servers:
        if _net(address) != srv:
            raise LabError(f"real server {address} is not on the server network {srv} (nat_router's /24)")
    used |= set(servers)
    client = "250" if str(pub.network_address + 250) not in used else None
    client_address = str(pub.network_address + 250) if client else _free(pub, used, 249)
    used.add(client_address)
    own = {r: _free(srv, used, 253) for r in ("primary", "backup")}
    nets = ["public", "server"]
    private_dev = next(n for n in ("eth2", "eth3", "hb0") if n not in (pub_dev, srv_dev))
    routers = []
    for r in ("primary", "backup"):
        ifaces = [Iface(pub_dev, "public", (f"{first.address_of(r, 'public')}/24",)),  # type: ignore[arg-type]
                  Iface(srv_dev, "server", (f"{own[r]}/24",))]
        private = first.address_of(r, "private")  # type: ignore[arg-type]
        if private:
            ifaces.append(Iface(private_dev, "private", (f"{private}/24",)))
        routers.append(Node(r, tuple(ifaces)))
    if first.primary_private and first.backup_private:
        nets.append("private")
    nodes = [Node("client", (Iface("eth0", "public", (f"{client_address}/24",)),)), *routers]
    for address in sorted(servers, key=ipaddress.ip_address):
        ports, names = servers[address]
        nodes.append(Node(f"srv-{address}", (Iface("eth0", "server", (f"{address}/24",)),),
                          gateway=first.nat_router, ports=tuple(sorted(ports)), servers=tuple(sorted(names))))
    targets = tuple(sorted({(v.address, v.port) for v in first.virtuals
                            if v.active and v.address and v.protocol == "tcp" and v.fwmark is None}))
    return Plan(tuple(nets), tuple(nodes), client_address, tuple(vips), targets)


# ------------------------------------------------------------------ time scale


def _t(ms: int | None, factor: float) -> int | None:
    return None if ms is None else max(1, round(ms * factor))


def scale_config(config: Config, factor: float) -> Config:
    """Every time in the config multiplied by `factor` (kernel timeouts and persistence stay)."""
    if factor == 1:
        return config
    virtuals = tuple(replace(v, timeout_ms=_t(v.timeout_ms, factor), reentry_ms=round(v.reentry_ms * factor),
                             check_interval_ms=_t(v.check_interval_ms, factor)) for v in config.virtuals)
    return replace(config, keepalive_ms=_t(config.keepalive_ms, factor), deadtime_ms=_t(config.deadtime_ms, factor),
                   arp_interval_ms=_t(config.arp_interval_ms, factor), virtuals=virtuals)


def scale_scenario(s: Scenario, factor: float) -> Scenario:
    """Every time in the scenario (faults, expectations, windows, delays, configs) times `factor`."""
    def at(ms: int) -> int:
        return round(ms * factor)

    faults = []
    for f in s.faults:
        value, extra = f.value, dict(f.extra)
        if f.kind == "reload":
            value = scale_config(value, factor)
        if f.kind == "server_slow":
            extra["delay"] = extra["delay"] * factor
        faults.append(replace(f, at_ms=at(f.at_ms), value=value, extra=extra))
    expects = [replace(e, at_ms=None if e.at_ms is None else at(e.at_ms),
                       window_ms=None if e.window_ms is None else (at(e.window_ms[0]), at(e.window_ms[1])))
               for e in s.expects]
    return replace(s, duration_ms=at(s.duration_ms), config=scale_config(s.config, factor),
                   faults=tuple(faults), expects=tuple(expects))
