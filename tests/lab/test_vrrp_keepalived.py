"""A shoal router and a keepalived router as one VRRP pair, on the lab's namespaces (issue 14).

One router runs `shoal run` (heartbeat_protocol = vrrp), the other Debian's
keepalived (adapters/lab/keepalived.py writes its keepalived.conf from the
same lvs.cf).  Each case walks a pair through start-up, a crash of the
master, its return (with or without preemption) and a clean stop, and
says what it saw the other implementation do: its state from its log or
status, the VIP on its interface, and the client namespace's neighbour
entry for the VIP (moved by the gratuitous ARPs of whoever took over).
Both ways (shoal as the higher priority, and keepalived), VRRPv2 and v3,
IPv4 and IPv6, multicast and unicast (`vrrp_unicast`, keepalived's
`unicast_peer`); and equal priorities: two masters (a healed cut), the
higher address keeps the role.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from adapters.lab.keepalived import Keepalived
from adapters.lab.world import LabWorld, open_world
from engine.config import parse
from engine.model import Config
from scenario.model import Fault

V4 = dict(primary="10.0.0.1", backup="10.0.0.2", vip="10.0.0.100", nat="10.1.0.254", net="10.1.0")
V6 = dict(primary="2001:db8::1", backup="2001:db8::2", vip="2001:db8::100", nat="2001:db8:1::fe", net="2001:db8:1:")


def lvs_cf(family: int, version: int, preempt: bool, keepalive: float, priority: int | None = None,
           unicast: bool = False) -> Config:
    a = V4 if family == 4 else V6
    sep = "." if family == 4 else ":"
    text = f"""serial_no = 1
primary = {a['primary']}
backup = {a['backup']}
backup_active = 1
heartbeat_protocol = vrrp
vrrp_version = {version}
virtual_router_id = 51
keepalive = {keepalive:g}
preempt = {int(preempt)}
vrrp_unicast = {int(unicast)}
{f'priority = {priority}' if priority else ''}
network = nat
nat_router = {a['nat']} eth1:1
virtual web {{
    address = {a['vip']} eth0:1
    port = 80
    scheduler = wlc
    timeout = 1
    reentry = 2
    server web1 {{
        address = {a['net']}{sep}11
    }}
}}
"""
    return parse(text, "lvs.cf")


class Pair:
    """The lab with shoal on `shoal_on` and keepalived on the other router."""

    def __init__(self, world: LabWorld, shoal_on: str, priority: int | None = None) -> None:
        self.world, self.shoal_on = world, shoal_on
        self.ka_on = "backup" if shoal_on == "primary" else "primary"
        self.ka = Keepalived(world, self.ka_on, priority)
        self.vip = next(v.address for v in world.config.virtuals if v.address)

    def start(self, name: str) -> None:
        if name == self.shoal_on:
            self.world.wait_daemon(self.world.start_daemon(name))
        else:
            self.ka.start()

    def master(self, name: str) -> bool:
        """`name` is master, as it says itself (shoal's status, keepalived's log) and holds the VIP."""
        if name == self.shoal_on:
            says = self.world.status(name).get("role") == "active"
        else:
            says = self._ka_last_state() == "MASTER"
        return says and self.vip in self.world.vips(name)

    def backup(self, name: str) -> bool:
        if name == self.shoal_on:
            says = self.world.status(name).get("role") == "standby"
        else:
            says = self._ka_last_state() == "BACKUP"
        return says and self.vip not in self.world.vips(name)

    def _ka_last_state(self) -> str:
        log = self.ka.log()
        last = max(("MASTER", "BACKUP"), key=lambda s: log.rfind(f"Entering {s} STATE"))
        return last if f"Entering {last} STATE" in log else ""

    def crash(self, name: str) -> None:
        """The host dies: its VRRP speaker killed, its links down."""
        if name != self.shoal_on:
            self.ka.kill()
        self.world.apply(Fault(0, "crash", name))  # the daemon killed (if shoal's), the links down

    def boot(self, name: str) -> None:
        """The host boots: only its own addresses, links up, its VRRP speaker started."""
        self.world.boot_host(name)
        self.start(name)

    def stop(self, name: str) -> None:
        """A clean stop: SIGTERM (a master says priority 0)."""
        if name == self.shoal_on:
            daemon = self.world.daemon(name)
            assert daemon is not None
            daemon.stop()
        else:
            self.ka.stop()

    def logs(self) -> str:
        return f"--- keepalived on {self.ka_on}\n{self.ka.log()[-3000:]}\n--- shoal on {self.shoal_on}\n" \
               f"{self.world.log_tail(self.shoal_on, 40)}"


@contextmanager
def pair(config: Config, shoal_on: str, priority: int | None = None) -> Iterator[Pair]:
    with open_world([config], 1.0, tag="t-ka") as world:
        world.start_servers()
        world.start_client(rate=20.0)  # its connections make the client's neighbour entry (IPv6 takes no untracked NA)
        p = Pair(world, shoal_on, priority)
        try:
            yield p
        finally:
            p.ka.kill()


def wait(p: Pair, what: str, holds: Callable[[], bool], timeout_s: float = 15.0) -> float:
    start = time.monotonic()
    while not holds():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"not within {timeout_s:g} s: {what}\n{p.logs()}")
        time.sleep(0.05)
    return time.monotonic() - start


CASES = [  # shoal's router (the primary has priority 150, the backup 100), VRRP version, family, preempt, unicast
    pytest.param("primary", 3, 4, True, False, id="shoal-150-keepalived-100-v3-ipv4-preempt"),
    pytest.param("backup", 2, 4, False, False, id="keepalived-150-shoal-100-v2-ipv4"),
    pytest.param("primary", 3, 6, False, False, id="shoal-150-keepalived-100-v3-ipv6"),
    pytest.param("backup", 3, 6, True, False, id="keepalived-150-shoal-100-v3-ipv6-preempt"),
    pytest.param("backup", 3, 4, False, True, id="keepalived-150-shoal-100-v3-ipv4-unicast"),
]


@pytest.mark.parametrize("shoal_on,version,family,preempt,unicast", CASES)
def test_a_mixed_pair(shoal_on: str, version: int, family: int, preempt: bool, unicast: bool) -> None:
    keepalive = 1.0 if version == 2 else 0.5
    with pair(lvs_cf(family, version, preempt, keepalive, unicast=unicast), shoal_on) as p:
        world = p.world
        # Start-up: the primary (priority 150) is master, the other backup; the client's entry says the primary.
        p.start("primary")
        p.start("backup")
        wait(p, "the primary master, the backup backup", lambda: p.master("primary") and p.backup("backup"))
        wait(p, "the client's neighbour entry on the primary", lambda: world.arp_holder(p.vip) == "primary")
        # The master crashes: the backup takes over within its Master_Down_Interval and announces the VIP.
        p.crash("primary")
        took = wait(p, "the backup master after the crash", lambda: p.master("backup"))
        assert took < 3 * keepalive + keepalive + 2.0, took
        wait(p, "the client's neighbour entry on the backup", lambda: world.arp_holder(p.vip) == "backup")
        # The primary returns: with preemption it takes the role back (priority 150 over 100), without it
        # it stays backup, hearing the backup's adverts.
        p.boot("primary")
        if preempt:
            wait(p, "the returning primary master again (preempt)", lambda: p.master("primary") and p.backup("backup"))
            wait(p, "the client's entry back on the primary", lambda: world.arp_holder(p.vip) == "primary")
            master, other = "primary", "backup"
        else:
            wait(p, "the returning primary backup (no preemption)", lambda: p.backup("primary"))
            time.sleep(4 * keepalive)
            assert p.master("backup") and p.backup("primary"), p.logs()
            master, other = "backup", "primary"
        # A clean stop of the master: priority 0, the other takes over after its Skew_Time, well before
        # a Master_Down_Interval.
        p.stop(master)
        took = wait(p, f"the {other} master after the {master}'s clean stop", lambda: p.master(other))
        assert took < 3 * keepalive, f"{took:.2f} s: priority 0 should not wait for the Master_Down_Interval"
        wait(p, f"the client's entry on the {other}", lambda: world.arp_holder(p.vip) == other)


def test_equal_priorities_two_masters_the_higher_address_keeps_the_role() -> None:
    # A backup keeps a master of equal priority (RFC 5798 6.4.2: "greater than or equal"), so which
    # router is master at equal priorities is who came first; the tie-break by address is between two
    # masters.  Both start with the adverts cut, both become master, then the cut heals.
    with pair(lvs_cf(4, 3, False, 0.5, priority=100), "primary", priority=100) as p:
        p.world.apply(Fault(0, "partition", "public"))
        p.start("primary")
        p.start("backup")
        wait(p, "two masters while the adverts are cut", lambda: p.master("primary") and p.master("backup"))
        p.world.apply(Fault(0, "heal", "public"))
        # 10.0.0.2 (keepalived, the backup router) > 10.0.0.1 (shoal): shoal yields, keepalived keeps the VIP.
        wait(p, "keepalived (the higher address) master, shoal backup", lambda: p.master("backup") and p.backup("primary"))
        wait(p, "the client's entry on keepalived's router", lambda: p.world.arp_holder(p.vip) == "backup")
        time.sleep(2.0)
        assert p.master("backup") and p.backup("primary"), p.logs()
