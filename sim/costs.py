"""What things cost in the simulated world: the time a router takes to carry
out its engine's commands, a daemon's start, the client's neighbour table
and its connections, each number with where it comes from.

The figures were measured on the lab of this machine (2 cores, nft
dataplane, `shoal run` as adapters/lab/daemons.py starts it) on
2026-12-01 with

    .venv/bin/python bench/lab_costs.py --runs 3

(3 runs of: both daemons started, two operator failovers, a kill and a
takeover, the killed daemon started again; the daemons' JSON logs stamped
to the millisecond, the client's neighbour table followed with `ip -ts
monitor neigh`).  The medians are taken, rounded to the millisecond; the
ranges, and every set of runs, are in docs/SIMULATOR.md.

Two daemons were measured.  At 04:01 and 04:02 UTC the tree of 60de2b5
(issue 13's gratuitous ARP on a raw socket, 4c218bc; the nft dataplane of
7aec0db; with the uncommitted adapters/daemon.py and adapters/vips.py of
the engineer working on issue 13): `Costs()`, marked "04:0x" below.  At
03:27 and 03:29 the tree of e79d98e (gratuitous ARP by scapy's `sendp`):
`SCAPY_ARP`, marked "03:2x", the world in which a takeover refused a
client's connection one time in two.  Issue 13 is still making the start
and the takeover faster: measure again and change the numbers here,
nowhere else.

`ZERO` is the world before costs were modelled (every command carried out
the instant it is decided, a daemon up the instant it is started, in-flight
connections not tracked, an announcement heard at once), with which every
old trace is reproduced byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.model import Config


@dataclass(frozen=True, slots=True)
class Costs:
    # ------------------------------------------------ carrying out commands (the daemon, in order)
    # engine/events.py: the daemon carries out a step's commands one after the other and steps the
    # engine on nothing else meanwhile (an input that arrives waits).  A command's effect is in the
    # kernel when it ends (an address added, a table batch applied), except a gratuitous ARP's
    # frame, which leaves during the command.  bench/lab_costs.py's intervals are quoted.

    # AddVip (RTM_NEWADDR).  "takeover: vip add x2 (first -> first arp)" 04:0x 1 ms (0-7): the
    # second add and an ARP; "decision -> first vip add" 3 ms (1-8), with the step and its log
    # lines.  03:2x (pyroute2 in an executor thread): 2 ms.
    vip_add_ms: int = 1
    # DelVip (RTM_DELADDR).  "release: table emptied -> vips removed" 04:0x 1 and 2 ms (0-42) for
    # two addresses; 03:2x 4 ms (3-5).
    vip_del_ms: int = 1
    # SendGratuitousArp.  04:0x a raw AF_PACKET socket: "arp x2 (first -> last arp)" 0 ms (0-3).
    # 03:2x scapy `sendp` (socket opened, frame built and sent, socket closed): 32 ms (24-44) for
    # the second of two, so 28.
    arp_ms: int = 0
    # ... of which until the frame is on the wire.  03:2x: "client: new owner's first vip add ->
    # the client's entry on its MAC" 13 ms (9-18), less the second vip add: 11.
    arp_frame_ms: int = 0
    # A batch of consecutive table operations: one `nft -f` run (adapters/dataplane/nft.py).
    # "takeover: table written (4 ops, last arp -> last op)" 04:0x 8 and 10 ms (6-12; one 399
    # under load); 03:2x 5 ms (4-6).
    table_batch_ms: int = 9
    # ... and each DelService in it: "release: request -> table emptied" 04:0x 17 and 22 ms
    # (11-25), less the batch; 03:2x 13 ms (12-21), less the batch and the step: 7.
    table_del_service_ms: int = 8

    # ------------------------------------------------ a daemon's start (a `restart` fault)
    # exec -> the kernel table read and adopted, the first step (its first heartbeat leaves then):
    # "start (both at once): exec -> partner hears its first heartbeat" 04:0x 497 and 591 ms
    # (333-1364); one daemon alone, after a kill, 393 and 499 ms (324-764).  03:2x 424 ms (393-443)
    # and, with another lab running, 999 ms.  The larger of the latest: a scenario that fails for
    # real fails here first.  The run's first boot (time 0) costs nothing: the lab's scenario time
    # 0 is when both daemons serve (adapters/lab/runner.py).
    daemon_start_ms: int = 500

    # ------------------------------------------------ the client's neighbour (ARP) table
    # Linux's defaults, `ip -d ntable show` on this host (net.ipv4.neigh.default.*): base_reachable
    # 30000, delay_probe 5000, retrans 1000, ucast_probes 3, mcast_probes 3.  An entry confirmed
    # (an answered ARP, or a TCP exchange that got its answer) is REACHABLE for base_reachable_time
    # (the kernel draws it from [1/2, 3/2] of it; the simulator takes the mean), then STALE: still
    # used, and the first use starts DELAY; delay_first_probe_time later, unconfirmed, it is probed
    # (PROBE: ucast_probes unicast requests, retrans_time apart, to the MAC it holds); unanswered,
    # it FAILS and the next packet resolves the address anew by broadcast.  A gratuitous ARP (a
    # broadcast reply) from another MAC replaces the entry as STALE (the lab's client has
    # arp_accept = 1 and locktime = 0: adapters/lab/topology.py; with the same MAC it changes
    # nothing).
    base_reachable_ms: int = 30_000
    delay_first_probe_ms: int = 5_000
    retrans_ms: int = 1_000
    ucast_probes: int = 3

    # ------------------------------------------------ connections in flight
    # How long a client's connection exchanges packets (connect, request, status line, close):
    # "client: one connection, connect -> request -> status line -> close" in bench/lab_costs.py:
    # 1 ms (0-86, 450 connections).  A connection whose packets stop reaching the router that holds
    # its conntrack entry fails: the router
    # crashed, or the client's neighbour entry moved to the other router.  A killed daemon's
    # kernel keeps its conntrack entries, addresses and nft ruleset: its connections live on.
    connection_ms: int = 1
    # When the client opens its connections (every 100 ms, sim/clients.py), past each 100 ms of
    # scenario time.  The lab's client runs on its own from before scenario time 0, so its phase
    # against the scenario's faults (at round times) is random: half a period is its mean.  A
    # window of failure that opens with a fault or a decision and lasts more than this (a
    # takeover's, from the client's entry on the new MAC to the table written) is met; a
    # shorter one (a table batch right at a check's timeout) is not.
    client_phase_ms: int = 50
    # A gratuitous ARP reaches the client one link latency after its frame leaves (False: at once,
    # as in the world before costs were modelled).
    announce_after_latency: bool = True

    def batch_ms(self, del_services: int) -> int:
        return self.table_batch_ms + del_services * self.table_del_service_ms

    def takeover_ms(self, config: Config) -> int:
        """A bound on the time a router takes to carry out a takeover or a release of `config`
        (every VIP and nat_router added or removed and announced, the table written or emptied):
        the slack the invariants give a step that carries it out."""
        addresses = sum(1 for v in config.virtuals if v.address) + (1 if config.nat_router else 0)
        services = len(config.virtuals)
        return (addresses * (max(self.vip_add_ms, self.vip_del_ms) + self.arp_ms)
                + 2 * self.table_batch_ms + services * self.table_del_service_ms)

    def scaled(self, factor: float) -> Costs:
        """Every duration times `factor` (not the clients' phase: their period is the simulator's).
        The lab at `--time-scale F` runs the scenario's times F times faster but its costs (and the
        kernel's neighbour timers) at their own speed: in scenario time that world is
        `Costs().scaled(1 / F)`."""
        def s(ms: int) -> int:
            return round(ms * factor)

        return replace(self, vip_add_ms=s(self.vip_add_ms), vip_del_ms=s(self.vip_del_ms), arp_ms=s(self.arp_ms),
                       arp_frame_ms=s(self.arp_frame_ms), table_batch_ms=s(self.table_batch_ms),
                       table_del_service_ms=s(self.table_del_service_ms), daemon_start_ms=s(self.daemon_start_ms),
                       base_reachable_ms=s(self.base_reachable_ms), delay_first_probe_ms=s(self.delay_first_probe_ms),
                       retrans_ms=s(self.retrans_ms), connection_ms=s(self.connection_ms))


NEVER = 2**62
ZERO = Costs(vip_add_ms=0, vip_del_ms=0, arp_ms=0, arp_frame_ms=0, table_batch_ms=0, table_del_service_ms=0,
             daemon_start_ms=0, base_reachable_ms=NEVER, connection_ms=0, client_phase_ms=0,
             announce_after_latency=False)


# The daemon of e79d98e (03:27 and 03:29 UTC): gratuitous ARP by scapy's `sendp`, 28 ms a frame.
# Its takeover announced the VIP some 50 ms before its table was written, and the lab's client lost
# a connection in 12 of 21 takeovers (docs/SIMULATOR.md); kill-daemon failed for real.
SCAPY_ARP = Costs(vip_add_ms=2, vip_del_ms=2, arp_ms=28, arp_frame_ms=11, table_batch_ms=5, table_del_service_ms=7,
                  daemon_start_ms=420)
