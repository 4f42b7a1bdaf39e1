"""adapters/checker.py (the daemon's checker: a burst of StartChecks paced,
checks in flight bounded, every result delivered once) and the choice
adapters/probes.py makes, against real servers on 127.0.0.1.  Times are
loose: a loaded machine is slow."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from adapters.checker import CHUNK, Checker
from adapters.inputs import Inputs
from adapters.probes import fast
from engine.events import CheckCompleted, CheckSpec
from engine.model import Config, Server, Virtual


def spec(port: int, **kw: Any) -> CheckSpec:
    kw.setdefault("timeout_ms", 1000)
    kw.setdefault("kind", "tcp")
    return CheckSpec(address="127.0.0.1", port=port, **kw)


class Listener:
    """A listener that notes when each connection arrived (and holds it `hold_s`)."""

    def __init__(self, hold_s: float = 0.0) -> None:
        self.hold_s = hold_s
        self.arrivals: list[float] = []
        self.open = 0
        self.most_open = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.arrivals.append(time.monotonic())
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            if self.hold_s:
                await asyncio.sleep(self.hold_s)
        finally:
            self.open -= 1
            writer.transport.abort()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, backlog=4096)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


async def burst(checker: Checker, specs: list[CheckSpec], results: dict[int, tuple[bool, str]],
                timeout_s: float = 10.0) -> None:
    for i, s in enumerate(specs):
        checker.start(i, s)
    end = time.monotonic() + timeout_s
    while len(results) < len(specs) and time.monotonic() < end:
        await asyncio.sleep(0.01)


def collector() -> tuple[dict[int, tuple[bool, str]], Any]:
    results: dict[int, tuple[bool, str]] = {}

    def done(check_id: int, ok: bool, detail: str) -> None:
        assert check_id not in results, "a result delivered twice"
        results[check_id] = (ok, detail)
    return results, done


def test_a_burst_is_spread_over_n_over_rate() -> None:
    async def go() -> None:
        server = Listener()
        async with server as port:
            results, done = collector()
            checker = Checker(done, rate_per_s=1000)  # 200 checks: spread over 0.2 s
            t0 = time.monotonic()
            await burst(checker, [spec(port) for _ in range(200)], results)
            checker.close()
        assert len(results) == 200 and all(r == (True, "connected") for r in results.values())
        first, last = min(server.arrivals) - t0, max(server.arrivals) - t0
        assert first < 0.1
        assert 0.15 < last < 2.0, last  # spread over 0.2 s, not all at once (a loaded machine runs late)
        delays = checker.summary()["start_delay_ms"]
        assert 150 < delays["max"] < 2000
    asyncio.run(go())


def test_a_small_burst_starts_at_once() -> None:
    async def go() -> None:
        server = Listener()
        async with server as port:
            results, done = collector()
            checker = Checker(done, rate_per_s=10)  # would be a second apart if it were paced
            t0 = time.monotonic()
            await burst(checker, [spec(port) for _ in range(CHUNK)], results)
            checker.close()
        assert len(results) == CHUNK
        assert max(server.arrivals) - t0 < 2.0  # paced, the last would come 6.3 s after the first
    asyncio.run(go())


def test_the_spread_never_exceeds_half_the_shortest_interval() -> None:
    async def go() -> None:
        server = Listener()
        async with server as port:
            results, done = collector()
            checker = Checker(done, rate_per_s=10)  # 100 checks at 10 a second: 10 s, squeezed
            virtual = Virtual(name="web", address="10.0.0.100", device="eth0:1", port=port, timeout_ms=1000,
                              check_interval_ms=400, check="tcp",
                              servers=(Server(name="s1", address="127.0.0.1"),))
            checker.configure(Config(primary="10.0.0.1", virtuals=(virtual,)))
            specs = [spec(port)] * 100
            assert checker.intervals_s[specs[0]] == 0.4
            t0 = time.monotonic()
            await burst(checker, specs, results)
            checker.close()
        assert len(results) == 100
        assert 0.1 < max(server.arrivals) - t0 < 3.0  # over 0.2 s (half of 0.4 s), not 10 s
    asyncio.run(go())


def test_checks_in_flight_are_bounded_and_all_finish() -> None:
    async def go() -> None:
        server = Listener(hold_s=0.05)
        async with server as port:
            results, done = collector()
            checker = Checker(done, max_in_flight=5)
            await burst(checker, [spec(port, expect="*") for _ in range(40)], results)
            assert checker.summary()["in_flight_peak"] <= 5
            checker.close()
        assert len(results) == 40
        assert server.most_open <= 5
    asyncio.run(go())


def test_close_stops_every_check_without_an_answer() -> None:
    async def go() -> None:
        server = Listener(hold_s=5)
        async with server as port:
            results, done = collector()
            checker = Checker(done, rate_per_s=100)
            for i in range(100):
                checker.start(i, spec(port, expect="*", timeout_ms=5000))
            await asyncio.sleep(0.2)
            checker.close()
            assert checker.summary()["in_flight"] == 0 and checker.summary()["waiting"] == 0
            await asyncio.sleep(0.2)
        assert results == {}
    asyncio.run(go())


def test_a_check_that_fails_at_once_does_not_stall_the_others() -> None:
    async def go() -> None:
        results, done = collector()
        checker = Checker(done)
        refused = CheckSpec(address="127.0.0.1", port=1, kind="tcp", timeout_ms=1000)  # nothing listens on 1
        await burst(checker, [refused] * 300, results)
        checker.close()
        assert len(results) == 300 and all(r == (False, "connection refused") for r in results.values())
    asyncio.run(go())


def test_the_slow_path_runs_through_the_checker_too() -> None:
    async def go() -> None:
        results, done = collector()
        checker = Checker(done)
        program = CheckSpec(address="127.0.0.1", port=80, kind="tcp", send_program="exit 3", timeout_ms=5000)
        await burst(checker, [program], results)
        checker.close()
        assert results == {0: (False, "program exited 3")}
    asyncio.run(go())


def test_which_checks_are_fast() -> None:
    assert fast(CheckSpec(address="10.0.0.1", port=80, kind="tcp"))
    assert fast(CheckSpec(address="10.0.0.1", port=25, kind="tcp", send="HELO x\r\n", expect="250"))
    assert fast(CheckSpec(address="2001:db8::1", port=80, kind="http"))
    assert not fast(CheckSpec(address="10.0.0.1", port=80, kind="http", expect="ok"))  # a body to match
    assert not fast(CheckSpec(address="10.0.0.1", port=443, kind="https"))
    assert not fast(CheckSpec(address="10.0.0.1", port=53, kind="udp"))
    assert not fast(CheckSpec(address="web.example", port=80, kind="tcp"))
    assert not fast(CheckSpec(address="fe80::1%eth0", port=80, kind="tcp"))
    assert not fast(CheckSpec(address="10.0.0.1", port=80, kind="tcp", send_program="true"))


def test_a_check_result_is_never_dropped_by_the_daemon() -> None:
    """A full input queue drops what can be dropped; a check's result cannot be:
    the engine would wait for it for ever, and never check that server again."""
    from adapters.daemon import Daemon

    daemon = Daemon("/nonexistent/lvs.cf", "dry-run", "/nonexistent")
    daemon.inputs = Inputs(bound=2)
    for i in range(2):
        daemon.inputs.put(CheckCompleted(i, True, "connected"))
    daemon._check_done(7, False, "timeout")
    assert list(daemon.inputs.others)[-1] == CheckCompleted(7, False, "timeout")
    assert daemon.inputs.drops["input-queue-full"] == 0


def test_probe_timeouts_of_different_lengths_each_strike_on_time() -> None:
    """One timer queue per timeout length (adapters/probes.py): a short timeout started after
    a long one still strikes first, and each near its own length."""
    from adapters.checks import run_check

    async def go() -> None:
        server = Listener(hold_s=5)
        async with server as port:
            t0 = time.monotonic()

            async def timed(timeout_ms: int) -> tuple[str, float]:
                ok, detail = await run_check(spec(port, expect="*", timeout_ms=timeout_ms))
                assert not ok
                return detail, time.monotonic() - t0
            long, short, mid = await asyncio.gather(timed(900), timed(150), timed(400))
        assert [d for d, _ in (long, short, mid)] == ["timeout"] * 3
        assert 0.1 < short[1] < 0.45 and 0.35 < mid[1] < 0.75 and 0.85 < long[1] < 1.6
    asyncio.run(go())


def test_no_poller_outlives_its_loop() -> None:
    import gc

    from adapters.checks import run_check
    from adapters.probes import _POLLERS

    gc.collect()
    before = len(_POLLERS)
    for _ in range(3):
        refused = CheckSpec(address="127.0.0.1", port=1, kind="tcp", timeout_ms=1000)
        assert asyncio.run(run_check(refused)) == (False, "connection refused")
    gc.collect()
    assert len(_POLLERS) == before  # an idle poller holds no timer, so nothing holds its loop


def test_checks_in_flight_fit_in_the_descriptors_the_process_may_open() -> None:
    """In a child process: a hard limit lowered cannot be raised again."""
    import subprocess
    import sys

    code = """
import resource
from adapters.checker import fd_budget
resource.setrlimit(resource.RLIMIT_NOFILE, (300, 1024))
print(fd_budget(4096, 256), fd_budget(100, 256), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))
print(fd_budget(4096, 256))
"""
    import os
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])  # this checkout's adapters, whatever is installed
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=root).stdout.split()
    assert out == ["768", "100", "1024", "16"]  # raised to the hard limit first; at least 16


def test_a_bug_in_a_probe_fails_that_check_and_no_other(monkeypatch: Any) -> None:
    from adapters import probes

    async def go() -> None:
        server = Listener()
        async with server as port:
            results, done = collector()
            checker = Checker(done)
            real = probes.Probe._writable

            def broken(self: probes.Probe) -> None:
                if self.spec.port == port and self.spec.send == "boom":
                    raise RuntimeError("a bug")
                real(self)
            monkeypatch.setattr(probes.Probe, "_writable", broken)
            specs = [spec(port, send="boom")] + [spec(port)] * 5
            await burst(checker, specs, results)
            checker.close()
        assert results[0] == (False, "check error: RuntimeError: a bug")
        assert all(results[i] == (True, "connected") for i in range(1, 6))
    asyncio.run(go())
