"""engine/overrides_wire.py and engine/sync.py: the overrides datagram
round-trips, refuses what is not signed with the key or not whole, never
raises on bytes; the stamps order as the rules say."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from engine import overrides_wire as wire
from engine.sync import Stamp, Sync

KEY = b"k" * 32
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
entries = st.builds(wire.Entry, names, names, st.sampled_from(wire.ACTIONS), st.integers(0, 65535)).map(
    lambda e: e if e.action == "weight" else wire.Entry(e.virtual, e.server, e.action, 0))
messages = st.builds(wire.Overrides, st.sampled_from(["primary", "backup"]), st.integers(0, 2**64 - 1),
                     st.integers(0, 2**64 - 1), st.lists(entries, max_size=20).map(tuple))


@given(messages)
def test_round_trip(message: wire.Overrides) -> None:
    assert wire.decode(wire.encode(message, KEY), KEY) == message


@settings(max_examples=300)
@given(messages, st.data())
def test_a_changed_truncated_or_unsigned_datagram_is_refused(message: wire.Overrides, data: st.DataObject) -> None:
    payload = wire.encode(message, KEY)
    at = data.draw(st.integers(0, len(payload) - 1))
    flipped = payload[:at] + bytes([payload[at] ^ 0x01]) + payload[at + 1:]
    assert isinstance(wire.decode(flipped, KEY), str)
    assert isinstance(wire.decode(payload[:at], KEY), str)
    assert wire.decode(payload, None) == "unsigned-pair"
    assert wire.decode(payload, b"another key") == "bad-mac"


@given(st.binary(max_size=5000))
def test_any_bytes_are_refused_never_raised(data: bytes) -> None:
    assert isinstance(wire.decode(data, KEY), str)


def test_a_set_too_large_for_one_datagram_is_not_cut() -> None:
    big = tuple(wire.Entry("v" * 100, f"server{i:03d}" + "s" * 90, "drain") for i in range(30))
    with pytest.raises(wire.TooLarge):
        wire.encode(wire.Overrides("primary", 1, 1, big), KEY)
    sync = Sync("primary")
    from engine.registry import Override

    said = sync.sends(tuple(Override(e.virtual, e.server, "drain") for e in big), 1, KEY,
                      [("public", "10.0.0.2")], 539)
    assert [c.kind for c in said] == ["error"]  # type: ignore[union-attr]
    assert sync.sends(tuple(Override(e.virtual, e.server, "drain") for e in big), 1, KEY,
                      [("public", "10.0.0.2")], 539) == []  # said once


def test_stamps_order_by_generation_then_the_primary() -> None:
    assert Stamp(1, "primary") < Stamp(2, "backup") and Stamp(2, "backup") < Stamp(2, "primary")
    primary, backup = Sync("primary"), Sync("backup")
    primary.changed()
    message = primary.message((), 1)
    assert backup.received(message, 0, 1000) == "take" and backup.stamp == Stamp(1, "primary")
    backup.changed()  # the backup's next change is newer than anything seen
    assert backup.stamp == Stamp(2, "backup")
    assert primary.received(backup.message((), 1), 0, 1000) == "take"
    assert backup.received(wire.Overrides("primary", 1, 1, ()), 5, 1000) == "answer"  # an older set: answered
    assert backup.received(wire.Overrides("primary", 1, 1, ()), 10, 1000) == "nothing"  # once a keepalive
