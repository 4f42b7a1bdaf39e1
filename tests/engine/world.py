"""A tiny deterministic world for engine interaction tests (no simpy).

Two engines, heartbeat paths with a fixed latency that can be cut in either
direction, real servers whose checks answer by a mode the test sets, and a
log of the commands that matter, one line each.  Each node has a kernel
table (`engine.diff.apply` carries table commands out, a refused one comes
back as `CommandFailed`; `ReadTable` is answered 1 ms later); a crash loses
it with the host, a `kill` (the daemon alone dies) keeps it, and a booting
engine is first fed what its kernel holds, as the daemon does.  The interaction tests in
`testdata/*.txt` drive it; the simulator (`sim/`) is the full-size twin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.diff import TableOpError, apply
from engine.engine import Engine, Ready
from engine.events import (
    TABLE_OPS, AddDest, AddService, AddVip, AdvertReceived, CheckCompleted, Command, CommandFailed, DelDest, DelService,
    DelVip, EditDest, EditService, HeartbeatReceived, Input, LoadRead, Notify, ReadLoad, ReadTable,
    RunCommand, SendAdvert, SendGratuitousArp, SendHeartbeat, SetTimeouts, StartCheck, StartSyncDaemon, StopSyncDaemon,
    TableOp, TableRead, Tick,
)
from engine.model import Config, Node
from engine.table import ServiceEntry, ServiceKey

NODES: tuple[Node, Node] = ("primary", "backup")


def fmt_time(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def describe(command: Command) -> str | None:
    """One log line for a command, or None for the noisy ones."""
    match command:
        case AddVip(address, prefix, device, label):
            return f"vip add {address}/{prefix} {label or device}"
        case DelVip(address, prefix, device, label):
            return f"vip del {address}/{prefix} {label or device}"
        case SendGratuitousArp(address, _):
            return f"arp {address}"
        case AddService(s):
            return f"table add-service {s.key} {s.scheduler}" + (f" persistent {s.persistent_s}" if s.persistent_s else "")
        case EditService(s):
            return f"table edit-service {s.key} {s.scheduler}"
        case DelService(key, name):
            return f"table del-service {key}"
        case AddDest(key, d):
            return f"table add-dest {key} {d.name} {d.key} weight {d.weight}"
        case EditDest(key, d):
            return f"table edit-dest {key} {d.name} {d.key} weight {d.weight}"
        case DelDest(key, dkey, name):
            return f"table del-dest {key} {name} {dkey}"
        case Notify("role", data):
            return f"role {data['from']} -> {data['to']} ({data['reason']})"
        case Notify("health", data):
            return f"health {data['service']}/{data['server']} {data['from']} -> {data['to']} ({data['detail']})"
        case Notify(kind, data):
            return f"{kind} " + " ".join(f"{k}={v}" for k, v in data.items())
        case RunCommand(cmd, reason, _):
            return f"run {cmd!r} ({reason})"
        case SetTimeouts(tcp, fin, udp):
            return f"timeouts tcp={tcp} tcpfin={fin} udp={udp}"
        case StartSyncDaemon(state, iface, syncid):
            return f"syncd start {state} {iface} id {syncid}"
        case StopSyncDaemon(state):
            return f"syncd stop {state}"
        case ReadTable():
            return "table read"
        case _:
            return None


@dataclass
class World:
    config: Config
    latency_ms: int = 1
    key: bytes | None = None
    show_heartbeats: bool = False
    show_checks: bool = False
    now_ms: int = 0
    engines: dict[str, Engine] = field(default_factory=dict)
    deadlines: dict[str, int | None] = field(default_factory=dict)
    cut: set[tuple[str, str]] = field(default_factory=set)  # (sender, path) lost
    servers: dict[str, str] = field(default_factory=dict)  # "addr:port" -> up|down|hang|wrong
    loads: dict[str, float | None] = field(default_factory=dict)
    seq_starts: dict[str, int] = field(default_factory=dict)
    paused: dict[str, int] = field(default_factory=dict)  # node -> descheduled until
    pending: list[tuple[int, int, str, Input]] = field(default_factory=list)  # (at, order, node, input)
    log: list[str] = field(default_factory=list)
    tables: dict[str, dict[ServiceKey, ServiceEntry]] = field(default_factory=dict)  # each node's kernel
    vips: dict[str, set[str]] = field(default_factory=dict)  # the addresses each node's interfaces hold
    links: dict[str, set[str]] = field(default_factory=dict)  # each node's interfaces without link
    _order: int = 0

    # ------------------------------------------------------------ control

    def boot(self, node: str, first: Input | None = None) -> None:
        self.seq_starts[node] = self.seq_starts.get(node, 0) + 1_000_000
        self.engines[node] = Engine(self.config, node, seq_start=self.seq_starts[node], heartbeat_key=self.key)  # type: ignore[arg-type]
        self.feed(node, first or TableRead(dict(self.tables.setdefault(node, {})),
                                           frozenset(self.vips.setdefault(node, set()))))

    def crash(self, node: str) -> None:
        """The router dies: its kernel table and addresses with it."""
        self.kill(node)
        self.tables.pop(node, None)
        self.vips.pop(node, None)

    def kill(self, node: str) -> None:
        """The daemon alone dies: the kernel keeps its table and addresses."""
        self.engines.pop(node, None)
        self.deadlines.pop(node, None)
        self.pending = [p for p in self.pending if p[2] != node]

    def tamper(self, node: str, op: TableOp) -> None:
        """A change behind the engine's back (an operator's ipvsadm)."""
        self.tables[node] = apply(self.tables.setdefault(node, {}), [op])

    def feed(self, node: str, event: Input) -> Ready:
        ready = self.engines[node].step(self.now_ms, event)
        self.deadlines[node] = ready.next_deadline_ms
        for command in ready.commands:
            self._carry_out(node, command)
        return ready

    def later(self, delay_ms: int, node: str, event: Input) -> None:
        self._order += 1
        self.pending.append((self.now_ms + delay_ms, self._order, node, event))

    def run_until(self, until_ms: int) -> None:
        while True:
            times = [max(t, self.paused.get(n, 0)) for n, t in self.deadlines.items() if t is not None]
            times += [max(p[0], self.paused.get(p[2], 0)) for p in self.pending]
            nxt = min(times, default=None)
            if nxt is None or nxt > until_ms:
                break
            self.now_ms = max(self.now_ms, nxt)
            for node, until in list(self.paused.items()):
                if until <= self.now_ms:
                    del self.paused[node]
                    if node in self.engines:  # a late wake-up: the timer fires first
                        self.feed(node, Tick())
            due = sorted(p for p in self.pending if p[0] <= self.now_ms and p[2] not in self.paused)
            self.pending = [p for p in self.pending if p not in due]
            for _, _, node, event in due:
                if node in self.engines:
                    self.feed(node, event)
            for node in NODES:
                deadline = self.deadlines.get(node)
                if (node in self.engines and node not in self.paused
                        and deadline is not None and deadline <= self.now_ms):
                    self.feed(node, Tick())
        self.now_ms = max(self.now_ms, until_ms)

    # ------------------------------------------------------------ effects

    def _carry_out(self, node: str, command: Command) -> None:
        if isinstance(command, SendHeartbeat):
            self._send(node, command)
        elif isinstance(command, SendAdvert):
            self._advert(node, command)
        elif isinstance(command, StartCheck):
            self._check(node, command)
        elif isinstance(command, ReadLoad):
            self.later(1, node, LoadRead(command.load_id, self.loads.get(command.address)))
        elif isinstance(command, TABLE_OPS):
            try:
                self.tables[node] = apply(self.tables.setdefault(node, {}), [command])
            except TableOpError as e:
                self.later(1, node, CommandFailed(command, str(e)))
        elif isinstance(command, AddVip):
            self.vips.setdefault(node, set()).add(command.address)
        elif isinstance(command, DelVip):
            self.vips.setdefault(node, set()).discard(command.address)
        elif isinstance(command, ReadTable):
            self.later(1, node, TableRead(dict(self.tables.setdefault(node, {}))))
        elif not isinstance(command, (SendGratuitousArp, Notify, RunCommand, SetTimeouts,
                                      StartSyncDaemon, StopSyncDaemon)):  # these: the log only
            raise TypeError(f"the test world cannot carry out {type(command).__name__}: {command}")
        line = describe(command)
        if line is not None:
            self.log.append(f"{fmt_time(self.now_ms)} {node} {line}")

    def _send(self, node: str, command: SendHeartbeat) -> None:
        if self.show_heartbeats:
            self.log.append(f"{fmt_time(self.now_ms)} {node} heartbeat {command.path} {command.payload.hex()}")
        if (node, command.path) in self.cut:
            return
        other = "backup" if node == "primary" else "primary"
        source = self.config.address_of(node, command.path)  # type: ignore[arg-type]
        assert source is not None
        self.later(self.latency_ms, other, HeartbeatReceived(command.path, source, command.payload))

    def _advert(self, node: str, command: SendAdvert) -> None:
        """A VRRP advert (heartbeat_protocol = vrrp) on the public path, as the kernel delivers it."""
        if self.show_heartbeats:
            self.log.append(f"{fmt_time(self.now_ms)} {node} advert {command.payload.hex()}")
        if (node, "public") in self.cut:
            return
        other = "backup" if node == "primary" else "primary"
        source = self.config.address_of(node, "public")  # type: ignore[arg-type]
        assert source is not None
        group = "224.0.0.18" if ":" not in source else "ff02::12"
        destination = group if not self.config.vrrp_unicast else self.config.address_of(other, "public")  # type: ignore[arg-type]
        assert destination is not None
        self.later(self.latency_ms, other, AdvertReceived(source, destination, 255, command.payload))

    def _check(self, node: str, command: StartCheck) -> None:
        spec = command.spec
        mode = self.servers.get(f"{spec.address}:{spec.port}", "up")
        if self.show_checks:
            self.log.append(f"{fmt_time(self.now_ms)} {node} check {spec.address}:{spec.port} ({mode})")
        if mode == "hang":
            self.later(spec.timeout_ms, node, CheckCompleted(command.check_id, False, "timeout"))
        else:
            detail = {"up": "ok", "down": "connection refused", "wrong": "reply does not match expect"}[mode]
            self.later(1, node, CheckCompleted(command.check_id, mode == "up", detail))

    def take_log(self) -> list[str]:
        out, self.log = self.log, []
        return out
