"""Engine properties under random schedules of faults (hypothesis).

Driven through the interaction world: two engines, cuts in either
direction, crashes, kills (the kernel keeps table and VIPs) and reboots,
server faults, garbage on the heartbeat port, operator requests.  After every step of every engine:

- the table commands carried out on a model kernel never fail (no add of
  what exists, no edit or delete of what does not) and rebuild exactly the
  table the engine believes applied;
- that table is what health and config call for, on both roles (a standby
  keeps it in step: taking over is adding the VIPs), until a shutdown
  empties it;
- VIPs are held only while active;
- time never goes backwards and garbage never raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import given, settings, strategies as st

from engine.config import parse
from engine.diff import apply
from engine.engine import Engine, Ready
from engine.events import TABLE_OPS, AdminRequested, HeartbeatReceived, Input
from engine.pool import desired_table
from tests.engine.world import World

BASE = parse((Path(__file__).parent / "testdata" / "_base.cf").read_text())
SERVERS = ["10.1.0.11:80", "10.1.0.12:80"]


@dataclass
class CheckedWorld(World):
    kernel: dict[str, dict] = field(default_factory=dict)  # type: ignore[type-arg]

    def boot(self, node: str, first: Input | None = None) -> None:
        self.kernel[node] = dict(self.tables.get(node, {}))  # kept after a kill, empty after a crash
        super().boot(node, first)

    def feed(self, node: str, event: Input) -> Ready:
        engine: Engine = self.engines[node]
        ready = engine.step(self.now_ms, event)
        ops = [c for c in ready.commands if isinstance(c, TABLE_OPS)]
        self.kernel[node] = apply(self.kernel[node], ops)
        assert self.kernel[node] == engine.applied
        assert engine.applied == ({} if engine.stopped else desired_table(engine.keeper.entries))
        if engine.failover.role == "standby":
            assert engine.holding.held == ()
        self.deadlines[node] = ready.next_deadline_ms
        for command in ready.commands:
            self._carry_out(node, command)
        return ready


actions = st.one_of(
    st.tuples(st.just("run"), st.integers(1, 8000)),
    st.tuples(st.just("cut"), st.sampled_from(["public", "private"]), st.sampled_from(["primary", "backup", None])),
    st.tuples(st.just("heal"), st.sampled_from(["public", "private"])),
    st.tuples(st.just("server"), st.sampled_from(SERVERS), st.sampled_from(["up", "down", "hang", "wrong"])),
    st.tuples(st.just("crash"), st.sampled_from(["primary", "backup"])),
    st.tuples(st.just("kill"), st.sampled_from(["primary", "backup"])),
    st.tuples(st.just("boot"), st.sampled_from(["primary", "backup"])),
    st.tuples(st.just("admin"), st.sampled_from(["primary", "backup"]),
              st.sampled_from(["failover", "drain", "undrain", "force_down", "force_up", "auto"])),
    st.tuples(st.just("garbage"), st.sampled_from(["primary", "backup"]), st.binary(max_size=70)),
    st.tuples(st.just("weight"), st.sampled_from(["primary", "backup"]), st.integers(-1, 70_000)),
)


@settings(max_examples=120, deadline=None)
@given(st.lists(actions, max_size=25), st.sampled_from([0, 1]))
def test_engine_invariants_under_random_faults(schedule: list[tuple], preempt: int) -> None:  # type: ignore[type-arg]
    config = BASE if not preempt else parse((Path(__file__).parent / "testdata" / "_base.cf").read_text() + "preempt = 1\n")
    world = CheckedWorld(config)
    world.boot("primary")
    world.boot("backup")
    for action in schedule:
        match action:
            case ("run", ms):
                world.run_until(world.now_ms + ms)
            case ("cut", path, sender):
                world.cut |= {(s, path) for s in ([sender] if sender else ["primary", "backup"])}
            case ("heal", path):
                world.cut = {(s, p) for s, p in world.cut if p != path}
            case ("server", address, mode):
                world.servers[address] = mode
            case ("crash", node):
                world.crash(node)
            case ("kill", node):
                world.kill(node)
            case ("boot", node):
                if node not in world.engines:
                    world.boot(node)
            case ("admin", node, what):
                if node in world.engines:
                    world.feed(node, AdminRequested(what, "" if what == "failover" else "s1"))
            case ("weight", node, weight):
                if node in world.engines:
                    world.feed(node, AdminRequested("weight", "web/s2", weight=weight))
            case ("garbage", node, payload):
                if node in world.engines:
                    source = "10.0.0.2" if node == "primary" else "10.0.0.1"
                    world.feed(node, HeartbeatReceived("public", source, payload))
    # Liveness: heal everything; within deadtime + keepalive + a little, exactly one active.
    world.cut.clear()
    for node in ("primary", "backup"):
        if node not in world.engines:
            world.boot(node)
    world.run_until(world.now_ms + 20_000)
    roles = sorted(e.failover.role for e in world.engines.values())
    assert roles == ["active", "standby"], roles


def test_ready_status_is_read_before_the_next_step() -> None:
    import pytest

    from engine.engine import EngineMisuse
    from engine.events import Tick

    engine = Engine(BASE, "primary")
    first = engine.step(0, Tick())
    snapshot = first.status
    assert snapshot.role == "standby" and snapshot.node == "primary"
    for now in (1000, 2000, 3000, 4000):
        engine.step(now, Tick())
    second = engine.step(5000, Tick())  # partner silent for deadtime (3 s): active
    assert second.status.role == "active"
    assert snapshot.role == "standby"  # a snapshot never changes afterwards
    with pytest.raises(EngineMisuse, match="read it before the next step"):
        first.status
    with pytest.raises(EngineMisuse, match="time went backwards"):
        engine.step(4999, Tick())


def test_a_broken_invariant_is_an_explicit_error() -> None:
    import pytest

    from engine.engine import InvariantBroken
    from engine.events import Tick
    from engine.holding import Vip

    engine = Engine(BASE, "backup")
    engine.step(0, Tick())
    engine.holding.held = (Vip("10.0.0.100", 32, "eth0", "eth0:1"),)  # corrupt it: a standby holding a VIP
    with pytest.raises(InvariantBroken, match="standby but holds"):
        engine.step(1, Tick())
