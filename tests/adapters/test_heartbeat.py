"""adapters/heartbeat.py on real namespaces.

Between two namespaces (the `pair` fixture): the primary's sockets live in
`a`, the backup's in `b`, both on this test's event loop.  Payloads cross
unchanged, on the right path, from the right source, sent with TTL 255;
errors are counted, not raised; a port in use is a clear error.

With a third host on both LANs (the `trio` fixture, "m"): what the backup
accepts.  Only the partner's address, on the interface holding our own,
at TTL 255 (1 with the piranha format), at most 64 bytes, at a bounded
rate.  Each rule is tested twice: with the kernel filter (the datagram
never reaches userland; the socket's drop counter says `kernel`) and
without it (userland drops it and counts the reason).  IPv4 and IPv6.
Then reloads: sockets rebound beside the running ones, all or nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Iterator
from typing import Any, Awaitable

import pytest

from adapters import netns
from adapters.heartbeat import BATCH, BURST, RATE_MIN_PER_S, HeartbeatError, HeartbeatSockets
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


def shaped(tag: bytes) -> bytes:
    """A payload with the shape of a heartbeat (engine.wire.plausible) that
    says `tag`: the sockets pass it on unjudged."""
    return wire.MAGIC + tag[:28].ljust(28, b".")
IP_TRANSPARENT = 19
IPV6_TRANSPARENT = 75
MALLORY = {V4: "10.9.0.66", V6: "fd09::66"}
FAMILIES = pytest.mark.parametrize("config", [V4, V6], ids=["ipv4", "ipv6"])
FILTERS = pytest.mark.parametrize("kernel_filter", [True, False], ids=["kernel", "userland"])

Got = tuple[Path, str, bytes]


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


class Node:
    """One node's sockets, opened in its namespace, and what it received."""

    def __init__(self, kernel_filter: bool = True) -> None:
        self.sockets = HeartbeatSockets(kernel_filter=kernel_filter)
        self.queue: asyncio.Queue[Got] = asyncio.Queue()
        self.got: list[Got] = []

    def deliver(self, path: Path, source: str, payload: bytes) -> None:
        self.got.append((path, source, payload))
        self.queue.put_nowait((path, source, payload))

    async def open(self, ns: str, config: Config, node: Any) -> Node:
        with entered(ns):
            await self.sockets.open(config, node, self.deliver)
        return self

    async def next(self) -> Got:
        return await asyncio.wait_for(self.queue.get(), 2.0)

    async def settle(self, total: int, timeout_s: float = 3.0) -> None:
        """Until `total` datagrams are accounted for: delivered or dropped."""
        end = time.monotonic() + timeout_s
        while len(self.got) + sum(self.sockets.drops.values()) < total and time.monotonic() < end:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # and nothing more comes


async def two(pair: Any, config: Config) -> tuple[Node, Node]:
    return (await Node().open(pair.a, config, "primary"),
            await Node().open(pair.b, config, "backup"))


def sender(ns: str, source: str | None, ttl: int = 255, device: str | None = None) -> socket.socket:
    """A UDP socket in `ns` sending from `source` (forged if not local) with `ttl`."""
    assert source is not None
    v6 = ":" in source
    with entered(ns):
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    if v6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    if device is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
    sock.bind((source, 0))
    return sock


def to_backup(config: Config, path: Path = "public", port: int = PORT) -> tuple[str, int]:
    return (config.address_of("backup", path) or "", port)


# ---------------------------------------------------------------- two nodes


@FAMILIES
def test_payloads_cross_unchanged_on_each_path(pair: Any, config: Config) -> None:
    async def main() -> None:
        primary, backup = await two(pair, config)
        try:
            assert set(primary.sockets.sockets) == {"public", "private"}
            assert primary.sockets.kernel_filter == {"public": True, "private": True}
            for path in ("public", "private"):
                for payload in (PIRANHA, SHOAL):
                    primary.sockets.send(SendHeartbeat(path, config.address_of("backup", path) or "",
                                                       PORT, payload))
                    assert await backup.next() == (path, config.address_of("primary", path), payload)
                    backup.sockets.send(SendHeartbeat(path, config.address_of("primary", path) or "",
                                                      PORT, payload))
                    assert await primary.next() == (path, config.address_of("backup", path), payload)
            assert primary.sockets.errors == {} and backup.sockets.errors == {}
            assert set(backup.sockets.drops.values()) == {0}
        finally:
            primary.sockets.close()
            backup.sockets.close()

    run(main())
    assert len(PIRANHA) == 4 and PIRANHA == bytes.fromhex("dadbadbd")
    assert len(SHOAL) == 64


@FAMILIES
def test_heartbeats_leave_with_ttl_255_in_both_formats(pair: Any, config: Config) -> None:
    v6 = config is V6
    with entered(pair.b):
        listener = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    with listener:
        if v6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        else:
            listener.setsockopt(socket.IPPROTO_IP, 12, 1)  # IP_RECVTTL
        listener.bind(to_backup(config))
        listener.settimeout(2)

        async def main() -> None:
            primary = await Node().open(pair.a, config, "primary")
            try:
                for payload in (PIRANHA, SHOAL):
                    primary.sockets.send(SendHeartbeat("public", to_backup(config)[0], PORT, payload))
                    data, ancdata, _, _ = listener.recvmsg(100, 64)
                    assert data == payload
                    assert [int.from_bytes(d, "little") for _, _, d in ancdata] == [255]
            finally:
                primary.sockets.close()

        run(main())


def test_a_failing_callback_is_counted_and_the_socket_goes_on(pair: Any) -> None:
    async def main() -> None:
        backup = await Node().open(pair.b, V4, "backup")
        calls = 0

        def flaky(path: Path, source: str, payload: bytes) -> None:
            nonlocal calls
            calls += 1
            if payload == shaped(b"boom"):
                raise RuntimeError("callback bug")
            backup.queue.put_nowait((path, source, payload))

        backup.sockets.on_datagram = flaky
        try:
            with sender(pair.a, "10.9.0.1") as partner:
                for payload in (PIRANHA, SHOAL, shaped(b"boom"), shaped(b"after")):
                    partner.sendto(payload, ("10.9.0.2", PORT))
                assert await backup.next() == ("public", "10.9.0.1", PIRANHA)
                assert await backup.next() == ("public", "10.9.0.1", SHOAL)
                assert await backup.next() == ("public", "10.9.0.1", shaped(b"after"))
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


# ---------------------------------------------------------------- a third host


@dataclasses.dataclass
class Trio:
    topo: netns.Topology
    a: str  # the primary's namespace
    b: str  # the backup's
    m: str  # mallory's: on both LANs


@pytest.fixture
def trio(netns_ok: None) -> Iterator[Trio]:
    """a, b and m on two bridged LANs: eth0 public (10.9.0.0/24, fd09::/64),
    eth1 private (10.9.1.0/24, fd09:1::/64); a is .1, b .2, m .66."""
    with netns.Topology() as topo:
        sw = topo.namespace("sw")
        topo.bridge(sw, "br0")
        topo.bridge(sw, "br1")
        names = {}
        for short, host in (("a", 1), ("b", 2), ("m", 66)):
            ns = names[short] = topo.namespace(short)
            topo.veth(ns, "eth0", sw, f"{short}0", bridge="br0")
            topo.veth(ns, "eth1", sw, f"{short}1", bridge="br1")
            for dev, lan, prefix6 in (("eth0", 0, "fd09::"), ("eth1", 1, "fd09:1::")):
                topo.address(ns, dev, f"10.9.{lan}.{host}/24")
                topo.address(ns, dev, f"{prefix6}{host}/64")  # fd09::66 for m, as text
        yield Trio(topo, names["a"], names["b"], names["m"])


@FAMILIES
@FILTERS
def test_a_third_host_is_dropped_before_userland_or_counted(trio: Trio, config: Config,
                                                            kernel_filter: bool) -> None:
    async def main() -> None:
        backup = await Node(kernel_filter).open(trio.b, config, "backup")
        try:
            assert backup.sockets.kernel_filter["public"] is kernel_filter
            with sender(trio.m, MALLORY[config]) as mallory, sender(trio.a, config.primary) as partner:
                for payload in (PIRANHA, SHOAL, shaped(b"x")):
                    for _ in range(100):
                        mallory.sendto(payload, to_backup(config))
                    partner.sendto(payload, to_backup(config))
                await backup.settle(303)
            heard = [(path, source) for path, source, _ in backup.got]
            drops = backup.sockets.drops
            if kernel_filter:  # never queued, never read: the kernel's count only
                assert heard == [("public", config.primary)] * 3
                assert drops == {**dict.fromkeys(drops, 0), "kernel": 300}
            else:  # read, judged, counted; a full buffer dropped some, and maybe the partner's
                assert set(heard) == {("public", config.primary)}
                assert drops["foreign_source"] >= 100, drops
                assert drops == {**dict.fromkeys(drops, 0), "foreign_source": drops["foreign_source"],
                                 "kernel": 303 - len(heard) - drops["foreign_source"]}
        finally:
            backup.sockets.close()

    run(main())


@FAMILIES
@FILTERS
def test_the_partners_address_below_ttl_255_or_oversize_is_dropped(trio: Trio, config: Config,
                                                                  kernel_filter: bool) -> None:
    async def main() -> None:
        backup = await Node(kernel_filter).open(trio.b, config, "backup")
        try:
            with sender(trio.a, config.primary, ttl=64) as low, sender(trio.a, config.primary) as partner:
                for _ in range(10):
                    low.sendto(SHOAL, to_backup(config))  # what any host sends by default
                partner.sendto(b"y" * 65, to_backup(config))  # longer than a heartbeat, not an overrides datagram
                partner.sendto(b"y" * 1400, to_backup(config))
                partner.sendto(b"y" * 5000, to_backup(config))  # longer than anything this port takes
                partner.sendto(SHOAL, to_backup(config))
                assert await backup.next() == ("public", config.primary, SHOAL)
            await backup.settle(14)
            assert len(backup.got) == 1
            drops = backup.sockets.drops
            if kernel_filter:  # the kernel bounds at the overrides datagram's 4096 bytes; userland at a heartbeat's
                assert drops == {**dict.fromkeys(drops, 0), "kernel": 11, "oversize": 2}
            else:
                assert drops == {**dict.fromkeys(drops, 0), "ttl": 10, "oversize": 3}
        finally:
            backup.sockets.close()

    run(main())


def test_the_piranha_format_accepts_the_original_pulses_ttl(trio: Trio) -> None:
    config = Config(primary="10.9.0.1", backup="10.9.0.2", heartbeat_port=PORT, heartbeat_format="piranha")

    async def main() -> None:
        backup = await Node().open(trio.b, config, "backup")
        try:
            with sender(trio.a, config.primary, ttl=64) as pulse, sender(trio.m, MALLORY[V4]) as mallory:
                mallory.sendto(PIRANHA, to_backup(config))
                pulse.sendto(PIRANHA, to_backup(config))
                assert await backup.next() == ("public", config.primary, PIRANHA)
            await backup.settle(2)
            assert backup.sockets.drops["kernel"] == 1 and len(backup.got) == 1
        finally:
            backup.sockets.close()

    run(main())


@FAMILIES
@FILTERS
def test_the_partners_address_forged_on_the_other_lan_is_dropped(trio: Trio, config: Config,
                                                                 kernel_filter: bool) -> None:
    """m forges the primary's public address at TTL 255, but sends it out of
    its private interface: it reaches the backup on eth1, not eth0."""
    backup_address = to_backup(config)[0]
    mac = trio.topo.mac(trio.b, "eth1")
    v = "-6" if config is V6 else "-4"
    trio.topo.run(trio.m, ["ip", v, "route", "add", backup_address, "dev", "eth1"])
    trio.topo.run(trio.m, ["ip", v, "neigh", "replace", backup_address, "lladdr", mac, "dev", "eth1"])

    async def main() -> None:
        backup = await Node(kernel_filter).open(trio.b, config, "backup")
        try:
            with sender(trio.m, config.primary, device="eth1") as forger, \
                    sender(trio.a, config.primary) as partner:
                for _ in range(20):
                    forger.sendto(SHOAL, to_backup(config))
                partner.sendto(PIRANHA, to_backup(config))
                assert await backup.next() == ("public", config.primary, PIRANHA)
            await backup.settle(21)
            assert len(backup.got) == 1
            drops = backup.sockets.drops
            if kernel_filter:
                assert drops == {**dict.fromkeys(drops, 0), "kernel": 20}
            else:
                assert drops == {**dict.fromkeys(drops, 0), "interface": 20}
        finally:
            backup.sockets.close()

    run(main())


@FAMILIES
def test_garbage_from_the_partners_address_does_not_spend_the_rate(trio: Trio, config: Config) -> None:
    """Datagrams without the shape of a heartbeat (engine.wire.plausible)
    are dropped as `malformed` before the token bucket: a garbage flood
    forging the partner's address cannot crowd out its real heartbeats."""
    sent = 1000

    async def main() -> None:
        backup = await Node().open(trio.b, config, "backup")
        try:
            with sender(trio.a, config.primary) as flood:
                for i in range(sent):
                    flood.sendto(b"\x00" * (8 + i % 40), to_backup(config))
                    if i % 50 == 49:
                        await asyncio.sleep(0.001)
                await asyncio.sleep(0.2)
                drops = backup.sockets.drops
                assert drops["malformed"] + drops["kernel"] == sent and drops["rate"] == 0, drops
                for _ in range(BURST):  # the whole burst is still there for the real partner
                    flood.sendto(SHOAL, to_backup(config))
                await backup.settle(BURST)
                assert len(backup.got) == BURST and backup.sockets.drops["rate"] == 0
        finally:
            backup.sockets.close()

    asyncio.run(main())


@FAMILIES
def test_a_flood_from_the_partners_address_is_bounded_by_rate(trio: Trio, config: Config) -> None:
    """Only a key tells a forger on the link from the partner; what gets
    through is bounded (`BURST`, then `RATE_MIN_PER_S` with keepalive 2 s),
    the rest dropped and counted, and the partner is heard again after."""
    sent = 3000

    async def main() -> None:
        backup = await Node().open(trio.b, config, "backup")
        try:
            with sender(trio.a, config.primary) as flood:
                t0 = time.monotonic()
                for i in range(sent):
                    flood.sendto(SHOAL, to_backup(config))
                    if i % 50 == 49:
                        await asyncio.sleep(0.001)  # read: judged by the bucket, not the full buffer
                await backup.settle(sent)
                elapsed = time.monotonic() - t0
                drops = backup.sockets.drops
                assert len(backup.got) + drops["rate"] + drops["kernel"] == sent, (len(backup.got), drops)
                assert BURST <= len(backup.got) <= BURST + RATE_MIN_PER_S * elapsed + 1, (len(backup.got), elapsed)
                assert drops["rate"] > sent / 2, drops
                print(f"\n{sent} sent in {elapsed:.2f} s: {len(backup.got)} delivered, {drops['rate']} over the "
                      f"rate, {drops['kernel']} dropped by a full buffer")
                await asyncio.sleep(0.1)  # 5 tokens back
                before = len(backup.got)
                flood.sendto(PIRANHA, to_backup(config))
                await backup.settle(sent + 1)
                assert len(backup.got) == before + 1 and backup.got[-1][2] == PIRANHA
        finally:
            backup.sockets.close()

    run(main())


def test_one_socket_reads_a_bounded_batch_per_wake_up(trio: Trio) -> None:
    async def main() -> None:
        backup = await Node(kernel_filter=False).open(trio.b, V4, "backup")
        seen: list[int] = []
        loop = asyncio.get_running_loop()
        try:
            with sender(trio.m, MALLORY[V4]) as mallory:
                for _ in range(250):
                    mallory.sendto(b"z", to_backup(V4))

            def first() -> None:  # runs before the socket's first read; the second after it
                seen.append(backup.sockets.drops["foreign_source"])
                loop.call_soon(lambda: seen.append(backup.sockets.drops["foreign_source"]))

            loop.call_soon(first)
            await backup.settle(250)
            assert seen[0] == 0 and seen[1] == BATCH
            assert backup.sockets.drops["foreign_source"] + backup.sockets.drops["kernel"] == 250
            assert backup.sockets.drops["foreign_source"] > 2 * BATCH
        finally:
            backup.sockets.close()

    run(main())


# ---------------------------------------------------------------- reloads


def test_a_new_port_is_bound_beside_the_old_then_the_old_closed(trio: Trio) -> None:
    moved = dataclasses.replace(V4, heartbeat_port=PORT + 1)

    async def main() -> None:
        backup = await Node().open(trio.b, V4, "backup")
        try:
            old = dict(backup.sockets.sockets)
            with entered(trio.b):
                rebind = backup.sockets.prepare(moved)
            with sender(trio.a, V4.primary) as partner:
                partner.sendto(shaped(b"old port, still served"), to_backup(V4))
                assert (await backup.next())[2] == shaped(b"old port, still served")
                rebind.commit()
                assert all(sock.fileno() == -1 for sock in old.values())
                assert backup.sockets.kernel_filter == {"public": True, "private": True}
                partner.sendto(shaped(b"old port"), to_backup(V4))
                partner.sendto(shaped(b"new port"), to_backup(V4, port=PORT + 1))
                assert await backup.next() == ("public", V4.primary, shaped(b"new port"))
            # the old port is free again
            with entered(trio.b), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
                again.bind(to_backup(V4))
        finally:
            backup.sockets.close()

    run(main())


def test_a_reload_that_cannot_bind_changes_nothing(trio: Trio) -> None:
    moved = dataclasses.replace(V4, heartbeat_port=PORT + 1, primary="10.9.0.66")

    async def main() -> None:
        backup = await Node().open(trio.b, V4, "backup")
        with entered(trio.b):
            squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            squatter.bind(("10.9.1.2", PORT + 1))  # the new private socket's place
            running = dict(backup.sockets.sockets)
            with entered(trio.b), pytest.raises(HeartbeatError, match=r"private heartbeat socket on \[10.9.1.2\]:540"):
                backup.sockets.reconfigure(moved)
            assert backup.sockets.sockets == running and backup.sockets.partners["public"] == V4.primary
            with sender(trio.a, V4.primary) as partner:
                partner.sendto(shaped(b"still here"), to_backup(V4))
                assert await backup.next() == ("public", V4.primary, shaped(b"still here"))
            squatter.close()
            with entered(trio.b):  # and the public socket it had bound for 540 was closed again
                backup.sockets.prepare(moved).abort()
        finally:
            squatter.close()
            backup.sockets.close()

    run(main())


@FILTERS
def test_a_new_partner_address_keeps_the_socket_and_moves_the_filter(trio: Trio, kernel_filter: bool) -> None:
    moved = dataclasses.replace(V4, primary="10.9.0.66")  # the primary is now m

    async def main() -> None:
        backup = await Node(kernel_filter).open(trio.b, V4, "backup")
        try:
            fileno = backup.sockets.sockets["public"].fileno()
            with entered(trio.b):
                backup.sockets.reconfigure(moved)
            assert backup.sockets.sockets["public"].fileno() == fileno
            assert backup.sockets.partners == {"public": "10.9.0.66", "private": "10.9.1.1"}
            with sender(trio.a, V4.primary) as old, sender(trio.m, "10.9.0.66") as new:
                old.sendto(shaped(b"old partner"), to_backup(V4))
                new.sendto(shaped(b"new partner"), to_backup(V4))
                assert await backup.next() == ("public", "10.9.0.66", shaped(b"new partner"))
            await backup.settle(2)
            assert len(backup.got) == 1
            reason = "kernel" if kernel_filter else "foreign_source"
            assert backup.sockets.drops[reason] == 1
        finally:
            backup.sockets.close()

    run(main())


def test_a_rebind_prepared_before_another_commit_is_refused(trio: Trio) -> None:
    async def main() -> None:
        backup = await Node().open(trio.b, V4, "backup")
        try:
            with entered(trio.b):
                first = backup.sockets.prepare(dataclasses.replace(V4, heartbeat_port=PORT + 1))
                stale = backup.sockets.prepare(dataclasses.replace(V4, heartbeat_port=PORT + 2))
            first.commit()
            fresh = [state.sock for state in stale.fresh]
            with pytest.raises(RuntimeError, match="after another commit"):
                stale.commit()
            assert fresh and all(sock.fileno() == -1 for sock in fresh)
            assert {sock.getsockname()[1] for sock in backup.sockets.sockets.values()} == {PORT + 1}
        finally:
            backup.sockets.close()

    run(main())
