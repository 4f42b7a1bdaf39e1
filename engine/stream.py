"""Which of the partner's heartbeats to believe, and how far: one stream per
partner boot.  `failover` decides what a believed heartbeat means; this
module decides whether it is believed, trusted and credible.  No clock:
the caller passes the time and what it knows (is the ack fresh, has the
stream we knew fallen silent).

Without a key a host on the LAN can forge the partner's source address;
what it cannot know is the sequence numbers the routers exchange
(docs/SECURITY.md).  The rules:

| a shoal heartbeat whose sequence ...                 | is                 |
|------------------------------------------------------|--------------------|
| is new on its path (one replay window over both       | `continued`        |
| paths: each (sequence, path) once), not below the     |                    |
| stream's first, not further ahead than the partner    |                    |
| can have counted since it was last heard              |                    |
| was already seen on this path, inside the window      | `replayed`         |
| is anything else (lower, a jump ahead), and: its ack  | `new`: a new boot  |
| names one of our heartbeats sent within `deadtime`    | of the partner     |
| ("fresh"), or the stream we knew fell silent for more |                    |
| than a keepalive (a forger cannot silence the real    |                    |
| partner), or -- with a key -- it is a jump ahead      |                    |
| is anything else                                      | `out_of_sequence`  |

`replayed` and `out_of_sequence` heartbeats are never judged.  A heartbeat
that is not believed is remembered as a *candidate* stream, so that a
booting router's first standby heartbeats (sent before its old stream was
seen to fall silent) still count once its stream is believed.

A believed stream is *trusted* once one of its heartbeats acked us freshly
(or was signed), and *credible* when trusted, the first stream we heard
since we started, or shaped like a booting router: it said standby for a
keepalive or more before claiming active.  A stream that replaced a silent
one and claims active at once -- a forger's, once the real partner died --
is neither; `failover` lets such a claim keep nobody standby, yields no
dual-active to it, and never judges it deaf.

The partner's ack is the highest of its stream, so a forged stale ack
cannot make a healthy partner look deaf.

A heartbeat not believed (or a claim not acted on) is a `Suspect`: counted,
and noted for the log with the reason in `SUSPECT_WHY`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

from engine.events import Notify, Path
from engine.wire import Heartbeat, ReplayWindow

Admission = Literal["continued", "new", "replayed", "out_of_sequence"]

WINDOW_SLOTS = 128  # the replay window counts (sequence, path) slots: 64 sequences on two paths
JUMP_SLACK = 32  # sequences a partner may count beyond the rate below (answers, role changes)
JUMP_PER_KEEPALIVE = 16  # at most: one heartbeat and four probes per keepalive, answers to ours


@dataclass(frozen=True, slots=True)
class Suspect:
    """A heartbeat (or a partner's claim) not acted on, for the log: the
    counter it went to, why, and where it came from (None: a claim)."""

    counter: str
    why: str
    path: Path | None
    source: str | None

    def notify(self) -> Notify:
        where = {"path": self.path, "source": self.source} if self.path and self.source else {}
        return Notify("heartbeat_ignored", {"counter": self.counter, "why": self.why, **where})


SUSPECT_WHY: Mapping[str, str] = {
    "heartbeats_wrong_path": "signed for the other path (a capture replayed across paths): ignored",
    "heartbeats_replayed": "a sequence already heard on this path (a replay or a duplicate): ignored",
    "heartbeats_out_of_sequence": "neither continues the partner's sequence nor acks one of ours "
                                  "(a forger, or a restart not yet believed): ignored",
    "heartbeats_unconfirmed": "the partner's claim comes from a stream that never acked us: "
                              "not acted on until it does (probing)",
}


class PartnerStream:
    """The partner's current stream.  Mutable, owned by one `Failover`."""

    def __init__(self) -> None:
        self.heard_seq = 0  # its highest sequence: our ack
        self.ack = 0  # its highest ack
        self.start_seq = 0  # its first sequence: nothing below is in it
        self.trusted = False
        self.first = False  # the first stream heard since we started
        self.cold_started = False
        self._window = ReplayWindow(0, 0, WINDOW_SLOTS)
        self._standby_since: int | None = None
        # Not (yet) believed: (last sequence, when, since when it said standby).
        self._candidate: tuple[int, int, int | None] | None = None

    @property
    def credible(self) -> bool:
        return self.trusted or self.cold_started or self.first

    def admit(self, now_ms: int, heartbeat: Heartbeat, path: Path, *, keepalive_ms: int,
              last_heard_ms: int | None, fresh: bool, silent: bool, signed: bool) -> Admission:
        """Where `heartbeat` (shoal format, already decoded and authenticated
        when `signed`) stands: see the table at the top.  `fresh`: its ack
        names one of our heartbeats sent within deadtime; `silent`: the
        stream we knew has not been heard for more than a keepalive (or the
        partner is dead to us)."""
        slot = heartbeat.seq * 2 + (1 if path == "private" else 0)
        ok, window = self._window.accept(slot)
        elapsed_ms = 0 if last_heard_ms is None else now_ms - last_heard_ms
        if self.heard_seq and ok and self.start_seq <= heartbeat.seq <= _reach(self.heard_seq, elapsed_ms,
                                                                                keepalive_ms):
            self._window = window
            self.heard_seq = max(self.heard_seq, heartbeat.seq)
            self.ack = max(self.ack, heartbeat.ack)
            self._trust(heartbeat, fresh)
            return "continued"
        if self.heard_seq and not ok and slot > self._window.highest - WINDOW_SLOTS:
            return "replayed"
        ahead = heartbeat.seq > self.heard_seq
        believable = not self.heard_seq or fresh or (silent if not signed else ahead)
        candidate = self._candidate
        continues = candidate is not None and candidate[0] < heartbeat.seq <= _reach(
            candidate[0], now_ms - candidate[1], keepalive_ms)
        standby_since = candidate[2] if candidate is not None and continues else None
        if not believable:
            if standby_since is None and heartbeat.state == "standby":
                standby_since = now_ms
            self._candidate = (heartbeat.seq, now_ms, standby_since)
            return "out_of_sequence"
        self.first = not self.heard_seq
        self._candidate = None
        _, self._window = ReplayWindow(0, 0, WINDOW_SLOTS).accept(slot)
        self.heard_seq = self.start_seq = heartbeat.seq
        self.ack = heartbeat.ack
        self.trusted = self.cold_started = False
        self._standby_since = standby_since
        self._trust(heartbeat, fresh)
        return "new"

    def _trust(self, heartbeat: Heartbeat, fresh: bool) -> None:
        if heartbeat.authenticated or fresh:
            self.trusted = True

    def observe(self, now_ms: int, state: str, keepalive_ms: int) -> None:
        """A believed heartbeat's state, for the booting-router shape: a router
        that booted and cannot hear us says standby until its deadtime ends
        (we may see only part of it: a keepalive is enough), then claims
        active."""
        if state == "standby":
            if self._standby_since is None:
                self._standby_since = now_ms
        elif state == "active" and self._standby_since is not None:
            if now_ms - self._standby_since >= keepalive_ms:
                self.cold_started = True
            self._standby_since = None


def _reach(seq: int, elapsed_ms: int, keepalive_ms: int) -> int:
    """The highest sequence a partner last heard at `seq` can have sent `elapsed_ms` later."""
    return seq + JUMP_SLACK + JUMP_PER_KEEPALIVE * max(0, elapsed_ms) // keepalive_ms
