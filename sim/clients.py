"""Clients: connections opened at a steady rate to every VIP, scheduled
through the table of the router the clients' ARP view points at.

A connection to a virtual succeeds when the router the client's neighbour
entry for that VIP leads to (`sim.neighbours`: the last gratuitous ARP
heard, or an ARP request answered) is up, holds the VIP, has the virtual's
service in its table, schedules the connection to a destination with
weight above 0, and that server answers within the client timeout
(`sim.servers.answers_client`; the sorry server is a server like any other,
healthy unless a fault names it), and its router keeps its packets for the
`Costs.connection_ms` it exchanges them (sim/world.py: not a crash, not the
client moving to the other router).  The clients open their connections
`Costs.client_phase_ms` past each period.  Connections count for
`lc`/`wlc` for `CONNECTION_MS`.

Schedulers (IPVS names; the others map to the nearest): `rr`; `wrr` (smooth
weighted round robin); `lc`, `wlc` (least active connections, per weight);
`sh` (hash of the client address over weighted buckets); `dh`, `lblc`,
`lblcr`, `mh` as `sh`; `sed`, `nq`, `twos` as `wlc`; `fo`, `ovf` (the
highest weight first).  Persistence is not modelled.  Scheduler state lives
in the router's kernel: a crash or restart forgets it.
"""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Mapping

from engine.table import Dest, DestKey, ServiceEntry

RATE_PER_S = 10  # connections per second per virtual
CONNECTION_MS = 1_000
SOURCES = 64  # distinct client addresses, 198.51.100.0/26


@dataclass(slots=True)
class SchedState:
    """One service's scheduler state in one router's kernel."""

    rr_next: int = 0
    wrr_current: dict[DestKey, int] = field(default_factory=dict)
    active: dict[DestKey, int] = field(default_factory=dict)
    ends: deque[tuple[int, DestKey]] = field(default_factory=deque)

    def expire(self, now_ms: int) -> None:
        while self.ends and self.ends[0][0] <= now_ms:
            _, key = self.ends.popleft()
            self.active[key] -= 1

    def open(self, now_ms: int, key: DestKey) -> None:
        self.active[key] = self.active.get(key, 0) + 1
        self.ends.append((now_ms + CONNECTION_MS, key))


def source_address(n: int) -> str:
    return f"198.51.100.{n % SOURCES}"


def schedule(scheduler: str, entry: ServiceEntry, state: SchedState, source: str) -> Dest | None:
    """The destination IPVS would pick (None: no destination takes connections)."""
    dests = [entry.dests[k] for k in sorted(entry.dests) if entry.dests[k].weight > 0]
    if not dests:
        return None
    kind = _NEAREST.get(scheduler, scheduler)
    if kind == "rr":
        dest = dests[state.rr_next % len(dests)]
        state.rr_next = (state.rr_next + 1) % len(dests)
        return dest
    if kind == "wrr":
        total = sum(d.weight for d in dests)
        for d in dests:
            state.wrr_current[d.key] = state.wrr_current.get(d.key, 0) + d.weight
        best = max(dests, key=lambda d: (state.wrr_current[d.key], -dests.index(d)))
        state.wrr_current[best.key] -= total
        return best
    if kind == "lc":
        return min(dests, key=lambda d: state.active.get(d.key, 0))
    if kind == "wlc":
        # min active/weight without floats: compare active_a * w_b with active_b * w_a
        best = dests[0]
        for d in dests[1:]:
            if state.active.get(d.key, 0) * best.weight < state.active.get(best.key, 0) * d.weight:
                best = d
        return best
    if kind == "sh":
        buckets = [d for d in dests for _ in range(min(d.weight, 16))]
        return buckets[zlib.crc32(source.encode()) % len(buckets)]
    if kind == "fo":
        return max(dests, key=lambda d: (d.weight, -dests.index(d)))
    raise ValueError(f"scheduler {scheduler!r} is not modelled")


_NEAREST: Mapping[str, str] = {
    "dh": "sh", "lblc": "sh", "lblcr": "sh", "mh": "sh",
    "sed": "wlc", "nq": "wlc", "twos": "wlc", "ovf": "fo",
}


@dataclass(slots=True)
class ClientLog:
    """Connections opened, bucketed by the time they were opened."""

    opened: list[tuple[int, int, int]] = field(default_factory=list)  # (t_ms, succeeded, opened)

    def record(self, now_ms: int, succeeded: int, opened: int) -> None:
        self.opened.append((now_ms, succeeded, opened))

    def fail_one(self, index: int) -> None:
        """One connection of record `index` that had succeeded failed in flight after all."""
        t, s, n = self.opened[index]
        self.opened[index] = (t, s - 1, n)

    def window(self, lo_ms: int, hi_ms: int) -> tuple[int, int]:
        ok = total = 0
        for t, s, n in self.opened:
            if lo_ms <= t < hi_ms:
                ok += s
                total += n
        return ok, total
