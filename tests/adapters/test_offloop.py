"""adapters/offloop.py: the dataplane's calls in one thread, in order, and the daemon's rule
that only heartbeats overtake them (order only: no time is asserted)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from adapters.offloop import DataplaneWorker


def test_calls_run_in_order_in_one_thread_and_idle_waits_for_their_callbacks() -> None:
    async def main() -> tuple[list[Any], list[Any], set[str]]:
        worker = DataplaneWorker()
        gate = threading.Event()
        ran: list[Any] = []
        said: list[Any] = []
        threads: set[str] = set()

        def call(i: int) -> int:
            if i == 0:
                gate.wait(10)  # the first call holds the thread until the loop has submitted them all
            threads.add(threading.current_thread().name)
            ran.append(i)
            if i == 2:
                raise RuntimeError("nft failed")
            return i

        for i in range(5):
            worker.submit(call, i).add_done_callback(lambda f: said.append(f.exception() or f.result()))
        assert worker.busy and ran == []
        gate.set()
        await worker.idle()  # an error is its submitter's: not raised here
        assert not worker.busy
        assert await worker.run(call, 9) == 9
        worker.close()
        return ran, said, threads

    ran, said, threads = asyncio.run(main())
    assert ran == [0, 1, 2, 3, 4, 9]
    assert said[:2] == [0, 1] and isinstance(said[2], RuntimeError) and said[3:] == [3, 4]
    assert len(threads) == 1 and threads.pop().startswith("shoal-dataplane")


def test_only_a_heartbeat_overtakes_a_table_write_under_way() -> None:
    from adapters.daemon import Daemon
    from engine.events import AddService, SendHeartbeat, SetTimeouts
    from engine.table import Service, ServiceKey

    order: list[str] = []
    gate = threading.Event()

    class Dataplane:
        def apply(self, batch: Any) -> None:
            gate.wait(10)
            order.append("table")

        def set_timeouts(self, cmd: Any) -> None:  # carried out in the loop, after the write
            order.append("timeouts")

    class Sockets:
        def send(self, cmd: Any) -> None:
            order.append("heartbeat")
            gate.set()  # the write finishes only once the heartbeat has left

    daemon = Daemon("lvs.cf", "dry-run", "/nonexistent")
    daemon.dataplane, daemon.sockets = Dataplane(), Sockets()  # type: ignore[assignment]
    web = ServiceKey("tcp", "10.50.0.100", 80)
    commands = (AddService(Service(web, name="web")), SendHeartbeat("public", "10.50.0.2", 539, b"x"),
                SetTimeouts(900, 120, 300))
    asyncio.run(daemon.carry_out(commands))
    daemon.worker.close()
    assert order == ["heartbeat", "table", "timeouts"]


def test_a_step_does_not_wait_for_its_commands_and_heartbeats_keep_their_order() -> None:
    """Step 1 adds a VIP (held up in its thread) then sends a heartbeat; step 2 leads with a
    heartbeat: step 2 returns before the VIP is added, and its heartbeat waits for step 1's
    (never overtakes it); step 3's leading heartbeat, with nothing waiting, leaves at once."""
    from adapters.daemon import Daemon
    from engine.events import AddVip, SendHeartbeat

    order: list[str] = []
    gate = threading.Event()

    class Vips:
        def add(self, cmd: Any) -> None:
            gate.wait(10)
            order.append("vip")

    class Sockets:
        def send(self, cmd: Any) -> None:
            order.append(cmd.payload.decode())

    daemon = Daemon("lvs.cf", "dry-run", "/nonexistent")
    daemon.vips, daemon.sockets = Vips(), Sockets()  # type: ignore[assignment]
    daemon._say = lambda said: None  # type: ignore[method-assign]

    def hb(name: str) -> SendHeartbeat:
        return SendHeartbeat("public", "10.50.0.2", 539, name.encode())

    async def main() -> None:
        daemon._carry_out_soon((AddVip("10.50.0.100", 24, "eth0", "eth0:1"), hb("hb1")))
        daemon._carry_out_soon((hb("hb2"), AddVip("10.50.0.101", 24, "eth0", "eth0:1")))
        order.append("steps done")
        assert daemon.effects.heartbeats_waiting == 2
        gate.set()
        await daemon.effects.idle()
        daemon._carry_out_soon((hb("hb3"),))
        order.append("step 3 done")

    asyncio.run(main())
    daemon.worker.close()
    assert order == ["steps done", "vip", "hb1", "hb2", "vip", "hb3", "step 3 done"]
