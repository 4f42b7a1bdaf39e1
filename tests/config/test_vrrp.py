"""The VRRP keys of lvs.cf (issue 14): defaults, the derived priority,
the warnings, and the round trip through the writer.  Every error has its
file in invalid/vrrp_*.cf; every key's value in test_grammar.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.config import parse, render, warnings
from engine.model import Config, vrrp_priority

PAIR = "primary = 10.0.0.1\nbackup = 10.0.0.2\nbackup_active = 1\n"
VIRTUAL = "virtual web {\n    address = 10.0.0.100 eth0:1\n    server s1 {\n        address = 10.1.0.11\n    }\n}\n"
VRRP = PAIR + "heartbeat_protocol = vrrp\nvirtual_router_id = 51\n" + VIRTUAL


def test_defaults() -> None:
    c = parse(PAIR + VIRTUAL)
    assert (c.heartbeat_protocol, c.vrrp_version, c.virtual_router_id, c.priority, c.preempt_delay_ms,
            c.vrrp_unicast, c.vrrp_v3_checksum_as_v2, c.preempt) == ("pulse", 3, None, None, 0, False, False, False)
    v = parse(VRRP)
    assert (v.heartbeat_protocol, v.vrrp_version, v.virtual_router_id, v.keepalive_ms) == ("vrrp", 3, 51, 2000)


def test_priority_is_derived_from_the_node_unless_set() -> None:
    c = parse(VRRP)
    assert (vrrp_priority(c, "primary"), vrrp_priority(c, "backup")) == (150, 100)
    c = parse("priority = 90\n" + VRRP)
    assert (vrrp_priority(c, "primary"), vrrp_priority(c, "backup")) == (90, 90)
    assert vrrp_priority(Config(priority=1), "primary") == 1


@pytest.mark.parametrize(("version", "keepalive", "ms"), [
    ("2", "1", 1000), ("2", "255", 255_000), ("3", "0.01", 10), ("3", "40.95", 40_950), ("3", "1.5", 1500),
])
def test_advert_intervals_at_their_bounds(version: str, keepalive: str, ms: int) -> None:
    c = parse(f"vrrp_version = {version}\nkeepalive = {keepalive}\n" + VRRP)
    assert (c.vrrp_version, c.keepalive_ms) == (int(version), ms)


def test_deadtime_above_keepalive_is_not_required_with_vrrp() -> None:
    c = parse("keepalive = 10\n" + VRRP)  # the default deadtime (5 s) is below it: not used by VRRP
    assert c.keepalive_ms == 10_000
    assert not any("deadtime" in w for w in warnings(c))


def test_deadtime_given_with_vrrp_is_a_warning_not_an_error() -> None:
    c = parse("deadtime = 5\n" + VRRP)  # even at its default value: the line is there
    said = [w for w in warnings(c) if w.startswith("deadtime is not used")]
    assert len(said) == 1 and "3 x keepalive" in said[0]
    assert not any("deadtime" in w for w in warnings(replace(c, source=None, deadtime_ms=5000)))
    assert any("deadtime" in w for w in warnings(replace(c, source=None, deadtime_ms=6000)))


def test_a_vrrp_pair_is_warned_that_adverts_are_not_authenticated_and_not_about_heartbeat_keys() -> None:
    said = warnings(parse(VRRP))
    assert len(said) == 1
    assert said[0].startswith("VRRP adverts are not authenticated") and "heartbeat_key_file" not in said[0]


def test_every_key_survives_the_writer() -> None:
    text = ("vrrp_version = 2\npriority = 200\npreempt = 1\npreempt_delay = 2.5\nvrrp_unicast = 1\nkeepalive = 1\n"
            + VRRP)
    c = parse(text)
    assert render(c) == text
    canonical = render(replace(c, source=None))
    for line in ("heartbeat_protocol = vrrp", "vrrp_version = 2", "virtual_router_id = 51", "priority = 200",
                 "preempt_delay = 2.5", "vrrp_unicast = 1"):
        assert line in canonical.splitlines()
    assert parse(canonical) == c
    c3 = parse("vrrp_v3_checksum_as_v2 = 1\n" + VRRP)
    assert parse(render(replace(c3, source=None))) == c3
    assert "vrrp_v3_checksum_as_v2 = 1" in render(replace(c3, source=None))


def test_switching_a_pulse_file_to_vrrp_writes_the_keys_after_the_globals() -> None:
    c = parse(PAIR + VIRTUAL)
    out = render(replace(c, heartbeat_protocol="vrrp", virtual_router_id=7))
    assert out.startswith(PAIR + "heartbeat_protocol = vrrp\nvirtual_router_id = 7\n")
    assert parse(out).virtual_router_id == 7


def test_switching_back_to_pulse_drops_the_vrrp_lines_at_their_defaults() -> None:
    c = parse("vrrp_version = 3\npreempt_delay = 0\npriority = 120\n" + VRRP)
    back = replace(c, heartbeat_protocol="pulse", virtual_router_id=None, priority=None)
    out = render(back)
    assert "vrrp_version" not in out and "preempt_delay" not in out and "priority" not in out
    assert parse(out) == back
