"""VRRP sockets: raw IP protocol 112, IPv4 and IPv6 (issue 14).

This adapter only moves bytes; what an advert means is `engine.vrrp_wire`'s
(the bytes) and `engine.vrrp`'s (the election).

- One raw socket per virtual router, bound to the interface (SO_BINDTODEVICE)
  that carries this router's own address on the link.  Multicast (the
  default): it joins 224.0.0.18 (IPv4) or ff02::12 (IPv6) on that interface
  and sends there; unicast (`vrrp_unicast = 1`): it sends to the partner's
  address.
- Every advert leaves with TTL (hop limit) 255 (RFC 5798 5.1.1.3 / 5.1.2.3):
  IP_TTL and IP_MULTICAST_TTL, IPV6_UNICAST_HOPS and IPV6_MULTICAST_HOPS;
  our own multicast is not looped back to us.  An IPv4 advert's source is
  the interface's address (IP_MULTICAST_IF, or the bound address for
  unicast); an IPv6 advert's is the kernel's choice for the link: its
  link-local address, as keepalived's.  The IPv6 checksum is the kernel's
  (IPV6_CHECKSUM at offset 6: it needs the source address the kernel picks,
  and it verifies the checksum of what arrives).
- Reading: `recvmsg` on the non-blocking socket, at most `BATCH` datagrams
  a wake-up.  IPv4 raw sockets deliver the IP header: TTL, source and
  destination come from it; IPv6 ones do not: the hop limit and the
  destination come from ancillary data (IPV6_RECVHOPLIMIT,
  IPV6_RECVPKTINFO).  What is handed on is `(source, destination, ttl,
  payload)`; the engine checks the rest (TTL 255, checksum, VRID).
- A token bucket (`RATE_PER_S` a second, bursts of `BURST`) bounds what is
  handed on, whoever floods protocol 112 on the link; the excess is dropped
  and counted (`drops["rate"]`), as are datagrams too short to be an advert
  (`drops["malformed"]`).  Send errors are counted (`errors`), never raised:
  the partner's silence is what the election acts on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.vrrp_wire import GROUP_V4, GROUP_V6, PROTOCOL, TTL

BATCH = 64
RATE_PER_S = 200.0  # a 20 ms master sends 50 a second; a flood is cut here
BURST = 50
MAX_RECEIVE = 2048
IPV6_CHECKSUM = 7
SO_BINDTODEVICE = 25
_ANCILLARY = socket.CMSG_SPACE(4) + socket.CMSG_SPACE(20)

Received = Callable[[str, str, int, bytes], None]  # (source, destination, ttl, payload)


class VrrpSocketError(Exception):
    """The socket cannot be opened as configured (no such device, no permission...)."""


@dataclass
class VrrpSocket:
    """The raw socket of one virtual router on `device`; `partner`: unicast to it, else multicast."""

    device: str
    family: int  # 4 or 6
    own: str  # this router's address on the link (IPv4: the source of its adverts)
    partner: str | None = None
    drops: dict[str, int] = field(default_factory=lambda: {"rate": 0, "malformed": 0})
    errors: int = 0
    sent: int = 0
    _sock: socket.socket | None = None
    _tokens: float = BURST
    _last: float = 0.0

    @property
    def destination(self) -> str:
        if self.partner is not None:
            return self.partner
        return GROUP_V4 if self.family == 4 else GROUP_V6

    def open(self) -> None:
        af = socket.AF_INET if self.family == 4 else socket.AF_INET6
        try:
            sock = socket.socket(af, socket.SOCK_RAW, PROTOCOL)
        except OSError as e:
            raise VrrpSocketError(f"cannot open a raw socket for IP protocol 112: {e.strerror or e}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.device.encode())
            index = socket.if_nametoindex(self.device)
            if self.family == 4:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, TTL)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
                own = socket.inet_aton(self.own)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, own)
                if self.partner is None:
                    mreqn = socket.inet_aton(GROUP_V4) + own + struct.pack("@i", index)
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
                else:
                    sock.bind((self.own, 0))
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, TTL)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, TTL)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, 6)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
                if self.partner is None:
                    mreq = socket.inet_pton(socket.AF_INET6, GROUP_V6) + struct.pack("@I", index)
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise VrrpSocketError(f"VRRP socket on {self.device}: {e.strerror or e}") from None
        self._sock = sock
        self._last = time.monotonic()

    def fileno(self) -> int:
        assert self._sock is not None
        return self._sock.fileno()

    def send(self, payload: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.sendto(payload, (self.destination, 0))
            self.sent += 1
        except OSError:
            self.errors += 1

    def read(self, received: Received) -> None:
        """Up to `BATCH` datagrams waiting, each handed to `received` (within the rate)."""
        assert self._sock is not None
        for _ in range(BATCH):
            try:
                data, ancdata, _flags, addr = self._sock.recvmsg(MAX_RECEIVE, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.errors += 1
                return
            got = self._parse(data, ancdata, addr)
            if got is None:
                self.drops["malformed"] += 1
                continue
            if not self._admit():
                self.drops["rate"] += 1
                continue
            received(*got)

    def _parse(self, data: bytes, ancdata: list[tuple[int, int, bytes]], addr: tuple[str, ...]
               ) -> tuple[str, str, int, bytes] | None:
        if self.family == 4:
            if len(data) < 20 or data[0] >> 4 != 4:
                return None
            header = (data[0] & 0x0F) * 4
            total = min(struct.unpack_from("!H", data, 2)[0], len(data))
            if header < 20 or total < header + 8:
                return None
            source = socket.inet_ntop(socket.AF_INET, data[12:16])
            destination = socket.inet_ntop(socket.AF_INET, data[16:20])
            return source, destination, data[8], data[header:total]
        ttl, destination = -1, ""
        for level, kind, value in ancdata:
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT and len(value) >= 4:
                ttl = struct.unpack("@i", value[:4])[0]
            elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(value) >= 16:
                destination = socket.inet_ntop(socket.AF_INET6, value[:16])
        if ttl < 0 or not destination or len(data) < 8:
            return None
        source = str(ipaddress.ip_address(addr[0].split("%", 1)[0]))
        return source, destination, ttl, data

    def _admit(self) -> bool:
        now = time.monotonic()
        self._tokens = min(BURST, self._tokens + (now - self._last) * RATE_PER_S)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def attach(self, loop: asyncio.AbstractEventLoop, received: Received) -> None:
        loop.add_reader(self.fileno(), self.read, received)

    def close(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._sock is not None:
            if loop is not None:
                loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
