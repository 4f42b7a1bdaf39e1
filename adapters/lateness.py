"""How late the daemon loop runs, and what holds it up: measured by the loop
itself, cheaply, since the daemon started (issue 13: 20 ms heartbeats).

`adapters.inputs.Lateness` keeps the last 1,024 wake-ups for `shoal
status`'s one line; this module keeps everything since the start, in
constant memory, so that a ten-minute benchmark can ask for the p99 and the
max of all of it.

- `Histogram`: durations in milliseconds counted in fixed buckets, each
  `RATIO` (5%) wider than the one below, from `FLOOR_MS` (1 µs: anything
  below counts there) to about an hour.  A sample costs a `log` and an
  increment; a percentile is the upper edge of the bucket it falls in, so
  it is at most 5% above the true value (never below it); `max` is exact.
- `LoopTiming`, the daemon's records, each a `Histogram`:

  | name       | what is measured                                           |
  |------------|------------------------------------------------------------|
  | `deadline` | a step serving the engine's deadline: start minus deadline |
  | `send`     | a heartbeat sent in such a step: send minus deadline       |
  | `step`     | one step's time in the loop: the engine, the journal, its  |
  |            | leading heartbeats sent, the rest queued                   |
  | `gc`       | a garbage collection's pause (`gc.callbacks`), any gen     |
  | `effects`  | a step's commands, from queued to carried out (they run    |
  |            | behind the steps: adapters/offloop.py, `Effects`)          |

  and `slow_steps`: the steps longer than `SLOW_MS`, by what they were
  (the input's type and the commands' types), each with its count, its
  longest wall time and the CPU time that one took (a step with little
  CPU for its wall time was descheduled, not busy);

  plus, only when `SHOAL_LOOP_PROFILE=1` is in the daemon's environment,
  `callbacks`: every callback the asyncio loop runs, timed, and the
  slowest kinds kept by name (`slow`: count over `SLOW_MS`, max, where):
  how to find what in the loop is slower than a heartbeat interval.  It
  wraps `asyncio.Handle._run` for the process (a Python call and two clock
  reads per callback), so it is off by default.
- `summary()` is what `shoal status --json` shows under `loop.timing`:
  per histogram `{"p50", "p99", "max", "count"}` in ms (rounded to 0.01),
  and `slow` when profiling.

Nothing here reads the engine or changes what the loop does.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import time
from collections.abc import Callable
from typing import Any

RATIO = 1.05  # each bucket's upper edge is this much above the one below
FLOOR_MS = 0.001  # bucket 0: everything up to 1 µs
BUCKETS = 460  # 0.001 * 1.05 ** 459: about 5.5e6 ms, an hour and a half: the last bucket takes the rest
SLOW_MS = 5.0  # a callback longer than this is counted in `slow` (profiling only)
SLOW_KEPT = 12  # how many kinds of callback `slow` names, the slowest first
PROFILE_ENV = "SHOAL_LOOP_PROFILE"

_LOG_RATIO = math.log(RATIO)


class Histogram:
    """Durations (ms) in log-spaced buckets: percentiles within `RATIO`, the max exact."""

    __slots__ = ("counts", "count", "max_ms")

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.count = 0
        self.max_ms = 0.0

    @staticmethod
    def bucket(ms: float) -> int:
        if ms <= FLOOR_MS:
            return 0
        return min(BUCKETS - 1, math.ceil(math.log(ms / FLOOR_MS) / _LOG_RATIO - 1e-9))

    @staticmethod
    def edge(index: int) -> float:
        """The upper edge of bucket `index` (ms)."""
        return FLOOR_MS * RATIO ** index

    def note(self, ms: float) -> None:
        if ms < 0:
            ms = 0.0
        self.counts[self.bucket(ms)] += 1
        self.count += 1
        if ms > self.max_ms:
            self.max_ms = ms

    def percentile(self, p: float) -> float:
        """The `p`-th percentile (0 < p <= 100): the upper edge of the bucket holding the
        ceil(p% of count)-th smallest sample, capped at the max; 0 when empty."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(self.count * p / 100))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return min(self.edge(index), self.max_ms)
        return self.max_ms

    def summary(self) -> dict[str, float | int]:
        return {"p50": round(self.percentile(50), 2), "p99": round(self.percentile(99), 2),
                "max": round(self.max_ms, 2), "count": self.count}


class LoopTiming:
    """The daemon loop's histograms (the module's table); `wake`, `sent`, `stepped` are its hooks."""

    def __init__(self) -> None:
        self.deadline = Histogram()
        self.send = Histogram()
        self.step = Histogram()
        self.gc = Histogram()
        self.effects = Histogram()
        self.serving_ms: float | None = None  # the deadline the current step serves, if it serves one
        self._gc_started = 0.0
        self.profile: CallbackProfile | None = None
        self.slow_steps: dict[str, list[float]] = {}  # what -> [count, max wall ms, its cpu ms]

    # ------------------------------------------------------------ hooks

    def wake(self, now_ms: float, deadline_ms: int | None) -> None:
        """A step starts at `now_ms` (the daemon's clock); `deadline_ms` is the one the engine asked for."""
        if deadline_ms is not None and now_ms >= deadline_ms:
            self.deadline.note(now_ms - deadline_ms)
            self.serving_ms = deadline_ms
        else:
            self.serving_ms = None

    def sent(self, now_ms: float) -> None:
        """A heartbeat left at `now_ms`; counted when its step serves a deadline."""
        if self.serving_ms is not None:
            self.send.note(now_ms - self.serving_ms)

    def stepped(self, took_ms: float, cpu_ms: float, what: Callable[[], str]) -> None:
        """A step took `took_ms` of wall time, `cpu_ms` of this thread's CPU; `what()` names it
        (called only for a slow one)."""
        self.step.note(took_ms)
        if took_ms >= SLOW_MS:
            kind = self.slow_steps.setdefault(what(), [0, 0.0, 0.0])
            kind[0] += 1
            if took_ms > kind[1]:
                kind[1], kind[2] = took_ms, cpu_ms

    # ------------------------------------------------------------ gc

    def watch_gc(self) -> None:
        """Time every collection from now on (`gc.callbacks`); `unwatch_gc` undoes it."""
        if self._gc_callback not in gc.callbacks:
            gc.callbacks.append(self._gc_callback)

    def unwatch_gc(self) -> None:
        if self._gc_callback in gc.callbacks:
            gc.callbacks.remove(self._gc_callback)

    def _gc_callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self.gc.note((time.perf_counter() - self._gc_started) * 1000)
            self._gc_started = 0.0

    # ------------------------------------------------------------ report

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name).summary() for name in ("deadline", "send", "step", "gc", "effects")}
        ranked = sorted(self.slow_steps.items(), key=lambda kv: (-kv[1][1], kv[0]))[:SLOW_KEPT]
        out["slow_steps"] = [{"what": what, "count": int(n), "max_ms": round(m, 2), "cpu_ms": round(c, 2)}
                             for what, (n, m, c) in ranked]
        if self.profile is not None:
            out["callbacks"] = self.profile.all.summary()
            out["slow"] = self.profile.slowest()
        return out


class CallbackProfile:
    """Every asyncio callback of the process timed (`install`), the slow ones kept by where they run."""

    def __init__(self, slow_ms: float = SLOW_MS) -> None:
        self.all = Histogram()
        self.slow_ms = slow_ms
        self.kinds: dict[str, list[float]] = {}  # where -> [count over slow_ms, max ms]
        self._original: Any = None

    def noted(self, where: str, ms: float) -> None:
        self.all.note(ms)
        if ms >= self.slow_ms:
            kind = self.kinds.setdefault(where, [0, 0.0])
            kind[0] += 1
            kind[1] = max(kind[1], ms)

    def slowest(self) -> list[dict[str, Any]]:
        ranked = sorted(self.kinds.items(), key=lambda kv: (-kv[1][1], kv[0]))[:SLOW_KEPT]
        return [{"where": where, "count": int(n), "max_ms": round(m, 2)} for where, (n, m) in ranked]

    def install(self) -> None:
        """Wrap `asyncio.Handle._run` (timer handles inherit it) for this process."""
        if self._original is not None:
            return
        original = self._original = asyncio.Handle._run
        noted, clock = self.noted, time.perf_counter

        def _run(handle: asyncio.Handle) -> None:
            t0 = clock()
            try:
                original(handle)
            finally:
                ms = (clock() - t0) * 1000
                noted(_where(handle) if ms >= self.slow_ms else "", ms)

        asyncio.Handle._run = _run  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        if self._original is not None:
            asyncio.Handle._run = self._original  # type: ignore[method-assign]
            self._original = None


def _where(handle: asyncio.Handle) -> str:
    """A callback named as a reader would look it up: a task's coroutine, or the function."""
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        code = getattr(coro, "cr_code", None)
        frame = getattr(coro, "cr_frame", None)
        if code is not None:
            line = f":{frame.f_lineno}" if frame is not None else ""
            return f"task {code.co_qualname} ({os.path.basename(code.co_filename)}{line})"
        return f"task {owner.get_name()}"
    name = getattr(callback, "__qualname__", None) or type(callback).__name__
    code = getattr(callback, "__code__", None) or getattr(getattr(callback, "__func__", None), "__code__", None)
    return f"{name} ({os.path.basename(code.co_filename)})" if code is not None else str(name)


def profiling_requested(environ: dict[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(PROFILE_ENV, "") not in ("", "0")


def step_kind(event: object, ready: Any) -> str:
    """A step named by types: `Tick -> SendHeartbeat x2, AddVip` (no payloads, no reprs)."""
    names: dict[str, int] = {}
    for command in getattr(ready, "commands", ()):
        name = type(command).__name__
        names[name] = names.get(name, 0) + 1
    done = ", ".join(name if n == 1 else f"{name} x{n}" for name, n in names.items())
    return f"{type(event).__name__} -> {done or 'nothing'}"
