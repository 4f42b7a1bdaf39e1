"""Which operator overrides the pair shares: a drain or a weight set on one
router reaches its partner over the authenticated heartbeat channel, so
that a failover keeps it.  The datagram: `engine.overrides_wire`.

The rules:

- only with `heartbeat_key_file`: the datagram is always signed; a pair
  without a key shares nothing (each router keeps its own overrides);
- the set has a stamp, (generation, origin): the generation a Lamport
  clock (an operator's change here makes it one above the highest either
  router has used), the origin the router whose change it was, the
  primary above the backup when two changes meet with one generation;
- a router sends its set on every heartbeat path when it changes, and
  again every `RESEND_KEEPALIVES` keepalives while it has ever changed (a
  lost datagram, a partner that restarted and lost its own);
- a received set with a higher stamp replaces this router's overrides
  (servers its config does not have are skipped); one with a lower stamp
  is answered with ours at once (at most once a keepalive); the same
  stamp: nothing;
- the overrides a daemon restores from its state directory at start
  (replayed requests) do not move the stamp: a partner that kept running
  has the newer word;
- a set that does not fit one datagram is not sent (never cut: a missing
  entry would read as "undrained"), said once.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine import overrides_wire as wire
from engine.events import Command, Notify, Path, SendHeartbeat
from engine.model import Node
from engine.registry import Override

RESEND_KEEPALIVES = 5
_RANK = {"backup": 0, "primary": 1}


@dataclass(frozen=True, slots=True)
class Stamp:
    generation: int
    origin: Node

    def __lt__(self, other: "Stamp") -> bool:
        return (self.generation, _RANK[self.origin]) < (other.generation, _RANK[other.origin])


class Sync:
    def __init__(self, node: Node) -> None:
        self.node: Node = node
        self.stamp = Stamp(0, node)
        self.highest = 0  # the highest generation seen from either router
        self.last_answer_ms = -(2**62)
        self.too_large_said = False
        self.counters: dict[str, int] = {"overrides_sent": 0, "overrides_taken": 0, "overrides_ignored": 0}

    def changed(self) -> None:
        """An operator changed this router's overrides."""
        self.highest += 1
        self.stamp = Stamp(self.highest, self.node)

    def message(self, overrides: tuple[Override, ...], serial_no: int) -> wire.Overrides:
        return wire.Overrides(self.stamp.origin, self.stamp.generation, serial_no, tuple(
            wire.Entry(o.virtual, o.server, o.action, o.weight or 0) for o in overrides))

    def sends(self, overrides: tuple[Override, ...], serial_no: int, key: bytes,
              partner: list[tuple[Path, str | None]], port: int) -> list[Command]:
        """The datagram to the partner on every path (or, once, why none is sent)."""
        try:
            payload = wire.encode(self.message(overrides, serial_no), key)
        except wire.TooLarge as e:
            if self.too_large_said:
                return []
            self.too_large_said = True
            return [Notify("error", {"what": f"overrides not shared with the partner: {e}"})]
        self.counters["overrides_sent"] += 1
        return [SendHeartbeat(path, address, port, payload) for path, address in partner if address is not None]

    def received(self, message: wire.Overrides, now_ms: int, keepalive_ms: int) -> str:
        """'take' (replace ours with it), 'answer' (send ours now) or 'nothing'."""
        self.highest = max(self.highest, message.generation)
        theirs = Stamp(message.generation, message.origin)
        if self.stamp < theirs:
            self.stamp = theirs
            self.counters["overrides_taken"] += 1
            return "take"
        if theirs < self.stamp and now_ms - self.last_answer_ms >= keepalive_ms:
            self.last_answer_ms = now_ms
            return "answer"
        return "nothing"
