"""The dataplane's work off the daemon loop, in the engine's order (issue 13).

With 20 ms heartbeats nothing the loop waits for may take longer than a
fraction of that: a heartbeat is sent in a step, and a step waits for its
commands.  The nft dataplane runs the `nft` program for every table write
and read (10-25 ms each on this machine, idle; more under load), which the
loop used to wait for: the next heartbeat left that much later.

`DataplaneWorker` runs such calls in one thread of its own, one after the
other, in the order they were submitted; each call's result comes back to
the loop as a future (its done-callbacks run in the loop, in submission
order).  The daemon keeps the engine's order of effects with one rule
(`adapters/daemon.py`, `carry_out`): before any command other than a
heartbeat (or a table read, which queues behind the writes in the worker
anyway) is carried out, `idle()` waits until every call submitted before
it is done.  So a table write may still be under way while a
heartbeat leaves (the partner does not depend on our table), and never
while a VIP is added, an ARP sent or a notice given after it.

One thread: a dataplane object is never used by two calls at once, and
what a read returns reflects every write submitted before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class DataplaneWorker:
    """One thread; calls run in submission order; `idle()` waits for all submitted so far."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-dataplane")
        self._last: asyncio.Future[Any] | None = None
        self.submitted = 0

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """`fn(*args)` in the worker thread, after everything submitted before (call from the loop)."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        self._last = future
        self.submitted += 1
        return future

    @property
    def busy(self) -> bool:
        return self._last is not None and not self._last.done()

    async def idle(self) -> None:
        """Until every call submitted so far is done and its done-callbacks have run (the
        calls' errors are their submitters' business: not raised here).  Returns without
        yielding to the loop when nothing is under way."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.wait([last])

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the worker, in order, awaited (a control request's table read)."""
        return await self.submit(fn, *args)

    def close(self) -> None:
        """Wait for the calls under way, then stop the thread."""
        self._executor.shutdown(wait=True)
