"""An operator's failover seen from a client namespace (issue 13), and the
standby's table kept in step with health, on real namespaces and the nft
dataplane (the IPVS dataplane's side: tests/kernel/guest/test_failover.py).

The lab's network (adapters/lab: namespaces client, primary, backup, three
real servers), two `shoal run --dataplane nft` daemons, the lab's client
opening a new connection to the VIP every 10 ms.

- Before the failover, the standby's table is the active router's (read
  back from each daemon's nft ruleset), and a server that goes down leaves
  both tables: taking over needs no table write.
- `admin failover` on the active primary is make before break: the primary
  keeps the VIP until the client's neighbour entry for it carries the
  backup's MAC (sampled every few ms), and every connection opened around
  the hand-over is served.  With the old break before make (the VIP given
  up at the order), the connections opened between the release and the
  backup's gratuitous ARP reached a router without the VIP: the lab's
  admin-failover-drain lost one of 97.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from adapters.lab.world import LabWorld, open_world
from scenario.model import Fault, load

# The lab's admin-failover-drain pair (three servers behind one NAT virtual), with faster heartbeats.
SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "admin-failover-drain.toml"
VIP = "10.0.0.100"


def wait(what: str, holds: Callable[[], bool], world: LabWorld, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not holds():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}\nprimary:\n{world.log_tail('primary')}\n"
                                 f"backup:\n{world.log_tail('backup')}")
        time.sleep(0.05)


def servers_in(world: LabWorld, router: str) -> list[str]:
    return sorted(d.name for entry in world.table(router).values() for d in entry.dests.values())


def test_a_planned_handover_loses_no_connection_and_the_standby_keeps_the_table() -> None:
    config = replace(load(SCENARIO).config, keepalive_ms=500, deadtime_ms=1500)
    with open_world([config], 1.0, tag="t-handover") as world:
        world.start_servers()
        world.wait_daemon(world.start_daemon("primary"))
        world.start_daemon("backup")
        world.wait_daemons()
        wait("primary active, backup standby",
             lambda: world.status("primary").get("role") == "active" and world.status("backup").get("role") == "standby",
             world)

        # The standby keeps the active router's table, and follows health as it does.
        wait("the standby's table the active router's, three servers",
             lambda: servers_in(world, "backup") == servers_in(world, "primary") == ["web1", "web2", "web3"], world)
        assert world.table("backup") == world.table("primary")
        assert world.vips("backup") == frozenset()
        world.apply(Fault(0, "server_down", "web2"))
        wait("web2 out of both tables",
             lambda: servers_in(world, "backup") == servers_in(world, "primary") == ["web1", "web3"], world)
        world.apply(Fault(0, "server_up", "web2"))
        wait("web2 back in both tables",
             lambda: servers_in(world, "backup") == servers_in(world, "primary") == ["web1", "web2", "web3"], world)

        world.start_client(rate=100.0)
        wait("the client served through the primary", lambda: any(ok for _, ok in world.client_records()), world)
        assert world.arp_holder(VIP) == "primary"
        time.sleep(0.5)
        ordered = time.monotonic()
        world.apply(Fault(0, "admin", "failover"))
        assert world.refusals == [], world.refusals
        # Sampled until the client's entry moves: the primary still holds the VIP at that moment.
        samples: list[tuple[str, bool]] = []
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            held = VIP in world.vips("primary")
            holder = world.arp_holder(VIP)
            samples.append((holder, held))
            if holder == "backup":
                break
        assert samples[-1][0] == "backup", samples[-10:]
        assert all(held for _, held in samples), f"the primary gave the VIP up before the client moved: {samples}"
        wait("backup active, primary standby without the VIP",
             lambda: world.status("backup").get("role") == "active"
             and world.status("primary").get("role") == "standby" and world.vips("primary") == frozenset(), world)
        time.sleep(1.0)
        world.stop_client()
        around = [ok for t, ok in world.client_records() if ordered - 0.5 <= t <= ordered + 1.5]
        assert len(around) >= 100, f"{len(around)} connections in 2 s at 100 a second"
        failed = [round(t - ordered, 3) for t, ok in world.client_records() if ordered - 0.5 <= t <= ordered + 1.5
                  and not ok]
        assert all(around), (f"{around.count(False)} of {len(around)} connections failed around the hand-over, "
                             f"opened at {failed} s after the order\nprimary:\n{world.log_tail('primary', 15)}\n"
                             f"backup:\n{world.log_tail('backup', 15)}")
        assert world.table("backup") == world.table("primary")  # the old owner kept the table too
