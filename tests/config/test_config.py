"""lvs.cf: the grammar, the defaults, the errors, and the writer."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from engine.config import ConfigError, parse, render
from engine.model import SCHEDULERS, Config, Server, Virtual
from shoal.check_config import main as check_config

HERE = Path(__file__).parent
INVALID = HERE / "invalid"
EXAMPLE = HERE.parent.parent / "examples" / "lvs.cf"

MINIMAL = "primary = 10.0.0.1\nvirtual web {\n    address = 10.0.0.100 eth0:1\n    server s1 {\n        address = 10.1.0.11\n    }\n}\n"


def invalid_files() -> list[Path]:
    return sorted(INVALID.glob("*.cf"))


def test_enough_invalid_files() -> None:
    assert len(invalid_files()) >= 15


@pytest.mark.parametrize("path", invalid_files(), ids=lambda p: p.stem)
def test_invalid_file_gives_exactly_its_errors(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = path.with_suffix(".expected").read_text()
    assert expected.strip(), f"{path.name}: no expected errors recorded"
    cwd = os.getcwd()
    os.chdir(INVALID)
    try:
        code = check_config([path.name])
    finally:
        os.chdir(cwd)
    assert code == 2
    assert capsys.readouterr().err == expected
    with pytest.raises(ConfigError) as info:
        parse(path.read_text(), path.name)
    assert str(info.value) + "\n" == expected


def test_example_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config([str(EXAMPLE)]) == 0
    assert "3 virtual(s), 7 real server(s)" in capsys.readouterr().out


def test_unreadable_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config([str(tmp_path / "nope.cf")]) == 2
    assert "nope.cf:1:1: cannot read" in capsys.readouterr().err


def test_defaults_are_the_originals() -> None:
    c = parse(MINIMAL)
    v = c.virtuals[0]
    s = v.servers[0]
    assert (c.keepalive_ms, c.deadtime_ms, c.heartbeat_port, c.network, c.backup_active) == (2000, 5000, 539, "nat", False)
    assert (c.service, c.debug_level, c.rsh_command, c.hard_shutdown, c.syncdaemon, c.syncd_iface) == (
        "lvs", "NONE", "rsh", True, False, "eth0")
    assert (v.port, v.protocol, v.scheduler, v.timeout_ms, v.reentry_ms, v.load_monitor) == (80, "tcp", "wlc", 10000, 180000, "none")
    assert (v.use_regex, v.quiesce_server, v.persistent_s, v.active) == (False, False, 0, True)
    assert (s.weight, s.active, s.port) == (1, True, None)
    assert (v.rise_count, v.fall_count, v.interval_ms) == (18, 1, 10000)
    assert (c.preempt, c.arp_count, c.arp_interval_ms, c.heartbeat_format) == (False, 5, 1000, "shoal")


def test_values() -> None:
    text = MINIMAL.replace("    address = 10.0.0.100 eth0:1\n", (
        "    address = 2001:DB8:0:0::1 eth0:1\n"
        "    port = https\n"
        '    send = "GET / HTTP/1.0\\r\\n\\r\\n"\n'
        "    expect = 'it''s'\n".replace("'it''s'", '"it\\\'s \\"q\\" \\\\ \\t"') +
        "    timeout = 0.25\n"
        "    sorry_server = [2001:db8::99]:8080\n"
    )).replace("10.1.0.11", "2001:db8::11")
    c = parse(text)
    v = c.virtuals[0]
    assert v.address == "2001:db8::1"
    assert v.port == 443
    assert v.send == "GET / HTTP/1.0\r\n\r\n"
    assert v.expect == "it's \"q\" \\ \t"
    assert v.timeout_ms == 250
    assert (v.sorry_server, v.sorry_port) == ("2001:db8::99", 8080)
    assert parse(render(c)) == c


def test_comment_after_values_and_globals_after_virtuals() -> None:
    c = parse(MINIMAL + "keepalive = 1 # faster\ndeadtime = 3\n")
    assert (c.keepalive_ms, c.deadtime_ms) == (1000, 3000)


def test_round_trip_keeps_the_example_byte_for_byte() -> None:
    text = EXAMPLE.read_text()
    config = parse(text, "lvs.cf")
    assert render(config) == text
    assert parse(render(config)) == config


def test_changing_one_weight_changes_one_line() -> None:
    text = EXAMPLE.read_text()
    config = parse(text)
    http = config.virtuals[0]
    servers = (http.servers[0], replace(http.servers[1], weight=7), *http.servers[2:])
    changed = replace(config, virtuals=(replace(http, servers=servers), *config.virtuals[1:]))
    before, after = text.splitlines(), render(changed).splitlines()
    assert len(before) == len(after)
    diffs = [(a, b) for a, b in zip(before, after) if a != b]
    assert diffs == [("         weight = 1", "         weight = 7")]
    assert parse(render(changed)) == changed


def test_added_and_removed_blocks_render_and_parse() -> None:
    config = parse(EXAMPLE.read_text())
    http = config.virtuals[0]
    grown = replace(http, servers=http.servers[:1] + (Server("web9", "10.11.12.19", weight=3),), quiesce_server=True)
    extra = Virtual("DNS", address="192.168.26.12", device="eth0:3", port=53, protocol="udp",
                    servers=(Server("dns1", "10.11.12.53"),))
    changed = replace(config, virtuals=(grown, config.virtuals[2], extra), preempt=True)
    text = render(changed)
    assert "# HTTPS with persistence" not in text  # the removed virtual's lines went with it
    assert "# The public web site" in text
    assert parse(text) == changed


# ------------------------------------------------------------------ property

names = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,8}", fullmatch=True)
ipv4 = st.tuples(*[st.integers(1, 254)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.tuples(*[st.integers(0, 0xFFFF)] * 3).map(lambda t: ipaddress.ip_address("2001:db8:%x:%x::%x" % t).compressed)
texts = st.text(st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("\r\n\t"), max_size=40)
times_ms = st.integers(1, 100_000).map(lambda ms: ms)


@st.composite
def servers(draw: st.DrawFn, family: st.SearchStrategy[str]) -> Server:
    return Server(
        name=draw(names), address=draw(family), active=draw(st.booleans()), weight=draw(st.integers(0, 65535)),
        port=draw(st.none() | st.integers(1, 65535)), notify_up=draw(st.none() | texts),
    )


@st.composite
def virtuals(draw: st.DrawFn, index: int) -> Virtual:
    family = draw(st.sampled_from([ipv4, ipv6]))
    server_list = draw(st.lists(servers(family), max_size=4, unique_by=lambda s: s.name))
    scheduler = draw(st.sampled_from(SCHEDULERS))
    persistent = draw(st.sampled_from([0, 0, 300]))
    return Virtual(
        name=f"v{index}", active=draw(st.booleans()), address=draw(family), device=draw(st.sampled_from(["eth0:1", "eth1"])),
        port=1000 + index, protocol=draw(st.sampled_from(["tcp", "udp"])), scheduler=scheduler,
        persistent_s=persistent, pmask="255.255.255.0" if persistent and draw(st.booleans()) else None,
        send=draw(st.none() | texts), expect=draw(st.none() | texts),
        timeout_ms=draw(times_ms), reentry_ms=draw(st.integers(0, 500_000)), quiesce_server=draw(st.booleans()),
        rise=draw(st.none() | st.integers(1, 9)), check_interval_ms=draw(st.none() | times_ms),
        load_monitor=draw(st.sampled_from(["none", "uptime", "rup", "ruptime"])),
        servers=tuple(server_list),
    )


@st.composite
def configs(draw: st.DrawFn) -> Config:
    keepalive = draw(st.integers(1, 10_000))
    n = draw(st.integers(0, 3))
    return Config(
        serial_no=draw(st.integers(0, 2**40)), primary=draw(ipv4), backup="172.31.255.254", backup_active=draw(st.booleans()),
        keepalive_ms=keepalive, deadtime_ms=keepalive + draw(st.integers(1, 10_000)),
        network=draw(st.sampled_from(["nat", "direct", "tunnel"])), active_cmd=draw(st.none() | texts),
        preempt=draw(st.booleans()), arp_count=draw(st.integers(1, 9)),
        virtuals=tuple(draw(virtuals(i)) for i in range(n)),
    )


@settings(max_examples=150, deadline=None)
@given(configs())
def test_render_then_parse_is_identity(config: Config) -> None:
    text = render(config)
    parsed = parse(text)
    assert parsed == config
    assert render(parsed) == text  # and rendering what was parsed keeps the text
