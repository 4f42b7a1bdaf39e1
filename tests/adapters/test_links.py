"""adapters/links.py: the link monitor behind `monitor_links`, against the
kernel in a namespace of its own, and its parser against bad bytes."""

from __future__ import annotations

import json
import os
import queue
import struct
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from adapters.links import (
    IFF_LOWER_UP, IFF_UP, IFLA_IFNAME, RTM_DELLINK, RTM_NEWLINK, _IFINFO, _NLMSG, _RTA, link_events,
)

ROOT = Path(__file__).resolve().parents[2]


def _message(kind: int, name: str | None, flags: int, index: int = 7) -> bytes:
    attrs = b""
    if name is not None:
        raw = name.encode() + b"\0"
        attrs = _RTA.pack(_RTA.size + len(raw), IFLA_IFNAME) + raw
        attrs += b"\0" * (-len(attrs) % 4)
    body = _IFINFO.pack(0, 1, index, flags, 0) + attrs
    return _NLMSG.pack(_NLMSG.size + len(body), kind, 0, 0, 0) + body


def test_up_needs_admin_up_and_carrier() -> None:
    data = (_message(RTM_NEWLINK, "eth0", IFF_UP | IFF_LOWER_UP) + _message(RTM_NEWLINK, "eth1", IFF_UP)
            + _message(RTM_NEWLINK, "eth2", IFF_LOWER_UP) + _message(RTM_DELLINK, "eth3", IFF_UP | IFF_LOWER_UP)
            + _message(RTM_NEWLINK, None, IFF_UP | IFF_LOWER_UP))
    assert [(n, up) for _, n, _, up in link_events(data)] == [
        ("eth0", True), ("eth1", False), ("eth2", False), ("eth3", False), (None, True)]


@pytest.mark.parametrize("cut", [1, 8, 17, 20, 33, 36])
def test_truncated_messages_are_refused_not_trusted(cut: int) -> None:
    good = _message(RTM_NEWLINK, "eth0", IFF_UP | IFF_LOWER_UP)
    data = good[:cut]
    if cut >= _NLMSG.size:  # a header that claims more than there is
        with pytest.raises(ValueError):
            list(link_events(data))
    else:
        assert list(link_events(data)) == []


def test_an_attribute_longer_than_its_message_is_refused() -> None:
    msg = bytearray(_message(RTM_NEWLINK, "eth0", IFF_UP | IFF_LOWER_UP))
    struct.pack_into("=H", msg, _NLMSG.size + _IFINFO.size, 200)
    with pytest.raises(ValueError, match="overruns"):
        list(link_events(bytes(msg)))


WATCHER = """
import asyncio, json, sys
from adapters.links import LinkMonitor

async def main():
    mon = LinkMonitor(sys.argv[1:], lambda name, up: print(json.dumps([name, up]), flush=True))
    mon.start()
    print(json.dumps(["ready", True]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    mon.stop()

asyncio.run(main())
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _reader(proc: subprocess.Popen[str]) -> "queue.Queue[str]":
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _next(lines: "queue.Queue[str]", timeout: float = 5.0) -> list[object]:
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError("the link monitor reported nothing within 5 s") from None
    assert line, "the link monitor exited"
    return list(json.loads(line))


def test_link_changes_in_a_namespace_are_reported() -> None:
    """A veth whose peer goes down loses carrier; a deleted link is down."""
    assert os.geteuid() == 0, "this test needs root (network namespaces)"
    ns = f"shoal-links-{uuid.uuid4().hex[:8]}"
    _ip("netns", "add", ns)
    proc = None
    try:
        _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "peer0", "up")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", WATCHER, "eth0", "eth9"],
                                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        lines = _reader(proc)
        first = {tuple(_next(lines)) for _ in range(3)}
        assert first == {("ready", True), ("eth0", True), ("eth9", False)}  # eth9 does not exist: down
        _ip("-n", ns, "link", "set", "peer0", "down")  # carrier lost on eth0
        assert _next(lines) == ["eth0", False]
        _ip("-n", ns, "link", "set", "peer0", "up")
        assert _next(lines) == ["eth0", True]
        _ip("-n", ns, "link", "set", "eth0", "down")  # administratively down
        assert _next(lines) == ["eth0", False]
        _ip("-n", ns, "link", "set", "eth0", "up")
        assert _next(lines) == ["eth0", True]
        _ip("-n", ns, "link", "add", "eth9", "type", "veth", "peer", "name", "peer9")
        _ip("-n", ns, "link", "set", "peer9", "up")
        _ip("-n", ns, "link", "set", "eth9", "up")
        assert _next(lines) == ["eth9", True]
        _ip("-n", ns, "link", "del", "eth9")
        assert _next(lines) == ["eth9", False]
        # The heartbeat paths' interfaces are found by address.
        _ip("-n", ns, "addr", "add", "10.9.0.1/24", "dev", "eth0")
        _ip("-n", ns, "addr", "add", "fd00:9::1/64", "dev", "eth0", "nodad")
        found = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c",
             "from adapters.links import interface_of as f; print(f('10.9.0.1'), f('fd00:9::1'), f('10.9.0.2'))"],
            cwd=ROOT, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert found.stdout.split() == ["eth0", "eth0", "None"]
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(5)
        subprocess.run(["ip", "netns", "del", ns], check=False)



def test_a_broken_netlink_socket_stops_the_monitor_and_keeps_the_state() -> None:
    """A socket error other than an overrun stops the monitor (said once), never a busy loop,
    and no interface is reported down for it."""
    import asyncio

    from adapters.links import LinkMonitor

    changes: list[tuple[str, bool]] = []
    errors: list[str] = []

    class Broken:
        def recvfrom(self, size: int) -> tuple[bytes, tuple[int, int]]:
            raise OSError(9, "Bad file descriptor")

        def fileno(self) -> int:
            return -1

        def close(self) -> None:
            pass

    async def go() -> None:
        mon = LinkMonitor(["eth0"], lambda n, up: changes.append((n, up)), errors.append)
        mon._sock = Broken()  # type: ignore[assignment]
        mon._readable()
        mon._readable()  # stopped: nothing more
        assert mon._sock is None

    asyncio.run(go())
    assert errors == ["link monitor stopped: Bad file descriptor"] and changes == []
