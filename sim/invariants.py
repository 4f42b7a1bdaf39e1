"""Invariants, checked after every simulation step, outside the engine.

Each violation is kept once per invariant (the first), with the time and
the trace records that led there.  The bounds, derived from the engine's
rules (engine/failover.py, engine/health.py, engine/engine.py), with
`L` the one-way link latency:

- single_owner (SPEC.md): a VIP held by both routers whose daemons run is
  settled within `W = keepalive + L` once the heartbeats that settle it
  flow, which generalises SPEC's "outside a cut of every path" to random
  loss: it is a violation when, for longer than W within the dual
  ownership, (a) no heartbeat from the primary to the backup was lost (the
  backup hears the primary active and must yield), or (b) none from the
  backup to the primary was lost for W + `deadtime` while the backup has
  heard nothing from the primary for `deadtime` (the primary hears a deaf
  backup active and must yield: a one-way failure).  When the primary went
  active by declaring the backup dead (the dual ownership starts there),
  it calls the backup deaf only after `deadtime + keepalive` of hearing it
  again (engine/failover.py, partner_deaf: a partner back from two-way
  loss is given the time to hear us), hearing starts with the first
  heartbeat (within W) and deafness is judged on the next one (within a
  `keepalive`): (b) then allows W + `deadtime` + 2 `keepalive`.  A cut of every path loses heartbeats
  both ways, so it is never judged; a cut that heals (or loss that is
  lowered) counts as a drop at that moment, so W runs from the heal
  ("outside a cut", SPEC.md), not from the last heartbeat the cut lost.  And a router that holds the VIPs and
  hears its partner active settles it in that very step: it yields, or
  (the winner) re-ARPs (or did within the last `arp_interval`: the engine
  sends at most one round per interval); one handing over for an
  operator's failover gives the VIPs up a quarter keepalive later (make
  before break), inside the overlap allowed above.
- table_matches_health: after each step of a running daemon, the kernel
  table equals what the engine applied, a standby router holds no VIP (it
  keeps the table, as keepalived's backup does: only the addresses move),
  and the table, on either role, holds, per active virtual, exactly: every
  server whose health is up (weight > 0, up to 10 x configured; 0 when
  drained or configured 0), every down server at weight 0 when
  `quiesce_server = 1`, and the sorry server iff nothing else takes
  connections (or the quorum is lost); the scheduler is the virtual's.
  Judged after each step that emitted table operations or notices, on
  what changed since it was last found right (sim.tables: the same
  answers as the whole-table walk, which cost a walk of every real server).
- takeover: when the active router crashes or its daemon is killed while
  its partner's daemon runs standby with failover on, the partner is active
  within `deadtime + keepalive + L` (its last heartbeat left at most
  `keepalive` before, arrived `L` later; `deadtime` after that the partner
  is dead): it has gone active by then (an operator may already have moved
  it back).  Not judged if either router restarts within the bound.
- server_out: when a real server starts failing a virtual's check, each
  running router that was up before calls it down (and the active one has
  it out of the table, or at weight 0) within `fall x interval + interval +
  timeout + 2L`: the check in flight may have started just before and
  still pass; the next starts at most an interval later (two if the one
  before was still running when its timer fired) and fails within
  `timeout`; `fall` failures in a row take it down.  Not judged if the
  server changes again, or the config is reloaded, within the bound.
- reentry: a server that went down comes back up no sooner than
  `(rise - 1) x interval` after it last stopped failing (the first success
  may come at once; `rise` successes in a row, one per interval, bring it
  back; rise = reentry / interval rounded up).
- gave_up: with `monitor_links = 1`, a running router with a link it
  needs down is standby and holds no VIP, after every step (and such a
  partner is not expected to take over: takeover is not judged).
- liveness: once the world is whole again after the last fault (both
  daemons running, no cut, no loss, every link up), within `deadtime + 2 x keepalive + 2L`
  exactly one router is active, it alone holds the VIPs, and the clients'
  ARP view points at it.  Checked then and at the end of the run.

What things cost (sim/costs.py) is slack, not a new rule: a router carries
out a step's commands one after the other, each taking its time, and steps
nothing meanwhile, so each bound above that waits for something a router
does (single_owner's W, takeover, server_out, liveness) is longer by `C`,
`Costs.takeover_ms(config)`, a bound on carrying out a takeover or a release
(every address added or removed and announced, the table written or
emptied: 28 ms for one VIP and nat_router with `Costs()`, 77 with `SCAPY_ARP`); and
liveness, whose world is whole only once a restarted daemon is up, by
`Costs.daemon_start_ms` too.  reentry's bound is shorter by `C`: a check
that was due before the server stopped failing can start after it, late
behind a busy step (a table batch, a round of gratuitous ARPs), and pass; the next
one starts when it was due, less than an interval later (the daemon does
the same).  An invariant judged "after every step" is
judged once that step's commands are carried out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from engine.events import TABLE_OPS, AdvertReceived, Command, HeartbeatReceived, Input, Notify
from engine.model import Config, vrrp_priority
from engine.vrrp import master_down_ms
from scenario.model import Fault
from sim.servers import check_result
from sim.tables import TableJudge, table_problem
from sim.world import ROUTERS, Router, World

_TABLE_JUDGED = (Notify, *TABLE_OPS)  # a step that emits one of these is judged table_matches_health
NAMES = ("single_owner", "table_matches_health", "takeover", "server_out", "reentry", "liveness", "gave_up")


@dataclass(frozen=True, slots=True)
class Violation:
    name: str
    at_ms: int
    message: str
    context: tuple[dict[str, Any], ...]  # the trace records that led there


class Invariants:
    def __init__(self, world: World, records: list[dict[str, Any]]) -> None:
        self.world = world
        self.records = records
        self.violations: dict[str, Violation] = {}
        self._dual_since: dict[str, int] = {}
        self._recovered: dict[tuple[str, int], int] = {}  # server -> last time it stopped failing
        self._server_gen: dict[tuple[str, int], int] = {}  # bumped on each server fault
        self._reloads = 0
        self._last_fault_ms = 0
        self._declared_dead_ms = {r: -(2**62) for r in ROUTERS}  # the last "partner dead" of each router
        self._slack: tuple[Config | None, int] = (None, 0)
        self._tables = {r: TableJudge() for r in ROUTERS}  # table_matches_health, judged on what changed
        world.observers.append(self)

    @property
    def slack_ms(self) -> int:
        """`C` (the module's doc): carrying out a takeover or a release of the current config
        (worked out once per config: every step asks)."""
        config = self.world.config
        if self._slack[0] is not config:
            self._slack = (config, self.world.costs.takeover_ms(config))
        return self._slack[1]

    # ------------------------------------------------------------ reporting

    def fail(self, name: str, message: str) -> None:
        if name in self.violations:
            return
        now = self.world.now
        self.violations[name] = Violation(name, now, f"at {now / 1000:.3f} s: {message}", tuple(self.records[-8:]))

    # ------------------------------------------------------------ after every step

    def after_step(self, router: Router, event: Input, role_before: str, commands: tuple[Command, ...]) -> None:
        self._single_owner(router, event, role_before, commands)
        engine = router.engine
        if engine is not None and engine.links.unfit(engine.config) and (router.vips or engine.failover.role == "active"):
            self.fail("gave_up", f"{router.name} has a link down ({', '.join(sorted(router.links_down))}) with "
                                 f"monitor_links = 1 but is {engine.failover.role} holding "
                                 f"{', '.join(sorted(router.vips)) or 'no VIP'}")
        if router.engine is not None and (not router.engine.now_ms or commands and any(
                isinstance(c, _TABLE_JUDGED) for c in commands)):
            self._table_matches_health(router)
        for c in commands:
            if isinstance(c, Notify) and c.kind == "partner" and c.data.get("alive") is False:
                self._declared_dead_ms[router.name] = self.world.now
            if isinstance(c, Notify) and c.kind == "health" and c.data["from"] == "down" and c.data["to"] == "up":
                self._reentry(router, str(c.data["service"]), str(c.data["server"]))

    def _single_owner(self, router: Router, event: Input, role_before: str, commands: tuple[Command, ...]) -> None:
        world = self.world
        engine = router.engine
        if (isinstance(event, (HeartbeatReceived, AdvertReceived)) and engine is not None and role_before == "active"
                and engine.failover.role == "active" and engine.failover.partner_state == "active"
                and not engine.failover.handing_over
                and world.now - router.last_arp_ms > engine.config.arp_interval_ms):
            self.fail("single_owner", f"{router.name} heard its partner active while active, "
                                      "and neither yielded nor re-announced its VIPs")
        primary, backup = world.routers["primary"], world.routers["backup"]
        both = primary.vips & backup.vips if primary.engine is not None and backup.engine is not None else set()
        if not both and not self._dual_since:  # nearly every step: nothing held twice
            return
        now = world.now
        for address in list(self._dual_since):
            if address not in both:
                del self._dual_since[address]
        for address in sorted(both):
            self._dual_since.setdefault(address, now)
        self.check_dual()

    def check_dual(self) -> None:
        """A dual ownership that outlasts the window (see the module's doc): judged after every
        step, at each expectation and at the end."""
        if not self._dual_since:
            return
        world, now = self.world, self.world.now
        config = world.config
        window = config.keepalive_ms + world.latency_ms + self.slack_ms
        drop, delivered = world.last_drop_ms, world.last_delivery_ms
        if config.heartbeat_protocol == "vrrp":  # the lower priority yields to the winner's advert; no deafness
            winner = vrrp_winner(config)
            engine = world.routers[winner].engine
            if engine is None or engine.failover.handing_over:
                return  # a winner handing over says priority 0 and then nothing: the loser keeps the role
            heard = delivered[winner]
            for address, since in sorted(self._dual_since.items()):
                if since < heard < now - world.latency_ms - self.slack_ms:
                    self.fail("single_owner", f"{address} held by both routers since {since / 1000:.3f} s; an "
                                              f"advert of the {winner} (the higher priority) was delivered at "
                                              f"{heard / 1000:.3f} s and the other did not yield within latency "
                                              f"+ C = {world.latency_ms + self.slack_ms} ms")
            return
        for address, since in sorted(self._dual_since.items()):
            # the backup hears the primary (a clean primary -> backup direction) and must yield
            heard = now - max(since, drop["primary"]) > window
            # the primary hears a backup that cannot hear it (deaf) and must yield
            # (after hearing it again, the primary waits deadtime before it calls it deaf)
            redeclared = self._declared_dead_ms["primary"] >= since - world.latency_ms
            grace = window + config.deadtime_ms + (2 * config.keepalive_ms if redeclared else 0)
            deaf = (now - max(since, drop["backup"]) > grace
                    and delivered["primary"] < now - window - config.deadtime_ms)
            if heard or deaf:
                why = "every primary -> backup heartbeat delivered" if heard else \
                    "every backup -> primary heartbeat delivered, the backup deaf"
                self.fail("single_owner", f"{address} held by both routers since {since / 1000:.3f} s, "
                                          f"{why} for more than keepalive + latency + C = {window} ms")

    def _table_matches_health(self, router: Router) -> None:
        engine = router.engine
        assert engine is not None
        if self._tables[router.name].differs(router.table, engine.applied):
            self.fail("table_matches_health", f"{router.name}'s kernel table differs from what its engine applied")
            return
        status = engine.status
        if status.role != "active" and router.vips:
            self.fail("table_matches_health", f"{router.name} is standby but holds {' '.join(sorted(router.vips))}")
            return
        problem = self._tables[router.name].problem(engine.config, status, router.table)
        if problem:
            self.fail("table_matches_health", f"{router.name}: {problem}")

    def _reentry(self, router: Router, virtual: str, server: str) -> None:
        assert router.engine is not None
        config = router.engine.config
        v = config.virtual(virtual)
        s = next(s for s in v.servers if s.name == server)
        assert s.address is not None
        where = (s.address, s.port if s.port is not None else v.port)
        since = self._recovered.get(where)
        if since is None:
            return
        earliest = since + (v.rise_count - 1) * v.interval_ms - self.slack_ms
        if self.world.now < earliest:
            self.fail("reentry", f"{router.name} brought {virtual}/{server} back at {self.world.now / 1000:.3f} s, "
                                 f"before {earliest / 1000:.3f} s ((rise {v.rise_count} - 1) x interval "
                                 f"{v.interval_ms} ms - C after it stopped failing at {since / 1000:.3f} s)")

    # ------------------------------------------------------------ faults

    def before_fault(self, fault: Fault) -> None:
        world = self.world
        self._last_fault_ms = world.now
        if fault.kind in ("crash", "kill"):
            self._watch_takeover(fault.value)
        if fault.kind == "reload":
            self._reloads += 1
        if fault.kind.startswith("server_"):
            self._before_server_fault(fault)

    def after_fault(self, fault: Fault) -> None:
        if fault.kind.startswith("server_"):
            for where in self.world.addresses(fault.value):
                self._after_server_fault(where)
        self._watch_liveness()

    def _watch_takeover(self, name: str) -> None:
        world = self.world
        crashed = world.routers[name]
        partner = world.routers["backup" if name == "primary" else "primary"]
        config = world.config
        if crashed.role != "active" or partner.role != "standby" or partner.engine is None:
            return
        if not partner.engine.failover.enabled:
            return
        bound = dead_ms(config, partner.name) + config.keepalive_ms + world.latency_ms + self.slack_ms
        engine, boots = partner.engine, crashed.boots
        start = world.now

        def judge() -> None:
            if partner.engine is not engine or crashed.boots != boots or engine.links.unfit(engine.config):
                return  # (an unfit partner, monitor_links with a link down, takes nothing: gave_up)
            if engine.failover.role != "active" and partner.went_active_ms < start:
                self.fail("takeover", f"{partner.name} still {engine.failover.role} {bound} ms "
                                      f"(deadtime, or VRRP's Master_Down_Interval, + keepalive + latency + C) "
                                      f"after {name} failed at "
                                      f"{start / 1000:.3f} s")

        world.at(bound + 1, judge)

    def _before_server_fault(self, fault: Fault) -> None:
        self._failing_before = {where: {v.name: not check_result(spec, self.world.server_at(*where), 0)[1]
                                        for v, _, spec in self.world.specs_of(*where)}
                                for where in self.world.addresses(fault.value)}

    def _after_server_fault(self, where: tuple[str, int]) -> None:
        world = self.world
        gen = self._server_gen[where] = self._server_gen.get(where, 0) + 1
        before = self._failing_before.get(where, {})
        for v, s, spec in world.specs_of(*where):
            failing = not check_result(spec, world.server_at(*where), 0)[1]
            if before.get(v.name, False) and not failing:
                self._recovered[where] = world.now
            if failing and not before.get(v.name, False):
                bound = (v.fall_count * v.interval_ms + v.interval_ms + spec.timeout_ms + 2 * world.latency_ms
                         + self.slack_ms)
                self._watch_server_out(where, gen, v.name, s.name, bound)

    def _watch_server_out(self, where: tuple[str, int], gen: int, virtual: str, server: str, bound: int) -> None:
        world = self.world
        engines = {r.name: r.engine for r in world.routers.values() if r.engine is not None}
        reloads, start = self._reloads, world.now

        def judge() -> None:
            if self._server_gen.get(where) != gen or self._reloads != reloads:
                return
            for name, engine in engines.items():
                router = world.routers[name]
                if router.engine is not engine:
                    continue
                member = next(m for m in engine.status.service(virtual).servers if m.name == server)
                if member.admin != "auto":
                    continue
                if member.checked != "down" or (engine.failover.role == "active" and member.weight > 0):
                    self.fail("server_out", f"{name} still has {virtual}/{server} {member.checked} "
                                            f"(weight {member.weight}) {bound} ms after it started failing "
                                            f"at {start / 1000:.3f} s")

        world.at(bound + 1, judge)

    def _watch_liveness(self) -> None:
        world = self.world
        config = world.config
        bound = (max(dead_ms(config, "primary"), dead_ms(config, "backup")) + 2 * config.keepalive_ms
                 + 2 * world.latency_ms + self.slack_ms + world.costs.daemon_start_ms)
        fault_at = world.now

        def judge() -> None:
            if self._last_fault_ms == fault_at:
                self.check_liveness(bound)

        world.at(bound + 1, judge)

    def whole(self) -> bool:
        world = self.world
        return (all(r.engine is not None and not r.links_down for r in world.routers.values()) and not world.cut
                and all(p == 0 for p in world.loss.values()))

    def check_liveness(self, bound: int) -> None:
        """Exactly one active router, holding every VIP alone, the clients pointed at it."""
        world = self.world
        if not self.whole() or world.now - self._last_fault_ms <= bound:
            return
        active = [r for r in world.routers.values() if r.role == "active"]
        failover = any(r.engine is not None and r.engine.failover.enabled for r in world.routers.values())
        if len(active) != 1:
            if failover or len(active) > 1 or world.routers["primary"].role != "active":
                self.fail("liveness", f"{len(active)} active routers {bound} ms after the world was whole again "
                                      f"at {self._last_fault_ms / 1000:.3f} s")
            return
        winner = active[0]
        for v in world.config.virtuals:
            if not v.active or not v.address:
                continue
            holders = sorted(r.name for r in world.routers.values() if v.address in r.vips)
            if holders != [winner.name] or world.arp_view.get(v.address) != winner.name:
                self.fail("liveness", f"{v.address} held by {holders or 'nobody'}, clients pointed at "
                                      f"{world.arp_view.get(v.address)}, {bound} ms after the world was whole "
                                      f"again (active: {winner.name})")
                return


def dead_ms(config: Config, node: str) -> int:
    """How long `node` hears nothing before it takes over: `deadtime`, or on a VRRP pair its
    Master_Down_Interval (3 intervals and its Skew_Time, engine.vrrp)."""
    if config.heartbeat_protocol != "vrrp":
        return config.deadtime_ms
    return master_down_ms(vrrp_priority(config, node), config.keepalive_ms, config.vrrp_version)  # type: ignore[arg-type]


def vrrp_winner(config: Config) -> str:
    """The router a VRRP pair's election keeps as master: the higher priority, then the higher address."""
    p, b = vrrp_priority(config, "primary"), vrrp_priority(config, "backup")
    if p != b:
        return "primary" if p > b else "backup"
    assert config.primary is not None and config.backup is not None
    return "primary" if int(ipaddress.ip_address(config.primary)) > int(ipaddress.ip_address(config.backup)) \
        else "backup"


__all__ = ["Invariants", "NAMES", "ROUTERS", "Violation", "table_problem"]
