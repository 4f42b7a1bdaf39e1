"""The daemon's commands off the loop's path, in the engine's order (issue 13).

With 20 ms heartbeats nothing a step waits for may take longer than a
fraction of that: a heartbeat is sent in a step, and a step used to wait
for all its commands.  Measured under load (bench/heartbeat_loss.py, load
average 3-9 on 2 cores): an `nft` run of the nft dataplane (10-25 ms idle)
took up to 0.2-0.8 s, and an awaited thread hop (a VIP, a gratuitous ARP)
up to 0.45 s; the partner heard nothing for that long and took over.

- `Effects`: a step's commands are queued, batch after batch, and carried
  out by a chain of tasks in the engine's order; the step returns at once.
  The daemon sends the heartbeats that lead a step's commands in the step
  itself, unless an earlier step's heartbeat still waits in the chain
  (heartbeats never overtake one another).  So only a heartbeat overtakes
  earlier steps' VIPs, ARPs, table writes and notices (the partner does
  not depend on them), never a command its own step put before it.
- `DataplaneWorker`: table writes and reads run in one thread of their
  own, one after the other, in submission order; results come back to the
  loop as futures (done-callbacks run in the loop, in order).  In the
  chain, before any command other than a heartbeat or a table read (which
  queues behind the writes anyway) is carried out, `idle()` waits until
  every call submitted before it is done.  One thread: a dataplane object
  is never used by two calls at once, and a read reflects every write
  submitted before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
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


class Effects:
    """A step's commands carried out by a chain of tasks, one batch after the other, so that
    the step (and the next step's heartbeat) never waits for them.

    `queue(batch, carry_out)` runs `await carry_out(batch)` once every batch queued before it is
    done; `idle()` waits for all of them; `heartbeats_waiting` counts the queued batches that hold
    a heartbeat (the daemon sends a step's leading heartbeats at once only when none is waiting:
    heartbeats never overtake one another)."""

    def __init__(self, on_done: Callable[[float], None] | None = None) -> None:
        self._last: asyncio.Future[None] | None = None
        self.heartbeats_waiting = 0
        self.on_done = on_done  # told each batch's time from queued to done (ms)

    def queue(self, batch: Any, carry_out: Callable[[Any], Awaitable[None]], holds_heartbeat: bool) -> None:
        previous = self._last
        loop = asyncio.get_running_loop()
        queued = loop.time()
        if holds_heartbeat:
            self.heartbeats_waiting += 1

        async def run() -> None:
            try:
                if previous is not None and not previous.done():
                    await asyncio.wait([previous])
                await carry_out(batch)
            except Exception:  # a bug: said, and the batches after it still run
                logging.getLogger("shoal").exception("carrying out a step's commands raised")
            finally:
                if holds_heartbeat:
                    self.heartbeats_waiting -= 1
                if self.on_done is not None:
                    self.on_done((loop.time() - queued) * 1000)

        self._last = asyncio.ensure_future(run())

    @property
    def last(self) -> asyncio.Future[None] | None:
        return self._last

    async def idle(self) -> None:
        last = self._last
        if last is not None and not last.done():
            await asyncio.wait([last])
