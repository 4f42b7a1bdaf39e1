"""The daemon loop's inputs: two bounded queues, the partner's heartbeats
first; how late the loop wakes; inputs described in operator terms.

- `Inputs`: heartbeats wait in a queue of their own (at most
  `HEARTBEAT_QUEUE`), served before other inputs, at most `HEARTBEAT_BURST`
  in a row while others wait; other inputs are bounded by nature (one per
  check, command, request) and capped at `INPUT_QUEUE` anyway (shutdown
  and reloads are never dropped).  Every drop is counted by reason in
  `drops`.
- `Lateness`: how late each step that serves the engine's deadline comes,
  over the last `LATENESS_WINDOW` such wake-ups (p50, p99, max).
- `Throttle`: the first few messages, then one every few seconds.
- `describe(input)`: an input as an operator reads it (never a repr of a
  payload).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from adapters.describe import command_words, describe as said
from engine.events import (
    AdminRequested, AdvertReceived, CheckCompleted, CommandFailed, ConfigLoaded, HeartbeatReceived, Input,
    LinksChanged, LoadRead, ShutdownRequested, TableRead,
)
from engine.model import Config

HEARTBEAT_QUEUE = 256  # heartbeats waiting beyond this are dropped (and counted)
INPUT_QUEUE = 4096  # other inputs: bounded by nature (one per check, command, request); a cap anyway
HEARTBEAT_BURST = 32  # heartbeats served in a row while other inputs wait
LATENESS_WINDOW = 1024  # wake-ups the lateness percentiles cover


@dataclass
class PendingReload:
    """A parsed reload waiting in the input queue to be carried out in the loop."""

    config: Config
    key: bytes | None
    sockets: Any  # the heartbeat sockets it needs, bound: commit() or abort()
    done: asyncio.Future[dict[str, Any]]


class Inputs:
    """The loop's inputs: the partner's heartbeats in a queue of their own,
    served first (at most HEARTBEAT_BURST in a row while others wait); both
    bounded, an input beyond the bound dropped and counted by reason."""

    def __init__(self, heartbeat_bound: int = HEARTBEAT_QUEUE, bound: int = INPUT_QUEUE) -> None:
        self.heartbeats: deque[Input] = deque()
        self.others: deque[Input | PendingReload] = deque()
        self.heartbeat_bound, self.bound = heartbeat_bound, bound
        self.drops = {"heartbeat-queue-full": 0, "input-queue-full": 0, "engine-error": 0}
        self._burst = 0
        self._wake = asyncio.Event()

    def heartbeat(self, event: Input) -> None:
        if len(self.heartbeats) >= self.heartbeat_bound:
            self.drops["heartbeat-queue-full"] += 1
            return
        self.heartbeats.append(event)
        self._wake.set()

    def put(self, event: Input | PendingReload, always: bool = False) -> None:
        if len(self.others) >= self.bound and not always:
            self.drops["input-queue-full"] += 1
            return
        self.others.append(event)
        self._wake.set()

    def _pop(self) -> Input | PendingReload | None:
        if self.heartbeats and (self._burst < HEARTBEAT_BURST or not self.others):
            self._burst += 1
            return self.heartbeats.popleft()
        self._burst = 0
        return self.others.popleft() if self.others else None

    async def get(self, timeout_s: float | None) -> Input | PendingReload | None:
        """The next input; None when `timeout_s` passes first."""
        event = self._pop()
        while event is None:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout_s)
            except asyncio.TimeoutError:
                return None
            event = self._pop()
        return event


class Lateness:
    """How late the loop steps the engine after its deadline, over the last wake-ups."""

    def __init__(self, window: int = LATENESS_WINDOW) -> None:
        self.samples: deque[float] = deque(maxlen=window)

    def note(self, late_ms: float) -> None:
        self.samples.append(late_ms)

    def summary(self) -> dict[str, float | int]:
        s = sorted(self.samples) or [0.0]
        return {"p50": round(s[len(s) // 2], 2), "p99": round(s[min(len(s) - 1, len(s) * 99 // 100)], 2),
                "max": round(s[-1], 2), "samples": len(self.samples)}


class Throttle:
    """At most `first` messages, then one every `every_s` seconds."""

    def __init__(self, first: int = 10, every_s: float = 10.0) -> None:
        self.first, self.every_s = first, every_s
        self.count, self.said, self._last = 0, 0, 0.0

    def allow(self) -> bool:
        self.count += 1
        now = time.monotonic()
        if self.count <= self.first or now - self._last >= self.every_s:
            self._last, self.said = now, self.said + 1
            return True
        return False


def describe(event: Input) -> str:
    """An input in operator terms (never a repr of a big payload)."""
    match event:
        case HeartbeatReceived(path, source, payload):
            return f"a heartbeat from {source} on the {path} path ({len(payload)} bytes)"
        case AdvertReceived(source, destination, ttl, payload):
            return f"a VRRP advert from {source} to {destination}, TTL {ttl} ({len(payload)} bytes)"
        case CheckCompleted(check_id, ok, detail):
            return f"the result of check {check_id} ({'ok' if ok else 'failed'}: {detail[:120]})"
        case LoadRead(load_id, load):
            return f"load reading {load_id} ({'unreadable' if load is None else f'{load:g}'})"
        case ConfigLoaded(config):
            return f"the reload of serial_no {config.serial_no} ({len(config.virtuals)} virtual(s))"
        case CommandFailed(command, error):
            return f"the failure of {said(command).text} ({command_words(error[:200])})"
        case TableRead(table, vips):
            held = f", holding {' '.join(sorted(vips))}" if vips else ""
            return f"the kernel table read ({len(table)} service(s){held})"
        case AdminRequested(action, server):
            return f"the admin request {action} {server[:100]}".rstrip()
        case ShutdownRequested():
            return "the shutdown request"
        case LinksChanged(down):
            return f"the links down now: {' '.join(sorted(down)) or 'none'}"
    return "a timer"
