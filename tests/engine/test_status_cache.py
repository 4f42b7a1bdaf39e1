"""The status cache across a reload: a change marked in a virtual that the
reload removes must not break the next snapshot (found in the engine split,
issue 10: `KeyError: no virtual named 'b'`)."""

from __future__ import annotations

from engine.config import parse
from engine.engine import Engine
from engine.events import CheckCompleted, ConfigLoaded, StartCheck, TableRead, Tick

BASE = """primary = 10.0.0.1
backup_active = 0
virtual a {
    address = 10.0.0.100 eth0:1
    timeout = 1
    server s1 {
        address = 10.1.0.11
    }
}
"""
SECOND = """virtual b {
    address = 10.0.0.101 eth0:2
    timeout = 1
    server s2 {
        address = 10.1.0.12
    }
}
"""


def test_a_change_in_a_virtual_a_reload_removes_does_not_break_the_status() -> None:
    engine = Engine(parse(BASE + SECOND), "primary")
    ready = engine.step(0, TableRead({}))
    checks = {c.spec.address: c.check_id for c in ready.commands if isinstance(c, StartCheck)}
    assert engine.status.service("b").servers[0].health == "unknown"  # the cache holds b
    engine.step(1, CheckCompleted(checks["10.1.0.12"], True, "ok"))  # b/s2 changed; status not read
    engine.step(2, ConfigLoaded(parse(BASE), None))  # b is gone
    status = engine.step(3, Tick()).status
    assert [s.name for s in status.services] == ["a"]
    assert status.service("a").servers[0].name == "s1"
