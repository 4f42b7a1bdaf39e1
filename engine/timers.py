"""Named deadlines: set, cancel, pop the due ones, peek the next.

Rules:
- a deadline has a name (a frozen `Deadline`: what is due, and of which
  check, load... `ident`; one object per timer); setting a name again
  moves it, cancelling it removes it, a name is due once;
- due names come out in (time, order set) order: deterministic;
- a heap with lazy deletion, so that a thousand health-check timers cost
  O(log n) per change and the next deadline is O(1) amortised.

The engine keeps one `Timers` for its machines (checks, loads, ARP rounds,
table reads); `engine.failover` keeps one for pulse's deadlines (its own
and those of `engine.liveness`: partner dead, paths lost, probes).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

@dataclass(frozen=True, slots=True, eq=False)
class Deadline:
    """A timer's name: what is due (`kind`) and of which one (`ident`: a
    check or load id; 0 when there is only one of its kind).

    A name is one object, made once and kept by whoever sets it: names
    compare (and hash) by identity, which keeps a thousand check timers
    cheap; two `Deadline("arp")` objects are two different timers.
    """

    kind: str
    ident: int = 0


class Timers:
    def __init__(self) -> None:
        self._due: dict[Deadline, int] = {}
        self._heap: list[tuple[int, int, Deadline]] = []
        self._order = 0

    def set(self, name: Deadline, due_ms: int) -> None:
        if self._due.get(name) == due_ms:
            return
        self._due[name] = due_ms
        self._order += 1
        heapq.heappush(self._heap, (due_ms, self._order, name))

    def cancel(self, name: Deadline) -> None:
        self._due.pop(name, None)

    def follow(self, before: list[Deadline], after: list[Deadline], due_ms: int) -> None:
        """A set of names replaced: those of `before` not in `after` are
        cancelled, those of `after` not in `before` set to `due_ms` (in
        order); the others keep their deadlines."""
        old = set(before)
        for name in old.difference(after):
            self.cancel(name)
        for name in after:
            if name not in old:
                self.set(name, due_ms)

    def get(self, name: Deadline) -> int | None:
        return self._due.get(name)

    def pop_due(self, now_ms: int) -> list[Deadline]:
        due: list[Deadline] = []
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            when, _, name = heapq.heappop(heap)
            if self._due.get(name) == when:
                del self._due[name]
                due.append(name)
        return due

    def next(self) -> int | None:
        heap = self._heap
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None
