"""Link state of the router's interfaces, from the kernel (rtnetlink), for
`monitor_links`.

- A link is up when the interface is administratively up (IFF_UP) and has
  carrier (IFF_LOWER_UP): `ip link set eth0 down`, a pulled cable and a
  veth whose peer went down are all "down".
- `LinkMonitor` opens a NETLINK_ROUTE socket in the RTMGRP_LINK group, asks
  for every link once (a dump) and then hears every change.  It reports
  only changes of the up/down state of interfaces it was asked to watch,
  by name, through `on_change(name, up)`; the first report for each
  watched interface is its state at start.  An interface that is missing
  (deleted, renamed, never there) is down.
- Only the kernel speaks on this socket (messages from any other sender
  port are dropped), but the parser still takes nothing on trust: a
  truncated or malformed message is skipped and counted in `malformed`,
  never raised.  A receive buffer overrun (ENOBUFS: changes lost) is
  answered with a fresh dump; any other socket error stops the monitor
  (`error` says why, `on_error` hears it) and keeps the last state known:
  a broken monitor must not make a router give its VIPs up.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from typing import Callable, Iterable, Iterator

from engine.events import Input, LinksChanged
from engine.model import Config, Node

NETLINK_ROUTE = 0
RTMGRP_LINK = 1
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
IFA_ADDRESS, IFA_LOCAL = 1, 2
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
IFLA_IFNAME = 3
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000
_NLMSG = struct.Struct("=IHHII")  # length, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RTA = struct.Struct("=HH")  # length, type
_IFADDR = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index


def link_events(data: bytes) -> Iterator[tuple[int, str | None, int, bool]]:
    """(message type, interface name, index, up) of every link message in
    `data`, and (NLMSG_DONE, None, 0, False) where a dump ends; a malformed
    message ends the walk (ValueError)."""
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind, _, _, _ = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size or offset + length > len(data):
            raise ValueError(f"netlink message of length {length} at offset {offset} of {len(data)}")
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            body = offset + _NLMSG.size
            if length < _NLMSG.size + _IFINFO.size:
                raise ValueError("link message shorter than its header")
            _, _, index, flags, _ = _IFINFO.unpack_from(data, body)
            name = _ifname(data, body + _IFINFO.size, offset + length)
            up = kind == RTM_NEWLINK and flags & IFF_UP != 0 and flags & IFF_LOWER_UP != 0
            yield kind, name, index, up
        elif kind == NLMSG_DONE:
            yield kind, None, 0, False
        offset += (length + 3) & ~3


def _ifname(data: bytes, start: int, end: int) -> str | None:
    at = start
    while at + _RTA.size <= end:
        length, kind = _RTA.unpack_from(data, at)
        if length < _RTA.size or at + length > end:
            raise ValueError(f"attribute of length {length} overruns its message")
        if kind == IFLA_IFNAME:
            raw = data[at + _RTA.size:at + length].split(b"\0", 1)[0]
            return raw.decode("ascii", "replace")
        at += (length + 3) & ~3
    return None


def interface_of(address: str) -> str | None:
    """The interface that holds `address` on this host (None: none does),
    from one RTM_GETADDR dump: the heartbeat paths' interfaces are found by
    their addresses, which lvs.cf gives, not by name."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    wanted = socket.inet_pton(family, address)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE) as sock:
        sock.settimeout(2.0)
        sock.bind((0, 0))
        request = _IFADDR.pack(family, 0, 0, 0, 0)
        sock.sendto(_NLMSG.pack(_NLMSG.size + len(request), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
                    + request, (0, 0))
        while True:
            data = sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, kind, _, _, _ = _NLMSG.unpack_from(data, offset)
                if length < _NLMSG.size or offset + length > len(data):
                    return None
                if kind in (NLMSG_DONE, NLMSG_ERROR):
                    return None
                if kind == RTM_NEWADDR and length >= _NLMSG.size + _IFADDR.size:
                    index = _IFADDR.unpack_from(data, offset + _NLMSG.size)[4]
                    if wanted in _attributes(data, offset + _NLMSG.size + _IFADDR.size, offset + length,
                                             (IFA_ADDRESS, IFA_LOCAL)):
                        try:
                            return socket.if_indextoname(index)
                        except OSError:
                            return None
                offset += (length + 3) & ~3


def _attributes(data: bytes, start: int, end: int, kinds: tuple[int, ...]) -> list[bytes]:
    found = []
    at = start
    while at + _RTA.size <= end:
        length, kind = _RTA.unpack_from(data, at)
        if length < _RTA.size or at + length > end:
            break
        if kind in kinds:
            found.append(data[at + _RTA.size:at + length])
        at += (length + 3) & ~3
    return found


class LinkMonitor:
    """Watches `names`; calls `on_change(name, up)` at start and on every change."""

    def __init__(self, names: Iterable[str], on_change: Callable[[str, bool], None],
                 on_error: Callable[[str], None] | None = None) -> None:
        self.names = frozenset(names)
        self.on_change = on_change
        self.on_error = on_error
        self.error: str | None = None
        self.state: dict[str, bool] = {}
        self.malformed = 0
        self.resyncs = 0
        self._sock: socket.socket | None = None
        self._seq = 0
        self._dump_seen: dict[str, bool] | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                             NETLINK_ROUTE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, RTMGRP_LINK))
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        self._dump()

    def stop(self) -> None:
        if self._sock is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            except (RuntimeError, ValueError, OSError):  # no loop, or a socket already broken
                pass
            self._sock.close()
            self._sock = None

    def _dump(self) -> None:
        assert self._sock is not None
        self._seq += 1
        ifinfo = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        header = _NLMSG.pack(_NLMSG.size + len(ifinfo), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, self._seq, 0)
        self._dump_seen = {}
        self._sock.sendto(header + ifinfo, (0, 0))

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(64):  # bounded per wake-up: the loop has other work
            try:
                data, (sender, _) = sock.recvfrom(1 << 16)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # changes were lost: ask for everything again
                    self.resyncs += 1
                    self._dump()
                    continue
                self.error = f"link monitor stopped: {e.strerror or e}"
                self.stop()
                if self.on_error is not None:
                    self.on_error(self.error)
                return
            if sender != 0:  # only the kernel
                self.malformed += 1
                continue
            self._handle(data)

    def _handle(self, data: bytes) -> None:
        done = False
        try:
            for kind, name, _, up in link_events(data):
                done = done or kind == NLMSG_DONE
                if name is None:
                    continue
                if self._dump_seen is not None and kind == RTM_NEWLINK:
                    self._dump_seen[name] = up
                self._report(name, up)
        except ValueError:
            self.malformed += 1
        if done and self._dump_seen is not None:
            seen, self._dump_seen = self._dump_seen, None
            for name in sorted(self.names - set(seen)):  # missing interfaces are down
                self._report(name, False)

    def _report(self, name: str, up: bool) -> None:
        if name not in self.names or self.state.get(name) == up:
            return
        self.state[name] = up
        self.on_change(name, up)


def needed(config: Config, node: Node) -> frozenset[str]:
    """The interfaces a router needs (an alias label shares its interface's
    link): every active VIP's, `nat_router`'s, and those that hold its
    heartbeat paths' addresses on this host."""
    names = {(v.device or "").split(":", 1)[0] for v in config.virtuals if v.active and v.address and v.device}
    if config.nat_router and config.nat_router_device:
        names.add(config.nat_router_device.split(":", 1)[0])
    for path in ("public", "private"):
        address = config.address_of(node, path)
        if address:
            found = interface_of(address)
            if found:
                names.add(found)
    names.discard("")
    return frozenset(names)


class LinkWatch:
    """The daemon's side of `monitor_links`: watches what `needed` names for
    the running config (again after each reload) and feeds the engine the
    set of those without link (`LinksChanged`) on every change."""

    def __init__(self, feed: Callable[[Input], None], on_error: Callable[[str], None] | None = None) -> None:
        self.feed = feed
        self.on_error = on_error
        self.monitor: LinkMonitor | None = None
        self.down: frozenset[str] = frozenset()

    def configure(self, config: Config, node: Node) -> None:
        names = needed(config, node)
        if self.monitor is not None and self.monitor.names == names:
            return
        self.close()
        self.monitor = LinkMonitor(names, self._changed, self.on_error)
        try:
            self.monitor.start()
        except OSError as e:  # no rtnetlink here: said, and the router goes on without it
            self.monitor = None
            if self.on_error is not None:
                self.on_error(f"link monitor cannot start: {e.strerror or e}")
            return
        down = self.down & names
        if down != self.down:  # interfaces no longer needed
            self.down = down
            self.feed(LinksChanged(down))

    def _changed(self, name: str, up: bool) -> None:
        down = self.down - {name} if up else self.down | {name}
        if down != self.down:
            self.down = down
            self.feed(LinksChanged(down))

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
