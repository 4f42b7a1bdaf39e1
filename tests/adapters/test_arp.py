"""adapters/arp.py: a gratuitous ARP / unsolicited NA sent from namespace `a`
is captured in namespace `b` with a raw AF_PACKET socket and checked byte
by byte; and b's neighbour entry for the VIP moves to a's MAC."""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import time
from typing import Any

from adapters.arp import device_mac, frame, frame_bytes, send_gratuitous
from adapters.netns import entered

ETH_P_ALL = 0x0003
OTHER_MAC = "02:00:00:00:00:01"


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def capture(pair: Any, ethertype: int) -> socket.socket:
    with entered(pair.b):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind(("vb", 0))
    sock.settimeout(2.0)
    return sock


def first(sock: socket.socket, ethertype: int, pick: Any = lambda f: True) -> bytes:
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        data = sock.recv(65535)
        if struct.unpack("!H", data[12:14])[0] == ethertype and pick(data):
            return data
    raise AssertionError(f"no frame of type {ethertype:#06x} captured")


def neighbour(pair: Any, address: str) -> str | None:
    out = pair.run(pair.b, "ip", "-j", "neigh", "show", address, "dev", "vb").stdout
    entries = json.loads(out or "[]")
    return entries[0].get("lladdr") if entries else None


def wait_neighbour(pair: Any, address: str, mac: str) -> str | None:
    deadline = time.monotonic() + 2.0
    while (got := neighbour(pair, address)) != mac and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


def test_ipv4_is_a_broadcast_arp_reply_exactly_as_send_arp(pair: Any) -> None:
    pair.run(pair.b, "sysctl", "-qw", "net.ipv4.neigh.vb.locktime=0")
    pair.run(pair.b, "ip", "neigh", "replace", "10.9.0.100", "lladdr", OTHER_MAC, "dev", "vb", "nud", "stale")
    with entered(pair.a):
        mac = device_mac("va")
    assert mac == pair.topo.mac(pair.a, "va")
    sock = capture(pair, 0x0806)
    with sock:
        with entered(pair.a):
            send_gratuitous("10.9.0.100", "va")
        got = first(sock, 0x0806)
    m, vip = mac_bytes(mac), ipaddress.ip_address("10.9.0.100").packed
    expected = (b"\xff" * 6 + m + b"\x08\x06"  # Ethernet: broadcast, from us, ARP
                + bytes.fromhex("0001 0800 06 04 0002")  # Ethernet/IPv4, op 2 (reply)
                + m + vip + m + vip)  # sender = target = (our MAC, VIP)
    assert got[:42] == expected
    assert got[42:] == b"\x00" * len(got[42:])  # padding only, if any
    assert wait_neighbour(pair, "10.9.0.100", mac) == mac


def test_count_sends_that_many(pair: Any) -> None:
    sock = capture(pair, 0x0806)
    with sock:
        with entered(pair.a):
            send_gratuitous("10.9.0.100", "va", count=3)
        frames = [first(sock, 0x0806) for _ in range(3)]
    assert len(set(frames)) == 1


def test_ipv6_is_an_unsolicited_neighbour_advertisement(pair: Any) -> None:
    vip = "fd09::100"
    pair.run(pair.b, "ip", "-6", "neigh", "replace", vip, "lladdr", OTHER_MAC, "dev", "vb", "nud", "stale")
    pair.run(pair.a, "sysctl", "-qw", "net.ipv6.conf.va.forwarding=0")
    with entered(pair.a):
        mac = device_mac("va")
    sock = capture(pair, 0x86DD)
    with sock:
        with entered(pair.a):
            send_gratuitous(vip, "va")
        got = first(sock, 0x86DD, lambda f: f[20] == 58 and f[54] == 136)  # ICMPv6, NA
    m, target = mac_bytes(mac), ipaddress.ip_address(vip).packed
    assert got[:14] == bytes.fromhex("333300000001") + m + b"\x86\xdd"
    version, plen, nxt, hlim = got[14] >> 4, struct.unpack("!H", got[18:20])[0], got[20], got[21]
    assert (version, plen, nxt, hlim) == (6, 32, 58, 255)
    assert got[22:38] == target  # from the VIP
    assert got[38:54] == ipaddress.ip_address("ff02::1").packed
    icmp = got[54:54 + plen]
    assert icmp[0:2] == bytes([136, 0])  # type, code
    assert icmp[4:8] == bytes([0x20, 0, 0, 0])  # R=0 S=0 O=1
    assert icmp[8:24] == target
    assert icmp[24:32] == bytes([2, 1]) + m  # target link-layer address option
    assert _icmpv6_checksum(got[22:38], got[38:54], icmp) == 0
    assert wait_neighbour(pair, vip, mac) == mac


def _icmpv6_checksum(src: bytes, dst: bytes, icmp: bytes) -> int:
    data = src + dst + struct.pack("!I3xB", len(icmp), 58) + icmp
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def test_frames_on_the_raw_socket_are_byte_equal_to_scapys(pair: Any) -> None:
    """The daemon builds its frames by hand (no scapy import at start or takeover): the same bytes
    scapy builds, for IPv4, and for IPv6 with the router flag clear and set."""
    with entered(pair.a):
        assert frame_bytes("10.9.0.100", "va") == bytes(frame("10.9.0.100", "va"))
        for forwarding in ("0", "1"):
            pair.run(pair.a, "sysctl", "-qw", f"net.ipv6.conf.va.forwarding={forwarding}")
            assert frame_bytes("fd09::100", "va") == bytes(frame("fd09::100", "va")), forwarding
            assert frame_bytes("fd09:0::0100", "va") == bytes(frame("fd09::100", "va"))


def test_a_send_survives_its_device_going_away_and_back(pair: Any) -> None:
    sock = capture(pair, 0x0806)
    with sock:
        with entered(pair.a):
            send_gratuitous("10.9.0.100", "va")
            pair.run(pair.a, "ip", "link", "set", "va", "down")
            pair.run(pair.a, "ip", "link", "set", "va", "up")
            send_gratuitous("10.9.0.100", "va")
        assert first(sock, 0x0806) == first(sock, 0x0806)
