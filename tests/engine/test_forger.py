"""A blind forger never moves the VIPs (issue 9, item 1): hypothesis drives
two routers exchanging heartbeats over clean paths while a third host on
the LAN injects heartbeats in their names -- any state, node, path, flags,
sequence and ack it likes, except the routers' own sequence numbers, which
it cannot see.  Once the pair has settled, the roles never change.

A fuzz of `Failover.receive` too: whatever arrives, it never raises.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.config import parse
from engine.failover import Failover, Verdict
from engine.wire import Heartbeat, encode
from tests.engine.test_forgery import BASE
from tests.engine.test_forgery import SOURCES as ADDRESS

CONFIG = parse(BASE, "lvs.cf")
REAL_SEQ = 1_000_000  # the routers' sequences start here; the forger's stay below it or far above
EXAMPLES = int(os.environ.get("SHOAL_FUZZ_EXAMPLES", "200"))

forged = st.builds(
    lambda state, node, seq, ack, serial, probe, yielded, private: Heartbeat(
        "shoal", state, node, seq, ack, serial, probe=probe, yielded=yielded, private=private),
    st.sampled_from(["active", "standby", "leaving"]), st.sampled_from(["primary", "backup"]),
    st.integers(0, REAL_SEQ - 1) | st.integers(2**40, 2**64 - 1), st.integers(0, REAL_SEQ - 1),
    st.integers(0, 2**64 - 1), st.booleans(), st.booleans(), st.booleans())
injection = st.tuples(st.integers(0, 29_999), forged, st.sampled_from(["primary", "backup"]),
                      st.sampled_from(["public", "private"]))


def apply(router: Failover, verdicts: list[Verdict], now_ms: int) -> None:
    for v in verdicts:
        if v.decision == "go_active" and router.role == "standby":
            router.set_role("active", now_ms)
        elif v.decision == "go_standby" and router.role == "active":
            router.set_role("standby", now_ms)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(injection, max_size=60))
# Found by the long run (docs/FUZZING.md): an unseen sequence just below the
# partner's first, inside the replay window, was taken as a continuation.
@example([(4951, Heartbeat("shoal", "leaving", "primary", 999_943, 0, 0, private=True), "backup", "private")])
def test_a_blind_forger_never_changes_a_settled_pair(injections: list[tuple[int, Heartbeat, str, str]]) -> None:
    routers = {"primary": Failover(CONFIG, "primary", key=None, seq_start=REAL_SEQ),
               "backup": Failover(CONFIG, "backup", key=None, seq_start=REAL_SEQ + 500_000)}
    for r in routers.values():
        apply(r, r.start(0), 0)
    pending = sorted(injections, key=lambda i: i[0])
    settled_at = 5_000
    for now in range(0, 30_000, 50):
        for name, r in routers.items():
            verdicts, _ = r.tick(now)
            apply(r, verdicts, now)
            other = routers["backup" if name == "primary" else "primary"]
            for send in r.due_heartbeats(now):  # clean paths, 1 ms: delivered within this slot
                apply(other, other.receive(now + 1, send.path, ADDRESS[(name, send.path)], send.payload), now + 1)
        while pending and pending[0][0] <= now:
            at, hb, victim, path = pending.pop(0)
            if now < settled_at:
                continue
            sender = "backup" if victim == "primary" else "primary"  # forged in the partner's name
            r = routers[victim]
            apply(r, r.receive(now, path, ADDRESS[(sender, path)], encode(hb)), now)  # type: ignore[arg-type]
        if now >= settled_at:
            assert (routers["primary"].role, routers["backup"].role) == ("active", "standby"), (now, injections)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=80), st.sampled_from(["public", "private"]),
                          st.sampled_from(["10.0.0.1", "10.0.0.2", "192.168.0.1", "10.9.9.9", "::1", ""])),
                max_size=40),
       st.sampled_from(["primary", "backup"]), st.none() | st.just(b"k" * 32))
def test_receive_never_raises(packets: list[tuple[bytes, str, str]], node: str, key: bytes | None) -> None:
    r = Failover(CONFIG, node, key=key, seq_start=REAL_SEQ)  # type: ignore[arg-type]
    r.start(0)
    for i, (payload, path, source) in enumerate(packets):
        r.receive(i * 10, path, source, payload)  # type: ignore[arg-type]
        r.tick(i * 10)
        r.due_heartbeats(i * 10)
