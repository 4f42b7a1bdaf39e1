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
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from adapters.lab.plan import LabError, Plan

PREFIX = "shoal-lab-"
BRIDGES = {"public": "br-pub", "private": "br-prv", "server": "br-srv"}
LAB_TABLE = "shoal_lab"


def run(*args: str, check: bool = True, input: str | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, input=input)
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


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
    out = run("ip", "-j", "netns", "list", check=False).strip()
    return [n["name"] for n in json.loads(out or "[]") if n["name"].startswith(PREFIX)]


class Topology:
    """`with Topology(plan) as topo:` builds the network; leaving removes it."""

    def __init__(self, plan: Plan, tag: str | None = None) -> None:
        self.plan = plan
        self.prefix = f"{PREFIX}{tag or os.getpid()}-"
        self.created: list[str] = []

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

    def _add_ns(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self.created.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")

    def build(self) -> None:
        self._add_ns(self.net_ns)
        for net in self.plan.nets:
            br = BRIDGES[net]
            run("ip", "-n", self.net_ns, "link", "add", br, "type", "bridge")
            run("ip", "-n", self.net_ns, "link", "set", br, "up")
        for index, node in enumerate(self.plan.nodes):
            ns = self.ns(node.name)
            self._add_ns(ns)
            for iface in node.ifaces:
                peer = f"n{index}-{iface.net[:3]}"
                run("ip", "-n", ns, "link", "add", iface.name, "type", "veth", "peer", "name", peer,
                    "netns", self.net_ns)
                run("ip", "-n", self.net_ns, "link", "set", peer, "master", BRIDGES[iface.net], "up")
                for address in iface.addresses:
                    run("ip", "-n", ns, "addr", "add", address, "dev", iface.name)
                run("ip", "-n", ns, "link", "set", iface.name, "up")
            if node.gateway:
                run("ip", "-n", ns, "route", "add", "default", "via", node.gateway)
            if node.name in ("primary", "backup"):
                self.sysctl(node.name, "net.ipv4.ip_forward", "1")
            if node.name == "client":
                for iface in node.ifaces:
                    self.sysctl(node.name, f"net.ipv4.neigh.{iface.name}.locktime", "0")
                    # a gratuitous ARP may create the entry too: a client that tried the VIP
                    # before anyone held it does not wait out a FAILED neighbour entry
                    self.sysctl(node.name, f"net.ipv4.conf.{iface.name}.arp_accept", "1")
        self.set_heartbeat_rules([])

    def sysctl(self, node: str, key: str, value: str) -> None:
        run("ip", "netns", "exec", self.ns(node), "sysctl", "-qw", f"{key}={value}")

    def remove(self) -> None:
        for name in reversed(self.created):
            run("ip", "netns", "del", name, check=False)
        self.created.clear()

    # ------------------------------------------------------------ faults

    def links(self, node: str, up: bool) -> None:
        for iface in self.plan.node(node).ifaces:
            run("ip", "-n", self.ns(node), "link", "set", iface.name, "up" if up else "down")

    def flush_router(self, node: str, keep: set[str], ipvs: bool = False) -> None:
        """A router host's boot: only the lab's own addresses, no nftables (with `ipvs`: an
        empty IPVS table and no connection sync daemon either)."""
        data = json.loads(run("ip", "-n", self.ns(node), "-j", "addr", "show") or "[]")
        for link in data:
            for a in link.get("addr_info", []):
                if a.get("family") == "inet" and a["local"] not in keep:
                    run("ip", "-n", self.ns(node), "addr", "del", f"{a['local']}/{a['prefixlen']}",
                        "dev", link["ifname"], check=False)
        run("ip", "netns", "exec", self.ns(node), "nft", "flush", "ruleset")
        if ipvs:
            run("ip", "netns", "exec", self.ns(node), "ipvsadm", "-C")
            for state in ("master", "backup"):
                run("ip", "netns", "exec", self.ns(node), "ipvsadm", "--stop-daemon", state, check=False)

    def addresses(self, node: str) -> frozenset[str]:
        """The IPv4/IPv6 addresses configured in a node's namespace."""
        out = run("ip", "-n", self.ns(node), "-j", "addr", "show", check=False)
        data = json.loads(out or "[]")
        return frozenset(a["local"] for link in data for a in link.get("addr_info", []))

    def set_heartbeat_rules(self, rules: list[str]) -> None:
        """Replace the lab's bridge rules with `rules` (nft rule statements)."""
        body = "\n".join(f"    {r}" for r in rules)
        script = (f"table bridge {LAB_TABLE} {{}}\ndelete table bridge {LAB_TABLE}\n"
                  f"table bridge {LAB_TABLE} {{\n  chain forward {{\n"
                  f"    type filter hook forward priority 0; policy accept;\n{body}\n  }}\n}}\n")
        run("ip", "netns", "exec", self.net_ns, "nft", "-f", "-", input=script)
