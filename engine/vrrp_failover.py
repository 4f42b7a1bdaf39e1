"""The failover of a VRRP pair (`heartbeat_protocol = vrrp`, issue 14).

The engine asks this what `engine.failover` answers for a pulse pair (the
role, verdicts, what to send, the partner's status); the election itself
is `engine.vrrp`'s, the bytes `engine.vrrp_wire`'s.  This module turns
adverts heard into the election's inputs and its wishes into `SendAdvert`
commands, and keeps what an operator and the status see.

- An advert is taken when it decodes (`vrrp_wire.decode`: TTL 255, version,
  checksum...), names our virtual router id, and comes from someone else
  (IPv4: not our own address).  Otherwise it is counted by reason
  (`adverts_bad_<reason>`, `adverts_foreign_vrid`) and dropped: a LAN
  shared with other virtual routers is normal, not an error.  An advert
  whose addresses are not ours is taken and counted
  (`adverts_address_mismatch`): keepalived logs and keeps it too.
- Adverts carry this router's VIPs and `nat_router` of the family of its
  own address (the virtual router's addresses), priority `vrrp_priority`,
  the interval `keepalive`.
- An operator's failover is make before break, as on a pulse pair
  (docs/STANDBY.md): the master sends priority 0 (the partner takes over
  after its Skew_Time) and keeps the VIPs, sending nothing more, until it
  hears the partner master; it gives them up a quarter interval later.
  Not heard within the Master_Down_Interval: it keeps the role (a `hold`
  notice) and advertises again.
- Start over an adopted table (VIPs held): VRRP has no "listening"; the
  router is master at once, advertises and announces its VIPs (as
  keepalived's `state MASTER` does), and the partner's adverts settle it
  by the RFC's rules: the higher priority keeps the role, and a master
  that hears a lower-priority one announces its VIPs again (so clients
  the restarted router drew are drawn back).  A link a router
  needs down (`monitor_links`): priority 0 sent, backup, and the election
  does not make it master until the link is back.
- A master announces its VIPs again, one round of gratuitous ARPs, every
  `3 x keepalive` (at least every second): a backup is silent, so a master
  cannot tell that a split healed when the loser's last advert was lost,
  and the clients the loser drew would wait for their neighbour entries to
  go stale (keepalived's `garp_master_refresh`, on here; found by the
  explorer: a lossy link, two masters, the loser's last advert lost).
- The partner's status: a backup is silent in VRRP, so a master knows
  nothing of it (`alive` false, state unknown); a backup knows its master
  from its adverts (`alive` while they come within the Master_Down_Interval).
"""

from __future__ import annotations

import ipaddress
from typing import get_args

from engine.events import SendAdvert
from engine.holding import wanted_vips
from engine.liveness import Noticed
from engine.model import Config, Node, vrrp_priority
from engine.status import PartnerStatus
from engine.verdicts import PartnerState, Role, Verdict
from engine.vrrp import Election, Settings, master_down_ms
from engine.vrrp_wire import GROUP_V4, GROUP_V6, Advert, ErrorReason, VrrpError, decode, encode


def settings_of(config: Config, node: Node) -> Settings:
    own = config.primary if node == "primary" else config.backup
    assert own is not None and config.virtual_router_id is not None
    return Settings(version=config.vrrp_version, vrid=config.virtual_router_id, priority=vrrp_priority(config, node),
                    interval_ms=config.keepalive_ms, address=own, preempt=config.preempt,
                    preempt_delay_ms=config.preempt_delay_ms)


class VrrpFailover:
    """The VRRP side of one router.  Mutable, owned by one `Engine`."""

    key = None  # VRRP carries no shoal key: the operator's overrides are not shared (engine.sync)
    paths: tuple[()] = ()

    def __init__(self, config: Config, node: Node) -> None:
        self.node: Node = node
        self.role: Role = "standby"
        self.leaving = False
        self.handed_over = False
        self.partner_state: PartnerState | None = None
        self.last_heard_ms: int | None = None
        self.notes: list[Noticed] = []
        self.counters: dict[str, int] = {"failovers": 0, "adverts_sent": 0, "adverts_received": 0,
                                         "adverts_foreign_vrid": 0, "adverts_address_mismatch": 0, "adverts_own": 0,
                                         **{f"adverts_bad_{reason}": 0 for reason in get_args(ErrorReason)}}
        self._send: list[SendAdvert] = []
        self._expected_ms: int | None = None
        self._handing_until_ms: int | None = None  # an operator's failover: the partner not master by then
        self._release_at_ms: int | None = None
        self._refresh_at_ms: int | None = None  # a master's next round of ARPs
        self._now_ms = 0
        self.election = Election(settings_of(config, node))
        self.reconfigure(config, None)

    # ------------------------------------------------------------ config

    def reconfigure(self, config: Config, key: bytes | None) -> None:
        self.config = config
        self.enabled = config.backup_active
        self.settings = settings_of(config, self.node)
        own = self.settings.address
        self.family = ipaddress.ip_address(own).version
        partner = config.backup if self.node == "primary" else config.primary
        self.destination = partner if config.vrrp_unicast and partner else (GROUP_V4 if self.family == 4 else GROUP_V6)
        self.addresses = tuple(v.address for v in wanted_vips(config)
                               if ipaddress.ip_address(v.address).version == self.family)
        if self.election.settings != self.settings:
            self.election.reconfigure(self.settings, self._now_ms)

    @property
    def _refresh_ms(self) -> int:
        return max(3 * self.settings.interval_ms, 1000)

    @property
    def handing_over(self) -> bool:
        return self._handing_until_ms is not None

    def partner_address(self, path: str) -> str | None:
        return None  # no shoal datagrams to the partner: overrides are not shared on a VRRP pair

    # ------------------------------------------------------------ time

    def start(self, now_ms: int) -> list[Verdict]:
        self._now_ms = now_ms
        if not self.enabled:
            return [Verdict("go_active", "no failover (backup_active = 0)")] if self.node == "primary" else []
        self.election.start(now_ms)
        return []

    def expect_wake(self, deadline_ms: int | None) -> None:
        self._expected_ms = deadline_ms

    def next_deadline(self) -> int | None:
        if not self.enabled or self.leaving:
            return None
        candidates: tuple[int | None, ...]
        if self._handing_until_ms is not None:  # sending nothing meanwhile: not the election's timers
            candidates = (self._handing_until_ms, self._release_at_ms)
        else:
            candidates = (self.election.next_deadline(), self._refresh_at_ms if self.role == "active" else None)
        return min((t for t in candidates if t is not None), default=None)

    def tick(self, now_ms: int) -> tuple[list[Verdict], list[Noticed]]:
        self._now_ms = now_ms
        if not self.enabled or self.leaving:
            return [], []
        late = now_ms - self._expected_ms if self._expected_ms is not None and now_ms > self._expected_ms else 0
        self._expected_ms = None
        if self._handing_until_ms is not None:
            return self._handing_tick(now_ms), self._take_notes()
        verdicts, send = self.election.tick(now_ms, late)
        if self.role == "active" and self._refresh_at_ms is not None and now_ms >= self._refresh_at_ms:
            self._refresh_at_ms = now_ms + self._refresh_ms
            verdicts = [*verdicts, Verdict("refresh", "a master's periodic announcement of its VIPs")]
        if any(v.decision == "go_active" for v in verdicts) and self.partner_state is not None:
            self.partner_state = None  # a master heard before, silent now (a cold start heard none)
            self.notes.append(Noticed("master_down"))
        if send:
            self._advert(self.settings.priority)
        return verdicts, self._take_notes()

    def _handing_tick(self, now_ms: int) -> list[Verdict]:
        if self._release_at_ms is not None and now_ms >= self._release_at_ms:
            self._handing_until_ms = self._release_at_ms = None
            return [Verdict("go_standby", "operator: failover (the partner took over)")]
        if self._handing_until_ms is not None and now_ms >= self._handing_until_ms:
            self._handover_failed()
        return []

    def _handover_failed(self) -> None:
        self._handing_until_ms = self._release_at_ms = None
        self.handed_over = False
        self.election.assume_master(self._now_ms)
        self._advert(self.settings.priority)
        self.notes.append(Noticed("handover_failed"))

    def _take_notes(self) -> list[Noticed]:
        notes, self.notes = self.notes, []
        return notes

    def take_notes(self) -> list[Noticed]:
        return self._take_notes()

    # ------------------------------------------------------------ sending

    def _advert(self, priority: int) -> None:
        s = self.settings
        advert = Advert(s.version, s.vrid, priority, max(1, s.interval_ms // 10), self.addresses)
        payload = encode(advert, s.address, self.destination, checksum_as_v2=self.config.vrrp_v3_checksum_as_v2)
        self._send.append(SendAdvert(payload))
        self.counters["adverts_sent"] += 1

    def due_heartbeats(self, now_ms: int) -> list[SendAdvert]:
        sends, self._send = self._send, []
        return sends

    def set_role(self, role: Role, now_ms: int) -> None:
        """The engine carried out a verdict (or decided alone: no failover, adoption, links)."""
        self._now_ms = now_ms
        if role == "active":
            if self.role == "standby":
                self.counters["failovers"] += 1
                self._refresh_at_ms = now_ms + self._refresh_ms
            self.handed_over = False
            if self.election.state != "master":  # the engine's own decision: the election follows
                self.election.assume_master(now_ms)
                if self.enabled:
                    self._advert(self.settings.priority)
        elif self.election.state == "master":
            self.election.give_up(now_ms, hand_over=self.handed_over)
        self.role = role

    # ------------------------------------------------------------ receiving

    def advert(self, now_ms: int, source: str, destination: str, ttl: int, payload: bytes) -> list[Verdict]:
        self._now_ms = now_ms
        if not self.enabled or self.leaving:
            return []
        got = decode(payload, source=source, destination=destination, ttl=ttl, version=self.settings.version)
        if isinstance(got, VrrpError):
            self.counters[f"adverts_bad_{got.reason}"] += 1
            return []
        if got.vrid != self.settings.vrid:
            self.counters["adverts_foreign_vrid"] += 1
            return []
        if source == self.settings.address:
            self.counters["adverts_own"] += 1
            return []
        self.counters["adverts_received"] += 1
        if set(got.addresses) != set(self.addresses):
            self.counters["adverts_address_mismatch"] += 1
        if got.priority:
            self.last_heard_ms = now_ms
            self.partner_state = "active"
        else:
            self.partner_state = "leaving"
        interval_ms = got.interval_cs * 10
        if self._handing_until_ms is not None:
            if got.priority and self._release_at_ms is None:
                self._release_at_ms = now_ms + max(1, interval_ms // 4)
            return []
        verdicts, send = self.election.heard(now_ms, got.priority, interval_ms, source)
        if send:
            self._advert(self.settings.priority)
        return verdicts

    # ------------------------------------------------------------ leaving

    def leave(self, now_ms: int) -> list[SendAdvert]:
        """Shutting down: a master says priority 0, then silence."""
        if self.election.stop() and self.enabled:
            self._advert(0)
        self.leaving = True
        self.role = "standby"
        return self.due_heartbeats(now_ms)

    def give_up(self, now_ms: int) -> list[SendAdvert]:
        """A link this router needs went down: priority 0, backup; not master again until it is back."""
        self.election.unfit = True
        self._handing_until_ms = self._release_at_ms = None
        if self.election.give_up(now_ms) and self.enabled:
            self._advert(0)
        self.role = "standby"
        return self.due_heartbeats(now_ms)

    def links_back(self, now_ms: int) -> list[Verdict]:
        self.election.unfit = False
        return []

    def set_unfit(self, unfit: bool) -> None:
        """A link this router needs is down (`monitor_links`), whatever its role: the election must
        not make it master meanwhile (a master gives up through `give_up`)."""
        self.election.unfit = unfit

    def listen_first(self, now_ms: int) -> None:
        """Adopted at start: VRRP has no listening (the module's docstring)."""

    def hand_over(self, now_ms: int) -> list[SendAdvert]:
        """An operator's failover, make before break (the module's docstring)."""
        self.handed_over = True
        self.election.handed_over = True
        self._handing_until_ms = now_ms + master_down_ms(self.settings.priority, self.settings.interval_ms,
                                                         self.settings.version)
        self._advert(0)
        return self.due_heartbeats(now_ms)

    def handover_refusal(self, now_ms: int) -> str | None:
        if not self.enabled:
            return "no failover configured (backup_active = 0)"
        if self.role != "active":
            return "this router is standby: nothing to hand over"
        if self._handing_until_ms is not None:
            return "a hand-over is under way: the partner is taking over"
        return None

    # ------------------------------------------------------------ status

    def partner_status(self, now_ms: int) -> PartnerStatus:
        down = master_down_ms(self.settings.priority, self.election.master_interval_ms, self.settings.version)
        alive = self.last_heard_ms is not None and now_ms - self.last_heard_ms <= down
        return PartnerStatus(alive=alive, state=self.partner_state if alive else None, serial_no=None,
                             last_heard_ms=self.last_heard_ms, deaf=False, drift=False)
