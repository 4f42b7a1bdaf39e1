"""Addresses over rtnetlink, in a few bytes of our own: what `adapters.vips` needs (a link's
index by name, an address added or removed, the addresses listed), with no library.

pyroute2 did this, at the price of 0.1 s of import (0.3 s and more on a loaded host) paid by a
daemon in its first step, before it can hold a VIP: a restarted router answered a second of
scenario later than the simulator's (issue 13, a fast start).  The messages (rtnetlink(7)):

    nlmsghdr   len u32, type u16, flags u16, seq u32, pid u32
    ifaddrmsg  family u8, prefixlen u8, flags u8, scope u8, index u32    (RTM_*ADDR)
    ifinfomsg  family u8, pad u8, type u16, index i32, flags u32, change u32  (RTM_GETLINK)
    rtattr     len u16, type u16, data, padded to 4 bytes

An address is added as `ip addr add` adds it: IFA_LOCAL and IFA_ADDRESS both the address, the
label (IPv4) in IFA_LABEL, IFA_F_NODAD (IPv6) in the header's flags and in IFA_FLAGS.  Every
request asks for an acknowledgement; a refusal raises `RtnlError` with the kernel's errno.  One
socket, one request at a time (the caller serializes: `Vips` has one worker thread), opened in
network namespace `netns` when one is named (`adapters.netns.entered`: the socket stays there).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from typing import Iterator

NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_GETLINK, RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 18, 20, 21, 22
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_FLAGS = 1, 2, 3, 8
IFLA_IFNAME = 3
IFA_F_NODAD = 0x02
_HEADER = struct.Struct("=IHHII")
_IFADDR = struct.Struct("=BBBBI")
_IFINFO = struct.Struct("=BxHiII")


class RtnlError(OSError):
    """The kernel refused a request (`errno`), or the socket failed."""


def _attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, data[offset + 4:offset + length]
        offset += length + (-length % 4)


class Rtnl:
    """A NETLINK_ROUTE socket (in namespace `netns`, if named)."""

    def __init__(self, netns: str | None = None) -> None:
        if netns:
            from adapters.netns import entered

            with entered(netns):
                self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        else:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    # ------------------------------------------------------------ requests

    def _request(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one request; the (type, payload) of every message answering it, up to its
        acknowledgement or the end of its dump.  A refusal raises RtnlError."""
        self.seq += 1
        seq = self.seq
        self.sock.send(_HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body)
        out: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, mtype, mflags, mseq, _ = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise RtnlError(errno.EPROTO, "a truncated netlink message")
                payload = data[offset + _HEADER.size:offset + length]
                offset += length + (-length % 4)
                if mseq != seq:
                    continue  # an answer to an earlier request that gave up
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise RtnlError(code, os.strerror(code))
                    return out  # the acknowledgement
                if mtype == NLMSG_DONE:
                    return out
                out.append((mtype, payload))
                if not mflags & NLM_F_MULTI and not flags & NLM_F_DUMP and not flags & NLM_F_ACK:
                    return out

    def index(self, device: str) -> int | None:
        """The index of link `device`, None when there is none."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, device.encode() + b"\0")
        try:
            answer = self._request(RTM_GETLINK, 0, body)
        except RtnlError as e:
            if e.errno in (errno.ENODEV, errno.EINVAL, errno.ERANGE):
                return None
            raise
        for _, payload in answer:
            return int(_IFINFO.unpack_from(payload)[2])
        return None

    def add(self, index: int, address: str, prefix: int, label: str | None = None, nodad: bool = False) -> None:
        """Add `address/prefix` to link `index` (RtnlError EEXIST when it is there)."""
        ip = ipaddress.ip_address(address)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        flags = IFA_F_NODAD if nodad else 0
        body = _IFADDR.pack(family, prefix, flags, 0, index) + _attr(IFA_LOCAL, ip.packed) + \
            _attr(IFA_ADDRESS, ip.packed)
        if label and ip.version == 4:
            body += _attr(IFA_LABEL, label.encode() + b"\0")
        if flags:
            body += _attr(IFA_FLAGS, struct.pack("=I", flags))
        self._request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def delete(self, index: int, address: str, prefix: int) -> None:
        """Remove `address/prefix` from link `index` (RtnlError EADDRNOTAVAIL when it is not there)."""
        ip = ipaddress.ip_address(address)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        body = _IFADDR.pack(family, prefix, 0, 0, index) + _attr(IFA_LOCAL, ip.packed) + \
            _attr(IFA_ADDRESS, ip.packed)
        self._request(RTM_DELADDR, NLM_F_ACK, body)

    def addresses(self, index: int | None = None) -> list[tuple[int, str, int]]:
        """(link index, address as normalised text, prefix length) of every address here (of link
        `index` only, if given): the local address, or for a point-to-point one its IFA_ADDRESS."""
        out = []
        for _, payload in self._request(RTM_GETADDR, NLM_F_DUMP, _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            family, prefix, _, _, link = _IFADDR.unpack_from(payload)
            if index is not None and link != index:
                continue
            found = dict(_attrs(payload[_IFADDR.size:]))
            raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
            if raw is None or family not in (socket.AF_INET, socket.AF_INET6):
                continue
            out.append((link, ipaddress.ip_address(raw).compressed, prefix))
        return out
