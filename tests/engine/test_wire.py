"""Heartbeat wire formats: byte-exact vectors, round trips, garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from engine.wire import Heartbeat, ReplayWindow, WireError, decode, encode

KEY = bytes(range(16))


def test_piranha_magics_are_byte_exact() -> None:
    assert encode(Heartbeat("piranha", "active", None, 0, 0, 0)) == bytes.fromhex("dadbadbd")
    assert encode(Heartbeat("piranha", "standby", None, 0, 0, 0)) == bytes.fromhex("bddabdad")
    assert encode(Heartbeat("piranha", "leaving", None, 0, 0, 0)) == bytes.fromhex("bddabdad")
    assert decode(bytes.fromhex("dadbadbd")) == Heartbeat("piranha", "active", None, 0, 0, 0)
    assert decode(bytes.fromhex("bddabdad")) == Heartbeat("piranha", "standby", None, 0, 0, 0)


def test_shoal_vector() -> None:
    hb = Heartbeat("shoal", "active", "backup", 0x0102030405060708, 7, 37)
    assert encode(hb).hex() == (
        "53484f4c" "01" "01" "00" "01" "0102030405060708" "0000000000000007" "0000000000000025"
    )
    signed = encode(hb, KEY)
    assert len(signed) == 64 and signed[6] == 1
    assert decode(signed, KEY) == Heartbeat("shoal", "active", "backup", 0x0102030405060708, 7, 37, True)


@pytest.mark.parametrize("payload, reason", [
    (b"", "short"), (b"\x00", "short"), (bytes.fromhex("deadbeef"), "magic"),
    (b"XXXX" + bytes(28), "magic"), (b"SHOL\x02" + bytes(27), "version"),
    (b"SHOL\x01\x03" + bytes(26), "state"), (b"SHOL\x01\x00\x00\x02" + bytes(24), "node"),
    (b"SHOL\x01\x00\x80\x00" + bytes(24), "flags"), (b"SHOL\x01\x00\x00\x00" + bytes(25), "length"),
])
def test_garbage_is_an_error_value(payload: bytes, reason: str) -> None:
    result = decode(payload)
    assert isinstance(result, WireError) and result.reason == reason


def test_authentication() -> None:
    hb = Heartbeat("shoal", "standby", "primary", 5, 4, 1)
    assert decode(encode(hb), KEY) == WireError("unauthenticated", "no MAC")
    assert isinstance(decode(encode(hb, KEY)), WireError)  # a MAC but no key here
    assert decode(encode(hb, b"other key"), KEY) == WireError("bad-mac")
    assert isinstance(decode(encode(Heartbeat("piranha", "active", None, 0, 0, 0)), KEY), WireError)
    with pytest.raises(ValueError):
        encode(Heartbeat("piranha", "active", None, 0, 0, 0), KEY)


heartbeats = st.builds(
    Heartbeat, st.just("shoal"), st.sampled_from(["active", "standby", "leaving"]),
    st.sampled_from(["primary", "backup"]), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
)


@given(heartbeats, st.none() | st.binary(min_size=1, max_size=64))
def test_round_trip(hb: Heartbeat, key: bytes | None) -> None:
    decoded = decode(encode(hb, key), key)
    assert decoded == Heartbeat(hb.format, hb.state, hb.node, hb.seq, hb.ack, hb.serial_no, key is not None)


@given(st.binary(max_size=100), st.none() | st.just(KEY))
def test_random_bytes_never_raise(payload: bytes, key: bytes | None) -> None:
    assert isinstance(decode(payload, key), (Heartbeat, WireError))


@given(heartbeats, st.integers(0, 64 * 8 - 1))
def test_any_flipped_bit_of_a_signed_heartbeat_is_refused(hb: Heartbeat, bit: int) -> None:
    packet = bytearray(encode(hb, KEY))
    packet[bit // 8] ^= 1 << (bit % 8)
    assert isinstance(decode(bytes(packet), KEY), WireError)


@given(heartbeats, st.integers(0, 63))
def test_truncation_is_refused(hb: Heartbeat, cut: int) -> None:
    assert isinstance(decode(encode(hb, KEY)[:cut], KEY), WireError)


@given(st.lists(st.integers(0, 300), max_size=200))
def test_replay_window_never_accepts_twice(seqs: list[int]) -> None:
    window = ReplayWindow(0, 0)
    accepted: set[int] = set()
    for seq in seqs:
        ok, window = window.accept(seq)
        if ok:
            assert seq not in accepted and seq > 0
            assert seq > window.highest - window.size
            accepted.add(seq)


@given(st.lists(st.integers(1, 10), max_size=100))
def test_replay_window_accepts_any_increasing_sequence(steps: list[int]) -> None:
    window, seq = ReplayWindow(0, 0), 0
    for step in steps:
        seq += step
        ok, window = window.accept(seq)
        assert ok


def test_replay_window_accepts_reordering_within_it_and_not_older() -> None:
    window = ReplayWindow(0, 0)
    for seq in (100, 98, 99):
        ok, window = window.accept(seq)
        assert ok
    assert window.accept(99)[0] is False
    assert window.accept(100 - 64)[0] is False
    assert window.accept(100 - 63)[0] is True
