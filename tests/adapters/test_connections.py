"""Per real server connection counters in `shoal status` (issue 11): what
`status_json` and `status_text` make of a dataplane's `connections()`, and
how the daemon reads them (in a thread, at most every 2 s, only when a
status is asked for, never waiting long)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from adapters.control import status_json, status_text
from adapters.dataplane import Counters
from engine.config import parse
from engine.engine import Engine
from engine.events import TableRead
from engine.table import DestKey, ServiceKey
from tests.adapters.pairlab import CONFIG

WEB = ServiceKey("tcp", "10.50.0.100", 80, 0, 4)
RS1 = DestKey("10.51.0.11", 80)


def _engine() -> Engine:
    engine = Engine(parse(CONFIG), "primary")
    engine.step(0, TableRead({}))
    return engine


def test_status_json_gives_each_counted_server_its_connections() -> None:
    status = _engine().status
    data = status_json(status, {(WEB, RS1): Counters(3, 17, 90, 1, 2, 3, 4)})
    server = data["services"][0]["servers"][0]
    assert (server["name"], server["port"]) == ("rs1", 80)
    assert server["connections"] == {"active": 3, "inactive": 17, "total": 90}
    assert "conns 3 active 17 inactive" in status_text(data)
    for none in (None, {}, {(ServiceKey("udp", "10.50.0.100", 80, 0, 4), RS1): Counters(1, 1, 1)}):
        data = status_json(status, none)
        assert data["services"][0]["servers"][0]["connections"] is None
        assert "conns" not in status_text(data)


def _daemon(tmp_path: Path, read: Any) -> Any:
    from adapters.daemon import Daemon
    from adapters.notify import NotifyWriter

    daemon = Daemon(str(tmp_path / "lvs.cf"), "dry-run", str(tmp_path))
    daemon.config = parse(CONFIG)
    daemon.node = "primary"
    daemon.engine = _engine()
    daemon.dataplane = SimpleNamespace(connections=read, close=lambda: None)  # type: ignore[assignment]
    daemon.sockets = SimpleNamespace(errors={}, drops={})  # type: ignore[assignment]
    daemon.control = SimpleNamespace(errors={})  # type: ignore[assignment]
    daemon.notify = NotifyWriter(None)
    daemon.serving = True
    return daemon


def test_the_daemon_reads_counters_in_a_thread_at_most_every_2_s(tmp_path: Path) -> None:
    threads: list[str] = []

    def read() -> dict[Any, Counters]:
        threads.append(threading.current_thread().name)
        return {(WEB, RS1): Counters(2, 5, len(threads))}

    daemon = _daemon(tmp_path, read)

    async def main() -> list[dict[str, Any]]:
        first = await daemon._request({"cmd": "status"})
        second = await daemon._request({"cmd": "status"})
        daemon.connections.read_at_ms -= 2500  # the reading is now older than 2 s
        third = await daemon._request({"cmd": "status"})
        return [first, second, third]

    answers = asyncio.run(main())
    assert len(threads) == 2 and threading.main_thread().name not in threads
    got = [a["services"][0]["servers"][0]["connections"] for a in answers]
    assert got == [{"active": 2, "inactive": 5, "total": 1}] * 2 + [{"active": 2, "inactive": 5, "total": 2}]
    assert answers[0]["connections_read"]["error"] is None


def test_a_slow_or_failing_reading_never_holds_the_status_long(tmp_path: Path) -> None:
    release = threading.Event()

    def slow() -> dict[Any, Counters]:
        release.wait(5)
        return {(WEB, RS1): Counters(1, 0, 1)}

    daemon = _daemon(tmp_path, slow)
    daemon.connections.wait_s = 0.05

    async def main() -> tuple[dict[str, Any], float, dict[str, Any]]:
        started = time.monotonic()
        first = await daemon._request({"cmd": "status"})
        took = time.monotonic() - started
        release.set()
        while daemon.connections.task is not None:
            await asyncio.sleep(0.01)
        daemon.connections.read_at_ms -= 2500
        return first, took, await daemon._request({"cmd": "status"})

    first, took, later = asyncio.run(main())
    assert took < 1 and first["services"][0]["servers"][0]["connections"] is None
    assert later["services"][0]["servers"][0]["connections"] == {"active": 1, "inactive": 0, "total": 1}

    def broken() -> None:
        raise OSError("netlink went away")

    daemon = _daemon(tmp_path, broken)
    answer = asyncio.run(daemon._request({"cmd": "status"}))
    assert answer["services"][0]["servers"][0]["connections"] is None
    assert "netlink went away" in answer["connections_read"]["error"]
    assert answer["connections_read"]["ago"] is not None


def test_nft_and_dry_run_have_no_counters() -> None:
    from adapters.dataplane.dryrun import DryRun
    from adapters.dataplane.nft import Nft

    assert DryRun().connections() is None
    assert Nft.__new__(Nft).connections() is None  # no nft needed to say it has none
