"""VRRP's election for one virtual router (RFC 3768 and RFC 5798, section 6.4): pure.

Who is master of a virtual router shared with one partner (a shoal router,
or keepalived's): this module decides from adverts heard and time passed
in; it sends nothing and never reads a clock.  The engine turns its
verdicts into VIPs, ARPs and adverts (`engine.vrrp_wire` has the bytes).

| state  | what happens                                  | what it does                                      |
|--------|-----------------------------------------------|---------------------------------------------------|
| start  |                                               | Backup, Master_Down_Timer = Master_Down_Interval  |
| Backup | Master_Down_Timer fires                       | Master: an advert now, the VIPs announced         |
| Backup | an advert of priority 0 (the master stops)    | Master_Down_Timer = Skew_Time                     |
| Backup | an advert of priority >= ours, or no preempt  | v3: Master_Adver_Interval = its interval;         |
|        |                                               | Master_Down_Timer = Master_Down_Interval          |
| Backup | an advert of lower priority, preempt          | not taken (the timer runs out: we take over),     |
|        |                                               | unless within `preempt_delay` of the first such   |
| Master | Adver_Timer fires                             | an advert                                         |
| Master | an advert of priority 0                       | an advert now                                     |
| Master | an advert of higher priority, or equal and a  | a last advert (as keepalived sends, so that the   |
|        | higher sender address                         | winner, hearing a lower priority, announces its   |
|        |                                               | VIPs: the clients this router drew go back), then |
|        |                                               | Backup (v3: its interval learnt)                  |
| Master | an advert otherwise                           | not taken; re-announce our VIPs (shoal's: a split |
|        |                                               | that healed leaves clients on the loser's MAC)    |
| Master | shutdown                                      | an advert of priority 0                           |

Times (in centiseconds on the wire, milliseconds here): Skew_Time is
`(256 - priority) / 256` of Master_Adver_Interval (VRRPv3; VRRPv2:
`(256 - priority) / 256` s, its interval being whole seconds); the
Master_Down_Interval is `3 x Master_Adver_Interval + Skew_Time`.  VRRPv2
requires the advert's interval to be ours (RFC 3768 7.1: discarded and
counted otherwise); VRRPv3 learns the master's.

Where shoal's own failover rules differ (docs/VRRP.md): VRRP wins on a
VRRP pair.  Kept, since VRRP allows them: the re-announce of a master that
hears a lower-priority master (a healed split), and the stall guard (a
Master_Down_Timer found expired by a step that came more than an interval
late gives the master one more interval: the descheduled process was us).
Not possible: a backup sends no adverts, so a master cannot tell that its
backup no longer hears it (shoal's one-way-failure rule); a one-way cut
leaves two masters until it heals, as with keepalived.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from engine.verdicts import Verdict

State = Literal["backup", "master"]


@dataclass(frozen=True, slots=True)
class Settings:
    """One router's VRRP settings (from lvs.cf)."""

    version: int  # 2 or 3
    vrid: int
    priority: int  # 1-254
    interval_ms: int  # Advertisement_Interval (keepalive)
    address: str  # this router's primary address on the link (the tie-break, and the advert's source)
    preempt: bool
    preempt_delay_ms: int = 0


def skew_ms(priority: int, interval_ms: int, version: int) -> int:
    if version == 2:
        return (256 - priority) * 1000 // 256
    return (256 - priority) * interval_ms // 256


def master_down_ms(priority: int, interval_ms: int, version: int) -> int:
    return 3 * interval_ms + skew_ms(priority, interval_ms, version)


def _wins_tie(sender: str, us: str) -> bool:
    """Equal priorities: the higher primary address (as an unsigned number) is master."""
    return int(ipaddress.ip_address(sender)) > int(ipaddress.ip_address(us))


class Election:
    """RFC 5798 section 6.4 for one router.  Mutable, owned by one engine."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state: State = "backup"
        self.master_interval_ms = settings.interval_ms  # Master_Adver_Interval
        self.down_at_ms: int | None = None  # Master_Down_Timer
        self.advert_at_ms: int | None = None  # Adver_Timer
        self.preempt_until_ms: int | None = None
        self.stopped = False
        self.handed_over = False  # gave the role up (an operator's failover): no preemption until master again
        self.unfit = False  # a link this router needs is down: it does not become master (monitor_links)
        self.counters: dict[str, int] = {
            "adverts_received": 0, "adverts_lower_priority": 0, "adverts_interval_mismatch": 0,
            "adverts_priority_zero": 0, "became_master": 0, "stall_guards": 0,
        }

    # ------------------------------------------------------------ time

    def start(self, now_ms: int) -> None:
        self.state = "backup"
        self._arm_down(now_ms)

    def reconfigure(self, settings: Settings, now_ms: int) -> list[Verdict]:
        """New settings (a reload); a master whose priority fell keeps the role until an advert says otherwise."""
        self.settings = settings
        if self.state == "backup":
            self.master_interval_ms = settings.interval_ms if settings.version == 2 else self.master_interval_ms
            self._arm_down(now_ms)
        return []

    def _arm_down(self, now_ms: int, skew_only: bool = False) -> None:
        s = self.settings
        wait = skew_ms(s.priority, self.master_interval_ms, s.version) if skew_only else \
            master_down_ms(s.priority, self.master_interval_ms, s.version)
        self.down_at_ms = now_ms + wait

    def next_deadline(self) -> int | None:
        if self.stopped:
            return None
        return self.advert_at_ms if self.state == "master" else self.down_at_ms

    def tick(self, now_ms: int, late_ms: int = 0) -> tuple[list[Verdict], bool]:
        """Deadlines due at `now_ms` (`late_ms`: how late this step came after
        the deadline it was woken for): the verdicts, and whether an advert
        is due now."""
        if self.stopped:
            return [], False
        if self.state == "backup" and self.down_at_ms is not None and now_ms >= self.down_at_ms:
            if late_ms > self.master_interval_ms:  # the stall guard: we slept, the master may not have
                self.counters["stall_guards"] += 1
                self.down_at_ms = now_ms + self.master_interval_ms
                return [], False
            if self.unfit:
                self._arm_down(now_ms)
                return [], False
            return self._become_master(now_ms, "master down: no advert for Master_Down_Interval"), True
        if self.state == "master" and self.advert_at_ms is not None and now_ms >= self.advert_at_ms:
            self.advert_at_ms = now_ms + self.settings.interval_ms
            return [], True
        return [], False

    def _become_master(self, now_ms: int, reason: str) -> list[Verdict]:
        self.assume_master(now_ms)
        self.counters["became_master"] += 1
        return [Verdict("go_active", reason)]

    def assume_master(self, now_ms: int) -> None:
        """Master from now, its next advert an interval away (also when the engine decided alone:
        no failover, an adopted table, a hand-over not taken)."""
        self.state = "master"
        self.down_at_ms = None
        self.preempt_until_ms = None
        self.handed_over = False
        self.advert_at_ms = now_ms + self.settings.interval_ms

    # ------------------------------------------------------------ adverts

    def heard(self, now_ms: int, priority: int, interval_ms: int, sender: str) -> tuple[list[Verdict], bool]:
        """A valid advert of our virtual router (the caller checked the bytes
        and the VRID) from `sender`: the verdicts, and whether to send an
        advert now."""
        if self.stopped:
            return [], False
        s = self.settings
        self.counters["adverts_received"] += 1
        if s.version == 2 and interval_ms != s.interval_ms:
            self.counters["adverts_interval_mismatch"] += 1  # RFC 3768 7.1: discarded
            return [], False
        if priority == 0:
            self.counters["adverts_priority_zero"] += 1
            if self.state == "master":
                self.advert_at_ms = now_ms + s.interval_ms
                return [], True
            self._arm_down(now_ms, skew_only=True)
            return [], False
        higher = priority > s.priority or (priority == s.priority and _wins_tie(sender, s.address))
        if self.state == "master":
            if higher:
                self.state = "backup"
                self.advert_at_ms = None
                if s.version == 3:
                    self.master_interval_ms = interval_ms
                self._arm_down(now_ms)
                why = "equal priority and a higher address" if priority == s.priority else f"priority {priority}"
                return [Verdict("go_standby", f"a master of {why} heard (ours {s.priority})")], True
            self.counters["adverts_lower_priority"] += 1
            return [Verdict("rearp", "a lower-priority master heard: announcing the VIPs again")], True
        # Backup.
        if priority >= s.priority or not s.preempt or self.handed_over or self._delaying(now_ms):
            if s.version == 3:
                self.master_interval_ms = interval_ms
            self._arm_down(now_ms)
            return [], False
        self.counters["adverts_lower_priority"] += 1  # preempt: not taken, the timer runs out
        return [], False

    def _delaying(self, now_ms: int) -> bool:
        """preempt_delay: a lower-priority master is taken as master for that long after it is first heard."""
        delay = self.settings.preempt_delay_ms
        if not delay:
            return False
        if self.preempt_until_ms is None:
            self.preempt_until_ms = now_ms + delay
        return now_ms < self.preempt_until_ms

    # ------------------------------------------------------------ leaving

    def stop(self) -> bool:
        """Shutting down: whether to send the priority-0 advert (a master does)."""
        was_master = self.state == "master" and not self.stopped
        self.stopped = True
        self.state = "backup"
        self.advert_at_ms = self.down_at_ms = None
        return was_master

    def give_up(self, now_ms: int, *, hand_over: bool = False) -> bool:
        """A link this router needs went down, or an operator's failover
        (`hand_over`: no preemption until master again): a master sends
        priority 0 (the partner takes over after Skew_Time) and becomes
        backup.  Whether to send it."""
        if self.state != "master":
            return False
        self.handed_over = hand_over
        self.state = "backup"
        self.advert_at_ms = None
        self._arm_down(now_ms)
        return True
