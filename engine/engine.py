"""The engine: one router's decisions, driven by `step(now_ms, input)`.

    engine = Engine(config, "primary")
    ready = engine.step(now_ms, Tick())   # -> Ready(commands, next_deadline_ms, status)

The engine composes the state machines (`failover`, `health`, `pool`,
`diff`) and turns their verdicts into commands; the rules that depend on
several of them at once (going active, a reload, a check result fanned out
to every virtual sharing it) live here.  Command order: see
`engine.events`.  Time is an input and never goes backwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Hashable, Iterable, Mapping

from engine import health as nanny
from engine.diff import diff, diff_service
from engine.events import (
    AddVip, AdminRequested, CheckCompleted, CheckSpec, Command, CommandFailed, ConfigLoaded, DelVip,
    HeartbeatReceived, Input, LoadRead, Notify, ReadLoad, ReadTable, RunCommand, SendGratuitousArp,
    SetTimeouts, ShutdownRequested, StartCheck, StartSyncDaemon, StopSyncDaemon, TableOp, TableRead, Tick,
    TABLE_OPS,
)
from engine.failover import Failover, Noticed, Verdict
from engine.model import Config, Node, Server, Virtual
from engine.pool import Member, desired_entry, dest_port, prefix_of, quorum_state, service_key
from engine.status import PartnerStatus, ServerStatus, ServiceStatus, Status, TableStatus, op_text
from engine.table import Dest, DestKey, ServiceEntry, ServiceKey, Table
from engine.timers import Timers

LOAD_PERIOD_MS = 20_000  # nanny reads load_monitor about every 20 s
DRIFT_OPS_KEPT = 20  # reconciling operations kept in the status for the last drift


@dataclass(frozen=True, slots=True)
class Ready:
    """What one step decided: commands to carry out in order (see
    `engine.events`), when to wake next, and the status snapshot.

    `status` is built when first read (most steps' status is never read,
    and building it is most of a step's cost); read it before the next
    step, or read `Engine.status` for the current one.

    A `ReadTable` (every `table_check_interval`, and after a table command
    failed) is answered with one `TableRead`, or a `CommandFailed` naming
    it, in the order asked, the table read when the command is carried out
    (after the table operations before it).  A read answered after table
    operations of later steps went out may miss them: the engine discards
    it and asks again, rather than take it for drift.
    """

    commands: tuple[Command, ...]
    next_deadline_ms: int | None
    _engine: "Engine" = field(repr=False, compare=False)
    _step: int = field(repr=False, compare=False)

    @property
    def status(self) -> Status:
        return self._engine._status_of_step(self._step)


# An operator's request on a server, and the override it sets (health.py's Admin).
SERVER_ACTIONS: Mapping[str, nanny.Admin] = {
    "drain": "drain", "undrain": "auto", "force_down": "force_down", "force_up": "force_up", "auto": "auto"}
ADMIN_ACTIONS = ("failover", *SERVER_ACTIONS)


class EngineMisuse(Exception):
    """The caller broke the engine's contract (time going backwards, unknown names...)."""


class InvariantBroken(Exception):
    """The engine contradicts itself: a bug, checked on every step, in production too."""


@dataclass(slots=True)
class _Check:
    spec: CheckSpec
    health: nanny.Health
    rise: int
    fall: int
    interval_ms: int
    members: list[tuple[str, str]]
    in_flight: bool = False


@dataclass(slots=True)
class _Member:
    virtual: Virtual
    server: Server
    check_id: int | None  # None: `check = none`, always up
    load_id: int | None
    weight: int
    admin: nanny.Admin = "auto"


def check_spec(virtual: Virtual, server: Server) -> CheckSpec | None:
    if virtual.check == "none" or server.address is None:
        return None
    kind = virtual.check if virtual.check != "auto" else virtual.protocol
    port = server.port if server.port is not None else virtual.port
    return CheckSpec(
        address=server.address, port=port, kind=kind, send=virtual.send, expect=virtual.expect,
        use_regex=virtual.use_regex, send_program=virtual.send_program,
        timeout_ms=virtual.timeout_ms, http_path=virtual.http_path, http_status=virtual.http_status,
    )


class Engine:
    def __init__(
        self, config: Config, node: Node, *, heartbeat_key: bytes | None = None, seq_start: int = 0,
    ) -> None:
        if node not in ("primary", "backup"):
            raise EngineMisuse(f"node must be 'primary' or 'backup', not {node!r}")
        self.node: Node = node
        self.config = config
        self.failover = Failover(config, node, key=heartbeat_key, seq_start=seq_start)
        self.timers = Timers()
        self.now_ms: int | None = None
        self.stopped = False
        self._steps = 0
        self._expected_ms: int | None = None
        self._checks: dict[int, _Check] = {}
        self._check_ids: dict[CheckSpec, int] = {}
        self._loads: dict[int, tuple[str, str, str | None, list[tuple[str, str]]]] = {}
        self._members: dict[tuple[str, str], _Member] = {}
        self._next_id = 1
        self._entries: dict[str, ServiceEntry | None] = {}  # desired, by virtual name
        self._quorum: dict[str, bool] = {}
        self.applied: dict[ServiceKey, ServiceEntry] = {}
        self.vips: tuple[tuple[str, int, str, str], ...] = ()  # held: (address, prefix, device, label)
        self._vip_addresses: tuple[str, ...] = ()
        self._wanted: tuple[tuple[str, int, str, str], ...] = ()
        self._wanted_for: Config | None = None
        self._virtual_index: dict[str, int] = {}
        self._service_keys: dict[str, ServiceKey | None] = {}
        self._arp_left: dict[str, tuple[str, int]] = {}  # address -> (device, ARPs still to send)
        self._sync_state: str | None = None
        self._last_rearp_ms = -(2**62)
        # Table checks (see `_table_read`): the table generation when each
        # pending `ReadTable` was asked (oldest first), bumped whenever table
        # operations go out; a read asked before the last operations is stale.
        self._table_gen = 0
        self._reads: list[int] = []
        self._table_checks = 0
        self._stale_reads = 0
        self._drifts = 0
        self._last_drift_ms: int | None = None
        self._last_drift: tuple[str, ...] = ()
        # Status is rebuilt incrementally: only what changed since the last snapshot.
        self._server_cache: dict[tuple[str, str], ServerStatus] = {}
        self._service_cache: dict[str, ServiceStatus] = {}
        self._services: tuple[ServiceStatus, ...] | None = None
        self._dirty_members: set[tuple[str, str]] = set()
        self._dirty_virtuals: set[str] = set()
        self._status: Status | None = None
        self._status_step = -1
        self._build(config, previous=None)
        self._recompute_all([])

    # ================================================================ step

    def step(self, now_ms: int, event: Input) -> Ready:
        if self.now_ms is not None and now_ms < self.now_ms:
            raise EngineMisuse(f"time went backwards: {now_ms} ms after {self.now_ms} ms")
        first = self.now_ms is None
        stalled = self._expected_ms is not None and now_ms > self._expected_ms + self.config.keepalive_ms
        self.now_ms = now_ms
        out: list[Command] = []
        if self.stopped:
            return self._ready(out)
        if first:
            adopted = isinstance(event, TableRead) and bool(event.table)
            if isinstance(event, TableRead):
                self.applied = dict(event.table)
                self._adopt(event.table)
                if not adopted:
                    self._clear_leftover_vips(out)
            self._start(now_ms, adopted, out)
            if isinstance(event, TableRead):
                event = Tick()
        match event:
            case Tick():
                pass
            case HeartbeatReceived(path, source, payload):
                self._verdicts(self.failover.receive(now_ms, path, source, payload), out)
                for note in self.failover.take_notes():
                    where = {"path": note.path, "source": note.source} if note.path and note.source else {}
                    out.append(Notify("heartbeat_ignored", {"counter": note.counter, "why": note.why, **where}))
            case CheckCompleted(check_id, ok, detail):
                self._check_completed(check_id, ok, detail, out)
            case LoadRead(load_id, load):
                self._load_read(load_id, load, out)
            case ConfigLoaded(config, key):
                self._reload(config, key, out)
            case CommandFailed(command, error):
                self._failed(command, error, out)
            case TableRead(table):
                self._table_read(table, out)
            case AdminRequested():
                self._admin(event, out)
            case ShutdownRequested():
                self._shutdown(out)
                return self._ready(out)
            case _:
                raise EngineMisuse(f"not an engine input: {event!r}")
        self._due(now_ms, stalled, out)
        return self._ready(out)

    def _ready(self, out: list[Command]) -> Ready:
        deadline = None if self.stopped else self._next_deadline()
        self._expected_ms = deadline
        self._check_invariants()
        self._steps += 1
        return Ready(tuple(self._ordered(out)), deadline, self, self._steps)

    def _check_invariants(self) -> None:
        if self.failover.role == "standby" and (self.applied or self.vips):
            raise InvariantBroken(
                f"{self.node} is standby but holds {len(self.applied)} service(s) and VIPs {self._vip_addresses}")
        if self.failover.role == "active" and not self.stopped and self.vips != self._wanted_vips():
            raise InvariantBroken(f"{self.node} is active but holds VIPs {self._vip_addresses}, "
                                  f"not {[v[0] for v in self._wanted_vips()]}")

    def _status_of_step(self, step: int) -> Status:
        if step != self._steps:
            raise EngineMisuse(f"Ready.status of step {step} read after step {self._steps}: "
                               "read it before the next step, or read Engine.status")
        return self.status

    @staticmethod
    def _ordered(out: list[Command]) -> list[Command]:
        # Heartbeats first: a change of role is announced before it is carried out.
        first = [c for c in out if type(c).__name__ == "SendHeartbeat"]
        if not first:
            return out
        return first + [c for c in out if type(c).__name__ != "SendHeartbeat"]

    def _next_deadline(self) -> int | None:
        times = [t for t in (self.timers.next(), self.failover.next_deadline()) if t is not None]
        return min(times) if times else None

    def _clear_leftover_vips(self, out: list[Command]) -> None:
        """Booting over an empty kernel table, this router starts standby: a
        configured VIP still on an interface (a previous life crashed with
        it) would make two owners.  Remove each (the driver's delete is a
        no-op for an address that is not there)."""
        wanted = self._wanted_vips()
        if wanted:
            out.append(Notify("vip_cleanup", {"reason": "starting standby: configured VIPs removed if present",
                                              "addresses": " ".join(v[0] for v in wanted)}))
            out.extend(DelVip(*vip) for vip in reversed(wanted))

    def _start(self, now_ms: int, adopted: bool, out: list[Command]) -> None:
        for check_id in self._checks:
            self.timers.set(("check", check_id), now_ms)
        for load_id in self._loads:
            self.timers.set(("load", load_id), now_ms)
        if self.config.table_check_interval_ms:
            self.timers.set(("table", 0), now_ms + self.config.table_check_interval_ms)
        if self.config.syncdaemon:
            out.append(StartSyncDaemon("backup", self.config.syncd_iface, self.config.syncd_id))
            self._sync_state = "backup"
        verdicts = self.failover.start(now_ms)
        if adopted and self.failover.enabled:
            verdicts = [Verdict("go_active", "adopted the table the kernel holds")]
        self._verdicts(verdicts, out)

    def _due(self, now_ms: int, stalled: bool, out: list[Command]) -> None:
        verdicts, notes = self.failover.tick(now_ms, stalled)
        for note in notes:
            match note:
                case Noticed("heartbeat_lost", path):
                    out.append(Notify("heartbeat_lost", {"path": path}))
                case Noticed("partner_dead"):
                    out.append(Notify("partner", {"alive": False, "reason": "no heartbeat for deadtime"}))
                case Noticed("stall"):
                    out.append(Notify("stall", {"reason": "step late: listening one more keepalive"}))
                case Noticed("hold_expired"):
                    out.append(Notify("hold", {"reason": "the partner did not take over within deadtime + keepalive "
                                                         "of the operator's failover: the usual rules apply again"}))
                case _:
                    raise EngineMisuse(f"a notice the engine does not know: {note}")
        self._verdicts(verdicts, out)
        out.extend(self.failover.due_heartbeats(now_ms))
        for name in self.timers.pop_due(now_ms):
            self._timer(name, now_ms, out)

    def _timer(self, name: Hashable, now_ms: int, out: list[Command]) -> None:
        assert isinstance(name, tuple)
        kind, ident = name
        if kind == "check":
            check = self._checks.get(ident)
            if check is None:
                return
            self.timers.set(name, now_ms + check.interval_ms)
            if not check.in_flight:
                check.in_flight = True
                out.append(StartCheck(ident, check.spec))
        elif kind == "load":
            load = self._loads.get(ident)
            if load is None:
                return
            self.timers.set(name, now_ms + LOAD_PERIOD_MS)
            out.append(ReadLoad(ident, load[0], load[1], load[2]))
        elif kind == "arp":
            self._arp_round(now_ms, out)
        elif kind == "table":
            if self.config.table_check_interval_ms:
                self.timers.set(name, now_ms + self.config.table_check_interval_ms)
            if not self._reads:  # one check at a time: a slow driver does not pile them up
                self._ask_table(out)

    # ================================================================ role

    def _verdicts(self, verdicts: Iterable[Verdict], out: list[Command]) -> None:
        for verdict in verdicts:
            if verdict.decision == "go_active" and self.failover.role == "standby":
                self._go_active(verdict.reason, out)
            elif verdict.decision == "go_standby" and self.failover.role == "active":
                self._go_standby(verdict.reason, out)
            elif verdict.decision == "rearp" and self.failover.role == "active":
                # One round per arp_interval at most: both paths' heartbeats
                # often arrive together and would each restart it.
                assert self.now_ms is not None
                if self.now_ms - self._last_rearp_ms >= self.config.arp_interval_ms:
                    self._last_rearp_ms = self.now_ms
                    self._schedule_arps(out)

    def _go_active(self, reason: str, out: list[Command]) -> None:
        assert self.now_ms is not None
        self.failover.set_role("active", self.now_ms)
        out.append(Notify("role", {"from": "standby", "to": "active", "reason": reason}))
        self._set_vips(self._wanted_vips(), out)
        self._schedule_arps(out)
        c = self.config
        if c.tcp_timeout_s or c.tcpfin_timeout_s or c.udp_timeout_s:
            out.append(SetTimeouts(c.tcp_timeout_s, c.tcpfin_timeout_s, c.udp_timeout_s))
        self._sync("master", out)
        self._apply(self._desired(), out)
        if c.active_cmd:
            out.append(RunCommand(c.active_cmd, "active_cmd", c.command_timeout_ms))

    def _go_standby(self, reason: str, out: list[Command], *, hand_over: bool = False) -> None:
        assert self.now_ms is not None
        if hand_over:
            out.extend(self.failover.hand_over(self.now_ms))
        else:
            self.failover.set_role("standby", self.now_ms)
        out.append(Notify("role", {"from": "active", "to": "standby", "reason": reason}))
        self._release(out)

    def _release(self, out: list[Command]) -> None:
        c = self.config
        if c.inactive_cmd:
            out.append(RunCommand(c.inactive_cmd, "inactive_cmd", c.command_timeout_ms))
        self._apply({}, out)
        self._sync("backup" if not self.failover.leaving else None, out)
        self._set_vips((), out)
        self._arp_left.clear()
        self.timers.cancel(("arp", 0))

    def _sync(self, state: str | None, out: list[Command]) -> None:
        if not self.config.syncdaemon or state == self._sync_state:
            return
        if self._sync_state is not None:
            out.append(StopSyncDaemon("master" if self._sync_state == "master" else "backup"))
        if state is not None:
            out.append(StartSyncDaemon("master" if state == "master" else "backup",
                                       self.config.syncd_iface, self.config.syncd_id))
        self._sync_state = state

    def _wanted_vips(self) -> tuple[tuple[str, int, str, str], ...]:
        """The addresses an active router holds under this config (cached per config)."""
        if self._wanted_for is not self.config:
            self._wanted = self._compute_wanted_vips()
            self._wanted_for = self.config
        return self._wanted

    def _compute_wanted_vips(self) -> tuple[tuple[str, int, str, str], ...]:
        wanted: list[tuple[str, int, str, str]] = []
        seen: set[str] = set()
        for virtual in self.config.virtuals:
            if virtual.active and virtual.address and virtual.address not in seen:
                seen.add(virtual.address)
                wanted.append(_vip(virtual.address, virtual.vip_nmask, virtual.device))
        c = self.config
        if c.nat_router and c.nat_router not in seen:
            wanted.append(_vip(c.nat_router, c.nat_nmask, c.nat_router_device))
        return tuple(wanted)

    def _set_vips(self, wanted: tuple[tuple[str, int, str, str], ...], out: list[Command]) -> None:
        """Add what is wanted and not held (in order), remove the rest (reverse order)."""
        held = set(self.vips)
        for vip in reversed(self.vips):
            if vip not in wanted:
                out.append(DelVip(*vip))
                self._arp_left.pop(vip[0], None)
        for vip in wanted:
            if vip not in held:
                out.append(AddVip(*vip))
        self.vips = wanted
        self._vip_addresses = tuple(v[0] for v in wanted)

    def _schedule_arps(self, out: list[Command]) -> None:
        """A new round of gratuitous ARPs for every held VIP: the first now."""
        for address, _, device, _ in self.vips:
            self._arp_left[address] = (device, self.config.arp_count)
        assert self.now_ms is not None
        self._arp_round(self.now_ms, out)

    def _arp_round(self, now_ms: int, out: list[Command]) -> None:
        for address in list(self._arp_left):
            device, left = self._arp_left[address]
            out.append(SendGratuitousArp(address, device))
            if left <= 1:
                del self._arp_left[address]
            else:
                self._arp_left[address] = (device, left - 1)
        if self._arp_left:
            self.timers.set(("arp", 0), now_ms + self.config.arp_interval_ms)
        else:
            self.timers.cancel(("arp", 0))

    # ================================================================ table

    def _desired(self) -> dict[ServiceKey, ServiceEntry]:
        return {e.service.key: e for e in self._entries.values() if e is not None}

    def _apply(self, desired: Table, out: list[Command]) -> list[TableOp]:
        ops = diff(self.applied, desired)
        out.extend(ops)
        self.applied = dict(desired)
        if ops:
            self._table_gen += 1
        return ops

    def _refresh(self, virtual_name: str, out: list[Command]) -> None:
        """Recompute one virtual's service; update the kernel if active."""
        virtual = self.config.virtual(virtual_name)
        old = self._entries.get(virtual_name)
        members = [self._member_view(m) for m in self._members_of(virtual)]
        was_ok = self._quorum.get(virtual_name, True)
        ok = quorum_state(virtual, members, was_ok)
        if ok != was_ok:
            self._quorum[virtual_name] = ok
            out.append(Notify("quorum", {"service": virtual_name, "ok": ok}))
        new = desired_entry(self.config, virtual, members, ok, self._service_keys[virtual_name])
        self._entries[virtual_name] = new
        self._dirty_virtuals.add(virtual_name)
        if self.failover.role != "active" or new == old:
            return
        key = (new or old).service.key  # type: ignore[union-attr]
        ops = diff_service(key, self.applied.get(key), new)
        out.extend(ops)
        if ops:
            self._table_gen += 1
        if new is None:
            self.applied.pop(key, None)
        else:
            self.applied[key] = new

    def _members_of(self, virtual: Virtual) -> list[_Member]:
        return [self._members[(virtual.name, s.name)] for s in virtual.servers
                if (virtual.name, s.name) in self._members]

    def _standing(self, member: _Member) -> str:
        checked = self._checks[member.check_id].health.status if member.check_id is not None else "up"
        status = nanny.effective(checked, member.admin)
        if member.admin == "drain" and status == "up":
            return "drained"
        return status

    def _member_view(self, member: _Member) -> Member:
        server, virtual = member.server, member.virtual
        assert server.address is not None
        return Member(
            name=server.name, address=server.address, port=dest_port(virtual, server.port),
            standing=self._standing(member), weight=member.weight,  # type: ignore[arg-type]
            configured_weight=server.weight,
        )

    # ================================================================ health

    def _check_completed(self, check_id: int, ok: bool, detail: str, out: list[Command]) -> None:
        check = self._checks.get(check_id)
        if check is None or not check.in_flight:
            return  # a result for a check that a reload removed, or a duplicate
        check.in_flight = False
        before = check.health.status
        check.health = nanny.observe(check.health, ok, detail, rise=check.rise, fall=check.fall)
        after = check.health.status
        for key in check.members:
            member = self._members[key]
            self._dirty_members.add(key)
            if after != before:
                self._health_changed(member, before, after, detail, out)
            elif after == "up" and member.weight < member.server.weight and member.virtual.load_monitor == "none":
                member.weight = nanny.slow_start_next(member.weight, member.server.weight)
                self._refresh(member.virtual.name, out)

    def _health_changed(self, member: _Member, before: str, after: str, detail: str, out: list[Command]) -> None:
        virtual, server = member.virtual, member.server
        if after == "up":
            member.weight = server.weight if before == "unknown" else nanny.slow_start_weight(server.weight)
        out.append(Notify("health", {
            "service": virtual.name, "server": server.name, "from": before, "to": after, "detail": detail,
        }))
        self._refresh(virtual.name, out)
        command = server.notify_up if after == "up" else server.notify_down if after == "down" else None
        if command:
            out.append(RunCommand(command, f"notify_{after} {virtual.name}/{server.name}",
                                  self.config.command_timeout_ms))

    def _load_read(self, load_id: int, load: float | None, out: list[Command]) -> None:
        entry = self._loads.get(load_id)
        if entry is None:
            return
        for key in entry[3]:
            member = self._members[key]
            if self._standing(member) != "up":
                continue
            new = nanny.load_adjust(member.weight, member.server.weight, load)
            if new is not None and new != member.weight:
                member.weight = new
                out.append(Notify("weight", {"service": key[0], "server": key[1], "weight": new}))
                self._refresh(key[0], out)

    def admin_refusal(self, request: AdminRequested) -> str | None:
        """Why `request` would be refused now, in the operator's terms; None:
        it would be carried out.  A pure query: the driver answers the
        operator with it, and `step` asks again (the state may have moved
        between the two).

        A failover needs a partner ready to take over: heard both ways
        (its heartbeats reach us and acknowledge ours within `deadtime`),
        standby, and running the same `serial_no`.  Handing over to a
        partner that cannot hear us, or one that runs another
        configuration, could leave nobody serving.
        """
        fo = self.failover
        now = self.now_ms or 0
        if request.action == "failover":
            if not fo.enabled:
                return "no failover configured (backup_active = 0 or no backup address)"
            if fo.role != "active":
                return "this router is standby: nothing to hand over"
            if not fo.partner_can_take:
                return "the partner cannot take over (backup_active = 0)"
            if not fo.partner_alive:
                return "the partner is not heard"
            if fo.config.heartbeat_format != "shoal":
                return "heartbeat_format = piranha cannot tell whether the partner hears us"
            if not fo.partner_hears_us(now):
                return "the partner does not hear us (its heartbeats acknowledge none of ours within deadtime)"
            if fo.partner_state != "standby":
                return f"the partner is {fo.partner_state or 'unknown'}, not standby"
            if fo.partner_serial != self.config.serial_no:
                return (f"the partner runs serial_no {fo.partner_serial}, this router {self.config.serial_no}: "
                        "reload both with the same lvs.cf first")
            return None
        if request.action not in SERVER_ACTIONS:
            return f"unknown admin action {request.action!r}"
        if not self._matching_members(request.server, request.virtual):
            where = f" in virtual {request.virtual}" if request.virtual else ""
            return f"no real server named {request.server}{where}"
        return None

    def _admin(self, request: AdminRequested, out: list[Command]) -> None:
        refusal = self.admin_refusal(request)
        if refusal is not None:
            out.append(Notify("admin_refused", {"action": request.action, "server": request.server,
                                                "reason": refusal}))
            return
        if request.action == "failover":
            self._go_standby("operator: failover", out, hand_over=True)
            return
        targets = self._matching_members(request.server, request.virtual)
        admin = SERVER_ACTIONS[request.action]
        for key in targets:
            member = self._members[key]
            before = self._standing(member)
            member.admin = admin
            if self._standing(member) == "up" and before in ("down", "unknown"):
                member.weight = member.server.weight
            self._refresh(key[0], out)

    def _matching_members(self, server: str, virtual: str) -> list[tuple[str, str]]:
        """The (virtual, server) members a request names: `SERVER`, `VIRTUAL/SERVER`,
        or `server` with `virtual`; [] when none."""
        if "/" in server and not virtual:
            virtual, server = server.split("/", 1)
        return [k for k in self._members if k[1] == server and (not virtual or k[0] == virtual)]

    # ================================================================ config

    def _build(self, config: Config, previous: Config | None) -> None:
        """(Re)build checks and members from `config`, keeping what is unchanged."""
        old_checks, old_ids, old_members = self._checks, self._check_ids, self._members
        old_health = {key: old_checks[m.check_id].health for key, m in old_members.items()
                      if m.check_id is not None}
        self._checks, self._check_ids, self._members, self._loads = {}, {}, {}, {}
        loads: dict[tuple[str, str, str | None], int] = {}
        for virtual in config.virtuals:
            if not virtual.active:
                continue
            for server in virtual.servers:
                if not server.active or server.address is None:
                    continue
                key = (virtual.name, server.name)
                spec = check_spec(virtual, server)
                check_id = None
                if spec is not None:
                    check_id = self._check_id(spec, virtual, old_ids, old_checks, old_health.get(key))
                    self._checks[check_id].members.append(key)
                load_id = None
                if virtual.load_monitor != "none" or virtual.load_command:
                    method = "command" if virtual.load_command else virtual.load_monitor
                    lkey = (server.address, method, virtual.load_command)
                    if lkey not in loads:
                        loads[lkey] = self._new_id()
                        self._loads[loads[lkey]] = (*lkey, [])
                    load_id = loads[lkey]
                    self._loads[load_id][3].append(key)
                old = old_members.get(key)
                weight = server.weight
                admin: nanny.Admin = "auto"
                if old is not None:
                    admin = old.admin
                    if old.server.weight == server.weight:
                        weight = old.weight
                self._members[key] = _Member(virtual, server, check_id, load_id, weight, admin)
        self._entries = {}
        self._virtual_index = {v.name: i for i, v in enumerate(config.virtuals)}
        self._service_keys = {v.name: service_key(v) for v in config.virtuals}
        self._server_cache.clear()
        self._service_cache.clear()
        self._services = None

    def _check_id(self, spec: CheckSpec, virtual: Virtual, old_ids: dict[CheckSpec, int],
                  old_checks: dict[int, _Check], inherited: nanny.Health | None) -> int:
        if spec in self._check_ids:
            return self._check_ids[spec]
        check_id = old_ids.get(spec)
        if check_id is not None:
            old = old_checks[check_id]
            check = replace_check(old, rise=virtual.rise_count, fall=virtual.fall_count,
                                  interval_ms=virtual.interval_ms)
        else:
            check_id = self._new_id()
            # A changed check of a known server keeps its health: a down server stays down.
            health = replace(inherited, run=0) if inherited is not None else nanny.Health()
            check = _Check(spec, health, virtual.rise_count, virtual.fall_count, virtual.interval_ms, [])
        self._check_ids[spec] = check_id
        self._checks[check_id] = check
        return check_id

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _reload(self, config: Config, key: bytes | None, out: list[Command]) -> None:
        assert self.now_ms is not None
        previous = self.config
        self.config = config
        self.failover.reconfigure(config, key)
        old_timers = {cid: self.timers.get(("check", cid)) for cid in self._checks}
        old_loads = set(self._loads)
        self._build(config, previous)
        for check_id in old_timers:
            if check_id not in self._checks:
                self.timers.cancel(("check", check_id))
        for check_id in self._checks:
            if check_id not in old_timers:
                self.timers.set(("check", check_id), self.now_ms)
        for load_id in old_loads - set(self._loads):
            self.timers.cancel(("load", load_id))
        for load_id in self._loads:
            if load_id not in old_loads:
                self.timers.set(("load", load_id), self.now_ms)
        interval = config.table_check_interval_ms
        if interval != previous.table_check_interval_ms:
            if interval:
                self.timers.set(("table", 0), self.now_ms + interval)
            else:
                self.timers.cancel(("table", 0))
        self._recompute_all(out)
        out.append(Notify("config", {"serial_no": config.serial_no}))
        if self.failover.role == "active":
            before = {v[0] for v in self.vips}
            self._set_vips(self._wanted_vips(), out)
            new = [v for v in self.vips if v[0] not in before]
            for address, _, device, _ in new:
                self._arp_left[address] = (device, config.arp_count)
            if new:
                self._arp_round(self.now_ms, out)
            self._apply(self._desired(), out)

    def _recompute_all(self, out: list[Command]) -> None:
        for virtual in self.config.virtuals:
            members = [self._member_view(m) for m in self._members_of(virtual)]
            ok = quorum_state(virtual, members, self._quorum.get(virtual.name, True))
            self._quorum[virtual.name] = ok
            key = self._service_keys[virtual.name]
            self._entries[virtual.name] = desired_entry(self.config, virtual, members, ok, key) if key else None

    # ================================================================ kernel

    def _failed(self, command: Command, error: str, out: list[Command]) -> None:
        out.append(Notify("error", {"what": f"{type(command).__name__} failed: {error}"}))
        if isinstance(command, ReadTable):
            if self._reads:  # reads are answered in order: the oldest pending one failed
                self._reads.pop(0)
        elif isinstance(command, TABLE_OPS):
            self._ask_table(out)

    def _ask_table(self, out: list[Command]) -> None:
        out.append(ReadTable())
        self._reads.append(self._table_gen)

    def _table_read(self, table: Table, out: list[Command]) -> None:
        """Reconcile: the kernel holds `table`; bring it to what we want.

        A read asked before table operations that went out since may not
        show them (the driver carried them out after reading): it is
        discarded and the table read again, rather than taken for drift.
        A fresh read that differs from what the engine applied is drift
        (a change behind our back, or a command that failed): counted,
        noted, shown in the status, and reconciled.  Both roles check: a
        standby's table must stay empty.
        """
        asked = self._reads.pop(0) if self._reads else self._table_gen
        if asked != self._table_gen:
            self._stale_reads += 1
            if not self._reads:
                self._ask_table(out)
            return
        self._table_checks += 1
        drifted = table != self.applied
        self.applied = dict(table)
        desired = self._desired() if self.failover.role == "active" else {}
        if not drifted and self.applied == desired:
            return
        ops = self._apply(desired, out)
        texts = [op_text(op) for op in ops]
        if drifted:
            assert self.now_ms is not None
            self._drifts += 1
            self._last_drift_ms = self.now_ms
            kept = texts[:DRIFT_OPS_KEPT]
            if len(texts) > len(kept):
                kept.append(f"... {len(texts) - len(kept)} more")
            self._last_drift = tuple(kept)
        out.append(Notify("drift", {
            "what": "kernel table differs from what was applied; reconciling" if drifted
                    else "applied table differs from the desired one; reconciling",
            "ops": len(ops), "diff": "; ".join(texts[:5]) + (f"; ... {len(texts) - 5} more" if len(texts) > 5 else ""),
        }))

    def _adopt(self, table: Table) -> None:
        """A table found at start: a real server it holds at a weight above
        0 counts as up (its check still unknown until the first result,
        which takes it out at once if it fails), at the weight found, so
        that going active over it changes nothing that is still right."""
        for key, member in self._members.items():
            service_key_ = self._service_keys.get(key[0])
            entry = table.get(service_key_) if service_key_ is not None else None
            if entry is None or member.server.address is None:
                continue
            dest = entry.dests.get(DestKey(member.server.address, dest_port(member.virtual, member.server.port)))
            if dest is None or dest.weight <= 0:
                continue
            member.weight = min(dest.weight, member.server.weight)
            self._dirty_members.add(key)
            if member.check_id is not None:
                check = self._checks[member.check_id]
                if check.health.status == "unknown":
                    check.health = replace(check.health, status="up", run=max(0, check.fall - 1),
                                           last_detail="adopted from the kernel table")
        self._recompute_all([])

    def _shutdown(self, out: list[Command]) -> None:
        assert self.now_ms is not None
        was = self.failover.role
        out.extend(self.failover.leave(self.now_ms))
        if was == "active":
            out.append(Notify("role", {"from": "active", "to": "standby", "reason": "shutting down"}))
            self._release(out)
        elif self._sync_state is not None:
            self._sync(None, out)
        self.stopped = True

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
            vips=self._vip_addresses,
            partner=PartnerStatus(
                alive=bool(fo.partner_alive), state=fo.partner_state, serial_no=fo.partner_serial,
                last_heard_ms=fo.last_heard_ms, deaf=bool(fo.partner_alive) and fo.partner_deaf(now),
                drift=fo.partner_serial is not None and fo.partner_serial != self.config.serial_no,
            ),
            services=self._service_statuses(), counters=dict(fo.counters),
            table=TableStatus(
                check_interval_ms=self.config.table_check_interval_ms, checks=self._table_checks,
                stale_reads=self._stale_reads, drifts=self._drifts, last_drift_ms=self._last_drift_ms,
                last_drift=self._last_drift,
            ),
            auth="none" if fo.key is None else "hmac-sha256",
        )
        return self._status

    def _service_statuses(self) -> tuple[ServiceStatus, ...]:
        if self._services is not None and not self._dirty_members and not self._dirty_virtuals:
            return self._services
        stale = set(self._dirty_virtuals)
        for key in self._dirty_members:
            self._server_cache.pop(key, None)
            stale.add(key[0])
        for name in self._dirty_virtuals:
            for server in self.config.virtual(name).servers:
                self._server_cache.pop((name, server.name), None)
        self._dirty_members.clear()
        self._dirty_virtuals.clear()
        if self._services is None or len(self._services) != len(self.config.virtuals):
            stale = {v.name for v in self.config.virtuals}
            services = [self._service_status(v) for v in self.config.virtuals]
        else:
            services = list(self._services)
            for name in stale:
                index = self._virtual_index[name]
                services[index] = self._service_status(self.config.virtuals[index])
        self._services = tuple(services)
        return self._services

    def _service_status(self, virtual: Virtual) -> ServiceStatus:
        entry = self._entries.get(virtual.name)
        dests = entry.dests if entry is not None else {}
        servers = []
        for member in self._members_of(virtual):
            key = (virtual.name, member.server.name)
            cached = self._server_cache.get(key)
            if cached is None:
                cached = self._server_cache[key] = self._server_status(member, dests)
            servers.append(cached)
        return ServiceStatus(
            name=virtual.name, address=virtual.address, port=virtual.port, protocol=virtual.protocol,
            fwmark=virtual.fwmark, scheduler=virtual.scheduler, active=self._service_keys[virtual.name] is not None,
            sorry_in_table=any(d.name == "sorry" for d in dests.values()),
            quorum_ok=self._quorum.get(virtual.name, True), servers=tuple(servers),
        )

    def _server_status(self, member: _Member, dests: Mapping[DestKey, Dest]) -> ServerStatus:
        server, virtual = member.server, member.virtual
        assert server.address is not None
        port = dest_port(virtual, server.port)
        dest = dests.get(DestKey(server.address, port))
        check = self._checks.get(member.check_id) if member.check_id is not None else None
        h = check.health if check is not None else nanny.Health("up")
        standing = self._standing(member)
        return ServerStatus(
            name=server.name, address=server.address, port=port,
            health="up" if standing in ("up", "drained") else standing, checked=h.status,
            admin=member.admin, weight=dest.weight if dest is not None else 0, in_table=dest is not None,
            configured_weight=server.weight, last_check=h.last_ok, last_detail=h.last_detail,
            checks_ok=h.ok_total, checks_failed=h.fail_total,
        )


def replace_check(check: _Check, *, rise: int, fall: int, interval_ms: int) -> _Check:
    return _Check(check.spec, check.health, rise, fall, interval_ms, [], check.in_flight)


def _vip(address: str, mask: str | None, device: str | None) -> tuple[str, int, str, str]:
    label = device or ""
    return (address, prefix_of(mask, address), label.split(":", 1)[0], label)
