"""Which router is active: what pulse decided, and what it left undecided.

Everything that affects the router's role lives here; this module does not
know what going active *does* (the engine turns a `Verdict` into VIPs, ARP
and table commands) and never reads a clock.  Its parts, one per module:

- what one heartbeat means for our role: `engine.verdicts`'s table (the
  original's receive rules, one-way failure, preemption, belief);
- whether the partner is dead, a path lost, a step stalled, the partner
  deaf to us, a probe due: `engine.liveness`;
- which heartbeats are believed, trusted and credible: `engine.stream`
  (one stream per partner boot; docs/SECURITY.md);
- a start over an adopted table, a link back: `engine.rejoin`.

Every deadline here is a named timer in one `engine.timers.Timers`
(`next_deadline`).  Here: a standby router whose partner died or left goes
active (an untrusted `leaving` only if no `active` heartbeat follows within
`keepalive`); the winner of a dual-active re-ARPs however it learns it won
(the partner active, or standby after a silence or a dual-active, or its
heartbeats flagged `yielded`, which a router that yielded sets for
`deadtime`); a heartbeat not believed is counted, never judged, and the
`active` of a stream not credible keeps nobody standby past deadtime;
with a key, heartbeats without a valid HMAC, replayed or signed for the
other path are dropped and counted.

An operator's hand-over (`hand_over`) needs a partner that can take over
(`handover_refusal`) and is make before break: this router keeps the role
and the VIPs while its heartbeats say `leaving` (the partner takes over at
once) and then `standby`; it gives the VIPs up `keepalive / 4` after it
hears the partner active (the partner's gratuitous ARPs have gone out by
then: a client's packet sent before they reached it is still served
here), and keeps the role, saying `active` again, if it does not hear the
partner active within a `keepalive` or the partner leaves or dies
meanwhile (a `handover_failed` notice).  A partner that took over unheard
(a one-way cut) hears that and yields, as from any dual-active: both hold
the VIPs for a keepalive at most.  A hand-over is not undone by preemption
until the router is active again for another reason.

What only a key prevents: a forger who sees the routers' heartbeats (and
so knows the sequences), or one patient enough to mimic a booting router
after the real partner died.
"""

from __future__ import annotations

from engine import rejoin
from engine.events import Path, SendHeartbeat
from engine.liveness import At, Liveness, Noticed
from engine.model import Config, Node
from engine.status import PartnerStatus
from engine.stream import SUSPECT_WHY, PartnerStream, Suspect
from engine.timers import Deadline, Timers
from engine.verdicts import Heard, PartnerState, Role, Verdict, handover_refusal, judge
from engine.wire import AUTH_ERRORS, Heartbeat, WireError, decode, encode

__all__ = ["Failover", "Noticed", "Suspect", "Verdict"]

SEND = Deadline("send")


class Failover:
    """pulse for one router.  Mutable, owned by one `Engine`."""

    # Deadlines, each a named timer in `timers` (None: not set).
    next_send_ms = At(SEND)
    backup_take_ms = At(Deadline("backup_take"))  # standby/standby: the backup takes over then
    handover_until_ms = At(Deadline("handover"))  # an operator's hand-over not taken by then: keep the role
    release_at_ms = At(Deadline("release"))  # the partner took over a hand-over: give the VIPs up then
    leaving_confirm_ms = At(Deadline("leaving_confirm"))  # an unconfirmed `leaving`: take over then
    listening_until_ms = At(Deadline("listen"))  # adopted at start: claiming nothing until then (listen_first)

    def __init__(self, config: Config, node: Node, *, key: bytes | None, seq_start: int) -> None:
        self.timers = Timers()
        self.live = Liveness(self.timers)
        self.node: Node = node
        self.partner_node: Node = "backup" if node == "primary" else "primary"
        self.role: Role = "standby"
        self.handing_over = False  # an operator's failover under way: active, announcing `standby`
        self.handed_over = False  # an operator moved the role away: no preemption until active again
        self.leaving = False
        self.seq = max(seq_start, 0)
        self.stream = PartnerStream()
        self.counters: dict[str, int] = {
            "heartbeats_received": 0, "heartbeats_bad": 0, "heartbeats_unauthenticated": 0,
            "heartbeats_replayed": 0, "heartbeats_foreign": 0, "heartbeats_out_of_sequence": 0,
            "heartbeats_wrong_path": 0, "heartbeats_unconfirmed": 0, "stalls": 0,
            "heartbeats_received_public": 0, "heartbeats_received_private": 0,
            "failovers": 0,  # times this router went from standby to active
        }
        self.partner_state: PartnerState | None = None
        self.partner_serial: int | None = None
        self.yielded_until_ms = -(2**62)
        self._last_reply_ms = -(2**62)
        self._noted: set[str] = set()  # suspect kinds already noted since the partner was last trusted
        self.notes: list[Suspect | Noticed] = []  # for the log, taken by the engine after `receive`
        self.reconfigure(config, key)

    @property
    def partner_alive(self) -> bool | None:
        """None: never heard."""
        return self.live.alive

    @partner_alive.setter
    def partner_alive(self, alive: bool | None) -> None:
        self.live.alive = alive

    @property
    def last_heard_ms(self) -> int | None:
        return self.live.last_heard_ms

    # ------------------------------------------------------------ config

    def reconfigure(self, config: Config, key: bytes | None) -> None:
        self.config = config
        self.key = key
        self.paths: tuple[Path, ...] = tuple(
            p for p in ("public", "private")
            if config.address_of("primary", p) and config.address_of("backup", p)
        )
        self.enabled = config.backup_active and bool(self.paths)
        self.live.configure(self.paths, config.deadtime_ms)

    def partner_address(self, path: Path) -> str | None:
        return self.config.address_of(self.partner_node, path)

    @property
    def partner_can_take(self) -> bool:
        return self.partner_node == "primary" or self.config.backup_active

    # ------------------------------------------------------------ time

    def start(self, now_ms: int) -> list[Verdict]:
        """The first step.  With failover off the primary is simply active."""
        self.live.start(now_ms, self.paths, self.config.deadtime_ms)
        if not self.enabled:
            return [Verdict("go_active", "no failover (backup_active = 0)")] if self.node == "primary" else []
        self.live.dead_at_ms = now_ms + self.config.deadtime_ms
        self.next_send_ms = now_ms
        return []

    def expect_wake(self, deadline_ms: int | None) -> None:
        """The engine asked to be woken at `deadline_ms`: a step more than
        `keepalive` later is a stall (`engine.liveness`)."""
        self.live.stall_after_ms = None if deadline_ms is None else deadline_ms + self.config.keepalive_ms

    def tick(self, now_ms: int) -> tuple[list[Verdict], list[Noticed]]:
        """Deadlines due at `now_ms`: verdicts, and events worth a notice."""
        verdicts: list[Verdict] = []
        if not self.enabled or self.leaving:
            return verdicts, []
        first = self.timers.next()
        if first is None or now_ms < first:
            return verdicts, []  # nothing due (the common case)
        notes = self.live.due(now_ms, self.paths, self.config.deadtime_ms, self.config.keepalive_ms)
        for note in notes:
            if note.kind == "stall":
                self.counters["stalls"] += 1
            elif note.kind == "partner_dead":
                self.partner_state = None
                self.backup_take_ms = None
                if self.role == "standby":
                    verdicts.append(Verdict("go_active", "partner dead: no heartbeat for deadtime"))
                elif self.handing_over:
                    notes.append(self._handover_failed(now_ms))
        if self.handover_until_ms is not None and now_ms >= self.handover_until_ms and self.handing_over:
            notes.append(self._handover_failed(now_ms))
        if self.release_at_ms is not None and now_ms >= self.release_at_ms:
            self.release_at_ms = None
            if self.handing_over and self.partner_state == "active":
                self._end_handover()
                verdicts.append(Verdict("go_standby", "operator: failover (the partner took over)"))
        listening = self.listening_until_ms
        if listening is not None and now_ms >= listening:
            self.listening_until_ms = None
            self.next_send_ms = now_ms
            if self.role == "active":
                verdicts.append(rejoin.NOT_HEARD)
        leaving_confirm = self.leaving_confirm_ms
        if leaving_confirm is not None and now_ms >= leaving_confirm:
            self.leaving_confirm_ms = None
            if self.role == "standby" and self.partner_state != "active":
                self.live.forget()
                verdicts.append(Verdict("go_active", "partner leaving (no active heartbeat for a keepalive since)"))
        if self.backup_take_ms is not None and now_ms >= self.backup_take_ms:
            self.backup_take_ms = None
            if self.role == "standby" and self.partner_state == "standby":
                verdicts.append(Verdict("go_active", "partner standby for a keepalive"))
        return verdicts, notes

    def next_deadline(self) -> int | None:
        if not self.enabled or self.leaving:
            return None
        self.live.schedule_probe(self.live.probe_due(
            self.config.heartbeat_format == "shoal", self.leaving, self.config.keepalive_ms))
        return self.timers.next()

    # ------------------------------------------------------------ sending

    def set_role(self, role: Role, now_ms: int) -> None:
        """The engine carried out a verdict: announce it at once."""
        if self.role == "active" and role == "standby":
            self.yielded_until_ms = now_ms + self.config.deadtime_ms
            self._end_handover()
        if role == "active":
            self.handed_over = False
            if self.role == "standby":
                self.counters["failovers"] += 1
        self.role = role
        self.backup_take_ms = None
        if self.enabled:
            self.next_send_ms = now_ms

    def due_heartbeats(self, now_ms: int) -> list[SendHeartbeat]:
        if not self.enabled:
            return []
        probe_at = self.live.probe_due(self.config.heartbeat_format == "shoal", self.leaving, self.config.keepalive_ms)
        probe = probe_at is not None and now_ms >= probe_at and not self.leaving
        if not probe:
            next_send_ms = self.timers.get(SEND)
            if next_send_ms is None or now_ms < next_send_ms:
                return []
        if probe:
            self.live.last_probe_ms = now_ms
            self.live.next_probe_ms = now_ms + max(1, self.config.keepalive_ms // 4)
        self.next_send_ms = None if self.leaving else now_ms + self.config.keepalive_ms
        listening = self.listening_until_ms is not None and not self.leaving  # see listen_first
        state: PartnerState = "leaving" if self.leaving else "standby" if listening or self.handing_over \
            else self.role
        return self._send(now_ms, state, probe=probe or listening)

    def leave(self, now_ms: int) -> list[SendHeartbeat]:
        """Shutting down (or handing over): tell the partner, then fall silent."""
        self.leaving = True
        self.role = "standby"
        if not self.enabled:
            return []
        return self._send(now_ms, "leaving")

    def listen_first(self, now_ms: int) -> None:
        """Adopted at start: claim nothing for a keepalive (`engine.rejoin`)."""
        if self.enabled:
            self.listening_until_ms = now_ms + self.config.keepalive_ms

    def give_up(self, now_ms: int) -> list[SendHeartbeat]:
        """A link this router needs went down (`monitor_links`): tell the
        partner to take over at once, as a hand-over does, but without its
        hold and without barring preemption later (the engine keeps this
        router standby while the link is down; `links_back` says what then)."""
        self.yielded_until_ms = now_ms + self.config.deadtime_ms
        self.role = "standby"
        self.backup_take_ms = None
        self._end_handover()
        if not self.enabled:
            return []
        self.next_send_ms = now_ms + self.config.keepalive_ms
        return self._send(now_ms, "leaving")

    def links_back(self, now_ms: int) -> list[Verdict]:
        """Every needed link is up again (`engine.rejoin`)."""
        if self.leaving:
            return []
        verdict, wait = rejoin.links_back(
            role=self.role, enabled=self.enabled, node=self.node, alive=self.partner_alive,
            partner=self.partner_state, preempt=self.config.preempt, hears_us=self.partner_hears_us(now_ms),
            handed_over=self.handed_over)
        if wait:
            self.backup_take_ms = now_ms + 2 * self.config.keepalive_ms
        return [verdict] if verdict is not None else []

    def hand_over(self, now_ms: int) -> list[SendHeartbeat]:
        """An operator's failover, make before break (see the module's
        docstring): tell the partner `leaving`, keep the role and the VIPs."""
        self.handing_over = True
        self.handed_over = True
        self.yielded_until_ms = now_ms + self.config.deadtime_ms
        self.handover_until_ms = now_ms + self.config.keepalive_ms
        self.next_send_ms = now_ms + self.config.keepalive_ms
        return self._send(now_ms, "leaving")

    def _end_handover(self) -> None:
        self.handing_over = False
        self.handover_until_ms = None
        self.release_at_ms = None

    def _handover_failed(self, now_ms: int) -> Noticed:
        """The partner did not take over (or left, or died): keep the role, say `active` again."""
        self._end_handover()
        self.handed_over = False
        self.yielded_until_ms = -(2**62)
        self.next_send_ms = now_ms
        return Noticed("handover_failed")

    def _send(self, now_ms: int, state: PartnerState, probe: bool = False) -> list[SendHeartbeat]:
        self.seq += 1
        self.live.sent(self.seq, now_ms, self.config.deadtime_ms)
        fmt = self.config.heartbeat_format
        shoal = fmt == "shoal"  # the original's format carries the state alone
        sends = []
        for path in self.paths:
            heartbeat = Heartbeat(
                format=fmt, state=state, node=self.node if shoal else None, seq=self.seq if shoal else 0,
                ack=self.stream.heard_seq if shoal else 0, serial_no=self.config.serial_no if shoal else 0,
                probe=probe and shoal, yielded=shoal and state != "active" and now_ms < self.yielded_until_ms,
                private=shoal and path == "private",
            )
            payload = encode(heartbeat, self.key if shoal else None)
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
        self.counters[f"heartbeats_received_{path}"] += 1
        # After a silence (the partner may have taken the VIPs meanwhile) or
        # after the partner was active, a standby partner means we are the
        # winner of a dual-active however its yield reached us: re-announce.
        regained = self.partner_alive is False or self.partner_state == "active" or heartbeat.yielded
        self.live.heard(now_ms, path, self.config.deadtime_ms)
        trusted = heartbeat.format == "piranha" or self.stream.trusted
        if trusted:
            self._noted.clear()
        self.stream.observe(now_ms, heartbeat.state, self.config.keepalive_ms)
        credible = heartbeat.format == "piranha" or self.stream.credible
        if credible or heartbeat.state != "active" or self.live.dead_at_ms is None:
            self.live.dead_at_ms = now_ms + self.config.deadtime_ms
        # else: the claim of a stream that replaced a silent one, never acked
        # us and never looked like a booting router keeps nobody standby past
        # deadtime (a forger's, once the real partner died).
        self.live.stall_grace_used = False
        self.live.next_probe_ms = None
        if heartbeat.probe and now_ms - self._last_reply_ms >= self.config.keepalive_ms // 4:
            self._last_reply_ms = now_ms  # the partner missed a round of ours: answer at once
            self.next_send_ms = now_ms
        self.partner_state = heartbeat.state
        if heartbeat.state == "active":
            self.leaving_confirm_ms = None
        if heartbeat.format == "shoal":
            self.partner_serial = heartbeat.serial_no
        if self.handing_over:  # not judged: the partner is taking over (see hand_over)
            if heartbeat.state == "active" and self.release_at_ms is None:
                self.release_at_ms = now_ms + max(1, self.config.keepalive_ms // 4)
            elif heartbeat.state == "leaving":
                self.notes.append(self._handover_failed(now_ms))
            return []
        if self.listening_until_ms is not None:  # the first heard since an adopting start (engine.rejoin)
            self.listening_until_ms = None
            self.next_send_ms = now_ms
            if self.role == "active" and heartbeat.state == "active":
                return [rejoin.HEARD_ACTIVE]
            if self.role == "active":
                return [*self._judge(now_ms, heartbeat.state, trusted, credible), rejoin.HEARD_OTHER]
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
            bad = "heartbeats_unauthenticated" if self.key is not None and decoded.reason in AUTH_ERRORS else "heartbeats_bad"
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
                                      last_heard_ms=last,
                                      fresh=self.live.acks_recent(decoded.ack, now_ms, self.config.deadtime_ms),
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
            self.notes.append(Suspect(counter, SUSPECT_WHY[counter], path, source))

    def take_notes(self) -> list[Suspect | Noticed]:
        """What `receive` noted for the log since the last call."""
        notes, self.notes = self.notes, []
        return notes

    @property
    def heard_seq(self) -> int:
        """The partner's highest sequence in its current stream: our ack."""
        return self.stream.heard_seq

    def handover_refusal(self, now_ms: int) -> str | None:
        """Why an operator's failover would be refused now (`engine.verdicts.handover_refusal`)."""
        if self.handing_over:
            return "a hand-over is under way: the partner is taking over"
        return handover_refusal(
            enabled=self.enabled, role=self.role, can_take=self.partner_can_take, alive=bool(self.partner_alive),
            shoal_format=self.config.heartbeat_format == "shoal", hears_us=self.partner_hears_us(now_ms),
            partner=self.partner_state, partner_serial=self.partner_serial, serial_no=self.config.serial_no)

    def partner_status(self, now_ms: int) -> PartnerStatus:
        alive = bool(self.partner_alive)
        return PartnerStatus(
            alive=alive, state=self.partner_state, serial_no=self.partner_serial, last_heard_ms=self.last_heard_ms,
            deaf=alive and self.partner_deaf(now_ms),
            drift=self.partner_serial is not None and self.partner_serial != self.config.serial_no,
        )

    def partner_hears_us(self, now_ms: int) -> bool:
        """The partner's ack names a heartbeat we sent within `deadtime`."""
        return self.live.acks_recent(self.stream.ack, now_ms, self.config.deadtime_ms)

    def partner_deaf(self, now_ms: int) -> bool:
        """The partner has not heard us for longer than `deadtime + keepalive` (shoal format only)."""
        if self.config.heartbeat_format != "shoal":
            return False
        return self.live.deaf(self.stream.ack, now_ms, self.config.deadtime_ms, self.config.keepalive_ms)

    def _judge(self, now_ms: int, partner: PartnerState, trusted: bool, credible: bool) -> list[Verdict]:
        """The receive rules (`engine.verdicts`), and what they ask us to remember."""
        j = judge(Heard(
            role=self.role, partner=partner, node=self.node, trusted=trusted, credible=credible,
            deaf=partner != "leaving" and self.partner_deaf(now_ms),
            hears_us=partner == "active" and self.partner_hears_us(now_ms), can_take=self.partner_can_take,
            preempt=self.config.preempt, handed_over=self.handed_over,
        ))
        if j.unconfirmed:
            self._suspect("heartbeats_unconfirmed", None, None)
            self.live.probe_soon(now_ms, self.config.keepalive_ms)
        if j.confirm_leaving and self.leaving_confirm_ms is None:
            self.leaving_confirm_ms = now_ms + self.config.keepalive_ms
        if j.partner_gone:
            self.live.forget()
        if j.backup_wait == "cancel":
            self.backup_take_ms = None
        elif j.backup_wait == "start" and self.backup_take_ms is None:
            self.backup_take_ms = now_ms + 2 * self.config.keepalive_ms
        return list(j.verdicts)

