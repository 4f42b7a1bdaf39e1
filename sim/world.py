"""The simulated world: two routers running the engine, heartbeat links,
real servers with fault modes, clients, all in simpy.  Time is integer ms.

Each router is driven as the daemon drives it: step the engine with an
input, carry out the commands in order, feed results back as inputs, wake
at the next deadline.  Carrying out takes time (`sim.costs`, measured in
the lab: adding a VIP, a gratuitous ARP, a table batch), and a daemon
steps nothing until a step's commands are done; a restarted daemon takes
its first step `daemon_start_ms` after its exec.  Everything is event
driven (simpy timeouts with callbacks): nothing polls.

The clients reach a VIP through their neighbour table (`sim.neighbours`):
a gratuitous ARP reaches it one link latency after its frame leaves.

The world's only randomness is `rng` (one `random.Random(seed)`), drawn
only for heartbeat loss strictly between 0 and 1.

Routers:
- crashed (`crash`): host down, engine gone, addresses, table and
  conntrack entries gone, packets to it lost (connections in flight too);
  the clients' neighbour entries still point at it;
- killed (`kill`): the daemon is gone, the kernel keeps addresses, table
  and conntrack entries, so clients pointed at it are still served from the
  stale table and its connections in flight live on;
- restarted (`restart`): after a crash, the host boots with no addresses
  and an empty table; after a kill, only the daemon starts again and
  adopts what the kernel kept (its first input, `TableRead`, is that
  table).  Either way a fresh engine whose heartbeat sequence starts above
  any sequence that router used before (`boots << 32`).
- a config naming `heartbeat_key_file`: both routers sign their
  heartbeats (and share the operator's overrides) with a key made from
  that name (`key_of`: the simulator reads no file);
- links (`link_down`/`link_up` with `device`, named by scenario.devices):
  an interface without link carries nothing: no heartbeats on its path
  either way, no client traffic to the VIPs on it (nor a gratuitous ARP
  from it), no checks or forwarded traffic through it to the real
  servers.  The engine hears the set of its interfaces down
  (`LinksChanged`), at once and after every boot; a link stays down
  across a crash and a restart (it is the cable, not the host).
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol

import simpy

from engine.diff import TableOpError, apply
from engine.engine import Engine, check_spec
from engine.events import (
    TABLE_OPS, AddDest, AddService, AddVip, AdminRequested, AdvertReceived, CheckCompleted, CheckSpec, Command,
    CommandFailed, ConfigLoaded, DelDest, DelService, DelVip, EditDest, EditService, HeartbeatReceived, Input,
    LinksChanged, LoadRead, Notify, ReadLoad, ReadTable, RunCommand, SendAdvert, SendGratuitousArp, SendHeartbeat,
    SetTimeouts, StartCheck, StartSyncDaemon, StopSyncDaemon, TableRead, Tick,
)
from engine.model import Config, Server, Virtual
from engine.pool import service_key
from engine.table import ServiceEntry, ServiceKey
from scenario.devices import Devices, base, devices
from scenario.model import Fault
from sim.clients import RATE_PER_S, ClientLog, SchedState, schedule, source_address
from sim.costs import Costs
from sim.neighbours import Neighbours
from sim.servers import ServerModel, answers_client, check_result

ROUTERS = ("primary", "backup")
_TABLE_TYPES = frozenset(TABLE_OPS)
PATHS: tuple[Literal["public"], Literal["private"]] = ("public", "private")
Trace = Callable[[int, str, str, dict[str, Any]], None]


@dataclass
class Router:
    name: str
    engine: Engine | None = None
    host_up: bool = False
    vips: set[str] = field(default_factory=set)
    table: dict[ServiceKey, ServiceEntry] = field(default_factory=dict)
    sched: dict[ServiceKey, SchedState] = field(default_factory=dict)  # the kernel's scheduler state
    wake_at: int | None = None
    boots: int = 0
    booted_ms: int = 0
    links_down: frozenset[str] = frozenset()
    last_arp_ms: int = -(2**62)
    went_active_ms: int = -(2**62)  # the last time its daemon went active
    starting: bool = False  # its daemon was started and has not yet taken its first step
    life: int = 0  # bumped whenever its daemon starts or dies: what was scheduled for another life is dropped
    busy: bool = False  # its daemon is carrying out a step's commands (they take time: sim.costs)
    pending: deque[Input] = field(default_factory=deque)  # inputs that arrived meanwhile, in order
    pending_heartbeats: deque[Input] = field(default_factory=deque)  # ... the partner's: served first
    draining: bool = False  # `pending` is being fed

    @property
    def role(self) -> str:
        return self.engine.failover.role if self.engine is not None else "down"


class Observer(Protocol):
    def after_step(self, router: Router, event: Input, role_before: str, commands: tuple[Command, ...]) -> None: ...


class World:
    def __init__(self, config: Config, seed: int, latency_ms: int, loss: float, trace: Trace,
                 known_configs: tuple[Config, ...] = (), costs: Costs | None = None) -> None:
        self.env = simpy.Environment()
        self.config = config
        self.costs = costs if costs is not None else Costs()
        self._took: dict[type, int] = {AddVip: self.costs.vip_add_ms, DelVip: self.costs.vip_del_ms,
                                       SendGratuitousArp: self.costs.arp_ms}  # the rest cost nothing
        self._devices: tuple[Config | None, Devices] = (None, Devices(frozenset(), "", "", None))
        self.known_configs = (config, *known_configs)  # to resolve server names reloads add
        self.rng = random.Random(seed)
        self.latency_ms = latency_ms
        self.loss: dict[str, float] = {p: loss for p in PATHS}
        self.cut: set[tuple[str, str]] = set()  # (sender, path): that router's packets on that path are lost
        self.last_drop_ms: dict[str, int] = {r: -(2**62) for r in ROUTERS}  # by sender
        self.last_delivery_ms: dict[str, int] = {r: -(2**62) for r in ROUTERS}  # by sender
        self.routers = {name: Router(name) for name in ROUTERS}
        self.servers: dict[tuple[str, int], ServerModel] = {}
        self.loads: dict[str, float] = {}  # by address
        self.neighbours = Neighbours(self.costs)  # the client's ARP table
        self.trace = trace
        self.observers: list[Observer] = []
        self.clients: ClientLog | None = None
        self._connections = 0
        self._in_flight: list[tuple[int, str, str, int]] = []  # (opened, VIP, router, ClientLog index)
        self._scheduled = 0  # events scheduled so far (`at`)
        self._last_answer: tuple[int, int, Router, Engine, list[Input]] | None = None  # `answer`'s last event

    @property
    def arp_view(self) -> dict[str, str]:
        """VIP -> the router whose MAC the client's neighbour entry holds."""
        return self.neighbours.view()

    @property
    def now(self) -> int:
        return int(self.env.now)

    def at(self, delay_ms: int, action: Callable[[], None]) -> None:
        """Run `action` after `delay_ms` (a simpy timeout with a callback: no process)."""
        event = self.env.timeout(max(0, delay_ms))
        event.callbacks.append(lambda _: action())
        self._scheduled += 1

    # ------------------------------------------------------------ routers

    def boot(self, name: str, start_ms: int = 0) -> None:
        """The host boots: no addresses, an empty table, then the daemon starts (`start_daemon`)."""
        router = self.routers[name]
        router.host_up = True
        router.vips, router.table, router.sched = set(), {}, {}
        self.start_daemon(name, start_ms)

    def start_daemon(self, name: str, start_ms: int = 0) -> None:
        """The daemon starts on a running host, as `shoal run` does: `start_ms`
        after its exec (`Costs.daemon_start_ms`; nothing runs meanwhile) its
        first input is the table the kernel holds then (empty after a boot,
        kept after a kill) and the addresses it holds, then the links it
        needs that are down."""
        router = self.routers[name]
        router.boots += 1
        router.life += 1
        router.starting = True
        boots, life = router.boots, router.life

        def first_step() -> None:
            if router.life != life:
                return  # crashed or killed before it was up
            router.starting = False
            router.booted_ms = self.now
            router.engine = Engine(self.config, name, seq_start=boots << 32,  # type: ignore[arg-type]
                                   heartbeat_key=key_of(self.config))
            self.feed(router, TableRead(dict(router.table), frozenset(router.vips)))
            if router.links_down:
                self.feed(router, LinksChanged(router.links_down))

        if start_ms > 0:
            self.at(start_ms, first_step)
        else:
            first_step()

    def _daemon_dies(self, router: Router) -> None:
        router.engine, router.wake_at, router.starting = None, None, False
        router.life += 1
        router.busy = False
        router.pending.clear()
        router.pending_heartbeats.clear()

    def crash(self, name: str) -> None:
        router = self.routers[name]
        self._daemon_dies(router)
        router.host_up = False
        router.vips, router.table, router.sched = set(), {}, {}
        self._break_in_flight(None, name)  # its conntrack entries are gone with it

    def kill(self, name: str) -> None:
        """Only the daemon dies: the kernel keeps addresses, table and conntrack entries (its
        connections in flight live on)."""
        self._daemon_dies(self.routers[name])

    def set_link(self, name: str, device: str, up: bool) -> None:
        router = self.routers[name]
        before = router.links_down
        router.links_down = before - {device} if up else before | {device}
        if router.links_down == before:
            return
        if up and device in (self.devices.public, self.devices.private):  # a heartbeat path passes again
            self._passable_from_now(set(ROUTERS))
        self.feed(router, LinksChanged(router.links_down))

    @property
    def devices(self) -> Devices:
        """The current config's interfaces (scenario.devices), worked out once per config."""
        if self._devices[0] is not self.config:
            self._devices = (self.config, devices(self.config))
        return self._devices[1]

    def _vip_device(self, address: str) -> str:
        if address == self.config.nat_router:
            return self.devices.server
        for v in self.config.virtuals:
            if v.address == address:
                return base(v.device) or "eth0"
        return self.devices.public

    def link_cut(self, name: str, path: str) -> bool:
        """That router's interface for that heartbeat path has no link."""
        if not self.routers[name].links_down:  # every heartbeat asks: the common case first
            return False
        d = self.devices
        return (d.public if path == "public" else d.private) in self.routers[name].links_down

    def feed(self, router: Router, event: Input) -> None:
        """Step the router's engine with `event` and carry out its commands, or, while it is
        still carrying out an earlier step's, keep `event` until it is done (the daemon steps
        nothing meanwhile)."""
        engine = router.engine
        if engine is None:
            return
        if router.busy:  # adapters/inputs.py: the partner's heartbeats wait in a queue of their own, served first
            heartbeat = isinstance(event, (HeartbeatReceived, AdvertReceived))
            (router.pending_heartbeats if heartbeat else router.pending).append(event)
            return
        role_before = engine.failover.role
        ready = engine.step(self.now, event)
        self._carry_out_from(router, engine, event, role_before, ready.commands, ready.next_deadline_ms, 0)

    def _carry_out_from(self, router: Router, engine: Engine, event: Input, role_before: str,
                        commands: tuple[Command, ...], deadline: int | None, i: int) -> None:
        """Carry out `commands[i:]` in order, each taking its cost (`sim.costs`); when they are
        done: the observers (an invariant judges a step once carried out), the engine's next
        wake, and the inputs that waited."""
        costs, took_by_type, n = self.costs, self._took, len(commands)
        while i < n:
            command = commands[i]
            kind = type(command)
            if kind in _TABLE_TYPES:
                j = i + 1
                while j < n and type(commands[j]) in _TABLE_TYPES:
                    j += 1
                took = costs.batch_ms(sum(1 for c in commands[i:j] if isinstance(c, DelService))) \
                    if costs.table_batch_ms or costs.table_del_service_ms else 0
                batch, i = commands[i:j], j
            else:
                took = took_by_type.get(kind, 0)
                i += 1
                if took <= 0:  # the common case (a heartbeat, a check): at once
                    self.carry_out(router, engine, command)
                    continue
                batch = (command,)
            if took <= 0:
                for c in batch:
                    self.carry_out(router, engine, c)
                continue
            router.busy = True
            if isinstance(command, SendGratuitousArp) and 0 < costs.arp_frame_ms < took:
                frame = functools.partial(self.carry_out, router, engine, command)  # on the wire during the command
                self.at(costs.arp_frame_ms, self._alive(router, engine, frame))
                batch = ()

            def done(batch: tuple[Command, ...] = batch, i: int = i) -> None:
                for c in batch:
                    self.carry_out(router, engine, c)
                self._carry_out_from(router, engine, event, role_before, commands, deadline, i)

            self.at(took, self._alive(router, engine, done))
            return
        router.busy = False
        for observer in self.observers:
            observer.after_step(router, event, role_before, commands)
        self._wake(router, engine, deadline)
        if (router.pending or router.pending_heartbeats) and not router.draining:  # one loop, not a recursion per input
            router.draining = True
            try:
                while not router.busy and router.engine is engine:
                    queue = router.pending_heartbeats or router.pending
                    if not queue:
                        break
                    self.feed(router, queue.popleft())
            finally:
                router.draining = False

    @staticmethod
    def _alive(router: Router, engine: Engine, action: Callable[[], None]) -> Callable[[], None]:
        """`action`, if this very daemon still runs when it is due."""
        def guarded() -> None:
            if router.engine is engine:
                action()

        return guarded

    def _wake(self, router: Router, engine: Engine, at: int | None) -> None:
        if at is None or at == router.wake_at:
            return
        at = max(at, self.now + (1 if at <= self.now else 0))
        router.wake_at = at

        def wake() -> None:
            if router.engine is engine and router.wake_at == at:
                router.wake_at = None
                self.feed(router, Tick())

        self.at(at - self.now, wake)

    def answer(self, router: Router, engine: Engine, delay_ms: int, event: Input) -> None:
        """Feed `event` back to this very engine after `delay_ms` (lost if it died meanwhile).

        Answers due at the same time to the same engine, with nothing else scheduled in
        between (a step's checks: every real server's at once), share one simpy event and
        are fed in order: simpy would have run their events one after the other anyway (the
        same time and priority, consecutive in scheduling order), and what the first one's
        step schedules comes after the last of them either way."""
        due = self.now + max(0, delay_ms)
        last = self._last_answer
        if last is not None and last[0] == self._scheduled and last[1] == due and last[2] is router \
                and last[3] is engine:
            last[4].append(event)
            return
        events = [event]

        def deliver() -> None:
            for e in events:
                if router.engine is engine:
                    self.feed(router, e)

        self.at(delay_ms, deliver)
        self._last_answer = (self._scheduled, due, router, engine, events)

    # ------------------------------------------------------------ commands

    def carry_out(self, router: Router, engine: Engine, command: Command) -> None:
        if type(command) is StartCheck:  # every real server's, every interval: not through the match below
            self._start_check(router, engine, command)
            return
        now, name = self.now, router.name
        match command:
            case SendHeartbeat(path, _, _, payload):
                self._send_heartbeat(name, path, payload)
            case SendAdvert(payload):  # heartbeat_protocol = vrrp: on the public link
                self._send_heartbeat(name, "public", payload, advert=True)
            case AddVip(address=address):
                if address not in router.vips:  # a daemon that adopts its kernel's state re-adds what is there
                    router.vips.add(address)
                    self.trace(now, name, "vip", {"op": "add", "address": address})
            case DelVip(address=address):
                if address in router.vips:  # a cleanup at boot deletes what may not be there
                    router.vips.discard(address)
                    self.trace(now, name, "vip", {"op": "del", "address": address})
            case SendGratuitousArp(address, _):
                router.last_arp_ms = now  # the engine re-announced (single_owner judges that)...
                if self._vip_device(address) in router.links_down:
                    return  # ... but the frame never leaves
                self.trace(now, name, "arp", {"address": address})
                if self.latency_ms > 0 and self.costs.announce_after_latency:
                    self.at(self.latency_ms, lambda: self._announced(address, name))
                else:
                    self._announced(address, name)
            case _ if isinstance(command, TABLE_OPS):
                before = router.table
                try:
                    router.table = apply(router.table, [command])
                except TableOpError as e:
                    self.answer(router, engine, 0, CommandFailed(command, str(e)))
                    return
                self.trace(now, name, "table", table_record(command, before, router.table))
            case ReadTable():
                self.answer(router, engine, 0, TableRead(dict(router.table)))
            case ReadLoad(load_id=load_id, address=address):
                self.answer(router, engine, 2 * self.latency_ms, LoadRead(load_id, self.loads.get(address, 1.0)))
            case Notify("role", data):
                if data["to"] == "active":
                    router.went_active_ms = now
                self.trace(now, name, "role", {"from": data["from"], "to": data["to"], "reason": data["reason"]})
            case Notify("health", data):
                self.trace(now, name, "health", {"service": data["service"], "server": data["server"],
                                                 "from": data["from"], "to": data["to"], "detail": data["detail"]})
            case Notify("heartbeat_lost", data):
                self.trace(now, name, "heartbeat_lost", {"path": data["path"]})
            case Notify() | RunCommand() | SetTimeouts() | StartSyncDaemon() | StopSyncDaemon():
                pass  # other notices, operator commands, kernel timeouts, connection sync: not modelled
            case _:
                raise TypeError(f"the simulator cannot carry out {type(command).__name__}: {command}")

    def _start_check(self, router: Router, engine: Engine, command: StartCheck) -> None:
        check_id, spec = command.check_id, command.spec
        if self.devices.server in router.links_down:
            self.answer(router, engine, 0, CheckCompleted(check_id, False, "network is unreachable"))
            return
        delay, ok, detail = check_result(spec, self.server_at(spec.address, spec.port), 2 * self.latency_ms)
        self.answer(router, engine, delay, CheckCompleted(check_id, ok, detail))

    def _announced(self, address: str, name: str) -> None:
        """A gratuitous ARP from router `name` reaches the client."""
        if self.neighbours.heard_announcement(address, name):
            self._break_in_flight(address, name)

    def _break_in_flight(self, address: str | None, name: str) -> None:
        """Connections in flight lose their router: it crashed (`address` None), or the client's
        entry for `address` moved from it to `name` -- their next packets reach a router without
        their conntrack entry, and fail."""
        if not self._in_flight or self.clients is None:
            return
        now, keep = self.now, []
        for opened, vip, via, index in self._in_flight:
            if now >= opened + self.costs.connection_ms:
                continue  # finished
            if (address is None and via == name) or (vip == address and via != name):
                self.clients.fail_one(index)
            else:
                keep.append((opened, vip, via, index))
        self._in_flight = keep

    def _passable_from_now(self, senders: set[str]) -> None:
        """A cut healed (or loss lowered): until now these senders' heartbeats
        could not get through, as if the last one was dropped now -- the
        invariants judge what follows from here ("outside a cut", SPEC.md)."""
        for sender in senders:
            self.last_drop_ms[sender] = self.now

    def _send_heartbeat(self, sender: str, path: str, payload: bytes, advert: bool = False) -> None:
        p = self.loss[path]
        receiver = "backup" if sender == "primary" else "primary"
        if (sender, path) in self.cut or self.link_cut(sender, path) or self.link_cut(receiver, path) \
                or p >= 1 or (p > 0 and self.rng.random() < p):
            self.last_drop_ms[sender] = self.now
            return
        source = self.config.address_of(sender, path)  # type: ignore[arg-type]
        assert source is not None
        partner = self.routers["backup" if sender == "primary" else "primary"]

        event: Input
        if advert:
            event = AdvertReceived(source, self._advert_destination(partner.name), 255, payload)
        else:
            event = HeartbeatReceived(path, source, payload)  # type: ignore[arg-type]

        def arrive() -> None:  # to whatever daemon runs there when it arrives
            if partner.engine is not None:
                self.last_delivery_ms[sender] = self.now
                self.feed(partner, event)

        self.at(self.latency_ms, arrive)

    def _advert_destination(self, receiver: str) -> str:
        """Where a VRRP advert went: the group, or the receiver with `vrrp_unicast`."""
        own = self.config.address_of(receiver, "public")  # type: ignore[arg-type]
        assert own is not None
        if self.config.vrrp_unicast:
            return own
        return "224.0.0.18" if ":" not in own else "ff02::12"

    def path_cut(self, sender: str, path: str) -> bool:
        receiver = "backup" if sender == "primary" else "primary"
        return ((sender, path) in self.cut or self.loss[path] >= 1 or self.link_cut(sender, path)
                or self.link_cut(receiver, path))

    def all_cut(self) -> bool:
        """Every configured heartbeat path is cut both ways."""
        paths = [p for p in PATHS if self.config.address_of("primary", p) and self.config.address_of("backup", p)]
        return all(self.path_cut(s, p) for s in ROUTERS for p in paths)

    # ------------------------------------------------------------ servers

    def server_at(self, address: str, port: int) -> ServerModel:
        server = self.servers.get((address, port))  # every check asks: no ServerModel made to be thrown away
        if server is None:
            server = self.servers[(address, port)] = ServerModel()
        return server

    def members(self, name: str, config: Config | None = None) -> list[tuple[Virtual, Server]]:
        """The (virtual, server) pairs a scenario's `SERVER` or `VIRTUAL/SERVER` names."""
        virtual, _, server = name.rpartition("/")
        found = []
        for v in (config or self.config).virtuals:
            for s in v.servers:
                if s.name == server and (not virtual or v.name == virtual) and s.address:
                    found.append((v, s))
        return found

    def addresses(self, name: str) -> list[tuple[str, int]]:
        for config in (self.config, *self.known_configs):
            found = sorted({(s.address, s.port if s.port is not None else v.port)
                            for v, s in self.members(name, config) if s.address})
            if found:
                return found
        raise KeyError(f"no real server named {name!r}")

    # ------------------------------------------------------------ faults

    def apply_fault(self, fault: Fault) -> None:
        kind, value = fault.kind, fault.value
        if kind == "crash":
            self.crash(value)
        elif kind == "restart":
            router = self.routers[value]
            start_ms = self.costs.daemon_start_ms
            if router.host_up and router.engine is None and not router.starting:  # killed: the daemon alone starts
                self.start_daemon(value, start_ms)
            else:  # the host boots (as the lab does when the daemon runs, or is still starting)
                self.crash(value)
                self.boot(value, start_ms)
        elif kind == "kill":
            self.kill(value)
        elif kind in ("link_down", "link_up"):
            self.set_link(value, fault.extra["device"], up=kind == "link_up")
        elif kind.startswith("server_"):
            for where in self.addresses(value):
                server = self.server_at(*where)
                server.mode = kind.removeprefix("server_")
                server.delay_ms = round(float(fault.extra.get("delay", 0)) * 1000)
        elif kind in ("partition", "heal"):
            paths = PATHS if value == "all" else (value,)
            senders = (fault.extra["from"],) if "from" in fault.extra else ROUTERS
            if kind == "partition":
                self.cut |= {(s, p) for s in senders for p in paths}
            else:
                self._passable_from_now({s for s, p in self.cut if p in paths})
                self.cut = {(s, p) for s, p in self.cut if p not in paths}
        elif kind == "loss":
            for path in ((fault.extra["path"],) if "path" in fault.extra else PATHS):
                if self.loss[path] > 0 and float(value) < self.loss[path]:
                    self._passable_from_now(set(ROUTERS))
                self.loss[path] = float(value)
        elif kind == "load":
            for address, _ in self.addresses(value):
                self.loads[address] = float(fault.extra["value"])
        elif kind == "reload":
            self.config = value
            for name in ROUTERS:
                self.feed(self.routers[name], ConfigLoaded(value, key_of(value)))
        elif kind == "admin":
            self._admin(str(value).split())
        else:
            raise ValueError(f"unknown fault {kind!r}")

    def _admin(self, words: list[str]) -> None:
        if words[0] == "failover":
            for router in self.routers.values():
                if router.role == "active":
                    self.feed(router, AdminRequested("failover"))
                    return
            return
        for router in self.routers.values():
            if router.engine is not None:
                self.feed(router, AdminRequested(words[0], words[1]))  # type: ignore[arg-type]

    def specs_of(self, address: str, port: int) -> list[tuple[Virtual, Server, CheckSpec]]:
        """The checks the current config runs against one real server."""
        out = []
        for v in self.config.virtuals:
            for s in v.servers:
                spec = check_spec(v, s) if v.active and s.active else None
                if spec is not None and (spec.address, spec.port) == (address, port):
                    out.append((v, s, spec))
        return out

    # ------------------------------------------------------------ clients

    def start_clients(self) -> None:
        self.clients = ClientLog()
        period = 1000 // RATE_PER_S

        def tick() -> None:
            self._connect_all()
            self.at(period, tick)

        self.at(period + self.costs.client_phase_ms, tick)

    def _connect_all(self) -> None:
        assert self.clients is not None
        ok = total = 0
        index = len(self.clients.opened)
        if self._in_flight:
            self._in_flight = [c for c in self._in_flight if self.now < c[0] + self.costs.connection_ms]
        for v in self.config.virtuals:
            key = service_key(v)
            if key is None or v.address is None:
                continue
            total += 1
            ok += self._connect(v, key, index)
        self.clients.record(self.now, ok, total)

    def _answers_arp(self, name: str, address: str) -> bool:
        """Router `name` answers an ARP request for `address` now (its kernel holds it, on a link)."""
        router = self.routers[name]
        return router.host_up and address in router.vips and self._vip_device(address) not in router.links_down

    def _holder(self, address: str) -> str | None:
        """Who answers a broadcast ARP request for `address` (both: the one that announced last)."""
        found = [r for r in ROUTERS if self._answers_arp(r, address)]
        return max(found, key=lambda r: self.routers[r].last_arp_ms) if found else None

    def _connect(self, virtual: Virtual, key: ServiceKey, index: int) -> bool:
        self._connections += 1
        address = virtual.address
        assert address is not None
        owner = self.neighbours.next_hop(address, self.now, lambda r: self._answers_arp(r, address),
                                         lambda: self._holder(address))
        router = self.routers.get(owner) if owner else None
        if router is None or not router.host_up or address not in router.vips:
            return False  # lost, or sent to a MAC whose host does not hold the VIP (any more)
        if router.links_down and ((base(virtual.device) or "eth0") in router.links_down
                                  or self.devices.server in router.links_down):
            return False
        entry = router.table.get(key)
        if entry is None:
            return False
        state = router.sched.setdefault(key, SchedState())
        state.expire(self.now)
        dest = schedule(entry.service.scheduler, entry, state, source_address(self._connections))
        if dest is None:
            return False
        port = dest.key.port or virtual.port
        if not answers_client(self.server_at(dest.key.address, port)):
            return False
        state.open(self.now, dest.key)
        self.neighbours.confirm(address, router.name, self.now)
        if self.costs.connection_ms > 0:
            self._in_flight.append((self.now, address, router.name, index))
        return True


def key_of(config: Config) -> bytes | None:
    """The heartbeat key of a simulated pair: the simulator reads no file, so
    a config naming `heartbeat_key_file` gets a key made from that name (the
    same on both routers, as the operator copies one file to both)."""
    if not config.heartbeat_key_file:
        return None
    return hashlib.sha256(b"shoal sim key " + config.heartbeat_key_file.encode()).digest()


def table_record(command: Command, before: dict[ServiceKey, ServiceEntry],
                 after: dict[ServiceKey, ServiceEntry]) -> dict[str, Any]:
    """The trace record of one table operation: `op`, `service` (the virtual's name), `server`, `weight`."""
    def service_name(key: ServiceKey) -> str:
        entry = before.get(key) or after.get(key)
        return entry.service.name if entry is not None and entry.service.name else str(key)

    match command:
        case AddService(s):
            return {"op": "add_service", "service": s.name or str(s.key), "server": None, "weight": None}
        case EditService(s):
            return {"op": "edit_service", "service": s.name or str(s.key), "server": None, "weight": None}
        case DelService(key, name):
            return {"op": "del_service", "service": name or str(key), "server": None, "weight": None}
        case AddDest(key, d):
            return {"op": "add_dest", "service": service_name(key), "server": d.name or str(d.key), "weight": d.weight}
        case EditDest(key, d):
            return {"op": "edit_dest", "service": service_name(key), "server": d.name or str(d.key), "weight": d.weight}
        case DelDest(key, dkey, name):
            return {"op": "del_dest", "service": service_name(key), "server": name or str(dkey), "weight": None}
    raise TypeError(command)
