"""What the lab builds from lvs.cf (issue 12): each network shape the configs
can say, as planned (adapters/lab/plan.py), what it refuses and why, the
new scenarios in the simulator, and real lab runs of a representative few.

Root is needed for the real runs: not root, or a tool missing, FAILS (never
skips), as tests/lab/test_lab.py.  Direct routing and tunnelling need
IPVS: tests/kernel/guest/test_lab_forwarding.py runs them with `shoal lab
--dataplane ipvs` in the kernel suite's guest; here they are planned, run
in the simulator and refused on nft.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from adapters import netns
from adapters.lab.plan import LabError, plan, scale_config
from adapters.lab.topology import Topology, lab_namespaces
from adapters.lab.world import LabWorld, daemon_config
from engine.config import parse
from engine.model import Config
from scenario.model import load

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
NEW = ["udp-server-down", "single-director", "two-vip-interfaces", "ipv6-takeover", "direct-routing-takeover",
       "tunnel-takeover", "load-monitor"]
# In both worlds in the test command (about 15 s each); direct routing and tunnelling in the kernel
# guest (tests/kernel/guest/test_lab_forwarding.py); all of them: scripts/sim_vs_lab.py.
REAL_RUNS = ["udp-server-down", "ipv6-takeover", "single-director", "two-vip-interfaces"]
SCALE = "0.25"
PYTHON = [sys.executable, "-m", "shoal"]


def config(name: str) -> Config:
    return load(SCENARIOS / f"{name}.toml").config


def cf(text: str) -> Config:
    return parse(text, "lvs.cf")


def own_namespaces(prefix: str) -> list[str]:
    return [n for n in lab_namespaces() if n.startswith(prefix)]


# ------------------------------------------------------------------ plans


BASE = """primary = 10.0.0.1
backup = 10.0.0.2
backup_active = 1
network = {network}
{extra}
virtual web {{
    address = {vip}
    port = 80
    server web1 {{
        address = {server}
    }}
}}
"""



def test_udp_servers_and_udp_client() -> None:
    p = plan([config("udp-server-down")])
    web1 = p.node("srv-10.1.0.11")
    assert (web1.ports, web1.udp_ports) == ((), (53,))
    assert (p.targets, p.udp_targets) == ((), (("10.0.0.100", 53),))


def test_single_director_without_nat_router() -> None:
    p = plan([config("single-director")])
    assert p.routers == ("primary",) and [n.name for n in p.nodes if n.name in ("primary", "backup")] == ["primary"]
    primary = p.node("primary")
    assert [(i.name, i.addresses) for i in primary.ifaces] == [("eth0", ("10.0.0.1/24",)),
                                                               ("eth1", ("10.1.0.253/24",))]
    assert {s.gateway for s in p.servers} == {"10.1.0.253"}, "the servers route back through the director itself"
    assert p.vips == ("10.0.0.100",)


def test_two_vip_interfaces() -> None:
    p = plan([config("two-vip-interfaces")])
    assert p.nets == ("public", "vip1", "server", "private")
    for r in ("primary", "backup"):
        assert [i.name for i in p.node(r).ifaces] == ["eth0", "eth3", "eth1", "eth2"]
    assert [i.addresses for i in p.node("primary").ifaces[:2]] == [("10.0.0.1/24",), ("10.2.0.253/24",)]
    assert [(i.name, i.net, i.addresses) for i in p.node("client").ifaces] == [
        ("eth0", "public", ("10.0.0.250/24",)), ("eth1", "vip1", ("10.2.0.250/24",))]
    assert p.targets == (("10.0.0.100", 80), ("10.2.0.100", 8080))


def test_ipv6() -> None:
    p = plan([config("ipv6-takeover")])
    assert p.client_address == "2001:db8::fa"
    assert [i.addresses for i in p.node("backup").ifaces] == [("2001:db8::2/64",), ("2001:db8:1::fc/64",),
                                                              ("fd00:168::2/64",)]
    assert {s.gateway for s in p.servers} == {"2001:db8:1::fe"}
    assert p.targets == (("2001:db8::100", 80),)


def test_dual_stack_public_network() -> None:
    """An IPv6 VIP beside IPv4 router addresses: the public network carries both, and each router
    gets an address of its own in the VIP's /64 (to reach the client from it)."""
    text = BASE.format(network="nat", extra="nat_router = 2001:db8:1::fe eth1:1", vip="2001:db8::100 eth0:1",
                       server="2001:db8:1::11")
    p = plan([cf(text)])
    assert p.node("primary").ifaces[0].addresses == ("10.0.0.1/24", "2001:db8::fd/64")
    assert p.node("client").ifaces[0].addresses == ("10.0.0.250/24", "2001:db8::fa/64")
    assert p.client_address == "10.0.0.250"


@pytest.mark.parametrize("name,device", [("direct-routing-takeover", "lo"), ("tunnel-takeover", "tunl0")])
def test_direct_routing_and_tunnel_on_ipvs(name: str, device: str) -> None:
    p = plan([config(name)], dataplane="ipvs")
    gateway = p.node("gateway")
    assert gateway.forwards and [i.net for i in gateway.ifaces] == ["public", "server"]
    gw_server = gateway.ifaces[1].addresses[0].split("/")[0]
    for s in p.servers:
        assert s.vips == ("10.0.0.100",) and s.vip_device == device
        assert s.gateway == gw_server, "replies bypass the routers"
    assert p.vips == ("10.0.0.100",) and p.network == config(name).network


def test_load_interval_scaled_and_read_from_the_lab_servers() -> None:
    c = config("load-monitor")
    assert c.load_interval_ms == 20_000
    assert scale_config(c, 0.25).load_interval_ms == 5_000
    lab = daemon_config(c, Path("/tmp/lab-x"))
    assert [v.load_command for v in lab.virtuals] == ["cat /tmp/lab-x/srv-%h.load"]
    assert daemon_config(config("single-director"), Path("/x")).virtuals == config("single-director").virtuals


# ------------------------------------------------------------------ refusals




NAT_ROUTER = "nat_router = 10.1.0.254 eth1:1"


@pytest.mark.parametrize("network,extra,vip,server,dataplane,reason", [
    ("direct", "", "10.0.0.100 eth0:1", "10.1.0.11", "nft",
     "network = direct: the nft dataplane forwards by NAT only (direct routing raises EINVAL"),
    ("tunnel", "", "10.0.0.100 eth0:1", "10.1.0.11", "nft",
     "network = tunnel: the nft dataplane forwards by NAT only (tunnelling raises EINVAL"),
    ("tunnel", "", "2001:db8::100 eth0:1", "2001:db8:1::11", "ipvs", "IPv6 tunnelling is not built"),
    ("nat", "", "10.0.0.100 eth0:1", "10.1.0.11", "nft", "network = nat with a backup router needs nat_router"),
    ("nat", NAT_ROUTER, "2001:db8::100 eth0:1", "2001:db8:1::11", "nft",
     "real server 2001:db8:1::11 is IPv6 but nat_router 10.1.0.254 is not"),
    ("nat", NAT_ROUTER, "10.1.0.100 eth0:1", "10.1.0.11", "nft", "10.1.0.0/24 holds both VIPs and real servers"),
])
def test_refused_with_the_reason(network: str, extra: str, vip: str, server: str, dataplane: str,
                                 reason: str) -> None:
    text = BASE.format(network=network, extra=extra, vip=vip, server=server)
    with pytest.raises(LabError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        plan([cf(text)], dataplane=dataplane)


def test_two_vip_interfaces_on_one_network_refused() -> None:
    text = BASE.format(network="nat", extra=NAT_ROUTER, vip="10.0.0.100 eth0:1", server="10.1.0.11")
    text += "virtual api {\n    address = 10.0.0.101 eth3:1\n    port = 81\n}\n"
    with pytest.raises(LabError, match="the VIP interfaces eth0 and eth3 share the network 10.0.0.0/24"):
        plan([cf(text)])


def test_shoal_lab_refuses_direct_routing_on_nft_exit_2() -> None:
    done = subprocess.run([*PYTHON, "lab", str(SCENARIOS / "direct-routing-takeover.toml"), "--time-scale", SCALE],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "shoal lab: network = direct: the nft dataplane forwards by NAT only" in done.stderr
    assert "EINVAL" in done.stderr and "--dataplane ipvs" in done.stderr


# ------------------------------------------------------------------ both worlds


@pytest.mark.parametrize("name", NEW)
def test_new_scenario_passes_in_the_simulator(name: str) -> None:
    done = subprocess.run([*PYTHON, "sim", str(SCENARIOS / f"{name}.toml")], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr


def test_single_director_network_for_real() -> None:
    """The single director's namespaces: no backup, the servers' default route via the director's
    own address, which forwards; the lab world shows the missing backup as down."""
    c = config("single-director")
    with Topology(plan([c]), tag="t-single") as topo, tempfile.TemporaryDirectory() as tmp:
        assert not [n for n in own_namespaces(topo.prefix) if n.endswith("-backup")]
        routes = json.loads(netns.ip("-n", topo.ns("srv-10.1.0.11"), "-j", "route", "show", "default").stdout)
        assert [r["gateway"] for r in routes] == ["10.1.0.253"]
        forward = netns.run_in(topo.ns("primary"), ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip()
        assert forward == "1"
        world = LabWorld(topo, c, Path(tmp), 0.5)
        try:
            view = world.router_view("backup")
            assert (view.daemon, view.host_up, view.role, view.vips) == (False, False, "down", frozenset())
            with pytest.raises(LabError, match="no backup router"):
                world.start_daemon("backup")
        finally:
            world.close()
    assert not own_namespaces(topo.prefix)


def test_client_neighbour_table_ipv6() -> None:
    """`vip_owner` reads the client's neighbour entry for an IPv6 VIP as for an IPv4 one (the
    entry an unsolicited NA leaves), mapped back to the router with that MAC."""
    c = config("ipv6-takeover")
    with Topology(plan([c]), tag="t-neigh6") as topo, tempfile.TemporaryDirectory() as tmp:
        world = LabWorld(topo, c, Path(tmp), 0.5)
        try:
            mac = json.loads(netns.ip("-n", topo.ns("backup"), "-j", "link", "show", "eth0").stdout)[0]["address"]
            assert world.arp_holder("2001:db8::100") == "nobody"
            netns.ip("-n", topo.ns("client"), "-6", "neigh", "replace", "2001:db8::100", "lladdr", mac, "dev", "eth0")
            assert world.arp_holder("2001:db8::100") == "backup"
        finally:
            world.close()
    assert not own_namespaces(topo.prefix)


@pytest.mark.parametrize("name", REAL_RUNS)
def test_new_scenario_passes_in_both_worlds(name: str) -> None:
    """The lab builds it, and the lab and the simulator judge every expectation alike
    (adapters/lab/compare.py); the routers' journals replay identically."""
    from adapters.lab import compare

    if os.geteuid() != 0:
        pytest.fail("shoal lab needs root (network namespaces)")
    path = SCENARIOS / f"{name}.toml"
    before = set(lab_namespaces())
    lab = compare.lab(path, float(SCALE), timeout_s=180)
    sim = compare.sim(path)
    assert lab.code == 0, lab.output[-6000:]
    assert sim.code == 0, sim.output[-3000:]
    assert len(lab.verdicts) == len(sim.verdicts) == len(load(path).expects), (lab.verdicts, sim.verdicts)
    assert all(v.startswith("ok  ") for v in lab.verdicts), lab.verdicts
    assert compare.first_difference(sim, lab) == ""
    routers = ("primary",) if name == "single-director" else ("primary", "backup")
    for router in routers:
        assert f"{router:<8} journal replayed identically: " in lab.output, lab.output[-3000:]
    assert not set(lab_namespaces()) - before, "the lab left namespaces behind"


def test_addresses_are_valid() -> None:
    for name in NEW:
        p = plan([config(name)], dataplane="ipvs")
        for node in p.nodes:
            for iface in node.ifaces:
                for a in iface.addresses:
                    ipaddress.ip_interface(a)
