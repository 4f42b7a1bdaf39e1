"""Gratuitous ARP (IPv4) and unsolicited neighbour advertisements (IPv6).

IPv4, exactly as the original's `send_arp`: a broadcast Ethernet frame
(to ff:ff:ff:ff:ff:ff, from the device's MAC, type 0x0806) carrying an ARP
*reply* (op 2) with sender IP = target IP = the VIP and sender MAC = target
MAC = the device's MAC.  42 bytes (the NIC pads to 60 on a real wire):

    ff*6 | mac | 08 06 | 00 01 08 00 06 04 00 02 | mac | vip | mac | vip

IPv6 (RFC 4861 7.2.6): an unsolicited neighbour advertisement from the VIP
to ff02::1 (Ethernet 33:33:00:00:00:01), hop limit 255, ICMPv6 type 136
with the override flag set, solicited clear, router set when the device
forwards IPv6 (as keepalived does), target = the VIP, and a target
link-layer address option carrying the device's MAC.

Frames are built here, byte by byte (`frame_bytes`), and written to a raw
AF_PACKET socket bound to the device, one per device, opened at the first
send on it and kept (reopened once if the device went away and came back):
a send costs microseconds and imports nothing.  scapy builds the same
frames in `frame()` (tests check them byte for byte); it is never imported
by a daemon (its layers cost half a second to import, which a start or a
takeover would wait for).  The device's MAC is read with an ioctl in the
caller's network namespace (not from /sys, which may belong to another
one), at every send, as is IPv6 forwarding (the NA's router flag).
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
import threading
from typing import Any

SIOCGIFHWADDR = 0x8927
BROADCAST = "ff:ff:ff:ff:ff:ff"
ALL_NODES = "ff02::1"
ALL_NODES_MAC = "33:33:00:00:00:01"

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ICMPV6 = 58
NA_TYPE = 136
NA_ROUTER, NA_SOLICITED, NA_OVERRIDE = 0x80, 0x40, 0x20

_scapy: Any = None
_lock = threading.Lock()
_sockets: dict[str, socket.socket] = {}  # device -> raw socket bound to it (`send_gratuitous`)
_send_lock = threading.Lock()


class ArpError(Exception):
    """The frame could not be built or sent (no such device...)."""


def preload() -> Any:
    """Import scapy now (once per process) and return its layers (`frame()`; tests)."""
    global _scapy
    with _lock:
        if _scapy is None:
            # The layers used, not `scapy.all`: a third of the import time
            # (9.2 s against 3.0 s in the TCG guest, where daemons start often).
            from types import SimpleNamespace

            from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
            from scapy.layers.l2 import ARP, Ether
            from scapy.sendrecv import sendp

            _scapy = SimpleNamespace(Ether=Ether, ARP=ARP, IPv6=IPv6, ICMPv6ND_NA=ICMPv6ND_NA,
                                     ICMPv6NDOptDstLLAddr=ICMPv6NDOptDstLLAddr, sendp=sendp)
    return _scapy


def device_mac(device: str) -> str:
    """The hardware address of `device` ("aa:bb:cc:dd:ee:ff")."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            info = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("256s", device.encode()[:15]))
        except OSError as e:
            raise ArpError(f"cannot read the MAC of {device}: {e.strerror}") from None
    return ":".join(f"{b:02x}" for b in info[18:24])


def _forwarding_v6(device: str) -> bool:
    try:
        with open(f"/proc/sys/net/ipv6/conf/{device}/forwarding") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def frame(address: str, device: str) -> Any:
    """The scapy packet `send_gratuitous` sends (for tests and tracing)."""
    s = preload()
    mac = device_mac(device)
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        vip = str(ip)
        return s.Ether(dst=BROADCAST, src=mac, type=0x0806) / s.ARP(
            hwtype=1, ptype=0x0800, hwlen=6, plen=4, op=2,
            hwsrc=mac, psrc=vip, hwdst=mac, pdst=vip)
    vip = ip.compressed
    return (s.Ether(dst=ALL_NODES_MAC, src=mac, type=0x86DD)
            / s.IPv6(src=vip, dst=ALL_NODES, hlim=255)
            / s.ICMPv6ND_NA(tgt=vip, R=int(_forwarding_v6(device)), S=0, O=1)
            / s.ICMPv6NDOptDstLLAddr(lladdr=mac))


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame_bytes(address: str, device: str) -> bytes:
    """The frame `send_gratuitous` sends for `address` on `device` (the module's docstring)."""
    mac = bytes.fromhex(device_mac(device).replace(":", ""))
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ArpError(f"{address} is not an IP address") from None
    if ip.version == 4:
        vip = ip.packed
        return (b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
                + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac + vip + mac + vip)
    vip, all_nodes = ip.packed, ipaddress.IPv6Address(ALL_NODES).packed
    flags = NA_OVERRIDE | (NA_ROUTER if _forwarding_v6(device) else 0)
    body = struct.pack("!B3x", flags) + vip + bytes([2, 1]) + mac  # target, target link-layer address
    pseudo = vip + all_nodes + struct.pack("!I3xB", 4 + len(body), ICMPV6)
    icmp = struct.pack("!BBH", NA_TYPE, 0, _checksum(pseudo + struct.pack("!BBH", NA_TYPE, 0, 0) + body)) + body
    ipv6 = struct.pack("!IHBB", 6 << 28, len(icmp), ICMPV6, 255) + vip + all_nodes
    return bytes.fromhex(ALL_NODES_MAC.replace(":", "")) + mac + struct.pack("!H", ETH_P_IPV6) + ipv6 + icmp


def _socket(device: str) -> socket.socket:
    sock = _sockets.get(device)
    if sock is None:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: sends, never receives
        try:
            sock.bind((device, 0))
        except OSError:
            sock.close()
            raise
        _sockets[device] = sock
    return sock


def send_gratuitous(address: str, device: str, count: int = 1) -> None:
    """Send `count` gratuitous ARPs (or unsolicited NAs) for `address` on `device`."""
    with _send_lock:
        try:
            data = frame_bytes(address, device)
            for retry in (True, False):
                sock = _socket(device)
                try:
                    for _ in range(count):
                        sock.send(data)
                    return
                except OSError:
                    _sockets.pop(device, None)
                    sock.close()
                    if not retry:  # a socket bound to a device that went away: once more, anew
                        raise
        except OSError as e:
            raise ArpError(f"cannot send gratuitous ARP for {address} on {device}: {e}") from None


def close() -> None:
    """Close the raw sockets (they are opened again at the next send)."""
    with _send_lock:
        for sock in _sockets.values():
            sock.close()
        _sockets.clear()
