"""Who hears whom: when the partner is dead, when a path is lost, when a
step came too late to tell, and whether the partner hears us.

Everything that decides "partner dead" lives here, and every deadline of
pulse is a named timer in one `Timers` (the `Failover` that owns this
`Liveness` keeps its own role deadlines there too, so `next_deadline` is
one heap's next).  This module does not know what the partner's states
mean (`engine.failover` judges them) nor what time it is.

Rules (../shared/PIRANHA.md, "pulse heartbeat", and beyond it):

- every heartbeat believed pushes the partner's deadline to now +
  `deadtime` (`engine.failover` says which ones may: a claim nobody can
  vouch for keeps nobody standby past deadtime); silence on every path
  until then means "partner dead";
- a path whose heartbeats stop for `deadtime` is noticed lost, once until
  it is heard again;
- stall guard: when a step arrives more than `keepalive` after the deadline
  the engine asked for (the process was descheduled), the partner's queued
  heartbeats have not been read yet; the router listens for one more
  `keepalive` before declaring the partner dead (once until heard again);
- probes: once a round of the partner's heartbeats is overdue (1.5
  `keepalive` after the last), a router sends a heartbeat flagged `probe`
  every quarter keepalive, which the partner answers at once; so "partner
  dead" needs every probe of the last `deadtime - 1.5 keepalive` lost too,
  not just two rounds in a row (at 20% loss and the original's timers: 16
  false takeovers in 5 simulated hours without probes, none with them);
- one-way failure: heartbeats carry a sequence number and the last sequence
  heard from the partner (its *ack*).  When the partner's ack is older than
  `deadtime + keepalive`, the partner cannot hear us ("deaf").  A partner
  that just declared us dead after `deadtime` of two-way loss carries an
  ack about `deadtime` old in its first `active` heartbeat; one more
  `keepalive` tells that apart from a one-way failure.  An ack from the
  future is our own restart: not deaf.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from engine.events import Notify, Path
from engine.timers import Deadline, Timers

PATHS: tuple[Path, Path] = ("public", "private")
_PATH_LOST = {path: Deadline("path_lost", i) for i, path in enumerate(PATHS)}
_PROBE = Deadline("probe")
DEAD = Deadline("partner_dead")


class At:
    """An attribute kept as a named deadline in its owner's `timers` (None: not set)."""

    def __init__(self, name: Deadline) -> None:
        self.name = name

    def __get__(self, owner: Any, cls: Any = None) -> int | None:
        return owner.timers.get(self.name)  # type: ignore[no-any-return]

    def __set__(self, owner: Any, due_ms: int | None) -> None:
        if due_ms is None:
            owner.timers.cancel(self.name)
        else:
            owner.timers.set(self.name, due_ms)


@dataclass(frozen=True, slots=True)
class Noticed:
    """What the deadlines found worth a notice (never a decision: those are
    `failover.Verdict`s): a path's heartbeats lost for deadtime (`path`
    set), the partner dead (on a VRRP pair: the master down), a stall (the
    step came late), an operator's hand-over not taken."""

    kind: Literal["heartbeat_lost", "partner_dead", "master_down", "stall", "handover_failed"]
    path: Path | None = None

    def notify(self) -> Notify:
        """The notice for the log and the notify FIFO."""
        if self.kind == "heartbeat_lost":
            return Notify("heartbeat_lost", {"path": self.path})
        kind, reason = _NOTICES[self.kind]
        return Notify(kind, {"alive": False, "reason": reason} if kind == "partner" else {"reason": reason})


_NOTICES: Mapping[str, tuple[str, str]] = {
    "partner_dead": ("partner", "no heartbeat for deadtime"),
    "master_down": ("partner", "no VRRP advert for the Master_Down_Interval"),
    "stall": ("stall", "step late: listening one more keepalive"),
    "handover_failed": ("hold", "the partner was not heard active within a keepalive of the operator's "
                                "failover"),
}


class Liveness:
    """The partner heard and hearing us, for one `Failover`."""

    dead_at_ms = At(DEAD)  # silence until then: the partner is dead

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self.alive: bool | None = None  # None: never heard
        self.started_ms = 0
        self.last_heard_ms: int | None = None
        self.hearing_since_ms = 0
        self.stall_grace_used = False
        self.next_probe_ms: int | None = None
        self.last_probe_ms = -(2**62)
        self.stall_after_ms: int | None = None  # a step after this is a stall (the engine's deadline + keepalive)
        self._path_heard_ms: dict[Path, int] = {}
        self._path_lost: dict[Path, bool] = {}
        self._sent: deque[tuple[int, int]] = deque()  # (seq, sent at), oldest first
        self.sent_at: dict[int, int] = {}

    def configure(self, paths: tuple[Path, ...], deadtime_ms: int) -> None:
        """The paths and deadtime in force: each path's deadline follows."""
        for path in paths:
            self._path_lost.setdefault(path, False)
        for path, name in _PATH_LOST.items():
            if path in paths and not self._path_lost[path]:
                self.timers.set(name, self._path_heard_ms.get(path, self.started_ms) + deadtime_ms)
            else:
                self.timers.cancel(name)

    def start(self, now_ms: int, paths: tuple[Path, ...], deadtime_ms: int) -> None:
        self.started_ms = now_ms
        self.hearing_since_ms = now_ms
        self.configure(paths, deadtime_ms)

    def heard(self, now_ms: int, path: Path, deadtime_ms: int) -> None:
        """A heartbeat believed on `path` (the partner's deadline is the caller's: see the rules)."""
        if not self.alive:
            self.hearing_since_ms = now_ms
        self.alive = True
        self.last_heard_ms = now_ms
        self._path_heard_ms[path] = now_ms
        self._path_lost[path] = False
        self.timers.set(_PATH_LOST[path], now_ms + deadtime_ms)

    def forget(self) -> None:
        """The partner left: no deadline, not alive."""
        self.alive = False
        self.dead_at_ms = None

    # ------------------------------------------------------------ deadlines

    def due(self, now_ms: int, paths: tuple[Path, ...], deadtime_ms: int, keepalive_ms: int) -> list[Noticed]:
        """Paths lost, then a stall or the partner dead, at `now_ms`."""
        notes: list[Noticed] = []
        for path in paths:
            heard = self._path_heard_ms.get(path, self.started_ms)
            if not self._path_lost[path] and now_ms - heard >= deadtime_ms:
                self._path_lost[path] = True
                self.timers.cancel(_PATH_LOST[path])
                notes.append(Noticed("heartbeat_lost", path))
        dead_at = self.dead_at_ms
        if dead_at is not None and now_ms >= dead_at:
            stalled = self.stall_after_ms is not None and now_ms > self.stall_after_ms
            if stalled and not self.stall_grace_used:
                self.stall_grace_used = True
                self.dead_at_ms = now_ms + keepalive_ms
                notes.append(Noticed("stall"))
            else:
                self.dead_at_ms = None
                self.alive = False
                notes.append(Noticed("partner_dead"))
        return notes

    def probe_due(self, shoal: bool, leaving: bool, keepalive_ms: int) -> int | None:
        """When to ask the partner for an immediate answer (see probes; shoal format only)."""
        if not shoal or not self.alive or leaving or self.last_heard_ms is None or self.timers.get(DEAD) is None:
            return None
        if self.next_probe_ms is not None:
            return self.next_probe_ms
        return self.last_heard_ms + keepalive_ms * 3 // 2

    def probe_soon(self, now_ms: int, keepalive_ms: int) -> None:
        """Ask the partner for an answer that proves it hears us (at most one
        probe per quarter keepalive, whatever arrives meanwhile)."""
        self.next_probe_ms = max(now_ms, self.last_probe_ms + max(1, keepalive_ms // 4))

    def schedule_probe(self, probe_due_ms: int | None) -> None:
        """The probe's deadline (`probe_due`, which follows from what was heard)."""
        if probe_due_ms is None:
            self.timers.cancel(_PROBE)
        else:
            self.timers.set(_PROBE, probe_due_ms)

    # ------------------------------------------------------------ acks

    def sent(self, seq: int, now_ms: int, deadtime_ms: int) -> None:
        """Heartbeat `seq` went out: remembered for `3 deadtime` (the acks that can name it)."""
        self._sent.append((seq, now_ms))
        self.sent_at[seq] = now_ms
        horizon = now_ms - 3 * deadtime_ms
        while len(self._sent) > 1 and self._sent[0][1] < horizon:
            old, _ = self._sent.popleft()
            del self.sent_at[old]

    def acks_recent(self, ack: int, now_ms: int, deadtime_ms: int) -> bool:
        """`ack` names a heartbeat we sent within `deadtime`: its sender hears us
        now, and is no blind forger (it cannot guess our sequence)."""
        sent = self.sent_at.get(ack)
        return sent is not None and now_ms - sent <= deadtime_ms

    def deaf(self, ack: int, now_ms: int, deadtime_ms: int, keepalive_ms: int) -> bool:
        """The partner, whose highest ack is `ack`, has not heard us for longer
        than `deadtime + keepalive` (see one-way failure)."""
        acked_at = self.sent_at.get(ack, -(2**62))
        if ack and self._sent and ack > self._sent[-1][0]:
            acked_at = now_ms  # an ack from the future: our own restart; not deaf
        since = max(acked_at, self.hearing_since_ms, self.started_ms)
        return now_ms - since > deadtime_ms + keepalive_ms
