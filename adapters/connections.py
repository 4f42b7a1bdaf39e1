"""Per real server connection counters, read off the daemon's loop.

The dataplane's `connections()` (adapters/dataplane/__init__.py) may block
for a netlink dump of every service, so it runs in an executor thread, and
only when someone asks (`shoal status`, the web tool's status requests):

- a reading younger than `max_age_ms` (2 s) is served as it is;
- an older one starts a new reading (one at a time: a second asker joins
  the reading in flight) and waits for it at most `wait_s` (1 s); past that
  the previous reading is served and the new one lands for the next asker;
- a dataplane without counters (None) or a failed reading gives None: the
  status says `connections: null`, never an error.  A failure is kept (as
  `error`) and logged once per kind.

Heartbeats never wait for it: the loop only awaits the request that asked.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Callable

from adapters.dataplane import Connections
from adapters.logs import fields_of, log

MAX_AGE_MS = 2000
WAIT_S = 1.0


class ConnectionReader:
    def __init__(self, read: Callable[[], Connections | None], *, max_age_ms: int = MAX_AGE_MS,
                 wait_s: float = WAIT_S) -> None:
        self.read = read
        self.max_age_ms = max_age_ms
        self.wait_s = wait_s
        self.last: Connections | None = None
        self.read_at_ms: int | None = None  # when `last` was read (the daemon's clock)
        self.error: str | None = None
        self.readings = 0
        self.task: asyncio.Future[Connections | None] | None = None

    async def fresh(self, now_ms: int) -> Connections | None:
        """The counters, read again first when the last reading is older than `max_age_ms`."""
        if self.read_at_ms is not None and now_ms - self.read_at_ms < self.max_age_ms:
            return self.last
        if self.task is None:
            self.task = asyncio.get_running_loop().run_in_executor(None, self.read)
            self.task.add_done_callback(functools.partial(self._landed, at_ms=now_ms))
        try:
            await asyncio.wait_for(asyncio.shield(self.task), self.wait_s)
        except asyncio.TimeoutError:
            pass
        except Exception:  # noqa: BLE001 - kept by _landed
            pass
        return self.last

    def _landed(self, future: asyncio.Future[Connections | None], *, at_ms: int) -> None:
        self.task = None
        self.read_at_ms = at_ms
        self.readings += 1
        if future.cancelled():
            return
        e = future.exception()
        if e is None:
            self.last, self.error = future.result(), None
            return
        if self.error != str(e):
            log.warning("connections: reading the counters failed: %s", e,
                        extra=fields_of(kind="connections", error=str(e)))
        self.last, self.error = None, str(e)

    def ago_s(self, now_ms: int) -> float | None:
        """Seconds since the reading served now, or None (never read)."""
        return None if self.read_at_ms is None else round((now_ms - self.read_at_ms) / 1000, 3)
