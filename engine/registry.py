"""The member registry: which real servers this router checks, and how each stands.

Everything about one (virtual, server) *member* lives here: its check, its
load reading, its current weight and the operator's override.  This module
does not know whether the router is active, what the table holds (the engine
asks `engine.pool` for that with the `views` given here) nor what time it is:
it returns values and commands.

Rules:

- a member is an active real server with an address in an active virtual;
- one check per `CheckSpec` (address, port, kind, send/expect...): every
  member that checks the same thing the same way shares it and its result
  (`check = none`: no check, always up); results go through
  `engine.health` (rise/fall);
- one load reading per (address, method, command), every `load_interval` (20 s, as nanny);
- a server coming up goes in at its configured weight if it was unknown,
  else at slow start's first weight; each further success while up raises
  it (slow start), unless `load_monitor` drives it; a load reading moves
  the weight of every member that is up by nanny's formula;
- a reload keeps what is unchanged: a check with the same spec keeps its
  id, health and timer; a changed check of a known server keeps its health
  (a down server stays down); a member keeps the operator's override, and
  its current weight while its configured weight is unchanged;
- the operator's requests (`SERVER_ACTIONS`) name `SERVER`,
  `VIRTUAL/SERVER`, or a server and a virtual; an override back to up
  from down or unknown restores the configured weight;
- an operator weight (0 to `MAX_WEIGHT`) replaces the current weight while
  the checks have the server up (they still decide whether it is in; slow
  start and `load_monitor` do not move it); it is kept like a drain, until
  `undrain` (or `auto`), and one override replaces another;
- the overrides in force (`overrides()`, in config order) are what a
  driver keeps across restarts: replayed as requests, they set the same
  state;
- a table found at start (adoption): a member the kernel holds at a weight
  above 0 counts as up at that weight (its check still unknown until the
  first result, which takes it out at once if it fails).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from engine import health as nanny
from engine.events import AdminRequested, CheckSpec, Command, Notify, ReadLoad, RunCommand, StartCheck
from engine.model import Config, Server, Virtual
from engine.overrides_wire import Entry as OverrideEntry
from engine.pool import Member, dest_port
from engine.status import ServerStatus, ServiceStatus
from engine.table import Dest, DestKey, ServiceKey, Table
from engine.timers import Deadline

MemberKey = tuple[str, str]  # (virtual name, server name)

# An operator's request on a server, and the override it sets (health.py's Admin).
SERVER_ACTIONS: Mapping[str, nanny.Admin] = {
    "drain": "drain", "undrain": "auto", "weight": "weight", "force_down": "force_down", "force_up": "force_up",
    "auto": "auto"}

MAX_WEIGHT = 65535  # IPVS's own bound for a destination's weight


@dataclass(frozen=True, slots=True)
class Override:
    """One operator override in force on one member: the request that sets it again."""

    virtual: str
    server: str
    action: str  # "drain" | "weight" | "force_down" | "force_up"
    weight: int | None = None  # "weight" only

    def request(self) -> AdminRequested:
        return AdminRequested(self.action, self.server, self.virtual, self.weight)  # type: ignore[arg-type]


@dataclass(slots=True)
class Check:
    spec: CheckSpec
    health: nanny.Health
    rise: int
    fall: int
    interval_ms: int
    members: list[MemberKey]
    deadline: Deadline  # its timer's name: kept with the check's id across reloads
    in_flight: bool = False


@dataclass(frozen=True, slots=True)
class Load:
    """One load reading: the host, how (`uptime`, `rup`, `ruptime`, `command`), and who uses it."""

    address: str
    method: str
    command: str | None
    members: tuple[MemberKey, ...]
    deadline: Deadline


@dataclass(slots=True)
class MemberState:
    virtual: Virtual
    server: Server
    check_id: int | None  # None: `check = none`, always up
    load_id: int | None
    weight: int
    admin: nanny.Admin = "auto"
    admin_weight: int = 0  # the operator's weight while `admin` is "weight"


@dataclass(frozen=True, slots=True)
class Observed:
    """What one check result did to one member: the virtual to recompute,
    with the commands to emit before and after."""

    virtual: str
    before: tuple[Command, ...] = ()
    after: tuple[Command, ...] = ()


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


class Registry:
    """Checks, loads and members under one config.  Mutable, owned by one `Engine`."""

    def __init__(self) -> None:
        self.checks: dict[int, Check] = {}
        self._check_ids: dict[CheckSpec, int] = {}
        self.loads: dict[int, Load] = {}
        self.members: dict[MemberKey, MemberState] = {}
        self._named: dict[str, list[MemberKey]] = {}  # by server name, in config order (requests)
        self._position: dict[MemberKey, int] = {}  # a member's place in config order
        self._overridden: set[MemberKey] = set()  # members whose `admin` is not "auto"
        self._next_id = 1

    # ------------------------------------------------------------ config

    def build(self, config: Config) -> None:
        """(Re)build checks and members from `config`, keeping what is unchanged."""
        old_checks, old_ids, old_members = self.checks, self._check_ids, self.members
        old_health = {key: old_checks[m.check_id].health for key, m in old_members.items()
                      if m.check_id is not None}
        self.checks, self._check_ids, self.members = {}, {}, {}
        self._named, self._position, self._overridden = {}, {}, set()
        loads: dict[tuple[str, str, str | None], int] = {}
        load_members: dict[int, list[MemberKey]] = {}
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
                    self.checks[check_id].members.append(key)
                load_id = None
                if virtual.load_monitor != "none" or virtual.load_command:
                    method = "command" if virtual.load_command else virtual.load_monitor
                    lkey = (server.address, method, virtual.load_command)
                    if lkey not in loads:
                        loads[lkey] = self._new_id()
                        load_members[loads[lkey]] = []
                    load_id = loads[lkey]
                    load_members[load_id].append(key)
                old = old_members.get(key)
                weight = server.weight
                admin: nanny.Admin = "auto"
                admin_weight = 0
                if old is not None:
                    admin, admin_weight = old.admin, old.admin_weight
                    if old.server.weight == server.weight:
                        weight = old.weight
                self.members[key] = MemberState(virtual, server, check_id, load_id, weight, admin, admin_weight)
                self._named.setdefault(server.name, []).append(key)
                self._position[key] = len(self._position)
                if admin != "auto":
                    self._overridden.add(key)
        self.loads = {load_id: Load(*lkey, tuple(load_members[load_id]), Deadline("load", load_id))
                      for lkey, load_id in loads.items()}

    def _check_id(self, spec: CheckSpec, virtual: Virtual, old_ids: dict[CheckSpec, int],
                  old_checks: dict[int, Check], inherited: nanny.Health | None) -> int:
        if spec in self._check_ids:
            return self._check_ids[spec]
        check_id = old_ids.get(spec)
        if check_id is not None:
            old = old_checks[check_id]
            check = Check(old.spec, old.health, virtual.rise_count, virtual.fall_count, virtual.interval_ms, [],
                          old.deadline, old.in_flight)
        else:
            check_id = self._new_id()
            # A changed check of a known server keeps its health: a down server stays down.
            health = replace(inherited, run=0) if inherited is not None else nanny.Health()
            check = Check(spec, health, virtual.rise_count, virtual.fall_count, virtual.interval_ms, [],
                          Deadline("check", check_id))
        self._check_ids[spec] = check_id
        self.checks[check_id] = check
        return check_id

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def deadlines(self) -> list[Deadline]:
        """A timer per check then per load, in that order."""
        return [c.deadline for c in self.checks.values()] + [load.deadline for load in self.loads.values()]

    # ------------------------------------------------------------ standing

    def members_of(self, virtual: Virtual) -> list[MemberState]:
        return [self.members[(virtual.name, s.name)] for s in virtual.servers
                if (virtual.name, s.name) in self.members]

    def standing(self, member: MemberState) -> str:
        checked = self.checks[member.check_id].health.status if member.check_id is not None else "up"
        status = nanny.effective(checked, member.admin)
        if member.admin == "drain" and status == "up":
            return "drained"
        return status

    def views(self, virtual: Virtual) -> list[Member]:
        """The virtual's members as `engine.pool` sees them."""
        return [self._view(member) for member in self.members_of(virtual)]

    def view(self, key: MemberKey) -> Member:
        """One member as `engine.pool` sees it."""
        return self._view(self.members[key])

    def _view(self, member: MemberState) -> Member:
        server = member.server
        assert server.address is not None
        return Member(
            name=server.name, address=server.address, port=dest_port(member.virtual, server.port),
            standing=self.standing(member),  # type: ignore[arg-type]
            weight=member.admin_weight if member.admin == "weight" else member.weight,
            configured_weight=server.weight,
        )

    @staticmethod
    def service_status(virtual: Virtual, active: bool, quorum_ok: bool, sorry_in_table: bool,
                       servers: tuple[ServerStatus, ...]) -> ServiceStatus:
        """One virtual's status, given its servers' (`server_rows`, `member_status`)."""
        return ServiceStatus(
            name=virtual.name, address=virtual.address, port=virtual.port, protocol=virtual.protocol,
            fwmark=virtual.fwmark, scheduler=virtual.scheduler, active=active,
            sorry_in_table=sorry_in_table, quorum_ok=quorum_ok, servers=servers,
        )

    def server_rows(self, virtual: Virtual, dests: Mapping[DestKey, Dest]) -> list[tuple[MemberKey, ServerStatus]]:
        """Every member's status of one virtual, in config order, given its desired destinations."""
        return [((virtual.name, m.server.name), self.server_status(m, dests)) for m in self.members_of(virtual)]

    def member_status(self, key: MemberKey, dests: Mapping[DestKey, Dest]) -> ServerStatus:
        return self.server_status(self.members[key], dests)

    def server_status(self, member: MemberState, dests: Mapping[DestKey, Dest]) -> ServerStatus:
        server, virtual = member.server, member.virtual
        assert server.address is not None
        port = dest_port(virtual, server.port)
        dest = dests.get(DestKey(server.address, port))
        check = self.checks.get(member.check_id) if member.check_id is not None else None
        h = check.health if check is not None else nanny.Health("up")
        standing = self.standing(member)
        return ServerStatus(
            name=server.name, address=server.address, port=port,
            health="up" if standing in ("up", "drained") else standing, checked=h.status,
            admin=member.admin, weight=dest.weight if dest is not None else 0, in_table=dest is not None,
            configured_weight=server.weight, last_check=h.last_ok, last_detail=h.last_detail,
            checks_ok=h.ok_total, checks_failed=h.fail_total,
            admin_weight=member.admin_weight if member.admin == "weight" else None,
        )

    # ------------------------------------------------------------ checks and loads

    def check_due(self, check_id: int) -> tuple[int | None, StartCheck | None]:
        """A check's timer came round: its interval (None: the check is gone)
        and the check to start (None: the last one is still running)."""
        check = self.checks.get(check_id)
        if check is None:
            return None, None
        if check.in_flight:
            return check.interval_ms, None
        check.in_flight = True
        return check.interval_ms, StartCheck(check_id, check.spec)

    def load_due(self, load_id: int) -> ReadLoad | None:
        load = self.loads.get(load_id)
        return None if load is None else ReadLoad(load_id, load.address, load.method, load.command)

    def check_completed(self, check_id: int, ok: bool, detail: str) -> tuple[str, str, list[MemberKey]] | None:
        """A result: the check's status before and after, and the members to
        fan it out to (`observed`, one at a time); None: a result for a
        check a reload removed, or a duplicate."""
        check = self.checks.get(check_id)
        if check is None or not check.in_flight:
            return None
        check.in_flight = False
        before = check.health.status
        check.health = nanny.observe(check.health, ok, detail, rise=check.rise, fall=check.fall)
        return before, check.health.status, check.members

    def observed(self, key: MemberKey, before: str, after: str, detail: str,
                 command_timeout_ms: int) -> Observed | None:
        """What the result does to one member (None: nothing)."""
        member = self.members[key]
        virtual, server = member.virtual, member.server
        if after != before:
            if after == "up":
                member.weight = server.weight if before == "unknown" else nanny.slow_start_weight(server.weight)
            notice = Notify("health", {
                "service": virtual.name, "server": server.name, "from": before, "to": after, "detail": detail,
            })
            command = server.notify_up if after == "up" else server.notify_down if after == "down" else None
            then = (RunCommand(command, f"notify_{after} {virtual.name}/{server.name}", command_timeout_ms),) \
                if command else ()
            return Observed(virtual.name, (notice,), then)
        if after == "up" and member.weight < server.weight and virtual.load_monitor == "none":
            member.weight = nanny.slow_start_next(member.weight, server.weight)
            return Observed(virtual.name)
        return None

    def load_members(self, load_id: int) -> tuple[MemberKey, ...]:
        load = self.loads.get(load_id)
        return () if load is None else load.members

    def load_observed(self, key: MemberKey, load: float | None) -> Notify | None:
        """A load reading for one member: the new weight's notice, None if unchanged."""
        member = self.members[key]
        if self.standing(member) != "up" or member.admin == "weight":  # the operator's weight stands
            return None
        new = nanny.load_adjust(member.weight, member.server.weight, load)
        if new is None or new == member.weight:
            return None
        member.weight = new
        return Notify("weight", {"service": key[0], "server": key[1], "weight": new})

    # ------------------------------------------------------------ operator and adoption

    def refusal(self, request: AdminRequested) -> str | None:
        """Why a server request would be refused, in the operator's terms; None: it would be carried out."""
        if request.action not in SERVER_ACTIONS:
            return f"unknown admin action {request.action!r}"
        if request.action == "weight":
            if request.weight is None:
                return "weight: no weight given (0 to 65535)"
            if not 0 <= request.weight <= MAX_WEIGHT:
                return f"weight {request.weight} out of range (0 to {MAX_WEIGHT})"
        elif request.weight is not None:
            return f"{request.action} takes no weight"
        if not self.matching(request.server, request.virtual):
            where = f" in virtual {request.virtual}" if request.virtual else ""
            return f"no real server named {request.server}{where}"
        return None

    def matching(self, server: str, virtual: str) -> list[MemberKey]:
        """The members a request names: `SERVER`, `VIRTUAL/SERVER`, or
        `server` with `virtual`; [] when none."""
        if "/" in server and not virtual:
            virtual, server = server.split("/", 1)
        return [k for k in self._named.get(server, ()) if not virtual or k[0] == virtual]

    def override(self, key: MemberKey, action: str, weight: int | None = None) -> None:
        member = self.members[key]
        before = self.standing(member)
        member.admin = SERVER_ACTIONS[action]
        member.admin_weight = weight if action == "weight" and weight is not None else 0
        if member.admin == "auto":
            self._overridden.discard(key)
        else:
            self._overridden.add(key)
        if self.standing(member) == "up" and before in ("down", "unknown"):
            member.weight = member.server.weight

    def overrides(self) -> tuple[Override, ...]:
        """The operator's overrides in force, in config order (members' order)."""
        out = []
        for key in sorted(self._overridden, key=self._position.__getitem__):
            m = self.members[key]
            out.append(Override(key[0], key[1], m.admin, m.admin_weight if m.admin == "weight" else None))
        return tuple(out)

    def replace_overrides(self, wanted: Iterable[OverrideEntry]) -> list[str]:
        """The partner's set in place of ours (engine.sync): members it names
        take its override, the others go back to auto; members the config
        lacks are skipped.  Returns the virtuals whose members changed."""
        want = {(e.virtual, e.server): e for e in wanted}
        # Only the members it names and those overridden now can change (in config order).
        keys = self._overridden.union(k for k in want if k in self.members)
        touched: list[str] = []
        for key in sorted(keys, key=self._position.__getitem__):
            member = self.members[key]
            entry = want.get(key)
            action, weight = (entry.action, entry.weight if entry.action == "weight" else 0) if entry else ("auto", 0)
            have = (member.admin, member.admin_weight if member.admin == "weight" else 0)
            if have != (SERVER_ACTIONS[action], weight):
                self.override(key, action, weight if action == "weight" else None)
                if key[0] not in touched:
                    touched.append(key[0])
        return touched

    def adopt(self, table: Table, service_keys: Mapping[str, ServiceKey | None]) -> list[MemberKey]:
        """The members found in a table at start (see the rules); returns those changed."""
        changed = []
        for key, member in self.members.items():
            service_key_ = service_keys.get(key[0])
            entry = table.get(service_key_) if service_key_ is not None else None
            if entry is None or member.server.address is None:
                continue
            dest = entry.dests.get(DestKey(member.server.address, dest_port(member.virtual, member.server.port)))
            if dest is None or dest.weight <= 0:
                continue
            member.weight = min(dest.weight, member.server.weight)
            changed.append(key)
            if member.check_id is not None:
                check = self.checks[member.check_id]
                if check.health.status == "unknown":
                    check.health = replace(check.health, status="up", run=max(0, check.fall - 1),
                                           last_detail="adopted from the kernel table")
        return changed

