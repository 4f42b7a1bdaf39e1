"""render(): the model back into lvs.cf, keeping what a person wrote."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings, strategies as st

from engine.config import parse, render
from engine.config.keys import SCHED_FLAGS
from engine.model import SCHEDULERS, Config, Server, Virtual

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "lvs.cf"


def example() -> tuple[str, Config]:
    text = EXAMPLE.read_text()
    return text, parse(text, "lvs.cf")


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.splitlines(), after.splitlines()
    assert len(a) == len(b)
    return [(x, y) for x, y in zip(a, b) if x != y]


def test_unchanged_example_renders_byte_for_byte() -> None:
    text, config = example()
    assert render(config) == text
    assert parse(render(config)) == config
    assert "# HTTPS with persistence" in render(config)


def test_byte_for_byte_also_with_crlf_odd_spacing_and_no_final_newline() -> None:
    text = "# head\r\nprimary=10.0.0.1\r\n\r\nvirtual  web{   # the site\r\n\taddress   =  10.0.0.100   eth0:1\r\n" \
           "\tport = http\r\n\tsend = 'x\\ty'\r\n}"
    assert render(parse(text)) == text


def test_mixed_line_endings_render_byte_for_byte() -> None:
    """Found by fuzzing (docs/FUZZING.md): the file's first line ending used to be applied to every line."""
    for text in ("primary = 10.0.0.1\r\nkeepalive = 1\n", "primary = 10.0.0.1\nkeepalive = 1\r\n\r\n\n",
                 "# a\r\nprimary = 10.0.0.1\nvirtual v {\r\n active = 0\n}"):
        config = parse(text)
        assert render(config) == text
        assert render(replace(config, keepalive_ms=1500)).count("\r\n") == text.count("\r\n") + (
            text.startswith("# a"))  # a key the model gained is written in the style of the first line


def test_changing_one_weight_changes_one_line() -> None:
    text, config = example()
    http = config.virtuals[0]
    servers = (http.servers[0], replace(http.servers[1], weight=7), *http.servers[2:])
    changed = replace(config, virtuals=(replace(http, servers=servers), *config.virtuals[1:]))
    assert changed_lines(text, render(changed)) == [("         weight = 1", "         weight = 7")]
    assert parse(render(changed)) == changed


def test_a_changed_value_keeps_its_key_spelling_and_trailing_comment() -> None:
    text = "primary = 10.0.0.1\nkeepalive=2   # seconds\ndeadtime = 10\n"
    config = parse(text)
    assert render(replace(config, keepalive_ms=1500)) == "primary = 10.0.0.1\nkeepalive=1.5   # seconds\ndeadtime = 10\n"


def test_unchanged_values_keep_their_spelling() -> None:
    text = "primary = 2001:DB8::1\nkeepalive = 2.000\nheartbeat_port = 0539\n"
    config = parse(text)
    assert (config.primary, config.keepalive_ms, config.heartbeat_port) == ("2001:db8::1", 2000, 539)
    assert render(replace(config, serial_no=2)) == text + "serial_no = 2\n"


def test_bumping_serial_no_changes_one_line() -> None:
    text, config = example()
    out = render(replace(config, serial_no=config.serial_no + 1))
    assert changed_lines(text, out) == [("serial_no = 37", "serial_no = 38")]


def test_added_keys_go_after_the_last_key_of_their_block() -> None:
    text, config = example()
    http = config.virtuals[0]
    grown = replace(config, preempt=True, virtuals=(replace(http, rise=3), *config.virtuals[1:]))
    out = render(grown).splitlines()
    assert out[out.index("syncdaemon = 0") + 1] == "preempt = 1"
    assert out[out.index("     sorry_server = 10.11.12.99") + 1] == "     rise = 3"
    assert parse(render(grown)) == grown


def test_removed_key_line_is_dropped() -> None:
    text, config = example()
    http = config.virtuals[0]
    out = render(replace(config, virtuals=(replace(http, sorry_server=None), *config.virtuals[1:])))
    assert "sorry_server" not in out
    assert len(out.splitlines()) == len(text.splitlines()) - 1


def test_added_and_removed_blocks() -> None:
    _, config = example()
    http = config.virtuals[0]
    grown = replace(http, servers=http.servers[:1] + (Server("web9", "10.11.12.19", weight=3),), quiesce_server=True)
    extra = Virtual("DNS", address="192.168.26.12", device="eth0:3", port=53, protocol="udp",
                    servers=(Server("dns1", "10.11.12.53"),))
    changed = replace(config, virtuals=(grown, config.virtuals[2], extra), preempt=True)
    text = render(changed)
    assert "# HTTPS with persistence" not in text  # the removed virtual's comment went with it
    assert "# The public web site" in text
    assert "\n\n\n" not in text
    assert "     server web9 {\n         address = 10.11.12.19\n         active = 1\n         weight = 3\n     }\n}" in text
    assert text.endswith("virtual DNS {\n     active = 1\n     address = 192.168.26.12 eth0:3\n     protocol = udp\n"
                         "     port = 53\n     scheduler = wlc\n     server dns1 {\n         address = 10.11.12.53\n"
                         "         active = 1\n         weight = 1\n     }\n}\n")
    assert parse(text) == changed


def test_reordered_virtuals_and_servers_keep_their_comments_and_the_model_order() -> None:
    _, config = example()
    http, https, ftp = config.virtuals
    changed = replace(config, virtuals=(ftp, replace(http, servers=http.servers[::-1]), https))
    text = render(changed)
    assert parse(text) == changed
    assert text.index("# FTP: control") < text.index("virtual FTP") < text.index("# The public web site")


def test_canonical_rendering_without_a_source() -> None:
    config = Config(primary="10.0.0.1", keepalive_ms=500, deadtime_ms=2250, virtuals=(
        Virtual("web", address="2001:db8::1", device="eth0", send="GET /\r\n", sched_flags=("sh-port",),
                scheduler="sh", sorry_server="2001:db8::99", sorry_port=8080,
                servers=(Server("s1", "2001:db8::11", notify_up="logger 'up'"),)),))
    text = render(config)
    assert text == (
        "serial_no = 0\nprimary = 10.0.0.1\nbackup_active = 0\nkeepalive = 0.5\ndeadtime = 2.25\nnetwork = nat\n\n"
        "virtual web {\n    active = 1\n    address = 2001:db8::1 eth0\n    sorry_server = [2001:db8::99]:8080\n"
        "    protocol = tcp\n    port = 80\n    scheduler = sh\n    send = \"GET /\\r\\n\"\n    sched_flags = sh-port\n"
        "    server s1 {\n        address = 2001:db8::11\n        active = 1\n        weight = 1\n"
        "        notify_up = \"logger \\'up\\'\"\n    }\n}\n")
    assert parse(text) == config


# ------------------------------------------------------------------ properties

names = st.from_regex(r"[A-Za-z][A-Za-z0-9_.:\[\]-]{0,8}", fullmatch=True)
ipv4 = st.ip_addresses(v=4).filter(lambda a: not a.is_unspecified).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda a: not a.is_unspecified).map(lambda a: a.compressed)
texts = st.text(st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("\r\n\t"), max_size=30)
commands = st.text(st.characters(min_codepoint=32, max_codepoint=126) | st.just("\t"), max_size=30)  # one line
paths = st.from_regex(r"/[a-z0-9/._-]{1,20}", fullmatch=True)
times_ms = st.integers(1, 86_400_000)  # at most a day
devices = st.sampled_from(["eth0", "eth0:1", "eth1:12", "bond0.100", "ens3"])
maybe = st.none


@st.composite
def servers(draw: st.DrawFn, family: st.SearchStrategy[str]) -> Server:
    return Server(
        name=draw(names), address=draw(family), active=draw(st.booleans()), weight=draw(st.integers(0, 65535)),
        port=draw(maybe() | st.integers(1, 65535)), notify_up=draw(maybe() | commands),
        notify_down=draw(maybe() | commands),
    )


@st.composite
def virtuals(draw: st.DrawFn, index: int, network: str) -> Virtual:
    v6 = draw(st.booleans())
    family = ipv6 if v6 else ipv4
    scheduler = draw(st.sampled_from(SCHEDULERS))
    flags: tuple[str, ...] = ()
    if scheduler in ("sh", "mh"):
        own = [f for f in SCHED_FLAGS if f.startswith(scheduler + "-") or f.startswith("flag-")]
        flags = tuple(draw(st.lists(st.sampled_from(own), unique=True, max_size=3)))
    persistent = draw(st.sampled_from([0, 0, 1, 300, 86400]))
    mask = st.integers(0, 128 if v6 else 32).map(str)
    if not v6:
        mask = mask | st.integers(0, 32).map(lambda n: str(ipaddress.IPv4Network(f"0.0.0.0/{n}").netmask))
    fwmark = draw(maybe() | st.just(index + 1))
    protocol = draw(st.sampled_from(["tcp", "udp"]))
    use_regex = draw(st.booleans())
    address = draw(family) if fwmark is None or draw(st.booleans()) else None
    sorry = draw(maybe() | family)
    return Virtual(
        name=draw(names.map(lambda n: f"{n}{index}")), active=draw(st.booleans()),
        address=address, device=draw(devices) if address else None,
        vip_nmask=draw(maybe() | mask), sorry_server=sorry, sorry_port=draw(maybe() | st.integers(1, 65535)) if sorry else None,
        fwmark=fwmark, protocol=protocol,  # type: ignore[arg-type]
        port=1000 + index, scheduler=scheduler, sched_flags=flags, persistent_s=persistent,
        pmask=draw(maybe() | mask) if persistent else None,
        send=draw(maybe() | texts), expect=draw(maybe() | (st.just("HTT?P.*") if use_regex else texts)), use_regex=use_regex,
        send_program=draw(maybe() | commands), load_monitor=draw(st.sampled_from(["none", "uptime", "rup", "ruptime"])),
        timeout_ms=draw(times_ms), reentry_ms=draw(st.integers(0, 86_400_000)), quiesce_server=draw(st.booleans()),
        rise=draw(maybe() | st.integers(1, 9)), fall=draw(maybe() | st.integers(1, 9)),
        check_interval_ms=draw(maybe() | times_ms),
        check=draw(st.sampled_from(["auto", "tcp", "udp", "none"] + (["http", "https"] if protocol == "tcp" else []))),
        http_path=draw(paths), http_status=draw(st.integers(100, 599)), quorum=draw(st.integers(0, 99)),
        hysteresis=draw(st.integers(0, 9)), load_command=draw(maybe() | commands),
        servers=tuple(draw(st.lists(servers(family), max_size=3, unique_by=lambda s: s.name))),
    )


@st.composite
def configs(draw: st.DrawFn) -> Config:
    family = draw(st.sampled_from([ipv4, ipv6]))
    keepalive = draw(st.integers(1, 10**6))  # and deadtime up to 2 * 10**6 ms: within a day
    network = draw(st.sampled_from(["nat", "direct", "tunnel"]))
    nat_router = draw(maybe() | ipv4)
    private = draw(st.booleans())
    primary = draw(family)
    backup = draw(family.filter(lambda a: a != primary))
    pformat = draw(st.sampled_from(["shoal", "piranha"]))
    has_backup = draw(st.booleans())
    backup_active = has_backup and draw(st.booleans())
    vrrp = draw(st.booleans())
    if vrrp:  # keys VRRP refuses are left at their defaults; the advert interval fits the version
        pformat = "shoal"
        version = 2 if family is ipv4 and draw(st.booleans()) else 3
        keepalive = draw(st.integers(1, 255)) * 1000 if version == 2 else draw(st.integers(1, 4095)) * 10
        preempt = draw(st.booleans())
        vrrp_fields = dict(
            heartbeat_protocol="vrrp", vrrp_version=version, virtual_router_id=draw(st.integers(1, 255)),
            priority=draw(maybe() | st.integers(1, 254)), preempt=preempt,
            preempt_delay_ms=draw(st.integers(0, 1_000_000)) if preempt else 0,
            vrrp_unicast=has_backup and draw(st.booleans()),
            vrrp_v3_checksum_as_v2=version == 3 and draw(st.booleans()))
    else:
        vrrp_fields = dict(preempt=draw(st.booleans()))
    return Config(
        serial_no=draw(st.integers(0, 2**64 - 1)), primary=primary, backup=backup if has_backup else None,
        primary_private="10.11.12.1" if private else None, backup_private="10.11.12.2" if private else None,
        heartbeat=backup_active or draw(st.booleans()), heartbeat_port=draw(st.integers(1, 65535)),
        keepalive_ms=keepalive, deadtime_ms=keepalive + draw(st.integers(1, 10**6)),
        network=network, nat_router=nat_router, nat_router_device=draw(devices) if nat_router else None,  # type: ignore[arg-type]
        nat_nmask=draw(maybe() | st.just("255.255.255.0")) if nat_router else None,
        debug_level=draw(st.sampled_from(["NONE", "verbose", "3"])), rsh_command=draw(st.sampled_from(["rsh", "ssh"])),
        active_cmd=draw(maybe() | commands), inactive_cmd=draw(maybe() | commands),
        monitor_links=draw(st.booleans()), hard_shutdown=True, syncdaemon=draw(st.booleans()),
        syncd_iface=draw(st.sampled_from(["eth0", "eth2", "bond0"])), syncd_id=draw(st.integers(0, 255)),
        tcp_timeout_s=draw(st.integers(0, 10**6)), tcpfin_timeout_s=draw(st.integers(0, 999)),
        udp_timeout_s=draw(st.integers(0, 999)),
        heartbeat_format=pformat,  # type: ignore[arg-type]
        heartbeat_key_file=draw(maybe() | paths) if pformat == "shoal" and not vrrp else None,
        heartbeat_min_ttl=draw(st.sampled_from([0, 1, 2, 64, 254, 255])),  # 0: the format's default
        arp_count=draw(st.integers(1, 1000)), arp_interval_ms=draw(times_ms), notify_fifo=draw(maybe() | paths),
        command_timeout_ms=draw(times_ms),
        backup_active=backup_active, **vrrp_fields,  # type: ignore[arg-type]
        virtuals=tuple(draw(virtuals(i, network)) for i in draw(st.lists(st.integers(0, 5), unique=True, max_size=4))),
    )


@settings(max_examples=300, deadline=None)
@given(configs())
def test_render_then_parse_is_identity(config: Config) -> None:
    text = render(config)
    parsed = parse(text)
    assert parsed == config
    assert render(parsed) == text  # and rendering what was parsed keeps the text


@settings(max_examples=200, deadline=None)
@given(configs(), configs())
def test_rendering_any_model_into_any_document_parses_back_to_that_model(old: Config, new: Config) -> None:
    doc = parse(render(old)).source
    text = render(replace(new, source=doc))
    assert parse(text) == new


def test_a_new_virtual_first_in_the_model_goes_before_the_file_s_virtuals() -> None:
    text = "primary = 10.0.0.1\n\n# web\nvirtual web {\n  address = 10.0.0.100 eth0:1\n}\n"
    config = parse(text)
    first = Virtual("dns", address="10.0.0.53", device="eth0:2", protocol="udp", port=53)
    out = render(replace(config, virtuals=(first, *config.virtuals)))
    assert out == ("primary = 10.0.0.1\n\nvirtual dns {\n  active = 1\n  address = 10.0.0.53 eth0:2\n  protocol = udp\n"
                   "  port = 53\n  scheduler = wlc\n}\n\n# web\nvirtual web {\n  address = 10.0.0.100 eth0:1\n}\n")
    assert parse(out) == replace(config, virtuals=(first, *config.virtuals))
