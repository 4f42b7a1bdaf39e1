"""VRRP advertisements (IP protocol 112): pure encoders and decoders (issue 14).

VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798), byte-exact.  As `engine.wire`,
`decode` never raises on any input: garbage from the network is data
(`VrrpError`), which the engine counts and drops; a caller misusing
`encode` raises ValueError.

VRRPv2, IPv4 only (network byte order):

| offset | size | field                                                       |
|-------:|-----:|-------------------------------------------------------------|
|      0 |    1 | version (high 4 bits: 2), type (low 4 bits: 1, advertisement) |
|      1 |    1 | virtual router id (1-255)                                    |
|      2 |    1 | priority (0: the master stops; 255: the address owner)       |
|      3 |    1 | count of IPv4 addresses                                      |
|      4 |    1 | authentication type (0: none; 1 and 2 were removed by RFC 3768) |
|      5 |    1 | advertisement interval, seconds (1-255)                      |
|      6 |    2 | checksum: the VRRP message alone                             |
|      8 |  4 n | the addresses                                                |
|  8+4n |    8 | authentication data (zero)                                   |

VRRPv3, IPv4 or IPv6:

| offset | size | field                                                       |
|-------:|-----:|-------------------------------------------------------------|
|      0 |    1 | version (3), type (1)                                        |
|      1 |    1 | virtual router id                                            |
|      2 |    1 | priority                                                     |
|      3 |    1 | count of addresses                                           |
|      4 |    2 | reserved (high 4 bits, zero) and the maximum advertisement   |
|        |      | interval in centiseconds (low 12 bits, 1-4095)               |
|      6 |    2 | checksum: the message and a pseudo-header (IPv4: source,     |
|        |      | destination, 0, 112, length; IPv6: RFC 8200 section 8.1)     |
|      8 | 4n / 16n | the addresses                                            |

keepalived's `v3_checksum_as_v2` (an option of versions after Debian's
2.2.7, which always sums the pseudo-header), RFC 9568 and other vendors sum
a VRRPv3 IPv4 message without the pseudo-header.  `encode` writes the form it
is told (`checksum_as_v2`); `decode` takes either for VRRPv3 over IPv4 and
says which it found (`Advert.checksum_as_v2`), so a pair that disagrees is
seen, not silently deaf.  Over IPv6 the pseudo-header is always summed.

What `decode` checks (RFC 3768 section 7.1, RFC 5798 section 7.1): the IP
TTL / hop limit is 255 (an advert from off the link is refused); the
version is the one configured; the type is 1; the checksum; the length
holds exactly the addresses counted (a v2 message may carry the 8 bytes of
authentication data, and trailing bytes of the IP payload beyond the
message are refused); the authentication type of a v2 message is 0; every
address is of the family the advert came in.  The virtual router id, the
advert interval and the address list are the caller's to compare with its
own (`engine.vrrp` decides what a mismatch means): those are not
malformations.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Literal

PROTOCOL = 112
GROUP_V4 = "224.0.0.18"
GROUP_V6 = "ff02::12"
TTL = 255
TYPE_ADVERTISEMENT = 1
MAX_INTERVAL_CS = 4095  # VRRPv3: 12 bits of centiseconds
AUTH_DATA = bytes(8)  # VRRPv2's authentication data, type 0

ErrorReason = Literal["short", "ttl", "version", "type", "checksum", "length", "auth", "family", "interval"]


@dataclass(frozen=True, slots=True)
class Advert:
    """One VRRP advertisement.  `interval_cs` is in centiseconds for both
    versions (a v2 advert's whole seconds times 100)."""

    version: int  # 2 or 3
    vrid: int
    priority: int
    interval_cs: int
    addresses: tuple[str, ...]
    checksum_as_v2: bool = False  # decode: a v3 IPv4 checksum without the pseudo-header was found


@dataclass(frozen=True, slots=True)
class VrrpError:
    """Why bytes were not an advertisement we take."""

    reason: ErrorReason
    detail: str = ""


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(message: bytes, source: str | None = None, destination: str | None = None) -> int:
    """The Internet checksum of `message` (its checksum field zero), with the
    pseudo-header of `source` -> `destination` when both are given."""
    pseudo = b""
    if source is not None and destination is not None:
        src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
        if src.version == 4:
            pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, PROTOCOL, len(message))
        else:
            pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(message), PROTOCOL)
    return ~_sum16(pseudo + message) & 0xFFFF


def _family(addresses: tuple[str, ...]) -> int:
    families: set[int] = {ipaddress.ip_address(a).version for a in addresses}
    if len(families) > 1:
        raise ValueError(f"an advert carries one address family, not {sorted(addresses)}")
    return families.pop() if families else 4


def encode(advert: Advert, source: str, destination: str, *, checksum_as_v2: bool = False) -> bytes:
    """The VRRP message (the IP payload) of `advert`, sent from `source` to
    `destination` (the multicast group, or the partner for unicast)."""
    if not 1 <= advert.vrid <= 255 or not 0 <= advert.priority <= 255:
        raise ValueError(f"virtual router id {advert.vrid} (1-255) or priority {advert.priority} (0-255)")
    if not 0 < len(advert.addresses) <= 255 and not (advert.version == 3 and not advert.addresses):
        raise ValueError(f"{len(advert.addresses)} addresses (1-255)")
    family = ipaddress.ip_address(source).version
    if advert.addresses and _family(advert.addresses) != family:
        raise ValueError(f"IPv{family} adverts carry IPv{family} addresses, not {advert.addresses}")
    packed = b"".join(ipaddress.ip_address(a).packed for a in advert.addresses)
    if advert.version == 2:
        if family != 4:
            raise ValueError("VRRPv2 is IPv4 only")
        seconds, rest = divmod(advert.interval_cs, 100)
        if rest or not 1 <= seconds <= 255:
            raise ValueError(f"a VRRPv2 advert interval is whole seconds 1-255, not {advert.interval_cs / 100:g} s")
        head = struct.pack("!BBBBBBH", 0x21, advert.vrid, advert.priority, len(advert.addresses), 0, seconds, 0)
        message = head + packed + AUTH_DATA
        total = checksum(message)
    elif advert.version == 3:
        if not 1 <= advert.interval_cs <= MAX_INTERVAL_CS:
            raise ValueError(f"a VRRPv3 advert interval is 0.01-40.95 s, not {advert.interval_cs / 100:g} s")
        head = struct.pack("!BBBBHH", 0x31, advert.vrid, advert.priority, len(advert.addresses),
                           advert.interval_cs, 0)
        message = head + packed
        plain = checksum_as_v2 and family == 4
        total = checksum(message) if plain else checksum(message, source, destination)
    else:
        raise ValueError(f"VRRP version {advert.version}: 2 or 3")
    return message[:6] + struct.pack("!H", total) + message[8:]


def decode(payload: bytes, *, source: str, destination: str, ttl: int, version: int) -> Advert | VrrpError:
    """The advertisement in `payload` (the IP payload, protocol 112), which
    came from `source` to `destination` with IP TTL (hop limit) `ttl`, for a
    router configured with VRRP `version`.  Never raises."""
    try:
        family = ipaddress.ip_address(source).version
        dest_family = ipaddress.ip_address(destination).version
    except ValueError:
        return VrrpError("family", f"not an IP address: {source!r} or {destination!r}")
    if family != dest_family:
        return VrrpError("family", "source and destination of different families")
    if len(payload) < 8:
        return VrrpError("short", f"{len(payload)} bytes")
    if ttl != TTL:
        return VrrpError("ttl", f"TTL {ttl}, not 255: sent from off the link")
    got_version, got_type = payload[0] >> 4, payload[0] & 0x0F
    if got_version != version:
        return VrrpError("version", f"VRRPv{got_version}, this router speaks VRRPv{version}")
    if got_type != TYPE_ADVERTISEMENT:
        return VrrpError("type", f"type {got_type}")
    vrid, priority, count = payload[1], payload[2], payload[3]
    size = 4 if family == 4 else 16
    body = 8 + count * size
    if version == 2:
        if family != 4:
            return VrrpError("family", "VRRPv2 over IPv6")
        if len(payload) not in (body, body + 8):
            return VrrpError("length", f"{len(payload)} bytes for {count} address(es)")
        if payload[4] != 0:
            return VrrpError("auth", f"authentication type {payload[4]} (only 0, none, is taken)")
        interval_cs = payload[5] * 100
        if interval_cs == 0:
            return VrrpError("interval", "advert interval 0")
        if checksum(payload) != 0:
            return VrrpError("checksum", "VRRPv2 checksum")
        as_v2 = False
    else:
        if len(payload) != body:
            return VrrpError("length", f"{len(payload)} bytes for {count} address(es)")
        interval_cs = struct.unpack_from("!H", payload, 4)[0] & 0x0FFF
        if interval_cs == 0:
            return VrrpError("interval", "advert interval 0")
        if checksum(payload, source, destination) == 0:
            as_v2 = False
        elif family == 4 and checksum(payload) == 0:
            as_v2 = True
        else:
            return VrrpError("checksum", "VRRPv3 checksum")
    addresses = tuple(str(ipaddress.ip_address(payload[8 + i * size:8 + (i + 1) * size])) for i in range(count))
    return Advert(version, vrid, priority, interval_cs, addresses, checksum_as_v2=as_v2)
