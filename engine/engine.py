"""The engine: one router's decisions, driven by `step(now_ms, input)`.

    engine = Engine(config, "primary")
    ready = engine.step(now_ms, Tick())   # -> Ready(commands, next_deadline_ms, status)

Each machine owns its state in its own module and returns commands or
values; none holds or calls another machine (they share pure functions,
such as `engine.pool`'s), and the engine passes values between them:

| module            | decides                                                              |
|-------------------|----------------------------------------------------------------------|
| `engine.failover` | the role: pulse (its receive rules in `engine.verdicts`; partner     |
|                   | dead, paths lost, stalls and probes in `engine.liveness`)            |
| `engine.registry` | the members: checks, loads, weights, the operator's overrides        |
| `engine.keeper`   | the table: applied, desired (`engine.pool`, kept per member by       |
|                   | `engine.desired`), read back, drift                                  |
| `engine.holding`  | VIPs, ARP rounds, the sync daemon                                    |
| `engine.links`    | `monitor_links`: what a link down or back asks                       |
| `engine.sync`     | the operator's overrides shared with the partner (signed datagrams) |
| `engine.status`   | the status snapshot and its cache                                    |

This module keeps `step`, the dispatch of deadlines (`engine.timers`), and
the rules that span machines:

- start: the kernel's table, when the first input reads one, is adopted
  (its members count as up); with a VIP of the config held too, the
  previous life was active: the router holds it active but claims nothing
  until it hears its partner (`Failover.listen_first`); without one it
  starts standby over the table.  An empty table makes the router remove
  its configured VIPs first.  Both roles then keep the table in step;
- a link it needs goes down or comes back (`engine.links`);
- the table is the same on both roles (what health and config call for):
  going active is adding the VIPs and announcing them, then the rest (the
  role's notice, the sync daemon as master, `active_cmd`); going standby
  gives the VIPs up and keeps the table (`engine.events` has the order);
  the invariants after every step: a standby router holds no VIP, an
  active one exactly the VIPs its config calls for;
- a check result or a load reading changes members, their virtual's entry,
  and the kernel's table;
- a reload rebuilds the members (keeping what is unchanged), moves the
  timers, the table, and, while active, the VIPs;
- an operator's request is refused with a reason (`admin_refusal`) or
  carried out, and the overrides shared with the partner: those rules live
  in `engine.operator`, a part of this class in a module of its own;
- a shutdown tells the partner and gives everything up, the table too.

Time is an input and never goes backwards.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from engine import overrides_wire
from engine.events import (
    AddVip, AdminRequested, AdvertReceived, CheckCompleted, Command, CommandFailed, ConfigLoaded, HeartbeatReceived,
    Input, LinksChanged, LoadRead, Notify, RunCommand, SendAdvert, SendGratuitousArp, SendHeartbeat, SetTimeouts,
    ShutdownRequested, TableRead, Tick,
)
from engine.failover import Failover, Verdict
from engine.vrrp_failover import VrrpFailover
from engine.holding import Holding
from engine.keeper import Keeper
from engine.links import Links
from engine.model import Config, Node, Virtual
from engine.operator import OperatorRules
from engine.ready import EngineMisuse, InvariantBroken, Ready
from engine.registry import SERVER_ACTIONS, MemberKey, Override, Registry, check_spec
from engine.status import ServerStatus, ServiceStatus, Status, StatusCache
from engine.sync import RESEND_KEEPALIVES, Sync
from engine.table import Dest, DestKey, Table
from engine.timers import Deadline, Timers

__all__ = ["ADMIN_ACTIONS", "Engine", "EngineMisuse", "InvariantBroken", "Override", "Ready", "check_spec"]

ADMIN_ACTIONS = ("failover", *SERVER_ACTIONS)
ARP = Deadline("arp")
TABLE_CHECK = Deadline("table")
SYNC = Deadline("sync")


class Engine(OperatorRules):
    def __init__(
        self, config: Config, node: Node, *, heartbeat_key: bytes | None = None, seq_start: int = 0,
    ) -> None:
        if node not in ("primary", "backup"):
            raise EngineMisuse(f"node must be 'primary' or 'backup', not {node!r}")
        self.node: Node = node
        self.config = config
        self.failover: Failover | VrrpFailover = (
            VrrpFailover(config, node) if config.heartbeat_protocol == "vrrp"
            else Failover(config, node, key=heartbeat_key, seq_start=seq_start))
        self.registry = Registry()
        self.keeper = Keeper()
        self.holding = Holding()
        self.timers = Timers()
        self.now_ms: int | None = None
        self.stopped = False
        self.links = Links()
        self.sync = Sync(node)
        self._steps = 0
        self._cache = StatusCache()
        self._status: Status | None = None
        self._status_step = -1
        self._configure(config)

    @property
    def applied(self) -> Table:
        """The table as applied to the kernel (what the engine believes it holds)."""
        return self.keeper.applied

    # ================================================================ step

    def step(self, now_ms: int, event: Input) -> Ready:
        if self.now_ms is not None and now_ms < self.now_ms:
            raise EngineMisuse(f"time went backwards: {now_ms} ms after {self.now_ms} ms")
        first = self.now_ms is None
        self.now_ms = now_ms
        out: list[Command] = []
        if self.stopped:
            return self._ready(out)
        if first:
            self._start(now_ms, event, out)
            if isinstance(event, TableRead):
                event = Tick()
        match event:
            case Tick():
                pass
            case HeartbeatReceived(path, source, payload) if payload[:4] == overrides_wire.MAGIC:
                self._overrides_received(now_ms, path, source, payload, out)
            case HeartbeatReceived(path, source, payload):
                if isinstance(self.failover, Failover):
                    self._verdicts(self.failover.receive(now_ms, path, source, payload), out)
                    out.extend(note.notify() for note in self.failover.take_notes())
            case AdvertReceived(source, destination, ttl, payload):
                if isinstance(self.failover, VrrpFailover):
                    self._verdicts(self.failover.advert(now_ms, source, destination, ttl, payload), out)
                    out.extend(note.notify() for note in self.failover.take_notes())
            case CheckCompleted(check_id, ok, detail):
                self._check_completed(check_id, ok, detail, out)
            case LoadRead(load_id, load):
                for key in self.registry.load_members(load_id):
                    notice = self.registry.load_observed(key, load)
                    if notice is not None:
                        out.append(notice)
                        self._refresh_member(key, out)
            case ConfigLoaded(config, key):
                self._reload(config, key, out)
            case CommandFailed(command, error):
                out.append(Notify("error", {"what": f"{type(command).__name__} failed: {error}"}))
                out.extend(self.keeper.failed(command))
            case TableRead(table):
                out.extend(self.keeper.read(table, now_ms))
            case AdminRequested():
                self._admin(event, out)
            case ShutdownRequested():
                self._shutdown(out)
                return self._ready(out)
            case LinksChanged(down):
                self._links(now_ms, down, out)
            case _:
                raise EngineMisuse(f"not an engine input: {event!r}")
        self._due(now_ms, out)
        return self._ready(out)

    def _ready(self, out: list[Command]) -> Ready:
        deadline = None if self.stopped else self._next_deadline()
        self.failover.expect_wake(deadline)
        self._check_invariants()
        self._steps += 1
        return Ready(tuple(self._ordered(out)), deadline, self._status_of_step, self._steps)

    def _check_invariants(self) -> None:
        if self.failover.role == "standby" and self.holding.held:
            raise InvariantBroken(f"{self.node} is standby but holds VIPs {self.holding.addresses}")
        if self.failover.role == "active" and not self.stopped and (held := self.holding.held) is not \
                (wanted := self.holding.wanted(self.config)) and held != wanted:
            raise InvariantBroken(f"{self.node} is active but holds VIPs {self.holding.addresses}, "
                                  f"not {[v.address for v in self.holding.wanted(self.config)]}")

    def _status_of_step(self, step: int) -> Status:
        if step != self._steps:
            raise EngineMisuse(f"Ready.status of step {step} read after step {self._steps}: "
                               "read it before the next step, or read Engine.status")
        return self.status

    @staticmethod
    def _ordered(out: list[Command]) -> list[Command]:
        # Heartbeats (adverts) first: a change of role is announced before it is carried out; but a
        # step that adds or announces VIPs sends them after that (a partner handing over gives its
        # VIPs up when it hears us active: by then ours are announced, whatever delays the driver).
        beats = [c for c in out if isinstance(c, (SendHeartbeat, SendAdvert))]
        if not beats:
            return out
        rest = [c for c in out if not isinstance(c, (SendHeartbeat, SendAdvert))]
        last = max((i for i, c in enumerate(rest) if isinstance(c, (AddVip, SendGratuitousArp))), default=None)
        if last is None:
            return beats + rest
        return rest[:last + 1] + beats + rest[last + 1:]

    def _next_deadline(self) -> int | None:
        times = [t for t in (self.timers.next(), self.failover.next_deadline()) if t is not None]
        return min(times) if times else None

    # ================================================================ deadlines

    def _start(self, now_ms: int, event: Input, out: list[Command]) -> None:
        read = event if isinstance(event, TableRead) else None
        kept = read is not None and bool(read.table)
        # A VIP held over a kept table: the previous life was active (a standby keeps the table, not the VIPs).
        adopted = read is not None and kept and any(v.address in read.vips for v in self.holding.wanted(self.config))
        if isinstance(event, TableRead):
            self.keeper.applied = dict(event.table)
            self._cache.members_changed(self.registry.adopt(event.table, self.keeper.service_keys))
            self._recompute_all()
            if not kept:
                out.extend(self.holding.leftovers(self.config))
        c = self.config
        if c.tcp_timeout_s or c.tcpfin_timeout_s or c.udp_timeout_s:
            out.append(SetTimeouts(c.tcp_timeout_s, c.tcpfin_timeout_s, c.udp_timeout_s))
        if not (adopted and self.failover.enabled):
            out.extend(self.keeper.apply(self.keeper.desired()))
        for name in self.registry.deadlines():
            self.timers.set(name, now_ms)
        if self.config.table_check_interval_ms:
            self.timers.set(TABLE_CHECK, now_ms + self.config.table_check_interval_ms)
        self.timers.set(SYNC, now_ms + RESEND_KEEPALIVES * self.config.keepalive_ms)
        out.extend(self.holding.sync(self.config, "backup"))
        verdicts = self.failover.start(now_ms)
        if adopted and self.failover.enabled:
            # Holding what the kernel kept, but claiming nothing (heartbeats
            # say standby, no gratuitous ARP) until the partner is heard;
            # VRRP has no such state: master at once (engine.vrrp_failover).
            vrrp = isinstance(self.failover, VrrpFailover)
            self._go_active("adopted the table the kernel holds", out, announce=vrrp)
            self.failover.listen_first(now_ms)
        else:
            self._verdicts(verdicts, out)

    def _due(self, now_ms: int, out: list[Command]) -> None:
        verdicts, notes = self.failover.tick(now_ms)
        self._verdicts(verdicts, out)  # a takeover's addresses first: its notices (partner dead...) after them
        if notes:
            out.extend(note.notify() for note in notes)
        out.extend(self.failover.due_heartbeats(now_ms))
        for name in self.timers.pop_due(now_ms):
            match name:
                case Deadline("check", check_id):
                    interval_ms, start = self.registry.check_due(check_id)
                    if interval_ms is not None:
                        self.timers.set(name, now_ms + interval_ms)
                    if start is not None:
                        out.append(start)
                case Deadline("load", load_id):
                    read = self.registry.load_due(load_id)
                    if read is not None:
                        self.timers.set(name, now_ms + self.config.load_interval_ms)
                        out.append(read)
                case Deadline("arp"):
                    self._arp_round(out)
                case Deadline("sync"):
                    self.timers.set(name, now_ms + RESEND_KEEPALIVES * self.config.keepalive_ms)
                    if self.sync.stamp.generation:
                        self._send_overrides(out)
                case Deadline("table"):
                    if self.config.table_check_interval_ms:
                        self.timers.set(name, now_ms + self.config.table_check_interval_ms)
                    out.extend(self.keeper.check_due())
                case _:
                    raise EngineMisuse(f"a deadline the engine does not know: {name}")

    def _arp_round(self, out: list[Command]) -> None:
        assert self.now_ms is not None
        out.extend(self.holding.arp_round())
        if self.holding.arping:
            self.timers.set(ARP, self.now_ms + self.config.arp_interval_ms)
        else:
            self.timers.cancel(ARP)

    # ================================================================ role

    def _links(self, now_ms: int, down: frozenset[str], out: list[Command]) -> None:
        """monitor_links (`engine.links` has the rules)."""
        was_active = self.failover.role == "active"
        change = self.links.change(down, self.config)
        if isinstance(self.failover, VrrpFailover):
            self.failover.set_unfit(self.links.unfit(self.config))
        if change is None:
            return
        out.append(change.notice)
        if change.give_up:
            self._give_up(now_ms, out)
        elif change.back:
            self._verdicts(self.failover.links_back(now_ms), out)
        if change.rearp and was_active and self.failover.role == "active":
            self._verdicts([Verdict("rearp", "a link came back: announcing the VIPs again")], out)

    def _give_up(self, now_ms: int, out: list[Command]) -> None:
        if self.failover.role == "active":
            out.extend(self.failover.give_up(now_ms))
            out.append(Notify("role", {"from": "active", "to": "standby", "reason": self.links.reason()}))
            self._release(out)

    def _verdicts(self, verdicts: Iterable[Verdict], out: list[Command]) -> None:
        for verdict in verdicts:
            if verdict.decision == "go_active" and self.links.unfit(self.config):
                continue  # a link it needs is down: links_back decides when it returns
            if verdict.decision == "go_active" and self.failover.role == "standby":
                self._go_active(verdict.reason, out)
            elif verdict.decision == "go_standby" and self.failover.role == "active":
                self._go_standby(verdict.reason, out)
            elif verdict.decision == "refresh" and self.failover.role == "active" and not self.holding.arping:
                self.holding.announce(1)
                self._arp_round(out)
            elif verdict.decision == "rearp" and self.failover.role == "active":
                assert self.now_ms is not None
                if self.holding.rearp_allowed(self.now_ms, self.config.arp_interval_ms):
                    self.holding.announce(self.config.arp_count)
                    self._arp_round(out)

    def _go_active(self, reason: str, out: list[Command], *, announce: bool = True) -> None:
        assert self.now_ms is not None
        c = self.config
        self.failover.set_role("active", self.now_ms)
        # The table (kept in step on the standby: usually nothing to do) before the addresses: a
        # client's first packet to the new owner (sent as soon as a gratuitous ARP reaches it)
        # finds the service, never a router without it (a reset).  Nothing else before the
        # addresses and their announcement: every millisecond here is a client waiting.
        out.extend(self.keeper.apply(self.keeper.desired()))
        out.extend(self.holding.hold(self.holding.wanted(c)))
        if announce:
            self.holding.announce(c.arp_count)
            self._arp_round(out)
        out.append(Notify("role", {"from": "standby", "to": "active", "reason": reason}))
        out.extend(self.holding.sync(c, "master"))
        if c.active_cmd:
            out.append(RunCommand(c.active_cmd, "active_cmd", c.command_timeout_ms))

    def _go_standby(self, reason: str, out: list[Command]) -> None:
        assert self.now_ms is not None
        self.failover.set_role("standby", self.now_ms)
        out.append(Notify("role", {"from": "active", "to": "standby", "reason": reason}))
        self._release(out)

    def _release(self, out: list[Command]) -> None:
        c = self.config
        if c.inactive_cmd:
            out.append(RunCommand(c.inactive_cmd, "inactive_cmd", c.command_timeout_ms))
        # The addresses before the table: while this router holds a VIP, a client's packet to it
        # finds the service (never a router with the VIP and without the table: a reset).
        out.extend(self.holding.release())
        out.extend(self.holding.sync(c, "backup" if not self.failover.leaving else None))
        self.timers.cancel(ARP)

    def _shutdown(self, out: list[Command]) -> None:
        assert self.now_ms is not None
        was = self.failover.role
        out.extend(self.failover.leave(self.now_ms))
        if was == "active":
            out.append(Notify("role", {"from": "active", "to": "standby", "reason": "shutting down"}))
            self._release(out)
        elif self.holding.sync_state is not None:
            out.extend(self.holding.sync(self.config, None))
        out.extend(self.keeper.apply({}))
        self.stopped = True

    # ================================================================ config and members

    def _configure(self, config: Config) -> None:
        self.registry.build(config)
        self.keeper.configure(config)
        self._cache.reset(config)
        self._recompute_all()

    def _reload(self, config: Config, key: bytes | None, out: list[Command]) -> None:
        assert self.now_ms is not None
        previous, was_unfit = self.config, self.links.unfit(self.config)
        self.config = config
        self.failover.reconfigure(config, key)
        timed = self.registry.deadlines()
        self._configure(config)
        self.timers.follow(timed, self.registry.deadlines(), self.now_ms)  # new checks and loads run now
        interval = config.table_check_interval_ms
        if interval != previous.table_check_interval_ms:
            if interval:
                self.timers.set(TABLE_CHECK, self.now_ms + interval)
            else:
                self.timers.cancel(TABLE_CHECK)
        out.append(Notify("config", {"serial_no": config.serial_no}))
        if isinstance(self.failover, VrrpFailover):
            self.failover.set_unfit(self.links.unfit(config))
        if self.links.unfit(config) and not was_unfit:  # monitor_links turned on while a link is down
            self._give_up(self.now_ms, out)
        elif was_unfit and not self.links.unfit(config):
            self._verdicts(self.failover.links_back(self.now_ms), out)
        timeouts = (config.tcp_timeout_s, config.tcpfin_timeout_s, config.udp_timeout_s)
        if timeouts != (previous.tcp_timeout_s, previous.tcpfin_timeout_s, previous.udp_timeout_s) and any(timeouts):
            out.append(SetTimeouts(*timeouts))
        if self.failover.role == "active":
            before = set(self.holding.addresses)
            out.extend(self.holding.hold(self.holding.wanted(config)))
            if self.holding.announce_new(before, config.arp_count):
                self._arp_round(out)
        out.extend(self.keeper.apply(self.keeper.desired()))

    def _recompute_all(self) -> None:
        for virtual in self.config.virtuals:
            self.keeper.recompute(self.config, virtual, self.registry.views(virtual))

    def _refresh(self, virtual_name: str, out: list[Command]) -> None:
        """Recompute one virtual's entry, and the kernel's."""
        virtual = self.config.virtual(virtual_name)
        out.extend(self.keeper.refresh(self.config, virtual, self.registry.views(virtual)))
        self._cache.virtual_changed(virtual_name)

    def _refresh_member(self, key: MemberKey, out: list[Command]) -> None:
        """One member changed: its destination in its virtual's entry, and the kernel's."""
        member = self.registry.members[key]
        ops, rebuilt = self.keeper.refresh_member(self.config, member.virtual, self.registry.view(key))
        out.extend(ops)
        if rebuilt:
            self._cache.virtual_changed(key[0])
        else:
            self._cache.member_changed(key)

    def _check_completed(self, check_id: int, ok: bool, detail: str, out: list[Command]) -> None:
        result = self.registry.check_completed(check_id, ok, detail)
        if result is None:
            return  # a result for a check that a reload removed, or a duplicate
        before, after, members = result
        self._cache.members_changed(members)
        for key in members:
            observed = self.registry.observed(key, before, after, detail, self.config.command_timeout_ms)
            if observed is not None:
                out.extend(observed.before)
                self._refresh_member(key, out)
                out.extend(observed.after)

    # ================================================================ status

    @property
    def status(self) -> Status:
        """The current status snapshot (rebuilt only where something changed)."""
        if self._status is not None and self._status_step == self._steps:
            return self._status
        self._status_step = self._steps
        fo = self.failover
        now = self.now_ms or 0
        self._status = Status(
            node=self.node, role=fo.role, now_ms=now, serial_no=self.config.serial_no,
            vips=self.holding.addresses,
            partner=fo.partner_status(now),
            services=self._cache.services(self.config, self._server_rows, self._member_status, self._service_status),
            counters={**fo.counters, **self.sync.counters},
            table=self.keeper.status(self.config.table_check_interval_ms),
            auth="none" if fo.key is None else "hmac-sha256",
            links_down=tuple(sorted(self.links.down)), unfit=self.links.unfit(self.config),
        )
        return self._status

    def _dests(self, virtual_name: str) -> Mapping[DestKey, Dest]:
        entry = self.keeper.entries.get(virtual_name)
        return entry.dests if entry is not None else {}

    def _server_rows(self, virtual: Virtual) -> list[tuple[MemberKey, ServerStatus]]:
        return self.registry.server_rows(virtual, self._dests(virtual.name))

    def _member_status(self, key: MemberKey) -> ServerStatus:
        return self.registry.member_status(key, self._dests(key[0]))

    def _service_status(self, virtual: Virtual, servers: tuple[ServerStatus, ...]) -> ServiceStatus:
        name = virtual.name
        return self.registry.service_status(
            virtual, self.keeper.service_keys[name] is not None, self.keeper.quorum.get(name, True),
            self.keeper.wanted.sorry_in.get(name, False), servers)
