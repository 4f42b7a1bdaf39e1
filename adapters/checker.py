"""The daemon's health checker: `StartCheck` in, `done(check_id, ok, detail)` out.

The engine starts a check when its timer comes round, and every check of
one interval comes round in the same step (they were all first due at the
start; each next round is due one interval after the step that started
it).  With thousands of real servers that is a burst of thousands of
`StartCheck`s a second, which, started as they come, would hold the loop
for hundreds of milliseconds (no heartbeat read, no deadline served) and
open thousands of sockets at once.  The rules here:

- Pacing: the checks of one step (one burst) start spread evenly over
  `n / rate_per_s` seconds (at `rate_per_s`, default 20,000 a second), but
  never over more than `SPREAD_SHARE` of the shortest interval among them
  (the config's `check_interval`, or `timeout`: `configure`), so that each
  is done before its next round; a burst of up to `CHUNK` checks starts at
  once.  The engine's timers come out in the same order every round, so a
  check keeps its place in the spread, and its period stays the interval.
- At most `CHUNK` checks start in one turn of the loop; the rest in the
  next turns, so a heartbeat waits for at most one chunk.
- At most `max_in_flight` checks are in flight (sockets open, programs
  running); the others wait their turn in order.  By default 4,096, or
  fewer when the process may not open that many descriptors (`fd_budget`:
  the soft RLIMIT_NOFILE is raised towards the hard one first, as far as
  65,536), so that checks do not fail for want of a socket.
- Each check runs as `adapters.probes.Probe` (tcp, http: callbacks, no
  task) or as `adapters.checks.run_check`'s coroutine (the rest).  A
  result is never lost: `done` is called once per `start`, unless `close`
  came first; a checker bug fails the check, said in the log.
- `summary()` (in `shoal status`, `checker`): checks started, completed,
  in flight (and the peak), waiting, and, over the last `DELAY_WINDOW`
  checks (p50, p99, max), the start delay (from the step that asked for a
  check to its first packet, its place in the spread included) and how
  far behind its place in the spread it started (the loop too busy).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import resource
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from adapters.checks import run_check
from adapters.logs import fields_of, log
from adapters.probes import Probe, fast
from engine.events import CheckSpec
from engine.model import Config
from engine.registry import check_spec

RATE_PER_S = 20_000.0  # checks a second a burst is spread at (a burst larger than an interval can take is squeezed)
SPREAD_SHARE = 0.5  # a burst spreads over at most this share of its shortest interval
CHUNK = 64  # checks started in one turn of the loop (and the largest burst started at once)
MAX_IN_FLIGHT = 4096  # checks open at once (sockets, programs), within the descriptors the process may open
FD_RESERVE = 256  # descriptors kept for everything else (heartbeats, control, journal, netlink)
DELAY_WINDOW = 4096  # start delays the percentiles cover

Done = Callable[[int, bool, str], None]


class Checker:
    def __init__(self, done: Done, rate_per_s: float = RATE_PER_S, max_in_flight: int | None = None,
                 chunk: int = CHUNK) -> None:
        self.done = done
        self.rate_per_s, self.chunk = rate_per_s, chunk
        self.max_in_flight = max_in_flight if max_in_flight is not None else fd_budget()
        self.intervals_s: dict[CheckSpec, float] = {}
        self._burst: list[tuple[int, CheckSpec, float]] = []  # asked in this turn of the loop
        self._waiting: list[tuple[float, int, int, CheckSpec, float]] = []  # (start at, order, id, spec, asked)
        self._order = itertools.count()
        self._running: dict[int, Probe | asyncio.Task[tuple[bool, str]]] = {}
        self._wake: asyncio.TimerHandle | asyncio.Handle | None = None
        self._wake_at = float("inf")
        self.delays_ms: deque[float] = deque(maxlen=DELAY_WINDOW)
        self.behind_ms: deque[float] = deque(maxlen=DELAY_WINDOW)  # started after its place in the spread
        self.counts = {"started": 0, "completed": 0, "in_flight_peak": 0}
        self.closed = False
        self._starting = False  # in _run: a check that ends at once does not start others from inside it

    def configure(self, config: Config) -> None:
        """The interval of every check of `config` (the shortest, for a check two virtuals share)."""
        intervals: dict[CheckSpec, float] = {}
        for v in config.virtuals:
            for s in v.servers:
                spec = check_spec(v, s)
                if spec is not None:
                    intervals[spec] = min(intervals.get(spec, float("inf")), v.interval_ms / 1000)
        self.intervals_s = intervals

    # ------------------------------------------------------------ asked

    def start(self, check_id: int, spec: CheckSpec) -> None:
        """Run one check (`done(check_id, ...)` when it is over)."""
        if self.closed:
            return
        if not self._burst:
            asyncio.get_running_loop().call_soon(self._plan)
        self._burst.append((check_id, spec, time.monotonic()))

    def _plan(self) -> None:
        """This turn's burst, spread and queued (see the module doc)."""
        burst, self._burst = self._burst, []
        if not burst or self.closed:
            return
        now = time.monotonic()
        n = len(burst)
        window_s = 0.0
        if n > self.chunk:
            shortest = min(self.intervals_s.get(spec, spec.timeout_ms / 1000) for _, spec, _ in burst)
            window_s = min(n / self.rate_per_s, SPREAD_SHARE * shortest)
        for i, (check_id, spec, asked) in enumerate(burst):
            heapq.heappush(self._waiting, (now + window_s * i / n, next(self._order), check_id, spec, asked))
        self._run()

    def _run(self) -> None:
        """Start what is due, a chunk at a time; wake again when the next is due."""
        self._wake, self._wake_at = None, float("inf")
        if self.closed or self._starting:
            return
        self._starting = True
        try:
            self._start_due()
        finally:
            self._starting = False

    def _start_due(self) -> None:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        started = 0
        waiting = self._waiting
        while waiting and waiting[0][0] <= now and len(self._running) < self.max_in_flight:
            if started >= self.chunk:
                self._wake = loop.call_soon(self._run)
                self._wake_at = now
                return
            at, _, check_id, spec, asked = heapq.heappop(waiting)
            self.behind_ms.append((now - at) * 1000)
            self._launch(check_id, spec, asked, now)
            started += 1
        if waiting and len(self._running) < self.max_in_flight:
            self._arm(waiting[0][0])  # else a completion wakes it

    def _arm(self, at: float) -> None:
        if self._wake is not None and self._wake_at <= at:
            return
        if self._wake is not None:
            self._wake.cancel()
        loop = asyncio.get_running_loop()
        self._wake = loop.call_at(loop.time() + max(0.0, at - time.monotonic()), self._run)
        self._wake_at = at

    # ------------------------------------------------------------ running

    def _launch(self, check_id: int, spec: CheckSpec, asked: float, now: float) -> None:
        self.delays_ms.append((now - asked) * 1000)
        self.counts["started"] += 1
        if fast(spec):
            probe = Probe(spec, lambda ok, detail: self._finished(check_id, ok, detail))
            self._running[check_id] = probe
            try:
                probe.start()  # may finish at once (no socket to be had): _finished has run then
            except Exception as e:  # a bug: the check fails, and the others go on
                probe.failed(e)
        else:
            task = asyncio.ensure_future(run_check(spec))
            self._running[check_id] = task
            task.add_done_callback(lambda t: self._task_done(check_id, spec, t))
        self.counts["in_flight_peak"] = max(self.counts["in_flight_peak"], len(self._running))

    def _task_done(self, check_id: int, spec: CheckSpec, task: asyncio.Task[tuple[bool, str]]) -> None:
        if task.cancelled():
            return  # close(): nobody waits for the answer
        e = task.exception()
        if e is None:
            ok, detail = task.result()
        else:  # run_check never raises: a bug, said, and the check fails
            log.error("check of %s:%d raised: %s: %s", spec.address, spec.port, type(e).__name__, e, exc_info=e,
                      extra=fields_of(kind="check", address=spec.address, port=spec.port, error=type(e).__name__))
            ok, detail = False, f"the check itself failed: {type(e).__name__}: {e}"
        self._finished(check_id, ok, detail)

    def _finished(self, check_id: int, ok: bool, detail: str) -> None:
        if self._running.pop(check_id, None) is None:
            return
        self.counts["completed"] += 1
        self.done(check_id, ok, detail)
        if self._waiting and self._wake is None and len(self._running) < self.max_in_flight:
            self._run()  # it waited for a place

    # ------------------------------------------------------------ status, end

    def summary(self) -> dict[str, Any]:
        return {**self.counts, "in_flight": len(self._running), "waiting": len(self._waiting) + len(self._burst),
                "start_delay_ms": _percentiles(self.delays_ms), "behind_spread_ms": _percentiles(self.behind_ms)}

    def close(self) -> None:
        """Stop every check; no `done` is called after this."""
        self.closed = True
        if self._wake is not None:
            self._wake.cancel()
        self._waiting.clear()
        self._burst.clear()
        running, self._running = self._running, {}
        for run in running.values():
            if isinstance(run, Probe):
                run.abort()
            else:
                run.cancel()


def _percentiles(samples: deque[float]) -> dict[str, float | int]:
    s = sorted(samples) or [0.0]
    return {"p50": round(s[len(s) // 2], 2), "p99": round(s[min(len(s) - 1, len(s) * 99 // 100)], 2),
            "max": round(s[-1], 2), "samples": len(samples)}


def fd_budget(limit: int = MAX_IN_FLIGHT, reserve: int = FD_RESERVE) -> int:
    """How many checks may be in flight: `limit`, within the descriptors this
    process may open (its soft limit raised towards the hard one, up to
    65,536) less `reserve`; at least 16."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return limit
    return max(16, min(limit, soft - reserve))
