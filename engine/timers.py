"""Named deadlines: set, cancel, pop the due ones, peek the next.

A heap with lazy deletion, so that a thousand health-check timers cost
O(log n) per change and the next deadline is O(1) amortised.  Due names
come out in (time, order set) order: deterministic.
"""

from __future__ import annotations

import heapq
from typing import Hashable


class Timers:
    def __init__(self) -> None:
        self._due: dict[Hashable, int] = {}
        self._heap: list[tuple[int, int, Hashable]] = []
        self._order = 0

    def set(self, name: Hashable, due_ms: int) -> None:
        if self._due.get(name) == due_ms:
            return
        self._due[name] = due_ms
        self._order += 1
        heapq.heappush(self._heap, (due_ms, self._order, name))

    def cancel(self, name: Hashable) -> None:
        self._due.pop(name, None)

    def get(self, name: Hashable) -> int | None:
        return self._due.get(name)

    def pop_due(self, now_ms: int) -> list[Hashable]:
        due: list[Hashable] = []
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
