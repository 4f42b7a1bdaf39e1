"""lvs.cf: the grammar, every kind of key, the defaults, and the errors."""

from __future__ import annotations

from typing import Any

import pytest

from engine.config import ConfigError, parse
from engine.config.keys import TABLES, VRRP_KEYS
from engine.model import Config, Server, Virtual

HEAD = "primary = 10.0.0.1\n"
MINIMAL = HEAD + "virtual web {\n    address = 10.0.0.100 eth0:1\n    server s1 {\n        address = 10.1.0.11\n    }\n}\n"


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, "t.cf")
    return [str(i) for i in info.value.issues]


def one_virtual(*lines: str, server: tuple[str, ...] = ()) -> str:
    body = "".join(f"    {line}\n" for line in lines)
    inner = "".join(f"        {line}\n" for line in server)
    return HEAD + f"virtual web {{\n    address = 10.0.0.100 eth0:1\n{body}    server s1 {{\n" \
                  f"        address = 10.1.0.11\n{inner}    }}\n}}\n"


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
    assert (c.preempt, c.arp_count, c.arp_interval_ms, c.heartbeat_format, c.command_timeout_ms) == (
        False, 5, 1000, "shoal", 30000)
    assert (v.check, v.http_path, v.http_status, v.quorum, v.hysteresis, v.sched_flags) == ("auto", "/", 200, 0, 0, ())


# Every key of every block: a value as written, and the model fields it sets.
GLOBAL: list[tuple[str, str, dict[str, Any]]] = [
    ("serial_no", "42", {"serial_no": 42}),
    ("service", "lvs", {"service": "lvs"}),
    ("backup", "2001:DB8::0:2", {"backup": "2001:db8::2"}),
    ("primary_private", "10.11.12.1", {"primary_private": "10.11.12.1"}),
    ("backup_private", "10.11.12.2", {"backup_private": "10.11.12.2"}),
    ("backup_active", "1", {"backup_active": True}),
    ("heartbeat", "0", {"heartbeat": False}),
    ("heartbeat_port", "1539", {"heartbeat_port": 1539}),
    ("keepalive", "0.25", {"keepalive_ms": 250}),
    ("deadtime", "7.5", {"deadtime_ms": 7500}),
    ("network", "direct", {"network": "direct"}),
    ("nat_router", "10.11.12.254 eth1:1", {"nat_router": "10.11.12.254", "nat_router_device": "eth1:1"}),
    ("nat_nmask", "255.255.255.0", {"nat_nmask": "255.255.255.0"}),
    ("debug_level", "verbose", {"debug_level": "verbose"}),
    ("rsh_command", "ssh", {"rsh_command": "ssh"}),
    ("active_cmd", '"/usr/local/bin/became-active --quiet"', {"active_cmd": "/usr/local/bin/became-active --quiet"}),
    ("inactive_cmd", "/bin/true", {"inactive_cmd": "/bin/true"}),
    ("monitor_links", "1", {"monitor_links": True}),
    ("hard_shutdown", "1", {"hard_shutdown": True}),  # 0 is refused: invalid/unsupported_switches.cf
    ("syncdaemon", "1", {"syncdaemon": True}),
    ("syncd_iface", "eth2", {"syncd_iface": "eth2"}),
    ("syncd_id", "255", {"syncd_id": 255}),
    ("tcp_timeout", "900", {"tcp_timeout_s": 900}),
    ("tcpfin_timeout", "120", {"tcpfin_timeout_s": 120}),
    ("udp_timeout", "300", {"udp_timeout_s": 300}),
    ("preempt", "1", {"preempt": True}),
    ("heartbeat_key_file", "/etc/shoal/hb.key", {"heartbeat_key_file": "/etc/shoal/hb.key"}),
    ("heartbeat_format", "piranha", {"heartbeat_format": "piranha", "heartbeat_min_ttl": 1}),
    ("heartbeat_min_ttl", "64", {"heartbeat_min_ttl": 64}),
    ("arp_count", "3", {"arp_count": 3}),
    ("arp_interval", ".5", {"arp_interval_ms": 500}),
    ("notify_fifo", "/run/shoal/notify", {"notify_fifo": "/run/shoal/notify"}),
    ("command_timeout", "12.125", {"command_timeout_ms": 12125}),
    ("table_check_interval", "2.5", {"table_check_interval_ms": 2500}),
    ("load_interval", "5", {"load_interval_ms": 5000}),
    ("heartbeat_protocol", "vrrp", {"heartbeat_protocol": "vrrp"}),
    ("vrrp_version", "2", {"vrrp_version": 2}),
    ("virtual_router_id", "255", {"virtual_router_id": 255}),
    ("priority", "254", {"priority": 254}),
    ("preempt_delay", "0.5", {"preempt_delay_ms": 500}),
    ("vrrp_unicast", "1", {"vrrp_unicast": True}),
    ("vrrp_v3_checksum_as_v2", "1", {"vrrp_v3_checksum_as_v2": True}),
]
VIRTUAL: list[tuple[str, str, dict[str, Any]]] = [
    ("active", "0", {"active": False}),
    ("vip_nmask", "24", {"vip_nmask": "24"}),
    ("sorry_server", "10.1.0.99:8080", {"sorry_server": "10.1.0.99", "sorry_port": 8080}),
    ("fwmark", "4294967295", {"fwmark": 2**32 - 1}),
    ("protocol", "udp", {"protocol": "udp"}),
    ("port", "https", {"port": 443}),
    ("scheduler", "sh", {"scheduler": "sh"}),
    ("persistent", "300", {"persistent_s": 300}),
    ("pmask", "255.255.0.0", {"pmask": "255.255.0.0"}),
    ("send", r'"GET / HTTP/1.0\r\n\r\n"', {"send": "GET / HTTP/1.0\r\n\r\n"}),
    ("expect", "'HTTP'", {"expect": "HTTP"}),
    ("use_regex", "1", {"use_regex": True}),
    ("send_program", '"/usr/local/bin/check %h %p"', {"send_program": "/usr/local/bin/check %h %p"}),
    ("load_monitor", "ruptime", {"load_monitor": "ruptime"}),
    ("timeout", "2.5", {"timeout_ms": 2500}),
    ("reentry", "0", {"reentry_ms": 0}),
    ("quiesce_server", "1", {"quiesce_server": True}),
    ("rise", "3", {"rise": 3}),
    ("fall", "2", {"fall": 2}),
    ("check_interval", "0.5", {"check_interval_ms": 500}),
    ("check", "https", {"check": "https"}),
    ("http_path", '"/health?full=1"', {"http_path": "/health?full=1"}),
    ("http_status", "204", {"http_status": 204}),
    ("quorum", "2", {"quorum": 2}),
    ("hysteresis", "1", {"hysteresis": 1}),
    ("load_command", '"ssh %h cat /proc/loadavg"', {"load_command": "ssh %h cat /proc/loadavg"}),
    ("sched_flags", "sh-fallback sh-port", {"sched_flags": ("sh-fallback", "sh-port")}),
]
SERVER: list[tuple[str, str, dict[str, Any]]] = [
    ("active", "0", {"active": False}),
    ("weight", "65535", {"weight": 65535}),
    ("port", "8443", {"port": 8443}),
    ("notify_up", '"logger up"', {"notify_up": "logger up"}),
    ("notify_down", "'logger \\'down\\''", {"notify_down": "logger 'down'"}),
]


def test_the_tables_cover_every_key() -> None:
    assert {k for k, _, _ in GLOBAL} | {"primary"} == set(TABLES["global"])
    assert {k for k, _, _ in VIRTUAL} | {"address"} == set(TABLES["virtual"])
    assert {k for k, _, _ in SERVER} | {"address"} == set(TABLES["server"])


@pytest.mark.parametrize(("key", "value", "fields"), GLOBAL, ids=[k for k, _, _ in GLOBAL])
def test_global_key(key: str, value: str, fields: dict[str, Any]) -> None:
    extra = {"deadtime": "keepalive = 1\n", "backup_private": "primary_private = 10.11.12.1\n",
             "primary_private": "backup_private = 10.11.12.2\n", "backup_active": "backup = 10.0.0.2\n",
             "backup": "primary = 2001:db8::1\n", "nat_nmask": "nat_router = 10.11.12.254 eth1:1\n",
             "heartbeat_protocol": "virtual_router_id = 1\n",
             "preempt_delay": "preempt = 1\n", "vrrp_unicast": "backup = 10.0.0.2\n"}
    if key in VRRP_KEYS:
        extra[key] = extra.get(key, "") + "heartbeat_protocol = vrrp\n" + ("virtual_router_id = 1\n" * (
            key != "virtual_router_id"))
    text = MINIMAL.replace(HEAD, "") if key == "backup" else MINIMAL
    text = extra.get(key, "") + f"{key} = {value}\n" + text
    if key == "network" or key == "backup":
        text = text.replace("10.0.0.100 ", "2001:db8::100 " if key == "backup" else "10.0.0.100 ")
        text = text.replace("10.1.0.11", "2001:db8:1::11" if key == "backup" else "10.1.0.11")
    c = parse(text)
    assert {name: getattr(c, name) for name in fields} == fields


@pytest.mark.parametrize(("key", "value", "fields"), VIRTUAL, ids=[k for k, _, _ in VIRTUAL])
def test_virtual_key(key: str, value: str, fields: dict[str, Any]) -> None:
    extra = {"pmask": ("persistent = 60",), "sched_flags": ("scheduler = sh",), "use_regex": ("expect = HTT?P",)}
    v = parse(one_virtual(*extra.get(key, ()), f"{key} = {value}")).virtuals[0]
    assert {name: getattr(v, name) for name in fields} == fields


@pytest.mark.parametrize(("key", "value", "fields"), SERVER, ids=[k for k, _, _ in SERVER])
def test_server_key(key: str, value: str, fields: dict[str, Any]) -> None:
    s = parse(one_virtual(server=(f"{key} = {value}",))).virtuals[0].servers[0]
    assert {name: getattr(s, name) for name in fields} == fields


def test_addresses_are_normalised_ipv4_and_ipv6() -> None:
    c = parse("primary = 2001:DB8:0:0:0:0:0:1\nbackup = 2001:db8::2\n" + MINIMAL.replace(HEAD, "")
              .replace("10.0.0.100", "2001:0db8::0100").replace("10.1.0.11", "2001:db8:0:0:1::11"))
    assert (c.primary, c.virtuals[0].address, c.virtuals[0].servers[0].address) == (
        "2001:db8::1", "2001:db8::100", "2001:db8::1:0:0:11")


@pytest.mark.parametrize(("written", "address", "port"), [
    ("10.1.0.99", "10.1.0.99", None), ("10.1.0.99:http", "10.1.0.99", 80),
    ("2001:db8::99", "2001:db8::99", None), ("[2001:DB8::99]:8080", "2001:db8::99", 8080),
    ("[2001:db8::99]", "2001:db8::99", None),
])
def test_sorry_server_forms(written: str, address: str, port: int | None) -> None:
    text = one_virtual(f"sorry_server = {written}")
    if ":" in address:
        text = text.replace("10.0.0.100", "2001:db8::100").replace("10.1.0.11", "2001:db8::11")
    v = parse(text).virtuals[0]
    assert (v.sorry_server, v.sorry_port) == (address, port)


@pytest.mark.parametrize(("written", "ms"), [("1", 1000), ("0.001", 1), ("1.5", 1500), ("2.", 2000),
                                              (".25", 250), ("10.100", 10100), ("86400", 86_400_000)])
def test_times_take_fractional_seconds(written: str, ms: int) -> None:
    assert parse(one_virtual(f"timeout = {written}")).virtuals[0].timeout_ms == ms


@pytest.mark.parametrize(("line", "message"), [
    ("timeout = 0", "t.cf:4:15: timeout: expected a time above 0, found '0'"),
    ("timeout = 1e3", "t.cf:4:15: timeout: expected a time in seconds (fractions allowed), found '1e3'"),
    ("timeout = .", "t.cf:4:15: timeout: expected a time in seconds (fractions allowed), found '.'"),
    ("persistent = 1.5", "t.cf:4:18: persistent: expected a whole number, found '1.5'"),
    ("quiesce_server = true", "t.cf:4:22: quiesce_server: expected 0 or 1, found 'true'"),
    ("load_monitor = rstat", "t.cf:4:20: load_monitor: expected one of none, uptime, rup, ruptime, found 'rstat'"),
    ("protocol = sctp", "t.cf:4:16: protocol: expected one of tcp, udp, found 'sctp'"),
    ("http_status = 600", "t.cf:4:19: http_status: expected a number between 100 and 599, found 600"),
    ("http_path = health", "t.cf:4:17: http_path: expected a path starting with '/', found 'health'"),
    ("rise = 0", "t.cf:4:12: rise: expected a number between 1 and 65535, found 0"),
    ("vip_nmask = 129", "t.cf:4:17: vip_nmask: expected a netmask (255.255.255.0) or a prefix length, found '129'"),
    ("sched_flags =", "t.cf:4:18: sched_flags takes at least 1 value, found 0"),
    ("expect = HTTP 200", "t.cf:4:19: expect takes 1 value, found 2"),
    ("sorry_server = 10.1.0.99:0", "t.cf:4:20: sorry_server: expected a number between 1 and 65535, found 0"),
    ("timeout 5", "t.cf:4:13: expected '=' after 'timeout'"),
    ("timeout", "t.cf:4:12: expected '=' after 'timeout'"),
    ("shceduler = rr", "t.cf:4:5: unknown virtual key 'shceduler'; did you mean 'scheduler'?"),
    ("frobnicate = 1", "t.cf:4:5: unknown virtual key 'frobnicate'"),
    ("fwmark = 0", "t.cf:4:14: fwmark: expected a number between 1 and 4294967295, found 0"),
])
def test_value_errors_say_what_was_expected(line: str, message: str) -> None:
    assert errors(one_virtual(line)) == [message]


def test_every_error_of_the_file_is_reported_in_order() -> None:
    text = one_virtual("timeout = x", "port = 0", server=("weight = -2", "colour = red"))
    assert errors("keepalive = 0\n" + text) == [
        "t.cf:1:13: keepalive: expected a time above 0, found '0'",
        "t.cf:5:15: timeout: expected a time in seconds (fractions allowed), found 'x'",
        "t.cf:6:12: port: expected a number between 1 and 65535, found 0",
        "t.cf:9:18: weight: expected a whole number, found '-2'",
        "t.cf:10:9: unknown server key 'colour'",
    ]


def test_quoting_and_escapes() -> None:
    v = parse(one_virtual(r'''send = "a \"b\" 'c' \\ \t\r\n"''', r"""expect = 'it\'s "x" # not a comment'""",
                          'send_program = "/bin/check %h %p"  # a trailing comment')).virtuals[0]
    assert v.send == "a \"b\" 'c' \\ \t\r\n"
    assert v.expect == "it's \"x\" # not a comment"
    assert v.send_program == "/bin/check %h %p"


def test_send_and_expect_hold_255_characters_after_unescaping() -> None:
    v = parse(one_virtual('send = "' + "\\n" * 255 + '"')).virtuals[0]
    assert v.send == "\n" * 255
    assert errors(one_virtual("expect = " + "x" * 256)) == ["t.cf:4:14: expect: at most 255 characters, found 256"]


def test_equals_signs_and_trailing_comments() -> None:
    c = parse(one_virtual("http_path = /check?a=b&c=d   # the deep check", "timeout=3", server=("weight= 4",)))
    v = c.virtuals[0]
    assert (v.http_path, v.timeout_ms, v.servers[0].weight) == ("/check?a=b&c=d", 3000, 4)
    assert parse(one_virtual("expect = HTTP#1")).virtuals[0].expect == "HTTP#1"  # '#' inside a token


def test_globals_may_follow_virtuals_and_come_in_any_order() -> None:
    c = parse(MINIMAL + "deadtime = 3\nkeepalive = 1 # faster\nserial_no = 9\n")
    assert (c.keepalive_ms, c.deadtime_ms, c.serial_no) == (1000, 3000, 9)


def test_block_openings() -> None:
    c = parse(HEAD + "virtual web{\n address = 10.0.0.100 eth0:1\n server s1 {   # first\n address = 10.1.0.11\n }\n}\n")
    assert c.virtuals[0].servers[0].name == "s1"
    assert errors(HEAD + "virtual web {\n address = 10.0.0.100 eth0:1\n} extra\n") == [
        "t.cf:4:3: expected nothing after '}', found 'extra'"]
    assert errors(HEAD + "virtual {\n}\n") == ["t.cf:2:9: expected 'virtual NAME {'"]
    assert errors(HEAD + "virtual web\n") == ["t.cf:2:12: expected 'virtual NAME {'"]


def test_crlf_and_tabs() -> None:
    c = parse(MINIMAL.replace("\n", "\r\n").replace("    ", "\t"))
    assert c == parse(MINIMAL)


def test_model_is_complete_and_ordered() -> None:
    text = one_virtual() + "virtual mail {\n address = 10.0.0.100 eth0:1\n port = smtp\n" \
                           " server m2 {\n address = 10.1.0.22\n }\n server m1 {\n address = 10.1.0.21\n }\n}\n"
    c = parse(text)
    assert [v.name for v in c.virtuals] == ["web", "mail"]
    assert [s.name for s in c.virtuals[1].servers] == ["m2", "m1"]
    assert c.virtual("mail") == Virtual("mail", address="10.0.0.100", device="eth0:1", port=25,
                                        servers=(Server("m2", "10.1.0.22"), Server("m1", "10.1.0.21")))
    assert c == Config(primary="10.0.0.1", virtuals=c.virtuals)


def test_persistence_on_a_fwmark_service_is_valid() -> None:
    v = parse(one_virtual("fwmark = 80", "persistent = 600", "pmask = 255.255.255.0")).virtuals[0]
    assert (v.fwmark, v.persistent_s, v.pmask) == (80, 600, "255.255.255.0")


def test_fwmark_virtual_needs_no_address_and_inactive_virtual_neither() -> None:
    c = parse(HEAD + "virtual ftp {\n fwmark = 21\n}\nvirtual spare {\n active = 0\n}\n")
    assert [(v.address, v.fwmark) for v in c.virtuals] == [(None, 21), (None, None)]


def test_send_program_overrides_send_without_complaint() -> None:
    v = parse(one_virtual("send = hello", 'send_program = "/bin/check %h"')).virtuals[0]
    assert (v.send, v.send_program) == ("hello", "/bin/check %h")


def test_ipv6_tunnel_may_cross_ip_versions_but_nat_may_not() -> None:
    text = one_virtual().replace("10.1.0.11", "2001:db8::11")
    assert parse("network = tunnel\n" + text).virtuals[0].servers[0].address == "2001:db8::11"
    assert errors(text) == ["t.cf:5:19: server s1 is IPv6 but the VIP of web is IPv4: NAT cannot translate between them"]


def test_nat_router_is_optional_in_nat_mode() -> None:
    assert parse(MINIMAL).nat_router is None


def test_issue_and_error_text() -> None:
    with pytest.raises(ConfigError) as info:
        parse("primary = x\nkeepalive = y\n", "a/lvs.cf")
    assert str(info.value) == ("a/lvs.cf:1:11: primary: expected an IPv4 or IPv6 address, found 'x'\n"
                               "a/lvs.cf:2:13: keepalive: expected a time in seconds (fractions allowed), found 'y'")
    assert isinstance(info.value.issues, tuple)
    assert (info.value.issues[0].line, info.value.issues[0].col) == (1, 11)


def test_every_key_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent.parent / "docs" / "CONFIG.md").read_text()
    for block in TABLES.values():
        for name in block:
            assert f"`{name}`" in doc, name
