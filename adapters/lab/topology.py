"""Namespaces, veths and bridges for a `Plan`: created, and always removed.

Nothing is created in the host's own namespace: the bridges live in a
namespace of their own (`<prefix>net`), each node's interface is one end of
a veth pair whose other end is a port of its network's bridge there.
Removing the namespaces removes everything else with them.

The heartbeat faults (partitions, loss) are nftables rules in the bridges'
namespace (`bridge` family, forward hook), so the routers' own nftables
(the daemons' dataplane) are never touched by the lab.

With the ipvs dataplane each router's IPVS table (and its connection sync
daemon) is its namespace's own; it goes away with the namespace.

Per node, besides its interfaces and addresses (IPv6 ones without DAD):
its default routes (one per family); forwarding on for the routers and
the gateway (whose reverse-path filter is off: the VIPs' replies reach it
from the server side); on the client, neighbour entries that any
gratuitous ARP or unsolicited NA may override and create (`locktime 0`,
`arp_accept`, `accept_untracked_na`); on a direct-routing or tunnel real
server, its VIPs on `lo` or `tunl0` (`modprobe ipip` if the kernel has
not made one), `arp_ignore = 1`, `arp_announce = 2` and no reverse-path
filter.  Sysctls are written through /proc from a thread inside the
namespace (`netns.write_sysctl`: no process each, which counts under
qemu's software emulation).

Namespaces, veths, bridges, addresses and commands inside them are
adapters/netns.py's (the repository's one namespace helper); a command
that fails here is a `LabError` (`shoal lab` exits 2 with it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator

from adapters import netns
from adapters.lab.plan import LabError, Node, Plan

PREFIX = "shoal-lab-"
BRIDGES = {"public": "br-pub", "private": "br-prv", "server": "br-srv"}
LAB_TABLE = "shoal_lab"


def port(index: int, net: str) -> str:
    """The bridge port (in the bridges' namespace) of the `index`th node's interface on network `net`."""
    return f"n{index}-{net[:4]}"


def bridge(net: str) -> str:
    """The bridge of network `net` (in the bridges' namespace)."""
    return BRIDGES.get(net, f"br-{net}")


@contextlib.contextmanager
def lab_errors() -> Iterator[None]:
    """A failed namespace command, said as a LabError."""
    try:
        yield
    except netns.NetnsCommandFailed as e:
        raise LabError(str(e)) from None


def preflight(dataplane: str = "nft") -> None:
    """Root, the tools and (for `ipvs`) the kernel's IPVS, or LabError saying what is missing."""
    if os.geteuid() != 0:
        raise LabError("shoal lab needs root (network namespaces, veths, nftables)")
    tools = {"ip": "iproute2", "nft": "nftables", **({"ipvsadm": "ipvsadm"} if dataplane == "ipvs" else {})}
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise LabError(f"shoal lab needs {' and '.join(missing)} (apt-get install {' '.join(tools[t] for t in missing)})")
    if dataplane == "ipvs" and not os.path.exists("/proc/net/ip_vs"):
        raise LabError("shoal lab --dataplane ipvs needs the kernel's IPVS (modprobe ip_vs); "
                       "this kernel has none loaded")


def lab_namespaces() -> list[str]:
    """Every lab namespace on this host (any run's)."""
    return netns.listed(PREFIX)


class Topology:
    """`with Topology(plan) as topo:` builds the network; leaving removes it."""

    def __init__(self, plan: Plan, tag: str | None = None) -> None:
        self.plan = plan
        self.prefix = f"{PREFIX}{tag or os.getpid()}-"
        self.net = netns.Topology(self.prefix)  # what it made, removed by `remove`

    def ns(self, node: str) -> str:
        return self.prefix + node

    @property
    def net_ns(self) -> str:
        return self.prefix + "net"

    def __enter__(self) -> Topology:
        try:
            self.build()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def build(self) -> None:
        with lab_errors():
            self._build()

    def _build(self) -> None:
        net = self.net
        net.namespace("net")
        for name in self.plan.nets:
            net.bridge(self.net_ns, bridge(name))
        for index, node in enumerate(self.plan.nodes):
            ns = net.namespace(node.name)
            for iface in node.ifaces:
                net.veth(ns, iface.name, self.net_ns, port(index, iface.net), bridge=bridge(iface.net))
                for address in iface.addresses:
                    net.address(ns, iface.name, address)
            for gateway in node.gateways:
                netns.ip("-n", ns, *(["-6"] if ":" in gateway else []), "route", "add", "default", "via", gateway)
            if node.forwards:
                self.sysctls(node.name, {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"})
            if node.name == "gateway":  # replies from the VIPs arrive from the server side: no reverse-path check
                self.sysctls(node.name, {f"net.ipv4.conf.{n}.rp_filter": "0"
                                         for n in ("all", "default", *(i.name for i in node.ifaces))})
            if node.vip_device:
                self._hold_vips(node)
            if node.name == "client":
                for iface in node.ifaces:
                    self.sysctls(node.name, {
                        f"net.ipv4.neigh.{iface.name}.locktime": "0",
                        # a gratuitous ARP (unsolicited NA) may create the entry too: a client that tried
                        # the VIP before anyone held it does not wait out a FAILED neighbour entry
                        f"net.ipv4.conf.{iface.name}.arp_accept": "1",
                        f"net.ipv6.conf.{iface.name}.accept_untracked_na": "1"})
        self.set_heartbeat_rules([])

    def _hold_vips(self, node: Node) -> None:
        """A direct-routing or tunnel real server: its virtuals' VIPs on a device that answers no
        ARP (lo, with arp_ignore and arp_announce, as LVS-DR sites set them; or the ipip device
        `tunl0`, where the director's encapsulated packets arrive)."""
        ns = self.ns(node.name)
        device = node.vip_device or "lo"
        if device == "tunl0":
            if netns.ip("-n", ns, "link", "show", "tunl0", check=False).returncode != 0:
                netns.run_in(self.net_ns, ["modprobe", "ipip"], check=False, timeout_s=None)
                if netns.ip("-n", ns, "link", "show", "tunl0", check=False).returncode != 0:
                    netns.ip("-n", ns, "link", "add", "tunl0", "type", "ipip", check=False)
            if netns.ip("-n", ns, "link", "show", "tunl0", check=False).returncode != 0:
                raise LabError("network = tunnel: the real servers need an ipip device (modprobe ipip), "
                               "this kernel has none")
            netns.ip("-n", ns, "link", "set", "tunl0", "up")
        for vip in node.vips:
            netns.ip("-n", ns, "addr", "add", f"{vip}/{128 if ':' in vip else 32}", "dev", device,
                     *(["nodad"] if ":" in vip else []))
        names = ("all", "default", device, *(i.name for i in node.ifaces))
        self.sysctls(node.name, {**{f"net.ipv4.conf.{n}.arp_ignore": "1" for n in names},
                                 **{f"net.ipv4.conf.{n}.arp_announce": "2" for n in names},
                                 **{f"net.ipv4.conf.{n}.rp_filter": "0" for n in names}})

    def sysctls(self, node: str, values: dict[str, str]) -> None:
        """Net sysctls in a node's namespace, written through /proc (no process each); a key this
        kernel lacks is a LabError naming it."""
        for key, value in values.items():
            try:
                netns.write_sysctl(self.ns(node), key, value)
            except OSError as e:
                raise LabError(f"sysctl {key} in {node}: {e.strerror}") from None

    def sysctl(self, node: str, key: str, value: str) -> None:
        with lab_errors():
            netns.run_in(self.ns(node), ["sysctl", "-qw", f"{key}={value}"], timeout_s=None)

    def remove(self) -> None:
        self.net.close()

    # ------------------------------------------------------------ faults

    def links(self, node: str, up: bool, except_: set[str] | frozenset[str] = frozenset()) -> None:
        for iface in self.plan.node(node).ifaces:
            if iface.name not in except_:
                self.link(node, iface.name, up)

    def link(self, node: str, device: str, up: bool) -> None:
        with lab_errors():
            netns.ip("-n", self.ns(node), "link", "set", device, "up" if up else "down")

    def flush_router(self, node: str, keep: set[str], ipvs: bool = False) -> None:
        """A router host's boot: only the lab's own addresses, no nftables (with `ipvs`: an
        empty IPVS table and no connection sync daemon either)."""
        ns = self.ns(node)
        with lab_errors():
            data = json.loads(netns.ip("-n", ns, "-j", "addr", "show").stdout or "[]")
            for link in data:
                for a in link.get("addr_info", []):
                    if a.get("family") in ("inet", "inet6") and a.get("scope") != "link" and a["local"] not in keep:
                        netns.ip("-n", ns, "addr", "del", f"{a['local']}/{a['prefixlen']}", "dev", link["ifname"],
                                 check=False)
            netns.run_in(ns, ["nft", "flush", "ruleset"], timeout_s=None)
            if ipvs:
                netns.run_in(ns, ["ipvsadm", "-C"], timeout_s=None)
                for state in ("master", "backup"):
                    netns.run_in(ns, ["ipvsadm", "--stop-daemon", state], check=False, timeout_s=None)

    def addresses(self, node: str) -> frozenset[str]:
        """The IPv4/IPv6 addresses configured in a node's namespace."""
        out = netns.ip("-n", self.ns(node), "-j", "addr", "show", check=False).stdout
        data = json.loads(out or "[]")
        return frozenset(a["local"] for link in data for a in link.get("addr_info", []))

    def set_heartbeat_rules(self, rules: list[str]) -> None:
        """Replace the lab's bridge rules with `rules` (nft rule statements)."""
        body = "\n".join(f"    {r}" for r in rules)
        script = (f"table bridge {LAB_TABLE} {{}}\ndelete table bridge {LAB_TABLE}\n"
                  f"table bridge {LAB_TABLE} {{\n  chain forward {{\n"
                  f"    type filter hook forward priority 0; policy accept;\n{body}\n  }}\n}}\n")
        with lab_errors():
            netns.run_in(self.net_ns, ["nft", "-f", "-"], input=script, timeout_s=None)
