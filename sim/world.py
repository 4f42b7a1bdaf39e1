"""The simulated world: two routers running the engine, heartbeat links,
real servers with fault modes, all in simpy.  Time is integer ms.

Partial (issue 3): clients and `client_success` are not modelled yet.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

import simpy

from engine.config import parse
from engine.diff import TableOpError, apply
from engine.engine import Engine
from engine.events import (
    TABLE_OPS, AddDest, AddService, AddVip, AdminRequested, CheckCompleted, Command, CommandFailed,
    ConfigLoaded, DelDest, DelService, DelVip, EditDest, EditService, HeartbeatReceived, Input, LoadRead,
    Notify, ReadLoad, ReadTable, SendGratuitousArp, SendHeartbeat, StartCheck, TableRead, Tick,
)
from engine.model import Config
from engine.table import ServiceEntry, ServiceKey
from scenario.model import Fault

ROUTERS = ("primary", "backup")


@dataclass
class Router:
    name: str
    engine: Engine | None = None
    state: str = "down"  # up | down (crashed) | killed (daemon dead, kernel state kept)
    vips: set[str] = field(default_factory=set)
    table: dict[ServiceKey, ServiceEntry] = field(default_factory=dict)
    wake_at: int | None = None
    boots: int = 0


@dataclass
class ServerModel:
    mode: str = "up"  # up | down | hang | wrong | slow
    delay_ms: int = 0
    load: float | None = 0.5


class World:
    def __init__(self, config: Config, seed: int, latency_ms: int, loss: float,
                 trace: Callable[[int, str, str, dict[str, Any]], None]) -> None:
        self.env = simpy.Environment()
        self.config = config
        self.rng = random.Random(seed)
        self.latency_ms = latency_ms
        self.loss: dict[str, float] = {"public": loss, "private": loss}
        self.cut: set[tuple[str, str]] = set()  # (sender, path)
        self.routers = {name: Router(name) for name in ROUTERS}
        self.servers: dict[str, ServerModel] = {}
        self.arp_owner: dict[str, str] = {}
        self.trace = trace
        self.after_step: list[Callable[[], None]] = []

    # ------------------------------------------------------------ routers

    def boot(self, name: str) -> None:
        router = self.routers[name]
        router.boots += 1
        router.vips.clear()
        router.table = {}
        router.state = "up"
        router.engine = Engine(self.config, name, seq_start=router.boots << 32)  # type: ignore[arg-type]
        self.feed(name, Tick())

    def crash(self, name: str) -> None:
        router = self.routers[name]
        router.state, router.engine, router.wake_at = "down", None, None
        router.vips.clear()
        router.table = {}

    def kill(self, name: str) -> None:
        router = self.routers[name]
        router.state, router.engine, router.wake_at = "killed", None, None

    def feed(self, name: str, event: Input) -> None:
        router = self.routers[name]
        if router.engine is None:
            return
        ready = router.engine.step(self.env.now, event)
        for command in ready.commands:
            self.carry_out(router, command)
        self.schedule_wake(router, ready.next_deadline_ms)
        for check in self.after_step:
            check()

    def schedule_wake(self, router: Router, at: int | None) -> None:
        if at is None or (router.wake_at is not None and router.wake_at <= at and router.wake_at >= self.env.now):
            return
        router.wake_at = at
        engine = router.engine

        def wake() -> Generator[simpy.Event, Any, None]:
            yield self.env.timeout(max(0, at - self.env.now))
            if router.engine is engine and router.wake_at == at:
                router.wake_at = None
                self.feed(router.name, Tick())

        self.env.process(wake())

    def later(self, delay_ms: int, name: str, event: Input) -> None:
        engine = self.routers[name].engine

        def deliver() -> Generator[simpy.Event, Any, None]:
            yield self.env.timeout(delay_ms)
            if self.routers[name].engine is engine:
                self.feed(name, event)

        self.env.process(deliver())

    # ------------------------------------------------------------ commands

    def carry_out(self, router: Router, command: Command) -> None:
        now, name = self.env.now, router.name
        match command:
            case SendHeartbeat(path, _, _, payload):
                other = "backup" if name == "primary" else "primary"
                lost = (name, path) in self.cut or self.rng.random() < self.loss[path]
                if not lost and self.routers[other].engine is not None:
                    source = self.config.address_of(name, path)  # type: ignore[arg-type]
                    assert source is not None
                    self.later(self.latency_ms, other, HeartbeatReceived(path, source, payload))
            case AddVip(address=address):
                router.vips.add(address)
                self.trace(now, name, "vip", {"op": "add", "address": address})
            case DelVip(address=address):
                router.vips.discard(address)
                self.trace(now, name, "vip", {"op": "del", "address": address})
            case SendGratuitousArp(address, _):
                self.arp_owner[address] = name
                self.trace(now, name, "arp", {"address": address})
            case _ if isinstance(command, TABLE_OPS):
                before = router.table
                try:
                    router.table = apply(router.table, [command])
                except TableOpError as e:
                    self.later(0, name, CommandFailed(command, str(e)))
                    return
                record = _table_record(command)
                key = getattr(command, "service", None)
                entry = before.get(key) or router.table.get(key) if isinstance(key, ServiceKey) else None
                if entry is not None and entry.service.name:
                    record["service"] = entry.service.name  # the virtual's name, as for service ops
                self.trace(now, name, "table", record)
            case ReadTable():
                self.later(0, name, TableRead(dict(router.table)))
            case StartCheck(check_id, spec):
                delay, ok, detail = self.check(f"{spec.address}:{spec.port}", spec)
                self.later(delay, name, CheckCompleted(check_id, ok, detail))
            case ReadLoad(load_id=load_id, address=address):
                loads = [s.load for k, s in self.servers.items() if k.rsplit(":", 1)[0] == address]
                self.later(1, name, LoadRead(load_id, loads[0] if loads else 0.5))
            case Notify("role", data):
                self.trace(now, name, "role", {"from": data["from"], "to": data["to"], "reason": data["reason"]})
            case Notify("health", data):
                self.trace(now, name, "health", {k: data[k] for k in ("service", "server", "from", "to")})
            case Notify("heartbeat_lost", data):
                self.trace(now, name, "heartbeat_lost", {"path": data["path"]})
            case _:
                pass

    def check(self, where: str, spec: Any) -> tuple[int, bool, str]:
        """How long a check takes and what it finds (nanny's semantics)."""
        server = self.servers.get(where, ServerModel())
        timeout = spec.timeout_ms
        if server.mode == "down":
            return 1, False, "connection refused"
        if server.mode == "hang":
            return timeout, False, "timeout"
        delay = 1 + (server.delay_ms if server.mode == "slow" else 0)
        if delay >= timeout:
            return timeout, False, "timeout"
        if server.mode == "wrong" and (spec.expect not in (None, "*") or spec.send_program):
            return delay, False, "reply does not match expect"
        return delay, True, "ok"

    # ------------------------------------------------------------ faults

    def apply_fault(self, fault: Fault) -> None:
        kind, value = fault.kind, fault.value
        if kind == "crash":
            self.crash(value)
        elif kind == "restart":
            self.crash(value)
            self.boot(value)
        elif kind == "kill":
            self.kill(value)
        elif kind.startswith("server_"):
            server = self.server(value)
            server.mode = {"server_down": "down", "server_up": "up", "server_hang": "hang",
                           "server_wrong": "wrong", "server_slow": "slow"}[kind]
            server.delay_ms = round(float(fault.extra.get("delay", 0)) * 1000)
        elif kind in ("partition", "heal"):
            paths = ("public", "private") if value == "all" else (value,)
            senders = (fault.extra["from"],) if "from" in fault.extra else ROUTERS
            if kind == "partition":
                self.cut |= {(s, p) for s in senders for p in paths}
            else:
                self.cut = {(s, p) for s, p in self.cut if p not in paths}
        elif kind == "loss":
            for path in ((fault.extra["path"],) if "path" in fault.extra else ("public", "private")):
                self.loss[path] = float(value)
        elif kind == "load":
            self.server(value).load = float(fault.extra["value"])
        elif kind == "reload":
            self.config = parse(str(value), "reload")
            for name in ROUTERS:
                self.feed(name, ConfigLoaded(self.config))
        elif kind == "admin":
            words = str(value).split()
            for name in ROUTERS:
                router = self.routers[name]
                if router.engine is None:
                    continue
                if words[0] == "failover" and router.engine.failover.role == "active":
                    self.feed(name, AdminRequested("failover"))
                elif words[0] in ("drain", "undrain"):
                    self.feed(name, AdminRequested(words[0], words[1]))  # type: ignore[arg-type]

    def server(self, name: str) -> ServerModel:
        """The model of a real server named in the config (or VIRTUAL/SERVER)."""
        virtual, _, server = name.rpartition("/")
        for v in self.config.virtuals:
            for s in v.servers:
                if s.name == server and (not virtual or v.name == virtual) and s.address:
                    port = s.port if s.port is not None else v.port
                    return self.servers.setdefault(f"{s.address}:{port}", ServerModel())
        raise KeyError(f"no real server named {name!r}")


def _table_record(command: Command) -> dict[str, Any]:
    match command:
        case AddService(s) | EditService(s):
            return {"op": type(command).__name__, "service": s.name or str(s.key), "server": None, "weight": None}
        case DelService(key, name):
            return {"op": "DelService", "service": name or str(key), "server": None, "weight": None}
        case AddDest(key, d) | EditDest(key, d):
            return {"op": type(command).__name__, "service": str(key), "server": d.name, "weight": d.weight}
        case DelDest(key, _, name):
            return {"op": "DelDest", "service": str(key), "server": name, "weight": None}
    raise TypeError(command)


