"""VRRP adverts byte-exact (engine/vrrp_wire.py), against real keepalived's.

tests/engine/vrrp_keepalived.txt holds adverts Debian's keepalived
2.2.7 sent (scripts/capture_vrrp.py): VRRPv2, VRRPv3 over IPv4 (the RFC 5798
pseudo-header checksum), VRRPv3 over IPv6; for each, two adverts of the master (priority 150) and the
priority-0 advert it sends when it stops.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from engine.vrrp_wire import Advert, VrrpError, checksum, decode, encode

CAPTURED = [line.split() for line in (Path(__file__).parent / "vrrp_keepalived.txt").read_text().splitlines()
            if line and not line.startswith("#")]
VIPS = {"v2": ("10.99.0.100", "10.99.0.101"), "v3": ("10.99.0.100", "10.99.0.101"),
        "v3-ipv6": ("fd99::100",)}


def test_every_variant_was_captured() -> None:
    assert sorted({v for v, *_ in CAPTURED}) == sorted(VIPS)
    assert len(CAPTURED) == 3 * len(VIPS)


@pytest.mark.parametrize("variant,source,destination,ttl,payload", CAPTURED)
def test_keepalived_adverts_decode_and_encode_back_byte_for_byte(
        variant: str, source: str, destination: str, ttl: str, payload: str) -> None:
    data = bytes.fromhex(payload)
    version = 2 if variant == "v2" else 3
    advert = decode(data, source=source, destination=destination, ttl=int(ttl), version=version)
    assert isinstance(advert, Advert), advert
    assert (advert.version, advert.vrid, advert.interval_cs, advert.addresses) == (version, 51, 100, VIPS[variant])
    assert advert.priority in (150, 0)
    assert not advert.checksum_as_v2  # 2.2.7 has no v3_checksum_as_v2 (a later keepalived's option)
    again = encode(advert, source, destination, checksum_as_v2=advert.checksum_as_v2)
    assert again == data


def test_the_two_v3_ipv4_checksums_differ_and_each_is_told_apart() -> None:
    a = Advert(3, 51, 150, 100, ("10.99.0.100",))
    rfc = encode(a, "10.99.0.1", "224.0.0.18")
    plain = encode(a, "10.99.0.1", "224.0.0.18", checksum_as_v2=True)
    assert rfc[:6] == plain[:6] and rfc[8:] == plain[8:] and rfc[6:8] != plain[6:8]
    assert checksum(plain) == 0 and checksum(rfc, "10.99.0.1", "224.0.0.18") == 0
    assert decode(rfc, source="10.99.0.1", destination="224.0.0.18", ttl=255, version=3) == a
    # Over IPv6 the pseudo-header is always summed: no second form.
    six = Advert(3, 51, 150, 100, ("fd99::100",))
    assert encode(six, "fe80::1", "ff02::12", checksum_as_v2=True) == encode(six, "fe80::1", "ff02::12")


def test_unicast_v3_sums_the_partners_address() -> None:
    a = Advert(3, 7, 100, 2, ("10.0.0.100",))  # 20 ms adverts
    data = encode(a, "10.0.0.2", "10.0.0.1")
    assert decode(data, source="10.0.0.2", destination="10.0.0.1", ttl=255, version=3) == a
    assert isinstance(decode(data, source="10.0.0.2", destination="224.0.0.18", ttl=255, version=3), VrrpError)


V2 = bytes.fromhex(next(p for v, *_, p in CAPTURED if v == "v2"))
V3 = bytes.fromhex(next(p for v, *_, p in CAPTURED if v == "v3"))


@pytest.mark.parametrize("data,ttl,version,reason", [
    (V3, 254, 3, "ttl"),  # one router hop away: not from the link
    (V3, 64, 3, "ttl"),
    (V3, 255, 2, "version"),
    (V2, 255, 3, "version"),
    (V3[:7], 255, 3, "short"),
    (V3[:-1], 255, 3, "length"),
    (V3 + b"\0\0\0\0", 255, 3, "length"),
    (V2[:-4], 255, 2, "length"),
    (bytes([0x32]) + V3[1:], 255, 3, "type"),
    (V3[:2] + bytes([V3[2] ^ 1]) + V3[3:], 255, 3, "checksum"),
    (V2[:4] + b"\x01" + V2[5:], 255, 2, "auth"),
])
def test_what_is_refused(data: bytes, ttl: int, version: int, reason: str) -> None:
    got = decode(data, source="10.99.0.1", destination="224.0.0.18", ttl=ttl, version=version)
    assert isinstance(got, VrrpError) and got.reason == reason, got


def test_encode_refuses_what_the_wire_cannot_say() -> None:
    with pytest.raises(ValueError, match="whole seconds"):
        encode(Advert(2, 1, 100, 2, ("10.0.0.1",)), "10.0.0.2", "224.0.0.18")  # 20 ms in VRRPv2
    with pytest.raises(ValueError, match="0.01-40.95"):
        encode(Advert(3, 1, 100, 4096, ("10.0.0.1",)), "10.0.0.2", "224.0.0.18")
    with pytest.raises(ValueError, match="IPv4 only"):
        encode(Advert(2, 1, 100, 100, ("fd00::1",)), "fe80::1", "ff02::12")
    with pytest.raises(ValueError, match="one address family"):
        encode(Advert(3, 1, 100, 100, ("10.0.0.1", "fd00::1")), "10.0.0.2", "224.0.0.18")


@settings(max_examples=400)
@given(st.binary(max_size=120), st.integers(0, 255), st.sampled_from([2, 3]),
       st.sampled_from([("10.0.0.1", "224.0.0.18"), ("fe80::1", "ff02::12"), ("10.0.0.1", "ff02::12")]))
def test_garbage_never_raises(data: bytes, ttl: int, version: int, ends: tuple[str, str]) -> None:
    got = decode(data, source=ends[0], destination=ends[1], ttl=ttl, version=version)
    assert isinstance(got, (Advert, VrrpError))
    if isinstance(got, Advert):  # what decodes encodes back to the same bytes (v2's authentication data aside)
        again = encode(got, ends[0], ends[1], checksum_as_v2=got.checksum_as_v2)
        assert again == data or (version == 2 and again[:-8] == data)


@settings(max_examples=300)
@given(st.sampled_from([2, 3]), st.integers(1, 255), st.integers(0, 255), st.integers(1, 255),
       st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20), st.booleans())
def test_round_trip(version: int, vrid: int, priority: int, seconds: int, raw: list[int], as_v2: bool) -> None:
    import ipaddress

    addresses = tuple(str(ipaddress.IPv4Address(a)) for a in raw)
    advert = Advert(version, vrid, priority, seconds * 100 if version == 2 else min(seconds * 16, 4095), addresses)
    data = encode(advert, "10.0.0.2", "224.0.0.18", checksum_as_v2=as_v2)
    expected = advert if version == 2 else Advert(version, vrid, priority, advert.interval_cs, addresses, as_v2)
    assert decode(data, source="10.0.0.2", destination="224.0.0.18", ttl=255, version=version) == expected
