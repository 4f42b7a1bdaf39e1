"""pulse's receive rules: what one heartbeat from the partner means for our role.

A pure function of a snapshot (`Heard`) to a `Judgement`: the verdicts and
what `engine.failover` must remember.  This module holds no state and does
not know what going active does, nor whether the partner is dead
(`engine.liveness`).

The rules (../shared/PIRANHA.md, "pulse heartbeat"), as a table keyed by
(my role, the partner's state, my node):

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

Beyond the table:

- one-way failure: an active router whose partner is active and deaf to us
  (`engine.liveness`) yields, whatever its node; a standby router never
  goes active over a deaf standby partner that can take over (it will
  declare us dead and go active itself);
- preemption only over a proven two-way link (the partner acks a heartbeat
  we sent within deadtime), and not by a primary that handed the role over
  until it is active again for another reason;
- an operator's hand-over is make before break (`engine.failover`): the
  router keeps the role and the VIPs, its heartbeats saying `leaving` then
  `standby`, until the partner is heard active; this table does not judge
  it meanwhile;
- belief (`engine.stream`): an untrusted `leaving` is not acted on but
  confirmed (the partner is taken for gone if no `active` heartbeat comes
  within `keepalive`) and probed; a dual-active is not yielded to a stream
  that is not credible: the router probes and re-announces its VIPs
  meanwhile (both counted as `heartbeats_unconfirmed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

from engine.model import Node

Role = Literal["standby", "active"]
PartnerState = Literal["active", "standby", "leaving"]
Decision = Literal["go_active", "go_standby", "rearp", "refresh"]  # refresh: one round of ARPs (VRRP's master)
Rule = Decision | Literal["nothing", "backup_wait", "preempt"]


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reason: str


RULES: Mapping[tuple[Role, PartnerState, Node], Rule] = {
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


@dataclass(frozen=True, slots=True)
class Heard:
    """What judging one believed heartbeat needs to know."""

    role: Role
    partner: PartnerState
    node: Node
    trusted: bool  # its stream acked us (engine.stream)
    credible: bool  # its stream's claims may be acted on (engine.stream)
    deaf: bool  # the partner has not heard us for deadtime + keepalive
    hears_us: bool  # the partner acks a heartbeat we sent within deadtime
    can_take: bool  # the partner may be active (the primary, or backup_active = 1)
    preempt: bool
    handed_over: bool  # an operator moved the role away; not active since


@dataclass(frozen=True, slots=True)
class Judgement:
    """The verdicts, and what the failover must remember: a claim to confirm
    (`unconfirmed`: counted, and the partner probed), an untrusted leaving
    to confirm after a keepalive, the partner gone, the backup's wait for
    the primary started or cancelled."""

    verdicts: tuple[Verdict, ...] = ()
    unconfirmed: bool = False
    confirm_leaving: bool = False
    partner_gone: bool = False
    backup_wait: Literal["keep", "cancel", "start"] = "keep"


def judge(h: Heard) -> Judgement:
    if h.partner == "leaving" and not h.trusted:
        # Only the partner's silence (no `active` heartbeat) confirms it.
        return Judgement(unconfirmed=True, confirm_leaving=True)
    rule = RULES[(h.role, h.partner, h.node)]
    deaf = h.partner != "leaving" and h.deaf
    standoff = h.partner == "standby" and h.role == "standby"
    waits = standoff and rule == "backup_wait" and not (deaf and h.can_take)
    verdicts, unconfirmed = _verdicts(h, rule, deaf, standoff)
    return Judgement(
        verdicts, unconfirmed=unconfirmed, partner_gone=h.partner == "leaving",
        # Two keepalives: one round of the primary's may be lost.
        backup_wait="start" if waits else "keep" if standoff else "cancel",
    )


def _verdicts(h: Heard, rule: Rule, deaf: bool, standoff: bool) -> tuple[tuple[Verdict, ...], bool]:
    """The verdicts, and whether the partner's claim is unconfirmed."""
    if h.role == "active" and h.partner == "active" and deaf and h.credible:
        return (Verdict("go_standby", "one-way failure: partner active and cannot hear us"),), False
    if rule == "nothing":
        return (), False
    if rule == "preempt":
        # Only over a proven two-way link: the partner acks a heartbeat we
        # sent within deadtime.  Else (just booted, or a one-way failure)
        # taking over would leave both active until it hears us.
        if h.preempt and h.hears_us and not h.handed_over:
            return (Verdict("go_active", "preempt: the primary takes its place back"),), False
        return (), False
    if rule == "go_active" and h.partner == "leaving":
        return (Verdict("go_active", "partner leaving"),), False
    if standoff and ((deaf and h.can_take) or rule == "backup_wait"):
        return (), False
    if rule == "go_standby" and not h.credible:
        # A dual-active, but nothing proves the sender hears us: ask it,
        # and meanwhile keep the clients here (a forger's claim must not
        # leave them on nobody).  The partner's answer settles it.
        return (Verdict("rearp", "dual-active: the partner's claim is unconfirmed; asking it"),), True
    assert rule in ("go_active", "go_standby", "rearp")
    return (Verdict(rule, _REASONS[rule]),), False


def handover_refusal(*, enabled: bool, role: Role, can_take: bool, alive: bool, shoal_format: bool,
                     hears_us: bool, partner: PartnerState | None, partner_serial: int | None,
                     serial_no: int) -> str | None:
    """Why an operator's failover would be refused; None: it would be carried
    out.  It needs a partner ready to take over: heard both ways (its
    heartbeats reach us and acknowledge ours within `deadtime`), standby,
    and running the same `serial_no`.  Handing over to a partner that
    cannot hear us, or one that runs another configuration, could leave
    nobody serving."""
    if not enabled:
        return "no failover configured (backup_active = 0 or no backup address)"
    if role != "active":
        return "this router is standby: nothing to hand over"
    if not can_take:
        return "the partner cannot take over (backup_active = 0)"
    if not alive:
        return "the partner is not heard"
    if not shoal_format:
        return "heartbeat_format = piranha cannot tell whether the partner hears us"
    if not hears_us:
        return "the partner does not hear us (its heartbeats acknowledge none of ours within deadtime)"
    if partner != "standby":
        return f"the partner is {partner or 'unknown'}, not standby"
    if partner_serial != serial_no:
        return (f"the partner runs serial_no {partner_serial}, this router {serial_no}: "
                "reload both with the same lvs.cf first")
    return None
