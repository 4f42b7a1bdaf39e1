"""What a router that was away decides when it is back: a daemon started
over the table its kernel kept (adoption), a link it needs that returned
(`monitor_links`).  Pure functions; `engine.failover` keeps the state.

Adoption (the daemon restarted on a running host that was active: its
first input, the kernel's table, is not empty and a VIP of the config is
still on an interface; without one the host was standby, which keeps the
table too, and the daemon simply starts standby over it).  The engine
holds what the kernel kept, active, but claims nothing for a `keepalive`
("listening"): its heartbeats say `standby`, flagged `probe` so that the
partner answers at once, and no gratuitous ARP goes out.  Then, by the first heartbeat heard:

| heard             | decision                                                  |
|-------------------|-----------------------------------------------------------|
| partner `active`  | yield, whatever the nodes: it took over while this daemon |
|                   | was down and keeps the role (no dual-active fight over a  |
|                   | stale table)                                              |
| partner otherwise | stay active, judged by the usual rules, and announce the  |
|                   | VIPs now                                                  |
| nothing           | release the VIPs kept: the partner is dead or cannot hear |
|                   | us (one-way, where it may hold the VIPs), which cannot be |
|                   | told apart; the usual rules of a start decide from there  |

(A standby primary that hears a restarted backup `standby` takes over, as
from a backup that restarted empty; a restarted primary keeps the role,
since a standby backup waits two keepalives and hears it active first.)

Links back (`engine.links`): a standby router held back by a link down
decides by the usual rules, now: the partner dead, or standby while we
are the primary: take over; standby while we are the backup: the usual
two-keepalive wait; active: only a primary with `preempt = 1`, over a
proven two-way link and not after handing the role over, takes it back.
"""

from __future__ import annotations

from engine.model import Node
from engine.verdicts import PartnerState, Role, Verdict

HEARD_ACTIVE = Verdict("go_standby", "the partner took over while this daemon was down: it keeps the role")
HEARD_OTHER = Verdict("rearp", "partner heard since the restart: announcing the VIPs held")
NOT_HEARD = Verdict("go_standby", "partner not heard within a keepalive of the restart: releasing the VIPs "
                                  "the kernel kept (dead or deaf, the usual rules decide from here)")


def links_back(*, role: Role, enabled: bool, node: Node, alive: bool | None, partner: PartnerState | None,
               preempt: bool, hears_us: bool, handed_over: bool) -> tuple[Verdict | None, bool]:
    """(the verdict, whether the backup's two-keepalive wait starts now)."""
    if role != "standby":
        return None, False
    if not enabled:
        return (Verdict("go_active", "links back up (no failover)") if node == "primary" else None), False
    if alive is False:
        return Verdict("go_active", "links back up; partner dead"), False
    if partner == "standby":
        if node == "primary":
            return Verdict("go_active", "links back up; partner standby"), False
        return None, True
    if partner == "active" and node == "primary" and preempt and hears_us and not handed_over:
        return Verdict("go_active", "links back up; preempt: the primary takes its place back"), False
    return None, False
