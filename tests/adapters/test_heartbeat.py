"""adapters/heartbeat.py between two namespaces (the `pair` fixture): the
primary's sockets live in `a`, the backup's in `b`, both on this test's
event loop.  Payloads cross unchanged, on the right path, from the right
source; odd datagrams reach the callback; errors are counted, not raised."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Awaitable

import pytest

from adapters.heartbeat import HeartbeatError, HeartbeatSockets
from adapters.netns import entered
from engine import wire
from engine.events import Path, SendHeartbeat
from engine.model import Config

PORT = 539
V4 = Config(primary="10.9.0.1", backup="10.9.0.2", primary_private="10.9.1.1",
            backup_private="10.9.1.2", heartbeat_port=PORT)
V6 = Config(primary="fd09::1", backup="fd09::2", primary_private="fd09:1::1",
            backup_private="fd09:1::2", heartbeat_port=PORT)
KEY = b"secret"
PIRANHA = wire.encode(wire.Heartbeat("piranha", "active", None, 0, 0, 0))
SHOAL = wire.encode(wire.Heartbeat("shoal", "standby", "backup", 7, 3, 12), KEY)

Got = tuple[Path, str, bytes]


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


class Node:
    """One node's sockets, opened in its namespace, and what it received."""

    def __init__(self) -> None:
        self.sockets = HeartbeatSockets()
        self.queue: asyncio.Queue[Got] = asyncio.Queue()

    async def open(self, ns: str, config: Config, node: Any) -> Node:
        with entered(ns):
            await self.sockets.open(config, node, lambda p, s, b: self.queue.put_nowait((p, s, b)))
        return self

    async def next(self) -> Got:
        return await asyncio.wait_for(self.queue.get(), 2.0)


async def two(pair: Any, config: Config) -> tuple[Node, Node]:
    return (await Node().open(pair.a, config, "primary"),
            await Node().open(pair.b, config, "backup"))


@pytest.mark.parametrize("config", [V4, V6], ids=["ipv4", "ipv6"])
def test_payloads_cross_unchanged_on_each_path(pair: Any, config: Config) -> None:
    async def main() -> None:
        primary, backup = await two(pair, config)
        try:
            assert set(primary.sockets.sockets) == {"public", "private"}
            for path in ("public", "private"):
                for payload in (PIRANHA, SHOAL):
                    primary.sockets.send(SendHeartbeat(path, config.address_of("backup", path) or "",
                                                       PORT, payload))
                    assert await backup.next() == (path, config.address_of("primary", path), payload)
                    backup.sockets.send(SendHeartbeat(path, config.address_of("primary", path) or "",
                                                      PORT, payload))
                    assert await primary.next() == (path, config.address_of("backup", path), payload)
            assert primary.sockets.errors == {} and backup.sockets.errors == {}
        finally:
            primary.sockets.close()
            backup.sockets.close()

    run(main())
    assert len(PIRANHA) == 4 and PIRANHA == bytes.fromhex("dadbadbd")
    assert len(SHOAL) == 64


def test_odd_datagrams_reach_the_callback_and_a_failing_callback_is_counted(pair: Any) -> None:
    async def main() -> None:
        backup = await Node().open(pair.b, V4, "backup")
        calls = 0

        def flaky(path: Path, source: str, payload: bytes) -> None:
            nonlocal calls
            calls += 1
            if payload == b"boom":
                raise RuntimeError("callback bug")
            backup.queue.put_nowait((path, source, payload))

        try:
            for proto in [t.get_protocol() for t in backup.sockets._transports]:  # type: ignore[attr-defined]
                proto.on_datagram = flaky
            with entered(pair.a):
                raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with raw:
                raw.bind(("10.9.0.1", 0))
                big = bytes(range(256)) * 40  # 10240 bytes, fragmented on the wire
                for payload in (b"\x00", big, b"boom", b"after"):
                    raw.sendto(payload, ("10.9.0.2", PORT))
                assert await backup.next() == ("public", "10.9.0.1", b"\x00")
                assert await backup.next() == ("public", "10.9.0.1", big)
                assert await backup.next() == ("public", "10.9.0.1", b"after")
            assert calls == 4
            assert backup.sockets.errors == {"callback": 1}
        finally:
            backup.sockets.close()

    run(main())


def test_send_errors_are_counted_never_raised(pair: Any) -> None:
    config = Config(primary="10.9.0.1", backup="10.9.0.2", primary_private="10.9.1.1",
                    heartbeat_port=PORT)  # backup_private unset: no private path

    async def main() -> None:
        primary = await Node().open(pair.a, config, "primary")
        try:
            assert set(primary.sockets.sockets) == {"public"}
            primary.sockets.send(SendHeartbeat("public", "192.0.2.1", PORT, PIRANHA))  # no route
            primary.sockets.send(SendHeartbeat("private", "10.9.1.2", PORT, PIRANHA))
            primary.sockets.send(SendHeartbeat("public", "not-an-address", PORT, PIRANHA))
            primary.sockets.send(SendHeartbeat("public", "10.9.0.2", 70000, PIRANHA))
            assert primary.sockets.errors["ENETUNREACH"] == 1
            assert primary.sockets.errors["no-private-socket"] == 1
            assert sum(primary.sockets.errors.values()) == 4
        finally:
            primary.sockets.close()

    run(main())


def test_a_port_in_use_is_a_clear_error_and_nothing_stays_open(pair: Any) -> None:
    async def main() -> None:
        first = await Node().open(pair.a, V4, "primary")
        second = HeartbeatSockets()
        try:
            with entered(pair.a), pytest.raises(HeartbeatError, match=r"public heartbeat socket on \[10.9.0.1\]:539"):
                await second.open(V4, "primary", lambda *_: None)
            assert second.sockets == {}
        finally:
            first.sockets.close()
        # closed: the port can be bound again
        third = await Node().open(pair.a, V4, "primary")
        third.sockets.close()

    run(main())
