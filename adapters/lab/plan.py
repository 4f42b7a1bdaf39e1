"""The lab's network, derived from a scenario's configs, and the time scale.

Pure: no processes, no kernel.  Networks, each a /24 (IPv4) or /64 (IPv6)
around the addresses the configs put on it (a network may carry both):

- public: the routers (`primary`, `backup`: a config without `backup` is a
  single director, built without one), the VIPs on the first VIP
  interface and the client (a free address, .250 if free, `::fa` for
  IPv6); the routers' interface is named as that VIP device (`address =
  VIP eth0:1` -> `eth0`; `scenario/devices.py`, one rule for both worlds);
- one more network per further VIP interface (`vip1`, `vip2`...: VIPs on
  `eth0` and `eth3`), the client and both routers on each;
- private (only when `primary_private`/`backup_private` are set): the
  second heartbeat path;
- server: the real servers; the routers' interface is named as the
  `nat_router` device (`eth1` without one) and each router has an address
  of its own there (free addresses from .253 / `::fd` down) for its health
  checks and to forward to them.

How the real servers' replies go back (`network`):

- nat: through the director.  With `nat_router`, each server's default
  route is `nat_router`, which the active router adds; without one (a
  single director, or `backup_active = 0`, where nothing moves) it is the
  director's own address on the server network.  A pair without
  `nat_router` is refused: the replies could not follow a takeover.
- direct, tunnel: past the router.  A `gateway` node joins the server and
  public networks and routes between them; each server's default route is
  the gateway, and the server holds the VIPs of its virtuals on a
  non-ARPing interface (direct: `lo`, with `arp_ignore = 1`,
  `arp_announce = 2`; tunnel: the `ipip` device `tunl0`, where the
  director's encapsulated packets arrive).  The nft dataplane cannot
  forward like this (it raises EINVAL, adapters/dataplane/nft.py): such a
  plan is refused unless the dataplane is `ipvs`.

What the lab cannot build it refuses with a `LabError` saying why
(`shoal lab` exits 2).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from engine.model import Config, Virtual
from scenario.devices import base, devices
from scenario.model import Expect, Fault, Scenario

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
OWN = 253  # the routers' own addresses on a network the config gives them none on: .253, .252 (::fd, ::fc)
CLIENT = 250  # the client's, when free
ROUTERS = ("primary", "backup")


class LabError(Exception):
    """The lab cannot run this (a clear message, exit 2)."""


@dataclass(frozen=True, slots=True)
class Iface:
    name: str  # inside the node's namespace
    net: str  # "public" | "private" | "server" | "vip1"...
    addresses: tuple[str, ...]  # each "A.B.C.D/24" or "X::Y/64"


@dataclass(frozen=True, slots=True)
class Node:
    name: str  # "client", "primary", "backup", "gateway", or a real server's address key ("srv-10.1.0.11")
    ifaces: tuple[Iface, ...]
    gateways: tuple[str, ...] = ()  # default routes, one per family
    ports: tuple[int, ...] = ()  # real servers: TCP ports to listen on
    servers: tuple[str, ...] = ()  # real servers: the config names served here
    udp_ports: tuple[int, ...] = ()  # real servers: UDP ports to answer on
    vips: tuple[str, ...] = ()  # direct routing and tunnelling: the VIPs this real server holds
    vip_device: str | None = None  # where it holds them: "lo" (direct) or "tunl0" (tunnel)
    forwards: bool = False  # routes between its networks (the routers, the gateway)

    @property
    def gateway(self) -> str | None:
        return self.gateways[0] if self.gateways else None


@dataclass(frozen=True, slots=True)
class Plan:
    nets: tuple[str, ...]
    nodes: tuple[Node, ...]
    client_address: str
    vips: tuple[str, ...]  # every VIP of every config, and nat_router
    targets: tuple[tuple[str, int], ...]  # the client's TCP (VIP, port), first config's active virtuals
    udp_targets: tuple[tuple[str, int], ...] = ()  # and its UDP ones
    network: str = "nat"  # the configs' forwarding: nat, direct, tunnel
    routers: tuple[str, ...] = ROUTERS  # the routers built ("primary" alone: a single director)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def servers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.name.startswith("srv-"))


def _net(address: str) -> Network:
    ip = ipaddress.ip_address(address)
    return ipaddress.ip_network(f"{address}/{24 if ip.version == 4 else 64}", strict=False)


def _free(net: Network, used: set[str], start: int) -> str:
    for host in range(start, 0, -1):
        a = str(net.network_address + host)
        if a not in used:
            used.add(a)
            return a
    raise LabError(f"no free address left on {net}")


def _cidr(address: str) -> str:
    return f"{address}/{_net(address).prefixlen}"


@dataclass
class _Net:
    name: str
    device: str  # the routers' interface on it
    prefixes: list[Network] = field(default_factory=list)

    def add(self, address: str) -> Network:
        net = _net(address)
        if net not in self.prefixes:
            self.prefixes.append(net)
        return net

    def holds(self, address: str) -> bool:
        return _net(address) in self.prefixes


def _refuse_forwarding(first: Config, dataplane: str) -> None:
    if first.network in ("direct", "tunnel") and dataplane != "ipvs":
        how = "direct routing" if first.network == "direct" else "tunnelling"
        raise LabError(f"network = {first.network}: the nft dataplane forwards by NAT only ({how} raises "
                       f"EINVAL: adapters/dataplane/nft.py); run it with --dataplane ipvs, on a kernel with IPVS")


def _servers(configs: list[Config]) -> dict[str, tuple[set[int], set[int], set[str], set[str]]]:
    """Real server address -> (TCP ports, UDP ports, names, VIPs of its virtuals)."""
    servers: dict[str, tuple[set[int], set[int], set[str], set[str]]] = {}
    for c in configs:
        for v in c.virtuals:
            members = [(s.address, s.port or v.port, {s.name, f"{v.name}/{s.name}"}) for s in v.servers if s.address]
            if v.sorry_server:
                members.append((v.sorry_server, v.sorry_port or v.port, {"sorry", f"{v.name}/sorry"}))
            for address, port, names in members:
                tcp, udp, known, vips = servers.setdefault(address, (set(), set(), set(), set()))
                ports = [port] + ([v.port] if c.network != "nat" else [])  # direct, tunnel: the VIP's port arrives
                (udp if v.protocol == "udp" else tcp).update(ports)
                known |= names
                if v.address:
                    vips.add(v.address)
    return servers


def plan(configs: list[Config], dataplane: str = "nft") -> Plan:
    """The network for `configs` (the first runs; the others are reloads to come), for the daemons'
    `dataplane`; LabError when the lab cannot build it."""
    first = configs[0]
    for c in configs:
        if (c.primary, c.backup, c.nat_router, c.network) != (first.primary, first.backup, first.nat_router,
                                                               first.network):
            raise LabError("a reload that moves the routers or nat_router, or changes network, "
                           "is not supported by the lab")
    if not first.primary:
        raise LabError("the lab needs primary in the config")
    _refuse_forwarding(first, dataplane)
    routers = ROUTERS if first.backup else ("primary",)
    pair = bool(first.backup and first.backup_active)
    if first.network == "nat" and pair and not first.nat_router:
        raise LabError("network = nat with a backup router needs nat_router: the real servers' replies "
                       "must follow the active router (the lab builds no other way back)")
    virtuals = [v for c in configs for v in c.virtuals]
    devs = devices(first)
    vip_devices = sorted({base(v.device) or "eth0" for v in virtuals if v.address} | {devs.public},
                         key=lambda d: (d != devs.public, d))
    if devs.server in vip_devices:
        raise LabError(f"the VIPs and the real servers share the interface {devs.server}: not supported by the lab")
    nets = [_Net("public" if i == 0 else f"vip{i}", d) for i, d in enumerate(vip_devices)]
    by_device = {n.device: n for n in nets}
    nets[0].add(first.primary)
    if first.backup:
        nets[0].add(first.backup)
    vips = sorted({v.address for v in virtuals if v.address} | ({first.nat_router} if first.nat_router else set()))
    for v in virtuals:
        if v.address:
            by_device[base(v.device) or "eth0"].add(v.address)
    server = _Net("server", devs.server)
    servers = _servers(configs)
    for address in servers:
        server.add(address)
    if first.nat_router:
        server.add(first.nat_router)
    for n in nets:
        clash = [str(p) for p in n.prefixes if p in server.prefixes]
        if clash:
            raise LabError(f"{clash[0]} holds both VIPs and real servers: the lab puts the real servers on a "
                           f"network of their own")
    for i, one in enumerate(nets):
        for other in nets[i + 1:]:
            clash = [str(p) for p in one.prefixes if p in other.prefixes]
            if clash:
                raise LabError(f"the VIP interfaces {one.device} and {other.device} share the network {clash[0]}: "
                               f"the lab gives each interface a network of its own")
    if first.network == "tunnel":
        v6 = [a for a in [*servers, *vips] if ipaddress.ip_address(a).version == 6]
        if v6:
            raise LabError(f"network = tunnel with IPv6 ({v6[0]}): the lab's tunnel real servers hold the VIPs "
                           f"on an IPv4 ipip device; IPv6 tunnelling is not built")
    private = _Net("private", devs.private) if devs.private else None
    if private:
        private.add(first.primary_private)  # type: ignore[arg-type]
        private.add(first.backup_private)  # type: ignore[arg-type]
    every = [*nets, server, *([private] if private else [])]
    used = {a for a in (first.primary, first.backup, first.primary_private, first.backup_private) if a}
    used |= set(vips) | set(servers)
    client = {str(p): _client_address(p, used) for n in nets for p in n.prefixes}
    configured = {r: {a for a in (first.address_of(r, "public"), first.address_of(r, "private")) if a}  # type: ignore[arg-type]
                  for r in routers}
    nodes = [Node("client", tuple(Iface(f"eth{i}", n.name, tuple(_cidr(client[str(p)]) for p in n.prefixes))
                                  for i, n in enumerate(nets)))]
    own: dict[tuple[str, str], str] = {}  # (router, prefix) -> address
    for r in routers:
        ifaces = []
        for n in every:
            addresses = []
            for p in n.prefixes:
                mine = [a for a in configured[r] if _net(a) == p]
                own[(r, str(p))] = mine[0] if mine else _free(p, used, OWN)
                if mine or n.name != "private":
                    addresses.append(_cidr(own[(r, str(p))]))
            ifaces.append(Iface(n.device, n.name, tuple(addresses)))
        nodes.append(Node(r, tuple(ifaces), forwards=True))
    gateway: dict[int, str] = {}  # family -> the servers' default route
    if first.network != "nat":
        gw_ifaces: list[Iface] = []
        for n in (nets[0], server):
            addresses = []
            for p in n.prefixes:
                a = _free(p, used, 249 if n is nets[0] else 254)
                addresses.append(_cidr(a))
                if n is server:
                    gateway[p.version] = a
            gw_ifaces.append(Iface(f"eth{len(gw_ifaces)}", n.name, tuple(addresses)))
        nodes.append(Node("gateway", tuple(gw_ifaces), forwards=True))
    elif first.nat_router:
        gateway[ipaddress.ip_address(first.nat_router).version] = first.nat_router
    else:  # a single director (or backup_active = 0): the primary's own address
        gateway = {p.version: own[("primary", str(p))] for p in server.prefixes}
    vip_device = {"nat": None, "direct": "lo", "tunnel": "tunl0"}[first.network]
    for address in sorted(servers, key=ipaddress.ip_address):
        tcp, udp, names, served = servers[address]
        family = ipaddress.ip_address(address).version
        if family not in gateway:
            raise LabError(f"real server {address} is IPv{family} but nat_router {first.nat_router} is not: "
                           f"its replies have no way back through the director")
        held = tuple(sorted(served, key=ipaddress.ip_address)) if vip_device else ()
        nodes.append(Node(f"srv-{address}", (Iface("eth0", "server", (_cidr(address),)),),
                          gateways=(gateway[family],), ports=tuple(sorted(tcp)), servers=tuple(sorted(names)),
                          udp_ports=tuple(sorted(udp)), vips=held, vip_device=vip_device))
    active = [v for v in first.virtuals if v.active and v.address and v.fwmark is None]
    targets = tuple(sorted({(str(v.address), v.port) for v in active if v.protocol == "tcp"}))
    udp_targets = tuple(sorted({(str(v.address), v.port) for v in active if v.protocol == "udp"}))
    primary_client = next(iter(client.values()))
    return Plan(tuple(n.name for n in every), tuple(nodes), primary_client, tuple(vips), targets, udp_targets,
                first.network, routers)


def _client_address(p: Network, used: set[str]) -> str:
    a = str(p.network_address + CLIENT)
    if a not in used:
        used.add(a)
        return a
    return _free(p, used, CLIENT - 1)


# ------------------------------------------------------------------ time scale


def _t(ms: int | None, factor: float) -> int | None:
    return None if ms is None else _ms(ms, factor)


def _ms(ms: int, factor: float) -> int:
    return max(1, round(ms * factor))


def scale_config(config: Config, factor: float) -> Config:
    """Every time in the config multiplied by `factor` (kernel timeouts and persistence stay)."""
    if factor == 1:
        return config
    virtuals = tuple(replace(v, timeout_ms=_ms(v.timeout_ms, factor), reentry_ms=round(v.reentry_ms * factor),
                             check_interval_ms=_t(v.check_interval_ms, factor)) for v in config.virtuals)
    return replace(config, keepalive_ms=_ms(config.keepalive_ms, factor), deadtime_ms=_ms(config.deadtime_ms, factor),
                   arp_interval_ms=_ms(config.arp_interval_ms, factor),
                   load_interval_ms=_ms(config.load_interval_ms, factor), virtuals=virtuals)


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
