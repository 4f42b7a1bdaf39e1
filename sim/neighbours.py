"""The client's neighbour (ARP) table: which router's MAC a packet to a VIP
goes to.  Linux's states, with the timers of `sim.costs.Costs` (their
sources there), worked out when the table is used, never on a timer of its
own (no simulation event):

- REACHABLE: confirmed less than `base_reachable_ms` ago (an answered ARP
  request, or a connection through that router that got its answer);
- STALE: older, or made by a gratuitous ARP (a broadcast reply asserts no
  reachability).  Still used; the first use starts DELAY, and
  `delay_first_probe_ms` later, unconfirmed, the entry is probed: the MAC
  it holds is asked (`ucast_probes` unicast requests, `retrans_ms` apart);
  a router that still holds the VIP answers (confirmed); unanswered, the
  entry FAILS and is dropped;
- absent (never made, or failed): the next packet resolves the VIP by
  broadcast, answered by a router that holds it (when both do, the one
  that announced last); nobody: the packet is lost (the kernel's queued
  retries during INCOMPLETE are not modelled: that connection fails).

A gratuitous ARP from another router replaces the entry (STALE, new MAC);
from the same router it changes nothing (the kernel keeps the state of an
entry whose MAC an update does not change).  Whether a probe is answered
is judged when the table is next used, with the router's state then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sim.costs import NEVER, Costs


@dataclass(slots=True)
class Entry:
    router: str
    confirmed_ms: int  # -NEVER: STALE from the start (a gratuitous ARP)
    delay_from_ms: int | None = None  # the first use while STALE (DELAY began)


class Neighbours:
    def __init__(self, costs: Costs) -> None:
        self.costs = costs
        self.entries: dict[str, Entry] = {}

    def view(self) -> dict[str, str]:
        """VIP -> the router whose MAC the entry holds."""
        return {address: e.router for address, e in self.entries.items()}

    def heard_announcement(self, address: str, router: str) -> bool:
        """A gratuitous ARP from `router` reached the client: True when the entry changed router."""
        entry = self.entries.get(address)
        if entry is not None and entry.router == router:
            return False
        self.entries[address] = Entry(router, -NEVER)
        return True

    def next_hop(self, address: str, now_ms: int, answers: Callable[[str], bool],
                 holder: Callable[[], str | None]) -> str | None:
        """The router a packet to `address` sent now goes to (None: unresolved, lost).
        `answers(router)`: that router answers an ARP request for the address now;
        `holder()`: who answers a broadcast request now."""
        costs = self.costs
        entry = self.entries.get(address)
        if entry is not None and now_ms - entry.confirmed_ms >= costs.base_reachable_ms:
            if entry.delay_from_ms is None:
                entry.delay_from_ms = now_ms  # STALE -> DELAY
            probe_at = entry.delay_from_ms + costs.delay_first_probe_ms
            if now_ms >= probe_at:  # PROBE
                if answers(entry.router):
                    entry.confirmed_ms, entry.delay_from_ms = now_ms, None
                elif now_ms >= probe_at + costs.ucast_probes * costs.retrans_ms:
                    del self.entries[address]  # FAILED
                    entry = None
        if entry is None:
            found = holder()
            if found is None:
                return None
            entry = self.entries[address] = Entry(found, now_ms)  # an answered request: REACHABLE
        return entry.router

    def confirm(self, address: str, router: str, now_ms: int) -> None:
        """A connection through `router` got its answer (TCP confirms the neighbour)."""
        entry = self.entries.get(address)
        if entry is not None and entry.router == router:
            entry.confirmed_ms, entry.delay_from_ms = now_ms, None
