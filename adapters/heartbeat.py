"""Heartbeat sockets: UDP on `heartbeat_port`, one socket per path.

This adapter only moves bytes.  What a payload means (shoal or piranha
format, MAC, sequence) is `engine.wire`'s business, so every datagram that
arrives, whatever its size or content, goes to `on_datagram(path, source,
payload)` unchanged, and every `SendHeartbeat` payload leaves unchanged.

- One socket per configured path, bound to this node's address on it
  (`config.address_of(node, path)`): the public path always, the private
  path when both private addresses are set.  A datagram's path is the
  socket it arrived on.  IPv4 or IPv6, by the address.
- The sockets are bound with IP_FREEBIND, so an IPv6 address still in
  duplicate address detection (or an interface not up yet) does not stop
  the daemon from starting: datagrams flow once the address is usable.
- Sending never raises: errors (ENETUNREACH, EAGAIN when the socket buffer
  is full, an unconfigured path...) are counted in `errors` by name.  So
  are failures of `on_datagram` and asynchronous socket errors.
- `source` is the sender's address as normalised text (no IPv6 scope).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any, Literal

from engine.events import Path, SendHeartbeat
from engine.model import Config

log = logging.getLogger("shoal.heartbeat")

IP_FREEBIND = 15
IPV6_FREEBIND = 78
PATHS: tuple[Path, ...] = ("public", "private")

OnDatagram = Callable[[Path, str, bytes], None]


class HeartbeatError(OSError):
    """A heartbeat socket cannot be opened (address in use, bad address)."""


def _error_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def _normalise(host: str) -> str:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).compressed
    except ValueError:
        return host


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: HeartbeatSockets, path: Path, on_datagram: OnDatagram) -> None:
        self.owner = owner
        self.path = path
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self.on_datagram(self.path, _normalise(str(addr[0])), bytes(data))
        except Exception:  # the callback's bug must not kill the socket
            self.owner._count("callback")
            log.exception("on_datagram failed for a datagram on the %s path", self.path)

    def error_received(self, exc: Exception) -> None:
        self.owner._count(_error_name(exc) if isinstance(exc, OSError) else type(exc).__name__)


class HeartbeatSockets:
    """The heartbeat sockets of one node.  `open`, then `send`, then `close`."""

    def __init__(self) -> None:
        self.errors: dict[str, int] = {}
        self.sockets: dict[Path, socket.socket] = {}
        self.addresses: dict[Path, str] = {}
        self._transports: list[asyncio.BaseTransport] = []

    def _count(self, name: str) -> None:
        self.errors[name] = self.errors.get(name, 0) + 1

    async def open(self, config: Config, node: Literal["primary", "backup"],
                   on_datagram: OnDatagram) -> None:
        """Bind the port on this node's address on each configured path."""
        if self.sockets:
            raise RuntimeError("HeartbeatSockets.open called twice")
        paths: list[Path] = ["public"]
        if config.primary_private and config.backup_private:
            paths.append("private")
        loop = asyncio.get_running_loop()
        try:
            for path in paths:
                address = config.address_of(node, path)
                if address is None:
                    raise HeartbeatError(f"no {path} address configured for the {node}")
                sock = _bind(address, config.heartbeat_port, path)
                self.sockets[path] = sock
                self.addresses[path] = address
                protocol = _Protocol(self, path, on_datagram)
                transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
                self._transports.append(transport)
        except BaseException:
            self.close()
            raise

    def send(self, cmd: SendHeartbeat) -> None:
        """Send cmd.payload to (cmd.address, cmd.port) from cmd.path's socket."""
        sock = self.sockets.get(cmd.path)
        if sock is None:
            self._count(f"no-{cmd.path}-socket")
            return
        try:
            sock.sendto(cmd.payload, (cmd.address, cmd.port))
        except OSError as e:
            self._count(_error_name(e))
        except (ValueError, TypeError, OverflowError):  # an unusable address or port
            self._count("bad-address")

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()
        self.addresses.clear()


def _bind(address: str, port: int, path: Path) -> socket.socket:
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    except ValueError:
        raise HeartbeatError(f"{path} heartbeat address {address!r} is not an IP address") from None
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        sock.bind((address, port))
    except OSError as e:
        sock.close()
        raise HeartbeatError(e.errno, f"cannot bind the {path} heartbeat socket on "
                             f"[{address}]:{port}: {e.strerror}") from None
    return sock
