"""Which router is active: what pulse decided, and what it left undecided.

Everything that affects the router's role lives here; this module does not
know what going active *does* (the engine turns a `Verdict` into VIPs, ARP
and table commands) and never reads a clock.

The receive rules (../shared/PIRANHA.md, "pulse heartbeat"), as a table
keyed by (my role, the partner's state, my node):

| me      | partner | node    | verdict                                      |
|---------|---------|---------|----------------------------------------------|
| active  | active  | backup  | go standby (dual-active: the primary wins)   |
| active  | active  | primary | re-ARP (the winner re-announces its VIPs)    |
| active  | standby | any     | nothing                                      |
| standby | active  | any     | nothing (no preemption; `preempt = 1`: the   |
|         |         |         | primary takes over once the partner's ack    |
|         |         |         | shows it hears us; the backup yields)        |
| standby | standby | primary | go active                                    |
| standby | standby | backup  | go active if the primary has not within two  |
|         |         |         | `keepalive`s (so a cold start is never dual) |
| any     | leaving | any     | the partner is gone: go active at once       |

Every heartbeat pushes the partner's deadline to now + `deadtime`; silence
on every path until then means "partner dead": a standby router goes active.

Beyond the original:

- one-way failure: heartbeats carry a sequence number and the last sequence
  heard from the partner (its *ack*).  When the partner's ack is older than
  `deadtime + keepalive`, the partner cannot hear us ("deaf"); it will
  declare us dead and go active, so we never go active over it, and an
  active router whose deaf partner is active yields, whatever its node.
  Exactly one stays active.  (A partner that went active after `deadtime` of
  two-way loss is not deaf yet: it hears us at our next heartbeat and yields.)
- the winner of a dual-active re-ARPs however it learns it won: on hearing
  the partner active (the table), and on hearing it standby after a silence
  or after it was active (its yield may be all that reaches us).
- probes: once a round of the partner's heartbeats is overdue, a router
  sends a heartbeat flagged `probe` every quarter keepalive, which the
  partner answers at once; so "partner dead" needs every probe of the last
  `deadtime - 1.5 keepalive` lost too, not just two rounds in a row
  (at 20% loss and the original's timers: 16 false takeovers in 5 simulated
  hours without probes, none with them).
- a router that yielded the active role flags its heartbeats `yielded` for
  `deadtime`, so the winner re-ARPs even when the loser's `active`
  heartbeats were all lost.
- stall guard: when a step arrives more than `keepalive` after the deadline
  the engine asked for (the process was descheduled), the partner's queued
  heartbeats have not been read yet; the router listens for one more
  `keepalive` before declaring the partner dead.
- authentication: with a key, heartbeats without a valid HMAC or replayed
  (outside the anti-replay window) are dropped and counted, never acted on.
  A signed heartbeat says which path it was sent on, so one captured on one
  path is not accepted on the other.

Without a key (docs/SECURITY.md): which heartbeats are believed, trusted
and credible is `engine.stream`'s decision (one stream per partner boot).
Here:

- a heartbeat that is not believed is counted and never judged
  (`heartbeats_out_of_sequence`, `heartbeats_replayed`);
- the `active` of a stream that is not credible does not push the
  partner's deadline (it keeps nobody standby past deadtime), a dual-active
  is not yielded to it (the router probes, re-announcing its VIPs
  meanwhile; a real partner's answer acks us and settles it within one
  round trip), and it is never judged deaf;
- an untrusted `leaving` is acted on only if no `active` heartbeat arrives
  within `keepalive` (both counted as `heartbeats_unconfirmed`);
- an operator's hand-over holds this router standby until the partner goes
  active, and never longer than `deadtime + keepalive`; with `preempt = 1`
  a primary that handed over does not take the role back until it is
  active again for another reason (the partner left or died): the order
  is not undone a round trip later.

What only a key prevents: a forger who sees the routers' heartbeats (and
so knows the sequences), or one patient enough to mimic a booting router
after the real partner died.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal, Mapping

from engine.events import Path, SendHeartbeat
from engine.model import Config, Node
from engine.stream import PartnerStream
from engine.wire import Heartbeat, WireError, decode, encode

Role = Literal["standby", "active"]
PartnerState = Literal["active", "standby", "leaving"]
Decision = Literal["go_active", "go_standby", "rearp"]


@dataclass(frozen=True, slots=True)
class Noticed:
    """What `tick` found worth a notice (never a decision: those are `Verdict`s):
    a path's heartbeats lost for deadtime (`path` set), the partner dead,
    a stall (the step came late), an operator's hold expired."""

    kind: Literal["heartbeat_lost", "partner_dead", "stall", "hold_expired"]
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class Suspect:
    """A heartbeat (or a partner's claim) not acted on, for the log: the
    counter it went to, why, and where it came from (None: a claim)."""

    counter: str
    why: str
    path: Path | None
    source: str | None


_SUSPECT_WHY: Mapping[str, str] = {
    "heartbeats_wrong_path": "signed for the other path (a capture replayed across paths): ignored",
    "heartbeats_replayed": "a sequence already heard on this path (a replay or a duplicate): ignored",
    "heartbeats_out_of_sequence": "neither continues the partner's sequence nor acks one of ours "
                                  "(a forger, or a restart not yet believed): ignored",
    "heartbeats_unconfirmed": "the partner's claim comes from a stream that never acked us: "
                              "not acted on until it does (probing)",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reason: str


_RULES: Mapping[tuple[Role, PartnerState, Node], Decision | Literal["nothing", "backup_wait", "preempt"]] = {
    ("active", "active", "backup"): "go_standby",
    ("active", "active", "primary"): "rearp",
    ("active", "standby", "backup"): "nothing",
    ("active", "standby", "primary"): "nothing",
    ("standby", "active", "backup"): "nothing",
    ("standby", "active", "primary"): "preempt",
    ("standby", "standby", "primary"): "go_active",
    ("standby", "standby", "backup"): "backup_wait",
    ("active", "leaving", "backup"): "nothing",
    ("active", "leaving", "primary"): "nothing",
    ("standby", "leaving", "backup"): "go_active",
    ("standby", "leaving", "primary"): "go_active",
}

_REASONS: Mapping[Decision, str] = {
    "go_standby": "dual-active: the primary wins",
    "rearp": "dual-active: partner still active, re-announcing",
    "go_active": "partner standby",
}


class Failover:
    """pulse for one router.  Mutable, owned by one `Engine`."""

    def __init__(self, config: Config, node: Node, *, key: bytes | None, seq_start: int) -> None:
        self.node: Node = node
        self.partner_node: Node = "backup" if node == "primary" else "primary"
        self.role: Role = "standby"
        self.hold_standby = False  # after an admin failover: stay standby until the partner is active
        self.hold_until_ms: int | None = None  # ... and never past this
        self.handed_over = False  # an operator moved the role away: no preemption until active again
        self.leaving = False
        self.seq = max(seq_start, 0)
        self.stream = PartnerStream()
        self.counters: dict[str, int] = {
            "heartbeats_received": 0, "heartbeats_bad": 0, "heartbeats_unauthenticated": 0,
            "heartbeats_replayed": 0, "heartbeats_foreign": 0, "heartbeats_out_of_sequence": 0,
            "heartbeats_wrong_path": 0, "heartbeats_unconfirmed": 0, "stalls": 0,
        }
        self.partner_alive: bool | None = None  # None: never heard
        self.partner_state: PartnerState | None = None
        self.partner_serial: int | None = None
        self.last_heard_ms: int | None = None
        self.hearing_since_ms = 0
        self.dead_at_ms: int | None = None
        self.next_send_ms: int | None = None
        self.backup_take_ms: int | None = None
        self.stall_grace_used = False
        self.next_probe_ms: int | None = None
        self.yielded_until_ms = -(2**62)
        self._last_reply_ms = -(2**62)
        self._last_probe_ms = -(2**62)
        self._leaving_confirm_ms: int | None = None  # an unconfirmed `leaving`: take over then
        self._noted: set[str] = set()  # suspect kinds already noted since the partner was last trusted
        self.notes: list[Suspect] = []
        self._sent: deque[tuple[int, int]] = deque()  # (seq, sent at), oldest first
        self._sent_at: dict[int, int] = {}
        self._path_heard_ms: dict[Path, int] = {}
        self._path_lost: dict[Path, bool] = {}
        self.started_ms = 0
        self._stall_after_ms: int | None = None
        self.reconfigure(config, key)

    # ------------------------------------------------------------ config

    def reconfigure(self, config: Config, key: bytes | None) -> None:
        self.config = config
        self.key = key
        self.paths: tuple[Path, ...] = tuple(
            p for p in ("public", "private")
            if config.address_of("primary", p) and config.address_of("backup", p)
        )
        self.enabled = config.backup_active and bool(self.paths)
        for path in self.paths:
            self._path_lost.setdefault(path, False)

    def partner_address(self, path: Path) -> str | None:
        return self.config.address_of(self.partner_node, path)

    @property
    def partner_can_take(self) -> bool:
        return self.partner_node == "primary" or self.config.backup_active

    # ------------------------------------------------------------ time

    def start(self, now_ms: int) -> list[Verdict]:
        """The first step.  With failover off the primary is simply active."""
        self.started_ms = now_ms
        self.hearing_since_ms = now_ms
        if not self.enabled:
            return [Verdict("go_active", "no failover (backup_active = 0)")] if self.node == "primary" else []
        self.dead_at_ms = now_ms + self.config.deadtime_ms
        self.next_send_ms = now_ms
        return []

    def expect_wake(self, deadline_ms: int | None) -> None:
        """The engine asked to be woken at `deadline_ms`: a step that comes
        more than `keepalive` after it is a stall (see the stall guard)."""
        self._stall_after_ms = None if deadline_ms is None else deadline_ms + self.config.keepalive_ms

    def tick(self, now_ms: int) -> tuple[list[Verdict], list[Noticed]]:
        """Deadlines due at `now_ms`: verdicts, and events worth a notice."""
        stalled = self._stall_after_ms is not None and now_ms > self._stall_after_ms
        verdicts: list[Verdict] = []
        notes: list[Noticed] = []
        if not self.enabled or self.leaving:
            return verdicts, notes
        for path in self.paths:
            heard = self._path_heard_ms.get(path, self.started_ms)
            if not self._path_lost[path] and now_ms - heard >= self.config.deadtime_ms:
                self._path_lost[path] = True
                notes.append(Noticed("heartbeat_lost", path))
        if self.dead_at_ms is not None and now_ms >= self.dead_at_ms:
            if stalled and not self.stall_grace_used:
                self.stall_grace_used = True
                self.counters["stalls"] += 1
                self.dead_at_ms = now_ms + self.config.keepalive_ms
                notes.append(Noticed("stall"))
            else:
                self.dead_at_ms = None
                self.partner_alive = False
                self.partner_state = None
                self.backup_take_ms = None
                notes.append(Noticed("partner_dead"))
                if self.role == "standby":
                    self.hold_standby = False
                    verdicts.append(Verdict("go_active", "partner dead: no heartbeat for deadtime"))
        if self.hold_until_ms is not None and now_ms >= self.hold_until_ms:
            self.hold_until_ms = None
            if self.hold_standby:
                self.hold_standby = False
                notes.append(Noticed("hold_expired"))
                if self.role == "standby" and self.partner_state == "standby":
                    self.backup_take_ms = now_ms  # the usual standby/standby rules, now
        if self._leaving_confirm_ms is not None and now_ms >= self._leaving_confirm_ms:
            self._leaving_confirm_ms = None
            if self.role == "standby" and self.partner_state != "active":
                self.partner_alive = False
                self.dead_at_ms = None
                self.hold_standby = False
                verdicts.append(Verdict("go_active", "partner leaving (no active heartbeat for a keepalive since)"))
        if self.backup_take_ms is not None and now_ms >= self.backup_take_ms:
            self.backup_take_ms = None
            if self.role == "standby" and self.partner_state == "standby" and not self.hold_standby:
                verdicts.append(Verdict("go_active", "partner standby for a keepalive"))
        return verdicts, notes

    def next_deadline(self) -> int | None:
        if not self.enabled or self.leaving:
            return None
        candidates = [t for t in (self.dead_at_ms, self.next_send_ms, self.backup_take_ms, self._probe_due_ms(),
                                  self.hold_until_ms, self._leaving_confirm_ms)
                      if t is not None]
        for path in self.paths:
            if not self._path_lost[path]:
                candidates.append(self._path_heard_ms.get(path, self.started_ms) + self.config.deadtime_ms)
        return min(candidates) if candidates else None

    # ------------------------------------------------------------ sending

    def set_role(self, role: Role, now_ms: int) -> None:
        """The engine carried out a verdict: announce it at once."""
        if self.role == "active" and role == "standby":
            self.yielded_until_ms = now_ms + self.config.deadtime_ms
        if role == "active":
            self.handed_over = False
        self.role = role
        self.backup_take_ms = None
        if self.enabled:
            self.next_send_ms = now_ms

    def due_heartbeats(self, now_ms: int) -> list[SendHeartbeat]:
        if not self.enabled:
            return []
        probe_at = self._probe_due_ms()
        probe = probe_at is not None and now_ms >= probe_at and not self.leaving
        if not probe and (self.next_send_ms is None or now_ms < self.next_send_ms):
            return []
        if probe:
            self._last_probe_ms = now_ms
            self.next_probe_ms = now_ms + max(1, self.config.keepalive_ms // 4)
        self.next_send_ms = None if self.leaving else now_ms + self.config.keepalive_ms
        return self._send(now_ms, "leaving" if self.leaving else self.role, probe=probe)

    def _probe_due_ms(self) -> int | None:
        """When to ask the partner for an immediate answer: once a round of
        its heartbeats is overdue, then every quarter keepalive until it is
        heard or declared dead (shoal format only)."""
        if (self.config.heartbeat_format != "shoal" or not self.partner_alive or self.leaving
                or self.last_heard_ms is None or self.dead_at_ms is None):
            return None
        if self.next_probe_ms is not None:
            return self.next_probe_ms
        return self.last_heard_ms + self.config.keepalive_ms * 3 // 2

    def leave(self, now_ms: int) -> list[SendHeartbeat]:
        """Shutting down (or handing over): tell the partner, then fall silent."""
        self.leaving = True
        self.role = "standby"
        if not self.enabled:
            return []
        return self._send(now_ms, "leaving")

    def hand_over(self, now_ms: int) -> list[SendHeartbeat]:
        """An operator's failover: tell the partner to take over, stay standby
        until it is active (at most `deadtime + keepalive`: a partner that
        never takes over does not strand the VIPs)."""
        self.yielded_until_ms = now_ms + self.config.deadtime_ms
        self.role = "standby"
        self.hold_standby = True
        self.handed_over = True
        self.hold_until_ms = now_ms + self.config.deadtime_ms + self.config.keepalive_ms
        if not self.enabled:
            return []
        self.next_send_ms = now_ms + self.config.keepalive_ms
        return self._send(now_ms, "leaving")

    def _send(self, now_ms: int, state: PartnerState, probe: bool = False) -> list[SendHeartbeat]:
        self.seq += 1
        self._sent.append((self.seq, now_ms))
        self._sent_at[self.seq] = now_ms
        horizon = now_ms - 3 * self.config.deadtime_ms
        while len(self._sent) > 1 and self._sent[0][1] < horizon:
            old, _ = self._sent.popleft()
            del self._sent_at[old]
        fmt = self.config.heartbeat_format
        sends = []
        for path in self.paths:
            heartbeat = Heartbeat(
                format=fmt,
                state=state,
                node=self.node if fmt == "shoal" else None,
                seq=self.seq if fmt == "shoal" else 0,
                ack=self.stream.heard_seq if fmt == "shoal" else 0,
                serial_no=self.config.serial_no if fmt == "shoal" else 0,
                probe=probe and fmt == "shoal",
                yielded=fmt == "shoal" and state != "active" and now_ms < self.yielded_until_ms,
                private=fmt == "shoal" and path == "private",
            )
            payload = encode(heartbeat, self.key if fmt == "shoal" else None)
            address = self.partner_address(path)
            assert address is not None
            sends.append(SendHeartbeat(path, address, self.config.heartbeat_port, payload))
        return sends

    # ------------------------------------------------------------ receiving

    def receive(self, now_ms: int, path: Path, source: str, payload: bytes) -> list[Verdict]:
        """One datagram on the heartbeat port.  Garbage is counted, never raised."""
        if not self.enabled or self.leaving:
            return []
        heartbeat = self._accept(now_ms, path, source, payload)
        if heartbeat is None:
            return []
        self.counters["heartbeats_received"] += 1
        # After a silence (the partner may have taken the VIPs meanwhile) or
        # after the partner was active, a standby partner means we are the
        # winner of a dual-active however its yield reached us: re-announce.
        regained = self.partner_alive is False or self.partner_state == "active" or heartbeat.yielded
        if not self.partner_alive:
            self.hearing_since_ms = now_ms
        self.partner_alive = True
        self.last_heard_ms = now_ms
        self._path_heard_ms[path] = now_ms
        self._path_lost[path] = False
        trusted = heartbeat.format == "piranha" or self.stream.trusted
        if trusted:
            self._noted.clear()
        self.stream.observe(now_ms, heartbeat.state, self.config.keepalive_ms)
        credible = heartbeat.format == "piranha" or self.stream.credible
        if credible or heartbeat.state != "active" or self.dead_at_ms is None:
            self.dead_at_ms = now_ms + self.config.deadtime_ms
        # else: the claim of a stream that replaced a silent one, never acked
        # us and never looked like a booting router keeps nobody standby past
        # deadtime (a forger's, once the real partner died).
        self.stall_grace_used = False
        self.next_probe_ms = None
        if heartbeat.probe and now_ms - self._last_reply_ms >= self.config.keepalive_ms // 4:
            self._last_reply_ms = now_ms  # the partner missed a round of ours: answer at once
            self.next_send_ms = now_ms
        self.partner_state = heartbeat.state
        if heartbeat.state == "active":
            self._leaving_confirm_ms = None
        if heartbeat.format == "shoal":
            self.partner_serial = heartbeat.serial_no
        verdicts = self._judge(now_ms, heartbeat.state, trusted, credible)
        if regained and self.role == "active" and heartbeat.state == "standby" and not verdicts:
            verdicts = [Verdict("rearp", "partner back standby after a silence or a dual-active")]
        return verdicts

    def _accept(self, now_ms: int, path: Path, source: str, payload: bytes) -> Heartbeat | None:
        if path not in self.paths or source != self.partner_address(path):
            self.counters["heartbeats_foreign"] += 1
            return None
        decoded = decode(payload, self.key)
        if isinstance(decoded, WireError):
            bad = "heartbeats_unauthenticated" if self.key is not None and decoded.reason in _AUTH_ERRORS else "heartbeats_bad"
            self.counters[bad] += 1
            return None
        if decoded.format == "piranha":
            return decoded
        if decoded.node != self.partner_node:
            self.counters["heartbeats_bad"] += 1
            return None
        if decoded.private != (path == "private"):
            self._suspect("heartbeats_wrong_path", path, source)
            return None
        last = self.last_heard_ms
        silent = not self.partner_alive or (last is not None and now_ms - last > self.config.keepalive_ms)
        admission = self.stream.admit(now_ms, decoded, path, keepalive_ms=self.config.keepalive_ms,
                                      last_heard_ms=last, fresh=self._acks_recent(decoded.ack, now_ms),
                                      silent=silent, signed=self.key is not None)
        if admission in ("replayed", "out_of_sequence"):
            self._suspect(f"heartbeats_{admission}", path, source)
            return None
        return decoded

    def _suspect(self, counter: str, path: Path | None, source: str | None) -> None:
        """Count a heartbeat not acted on, and note it for the log once until
        the partner is heard trusted again (a forger at any rate: one line)."""
        self.counters[counter] += 1
        if counter not in self._noted:
            self._noted.add(counter)
            self.notes.append(Suspect(counter, _SUSPECT_WHY[counter], path, source))

    def take_notes(self) -> list[Suspect]:
        """What `receive` noted for the log since the last call."""
        notes, self.notes = self.notes, []
        return notes

    def _acks_recent(self, ack: int, now_ms: int) -> bool:
        """`ack` names a heartbeat we sent within `deadtime`: its sender hears us
        now, and is no blind forger (it cannot guess our sequence)."""
        sent = self._sent_at.get(ack)
        return sent is not None and now_ms - sent <= self.config.deadtime_ms

    def _probe_soon(self, now_ms: int) -> None:
        """Ask the partner for an answer that proves it hears us (at most one
        probe per quarter keepalive, whatever arrives meanwhile)."""
        self.next_probe_ms = max(now_ms, self._last_probe_ms + max(1, self.config.keepalive_ms // 4))

    @property
    def heard_seq(self) -> int:
        """The partner's highest sequence in its current stream: our ack."""
        return self.stream.heard_seq

    @property
    def partner_ack(self) -> int:
        """The highest ack of the partner's current stream."""
        return self.stream.ack

    def handover_refusal(self, now_ms: int) -> str | None:
        """Why an operator's failover would be refused now; None: it would be
        carried out.  It needs a partner ready to take over: heard both ways
        (its heartbeats reach us and acknowledge ours within `deadtime`),
        standby, and running the same `serial_no`.  Handing over to a
        partner that cannot hear us, or one that runs another
        configuration, could leave nobody serving."""
        if not self.enabled:
            return "no failover configured (backup_active = 0 or no backup address)"
        if self.role != "active":
            return "this router is standby: nothing to hand over"
        if not self.partner_can_take:
            return "the partner cannot take over (backup_active = 0)"
        if not self.partner_alive:
            return "the partner is not heard"
        if self.config.heartbeat_format != "shoal":
            return "heartbeat_format = piranha cannot tell whether the partner hears us"
        if not self.partner_hears_us(now_ms):
            return "the partner does not hear us (its heartbeats acknowledge none of ours within deadtime)"
        if self.partner_state != "standby":
            return f"the partner is {self.partner_state or 'unknown'}, not standby"
        if self.partner_serial != self.config.serial_no:
            return (f"the partner runs serial_no {self.partner_serial}, this router {self.config.serial_no}: "
                    "reload both with the same lvs.cf first")
        return None

    def partner_hears_us(self, now_ms: int) -> bool:
        """The partner's ack names a heartbeat we sent within `deadtime`."""
        return self._acks_recent(self.partner_ack, now_ms)

    def partner_deaf(self, now_ms: int) -> bool:
        """The partner has not heard us for longer than `deadtime + keepalive`.

        A partner that just declared us dead after `deadtime` of (two-way)
        loss carries an ack about `deadtime` old in its first `active`
        heartbeat; one more `keepalive` tells that apart from a one-way
        failure, where the ack stays stale while we keep hearing it.
        """
        if self.config.heartbeat_format != "shoal":
            return False
        acked_at = self._sent_at.get(self.partner_ack, -(2**62))
        if self.partner_ack and self._sent and self.partner_ack > self._sent[-1][0]:
            acked_at = now_ms  # an ack from the future: our own restart; not deaf
        since = max(acked_at, self.hearing_since_ms, self.started_ms)
        return now_ms - since > self.config.deadtime_ms + self.config.keepalive_ms

    def _judge(self, now_ms: int, partner: PartnerState, trusted: bool, credible: bool) -> list[Verdict]:
        if partner == "leaving" and not trusted:
            # Only the partner's silence (no `active` heartbeat) confirms it.
            self._suspect("heartbeats_unconfirmed", None, None)
            if self._leaving_confirm_ms is None:
                self._leaving_confirm_ms = now_ms + self.config.keepalive_ms
            self._probe_soon(now_ms)
            return []
        if partner == "leaving":
            self.partner_alive = False
            self.dead_at_ms = None
            self.hold_standby = False
            self.hold_until_ms = None
        rule = _RULES[(self.role, partner, self.node)]
        deaf = partner != "leaving" and self.partner_deaf(now_ms)
        if partner != "standby" or self.role != "standby":
            self.backup_take_ms = None
        if partner == "active":
            self.hold_standby = False
            self.hold_until_ms = None
        if self.role == "active" and partner == "active" and deaf and credible:
            return [Verdict("go_standby", "one-way failure: partner active and cannot hear us")]
        if rule == "nothing":
            return []
        if rule == "preempt":
            # Only over a proven two-way link: the partner acks a heartbeat we
            # sent within deadtime.  Else (just booted, or a one-way failure)
            # taking over would leave both active until it hears us.
            if self.config.preempt and self.partner_hears_us(now_ms) and not self.handed_over:
                return [Verdict("go_active", "preempt: the primary takes its place back")]
            return []
        if rule == "go_active" and partner == "leaving":
            return [Verdict("go_active", "partner leaving")]
        if self.role == "standby" and partner == "standby":
            if self.hold_standby or (deaf and self.partner_can_take):
                return []
            if rule == "backup_wait":
                if self.backup_take_ms is None:
                    # Two keepalives: one round of the primary's may be lost.
                    self.backup_take_ms = now_ms + 2 * self.config.keepalive_ms
                return []
        if rule == "go_standby" and not credible:
            # A dual-active, but nothing proves the sender hears us: ask it,
            # and meanwhile keep the clients here (a forger's claim must not
            # leave them on nobody).  The partner's answer settles it.
            self._suspect("heartbeats_unconfirmed", None, None)
            self._probe_soon(now_ms)
            return [Verdict("rearp", "dual-active: the partner's claim is unconfirmed; asking it")]
        assert rule in ("go_active", "go_standby", "rearp")
        return [Verdict(rule, _REASONS[rule])]


_AUTH_ERRORS = frozenset({"unauthenticated", "bad-mac", "unauthenticated-peer", "unexpected-mac"})
