"""Traffic through IPVS (issue 5): real HTTP requests, balanced by the guest's kernel.

The director's IPVS table is programmed only through shoal's adapter
(`adapters.dataplane.ipvs.Ipvs(netns=director)` applying engine.events
operations); the topology is `netlab.Lab` (diagram there).  Every request
is a real HTTP request from the client namespace, on a new TCP connection
unless said otherwise, answered by a real server that names itself, the
address the request reached it at and the client's address.  What this
proves, on a real kernel:

- NAT (masq): the client reaches the VIP on the director; the real servers
  (default route via the director) see the request at their own address
  with the client's address as source, and the replies go back through
  IPVS (its OutPkts counter grows).  rr gives each of three servers exactly
  its share; wrr with weights 3:1 gives 3:1.
- Direct routing (route): the real servers are on the director's LAN with
  the VIP on `lo` and ARP suppressed; they see the request addressed to the
  VIP, and the replies go straight to the client: the director drops every
  packet whose source is the VIP (its nft counter stays at 0), yet every
  request is answered.  Balanced 1:1.
- Tunnel (ipip): the real servers are one router away, with the VIP on
  `tunl0` and rp_filter off; they see the request addressed to the VIP
  (decapsulated), and the replies go through their own router, not the
  director (same drop rule).  Balanced 1:1.
- Quiesce: EditDest to weight 0 sends a server no new connection, while a
  keep-alive connection already open to it goes on being answered by it;
  weight 1 again and it gets its share again.
- DelDest takes a server out (no further request reaches it); AddDest puts
  it back (it gets its share again).
- Connection counters: `Ipvs.connections()` gives each server the
  ActiveConn and InActConn `ipvsadm -Ln` shows, and its connections and
  packets (issue 11).

rr and wrr are deterministic in IPVS, so the counts are exact.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from adapters.dataplane.ipvs import Ipvs
from engine.events import AddDest, AddService, DelDest, DelService, EditDest
from engine.table import Dest, DestKey, Forward, Service, ServiceKey
from tests.kernel.guest import netlab
from tests.kernel.guest.netlab import CLIENT, DR_SERVERS, DR_VIP, NAT_SERVERS, NAT_VIP, PORT, TUN_SERVERS, TUN_VIP

FORWARD_WORD = {"masq": "Masq", "route": "Route", "tunnel": "Tunnel"}  # ipvsadm -Ln


@pytest.fixture(scope="module")
def lab() -> Iterator[netlab.Lab]:
    with netlab.Lab() as built:
        yield built


@pytest.fixture(scope="module")
def dp(lab: netlab.Lab) -> Iterator[Ipvs]:
    ipvs = Ipvs(netns=lab.director)
    try:
        yield ipvs
    finally:
        ipvs.close()


class Program:
    """One service on the director, written through the adapter, removed at the end."""

    def __init__(self, dp: Ipvs, lab: netlab.Lab) -> None:
        self.dp, self.lab = dp, lab
        self.keys: list[ServiceKey] = []

    def service(self, vip: str, scheduler: str, servers: dict[str, str], forward: Forward,
                weights: dict[str, int] | None = None) -> ServiceKey:
        key = ServiceKey("tcp", vip, PORT)
        dests = [Dest(DestKey(address, PORT), (weights or {}).get(name, 1), forward, name)
                 for name, address in servers.items()]
        self.dp.apply([AddService(Service(key, scheduler)), *(AddDest(key, d) for d in dests)])
        self.keys.append(key)
        held = self.dp.read()[key]
        assert held.service.scheduler == scheduler
        assert dict(held.dests) == {d.key: d for d in dests}, held.dests
        listing = self.lab.ipvsadm("-Ln", "-t", f"{vip}:{PORT}")
        for d in dests:
            assert re.search(rf"-> {re.escape(str(d.key))}\s+{FORWARD_WORD[forward]}\s+{d.weight}\s", listing), listing
        return key

    def close(self) -> None:
        self.dp.apply([DelService(key) for key in self.keys])
        assert not self.dp.read(), "the director's table is not empty after the test"


@pytest.fixture
def program(dp: Ipvs, lab: netlab.Lab) -> Iterator[Program]:
    prog = Program(dp, lab)
    try:
        yield prog
    finally:
        prog.close()


def stats(lab: netlab.Lab, vip: str, conns: int) -> dict[str, int]:
    """The service's counters as `ipvsadm -Ln --stats --exact` prints them, once
    they count `conns` connections: the kernel (6.1) copies its per-CPU
    counters into what it reports only every 2 s, in its rate estimator."""
    deadline = time.monotonic() + 8.0
    while True:
        out = lab.ipvsadm("-Ln", "--stats", "--exact", "-t", f"{vip}:{PORT}")
        line = next((f for f in map(str.split, out.splitlines()) if f[:2] == ["TCP", f"{vip}:{PORT}"]), None)
        assert line, f"no service line for {vip} in:\n{out}"
        seen = dict(zip(("conns", "inpkts", "outpkts", "inbytes", "outbytes"), map(int, line[2:7])))
        if seen["conns"] >= conns or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


def dropped(lab: netlab.Lab) -> int:
    rule = lab.dropped_at_director()
    match = re.search(r"counter packets (\d+)", rule)
    assert match, rule
    return int(match.group(1))


# ------------------------------------------------------------------ NAT


def test_nat_rr_each_server_its_share(lab: netlab.Lab, program: Program) -> None:
    program.service(NAT_VIP, "rr", NAT_SERVERS, "masq")
    counts, replies = lab.count(NAT_VIP, 30)
    assert counts == {"rn1": 10, "rn2": 10, "rn3": 10}, counts
    for r in replies:  # destination rewritten to the real server, source kept
        assert (r.local, r.peer) == (NAT_SERVERS[r.server], CLIENT), r
    seen = stats(lab, NAT_VIP, 30)
    assert seen["conns"] == 30 and seen["outpkts"] > 0, seen  # replies came back through IPVS


def test_nat_wrr_weights_3_to_1(lab: netlab.Lab, program: Program) -> None:
    pair = {k: NAT_SERVERS[k] for k in ("rn1", "rn2")}
    program.service(NAT_VIP, "wrr", pair, "masq", weights={"rn1": 3, "rn2": 1})
    counts, _ = lab.count(NAT_VIP, 40)
    assert counts == {"rn1": 30, "rn2": 10}, counts


# ------------------------------------------------------------------ direct routing, tunnel


@pytest.mark.parametrize("vip, servers, forward", [
    (DR_VIP, DR_SERVERS, "route"),
    (TUN_VIP, TUN_SERVERS, "tunnel"),
], ids=["route", "tunnel"])
def test_replies_go_straight_to_the_client(lab: netlab.Lab, program: Program, vip: str,
                                           servers: dict[str, str], forward: Forward) -> None:
    program.service(vip, "rr", servers, forward)
    counts, replies = lab.count(vip, 20)
    assert counts == {name: 10 for name in servers}, counts
    for r in replies:  # the packet reached the real server still addressed to the VIP
        assert (r.local, r.peer) == (vip, CLIENT), r
    # Every packet from the VIP entering the director is dropped, yet every
    # request was answered: the replies did not pass through the director.
    assert dropped(lab) == 0, lab.dropped_at_director()
    seen = stats(lab, vip, 20)
    assert seen["conns"] == 20 and seen["inpkts"] > 0 and seen["outpkts"] == 0, seen


# ------------------------------------------------------------------ weight 0, removal


def test_weight_0_quiesces_but_an_open_connection_keeps_working(lab: netlab.Lab, program: Program,
                                                                 dp: Ipvs) -> None:
    key = program.service(NAT_VIP, "rr", NAT_SERVERS, "masq")
    opened = [lab.keep_alive(NAT_VIP) for _ in range(3)]  # rr: one on each server
    try:
        kept = {c.get().server: c for c in opened}
        assert sorted(kept) == ["rn1", "rn2", "rn3"], sorted(kept)
        rn1 = Dest(DestKey(NAT_SERVERS["rn1"], PORT), 0, "masq", "rn1")
        dp.apply([EditDest(key, rn1)])
        assert dp.read()[key].dests[rn1.key].weight == 0

        counts, _ = lab.count(NAT_VIP, 30)
        assert counts == {"rn2": 15, "rn3": 15}, counts
        answered = [kept["rn1"].get().server for _ in range(3)]
        assert answered == ["rn1"] * 3, answered
        assert re.search(rf"-> {NAT_SERVERS['rn1']}:{PORT}\s+Masq\s+0\s+1\s", lab.ipvsadm("-Ln")), \
            "rn1 should show weight 0 and one active connection"

        dp.apply([EditDest(key, Dest(rn1.key, 1, "masq", "rn1"))])
        counts, _ = lab.count(NAT_VIP, 30)
        assert counts == {"rn1": 10, "rn2": 10, "rn3": 10}, counts
        assert kept["rn1"].get().server == "rn1"
    finally:
        for c in opened:
            c.close()


def test_del_dest_takes_a_server_out_and_add_dest_puts_it_back(lab: netlab.Lab, program: Program,
                                                               dp: Ipvs) -> None:
    key = program.service(NAT_VIP, "rr", NAT_SERVERS, "masq")
    rn2 = Dest(DestKey(NAT_SERVERS["rn2"], PORT), 1, "masq", "rn2")
    dp.apply([DelDest(key, rn2.key)])
    assert rn2.key not in dp.read()[key].dests
    counts, _ = lab.count(NAT_VIP, 30)
    assert counts == {"rn1": 15, "rn3": 15}, counts

    dp.apply([AddDest(key, rn2)])
    counts, _ = lab.count(NAT_VIP, 30)
    assert counts == {"rn1": 10, "rn2": 10, "rn3": 10}, counts


# ------------------------------------------------------------------ connection counters


def _ipvsadm_conns(lab: netlab.Lab, vip: str) -> dict[str, tuple[int, int]]:
    """{server address: (ActiveConn, InActConn)} as `ipvsadm -Ln` prints them."""
    out = lab.ipvsadm("-Ln", "-t", f"{vip}:{PORT}")
    found = re.findall(r"-> ([\d.]+):\d+\s+\w+\s+\d+\s+(\d+)\s+(\d+)", out)
    return {address: (int(active), int(inactive)) for address, active, inactive in found}


def test_connections_are_the_kernels_per_server_counters(lab: netlab.Lab, program: Program, dp: Ipvs) -> None:
    key = program.service(NAT_VIP, "rr", NAT_SERVERS, "masq")
    opened = [lab.keep_alive(NAT_VIP) for _ in range(3)]  # rr: one established connection on each server
    try:
        assert sorted(c.get().server for c in opened) == ["rn1", "rn2", "rn3"]
        before = _ipvsadm_conns(lab, NAT_VIP)
        counted = dp.connections()
        after = _ipvsadm_conns(lab, NAT_VIP)
        assert counted is not None
        for address in NAT_SERVERS.values():
            c = counted[(key, DestKey(address, PORT))]
            assert c.active == 1 == before[address][0], (address, c, before)
            assert c.inactive in (before[address][1], after[address][1]), (address, c, before, after)
        deadline = time.monotonic() + 8.0  # the kernel folds its per-CPU stats in every 2 s
        while not all(counted[(key, DestKey(a, PORT))].total >= 1 for a in NAT_SERVERS.values()):
            assert time.monotonic() < deadline, counted
            time.sleep(0.5)
            counted = dp.connections() or {}
        assert all(counted[(key, DestKey(a, PORT))].inpkts > 0 for a in NAT_SERVERS.values()), counted
    finally:
        for c in opened:
            c.close()
