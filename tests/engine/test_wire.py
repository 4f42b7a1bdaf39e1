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


# Hand-written vectors; each MAC computed independently with
# `openssl dgst -sha256 -mac HMAC -macopt hexkey:... | key:...`.
VECTORS = [
    (Heartbeat("shoal", "standby", "primary", 1, 0, 0), None,
     "53484f4c" "01" "00" "00" "00" "0000000000000001" "0000000000000000" "0000000000000000"),
    (Heartbeat("shoal", "leaving", "primary", 1, 0, 42), KEY,
     "53484f4c" "01" "02" "01" "00" "0000000000000001" "0000000000000000" "000000000000002a"
     "ced978163bab5cda6e8b21ae1eac4ef6fb3cb408ddb25c80587770cc4a40c1f8"),
    (Heartbeat("shoal", "standby", "backup", 9, 8, 2**64 - 1), b"shoal",
     "53484f4c" "01" "00" "01" "01" "0000000000000009" "0000000000000008" "ffffffffffffffff"
     "b85734040fc31293c0cd388eefbf8661ba4dd40c58eae60489221359645269f2"),
]


@pytest.mark.parametrize("hb, key, vector", VECTORS)
def test_shoal_vectors_are_byte_exact(hb: Heartbeat, key: bytes | None, vector: str) -> None:
    assert encode(hb, key).hex() == vector
    assert decode(bytes.fromhex(vector), key) == Heartbeat(
        hb.format, hb.state, hb.node, hb.seq, hb.ack, hb.serial_no, authenticated=key is not None)


@pytest.mark.parametrize("payload, reason", [
    (b"", "short"), (b"\x00", "short"), (bytes.fromhex("deadbeef"), "magic"),
    (b"XXXX" + bytes(28), "magic"), (b"SHOL\x02" + bytes(27), "version"),
    (b"SHOL\x01\x03" + bytes(26), "state"), (b"SHOL\x01\x00\x00\x02" + bytes(24), "node"),
    (b"SHOL\x01\x00\x80\x00" + bytes(24), "flags"), (b"SHOL\x01\x00\x00\x00" + bytes(25), "length"),
])
def test_garbage_is_an_error_value(payload: bytes, reason: str) -> None:
    result = decode(payload)
    assert isinstance(result, WireError) and result.reason == reason


@given(st.integers(0, 2**32 - 1))
def test_every_other_four_byte_magic_is_refused(magic: int) -> None:
    payload = magic.to_bytes(4, "little")
    result = decode(payload)
    if magic in (0xBDADDBDA, 0xADBDDABD):
        assert isinstance(result, Heartbeat) and result.format == "piranha"
    else:
        assert isinstance(result, WireError) and result.reason in ("magic", "short")
    assert isinstance(decode(payload, KEY), WireError)  # a key refuses every piranha packet


@pytest.mark.parametrize("hb, key", [
    (Heartbeat("piranha", "active", None, 0, 0, 0), KEY),  # no room for a MAC
    (Heartbeat("piranha", "active", "primary", 0, 0, 0), None),  # nor for a node,
    (Heartbeat("piranha", "standby", None, 3, 0, 0), None),  # a sequence,
    (Heartbeat("piranha", "standby", None, 0, 0, 7), None),  # or a serial
    (Heartbeat("shoal", "active", None, 1, 0, 0), None),  # shoal names its node
    (Heartbeat("shoal", "active", "primary", 2**64, 0, 0), None),
    (Heartbeat("shoal", "active", "primary", -1, 0, 0), None),
    (Heartbeat("shoal", "dead", "primary", 1, 0, 0), None),  # type: ignore[arg-type]
    (Heartbeat("vrrp", "active", "primary", 1, 0, 0), None),  # type: ignore[arg-type]
    (Heartbeat("shoal", "active", "primary", 1, 0, 0), b""),  # an empty key
])
def test_encoding_what_cannot_be_sent_raises(hb: Heartbeat, key: bytes | None) -> None:
    with pytest.raises(ValueError):
        encode(hb, key)


def test_decoding_with_an_empty_key_raises() -> None:
    with pytest.raises(ValueError):
        decode(encode(Heartbeat("shoal", "active", "primary", 1, 0, 0)), b"")


def test_authentication() -> None:
    hb = Heartbeat("shoal", "standby", "primary", 5, 4, 1)
    assert decode(encode(hb), KEY) == WireError("unauthenticated", "no MAC")
    assert decode(encode(hb, KEY)) == WireError("unexpected-mac", "a MAC, but no heartbeat_key_file here")
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


def _mutated(packet: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(packet)
    for at, value in edits:
        out[at % len(out)] = value
    return bytes(out[: max(cut, 0)] if cut < len(out) else out + bytes(cut - len(out)))


# Garbage that gets past the first checks too: the magic, a version, valid
# packets with bytes overwritten, truncated or padded.
garbage = st.one_of(
    st.binary(max_size=100),
    st.builds(lambda tail: b"SHOL" + tail, st.binary(max_size=80)),
    st.builds(lambda tail: b"SHOL\x01" + tail, st.binary(max_size=80)),
    st.builds(
        _mutated,
        st.builds(lambda hb, key: encode(hb, key), st.deferred(lambda: heartbeats), st.none() | st.just(KEY)),
        st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), max_size=4),
        st.integers(0, 100),
    ),
)


@given(garbage, st.none() | st.just(KEY))
def test_random_bytes_never_raise(payload: bytes, key: bytes | None) -> None:
    result = decode(payload, key)
    assert isinstance(result, (Heartbeat, WireError))
    if isinstance(result, Heartbeat):
        assert result.authenticated == (key is not None)
        assert result.format == "piranha" or encode(result, key) == payload  # accepted means canonical


def test_every_single_bit_flip_of_a_signed_heartbeat_is_refused() -> None:
    packet = encode(Heartbeat("shoal", "active", "primary", 12345, 12344, 7), KEY)
    for bit in range(len(packet) * 8):
        flipped = bytearray(packet)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert isinstance(decode(bytes(flipped), KEY), WireError), bit


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


@given(st.lists(st.integers(0, 400), max_size=200), st.sampled_from([1, 2, 8, 32, 64, 128]))
def test_replay_window_matches_its_definition(seqs: list[int], size: int) -> None:
    """Accepted iff positive, never accepted before, and above highest - size."""
    window = ReplayWindow(0, 0, size)
    seen: set[int] = set()
    highest = 0
    for seq in seqs:
        ok, after = window.accept(seq)
        assert ok == (seq > 0 and seq not in seen and seq > highest - size), (seq, highest)
        if ok:
            seen.add(seq)
            highest = max(highest, seq)
        else:
            assert after == window  # a refusal changes nothing
        assert after.highest == highest
        window = after


@given(st.lists(st.integers(1, 1000), min_size=1, max_size=50), st.integers(0, 2000))
def test_replay_window_rejects_anything_older_than_it(seqs: list[int], older_by: int) -> None:
    window = ReplayWindow(0, 0)
    for seq in seqs:
        _, window = window.accept(seq)
    assert window.accept(window.highest - window.size - older_by)[0] is False


def test_replay_window_refuses_a_malformed_window() -> None:
    for bad in ((0, 0, 0), (-1, 0, 64), (10, 1 << 64, 64), (10, -1, 64)):
        with pytest.raises(ValueError):
            ReplayWindow(*bad)


def test_replay_window_accepts_reordering_within_it_and_not_older() -> None:
    window = ReplayWindow(0, 0)
    for seq in (100, 98, 99):
        ok, window = window.accept(seq)
        assert ok
    assert window.accept(99)[0] is False
    assert window.accept(100 - 64)[0] is False
    assert window.accept(100 - 63)[0] is True


def test_probe_and_yielded_flags() -> None:
    hb = Heartbeat("shoal", "standby", "backup", 9, 8, 1, probe=True, yielded=True)
    packet = encode(hb)
    assert packet[6] == 0x06
    assert decode(packet) == hb
    signed = encode(hb, KEY)
    assert signed[6] == 0x07
    assert decode(signed, KEY) == Heartbeat("shoal", "standby", "backup", 9, 8, 1, True, True, True)
    assert decode(encode(Heartbeat("shoal", "active", "primary", 1, 0, 0))) == Heartbeat("shoal", "active", "primary", 1, 0, 0)
    with pytest.raises(ValueError):
        encode(Heartbeat("piranha", "standby", None, 0, 0, 0, probe=True))
