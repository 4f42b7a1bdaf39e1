"""ipvsadm text formats: restore lines, -Sn, -Ln, and parsing -Sn back."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from adapters.dataplane.ipvsadm import canonical, format_ln, format_save, parse_save, restore_line
from engine.events import AddDest, AddService, DelDest, DelService, EditDest, EditService
from engine.table import Dest, DestKey, Service, ServiceEntry, ServiceKey

WEB = ServiceKey("tcp", "10.0.0.1", 80)
DNS6 = ServiceKey("udp", "2001:db8::1", 53, family=6)
FWM = ServiceKey("fwmark", "", 0, fwmark=5)
FWM6 = ServiceKey("fwmark", "", 0, fwmark=6, family=6)
RS1 = DestKey("10.1.0.11", 80)


def test_restore_lines() -> None:
    assert restore_line(AddService(Service(WEB))) == "-A -t 10.0.0.1:80 -s wlc"
    assert restore_line(AddDest(WEB, Dest(RS1, 1))) == "-a -t 10.0.0.1:80 -r 10.1.0.11:80 -m -w 1"
    assert restore_line(EditDest(WEB, Dest(RS1, 0, "route"))) == "-e -t 10.0.0.1:80 -r 10.1.0.11:80 -g -w 0"
    assert restore_line(DelDest(WEB, RS1)) == "-d -t 10.0.0.1:80 -r 10.1.0.11:80"
    assert restore_line(DelService(WEB)) == "-D -t 10.0.0.1:80"
    assert (restore_line(EditService(Service(WEB, "sh", ("sh-port", "sh-fallback"), 300, "255.255.255.0")))
            == "-E -t 10.0.0.1:80 -s sh -p 300 -M 255.255.255.0 -b sh-fallback,sh-port")  # -b last, as ipvsadm -Sn
    assert restore_line(AddService(Service(DNS6, "rr", (), 60, "64"))) == "-A -u [2001:db8::1]:53 -s rr -p 60 -M 64"
    assert restore_line(AddService(Service(FWM, "rr"))) == "-A -f 5 -s rr"
    assert restore_line(AddService(Service(FWM6, "rr", (), 10))) == "-A -f 6 -6 -s rr -p 10"
    assert restore_line(AddDest(FWM6, Dest(DestKey("2001:db8::11", 0), 2, "tunnel"))) == \
        "-a -f 6 -6 -r [2001:db8::11]:0 -i -w 2 --tun-type ipip"  # as ipvsadm -Sn prints a tunnel
    # the all-ones mask is the default and not printed, as ipvsadm does
    assert restore_line(AddService(Service(WEB, "wlc", (), 30, "32"))) == "-A -t 10.0.0.1:80 -s wlc -p 30"


TABLE = {
    WEB: ServiceEntry(Service(WEB, "wlc", (), 300, "255.255.255.0"),
                      {RS1: Dest(RS1, 3), DestKey("10.1.0.2", 80): Dest(DestKey("10.1.0.2", 80), 0)}),
    FWM: ServiceEntry(Service(FWM, "rr"), {DestKey("10.1.0.11", 0): Dest(DestKey("10.1.0.11", 0), 1, "route")}),
    DNS6: ServiceEntry(Service(DNS6, "sh", ("sh-port",)), {}),
}


def test_save_sorted_as_ipvsadm_and_parsed_back() -> None:
    text = format_save(TABLE)
    assert text == (
        "-A -t 10.0.0.1:80 -s wlc -p 300 -M 255.255.255.0\n"
        "-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 0\n"
        "-a -t 10.0.0.1:80 -r 10.1.0.11:80 -m -w 3\n"
        "-A -u [2001:db8::1]:53 -s sh -b sh-port\n"
        "-A -f 5 -s rr\n"
        "-a -f 5 -r 10.1.0.11:0 -g -w 1\n"
    )
    assert parse_save(text) == canonical(TABLE)


def test_ln_layout() -> None:
    lines = format_ln(TABLE).splitlines()
    assert lines[:3] == [
        "IP Virtual Server version 1.2.1 (size=4096)",
        "Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
    ]
    assert lines[3] == "TCP  10.0.0.1:80 wlc persistent 300 mask 255.255.255.0"
    assert lines[4] == "  -> 10.1.0.2:80                  Masq    0      0          0         "
    assert lines[6] == "UDP  [2001:db8::1]:53 sh (sh-port)"
    assert lines[7] == "FWM  5 rr"
    assert lines[8].startswith("  -> 10.1.0.11:0                  Route   1 ")


def test_parse_real_ipvsadm_output_and_errors() -> None:
    text = "-A -t 192.168.1.1:80 -s wrr -p 60\n-a -t 192.168.1.1:80 -r 10.0.0.5:8080 -g -w 5\n-A -f 9 -6 -s mh -b mh-port\n"
    table = parse_save(text)
    web = table[ServiceKey("tcp", "192.168.1.1", 80)]
    assert web.service.persistent_s == 60 and web.service.pmask is None
    assert web.dests[DestKey("10.0.0.5", 8080)] == Dest(DestKey("10.0.0.5", 8080), 5, "route")
    assert table[ServiceKey("fwmark", "", 0, 9, 6)].service.sched_flags == ("mh-port",)
    with pytest.raises(ValueError, match="line 1"):
        parse_save("-X -t 1.2.3.4:80\n")
    with pytest.raises(ValueError, match="unknown service"):
        parse_save("-a -t 1.2.3.4:80 -r 10.0.0.1:80 -m -w 1\n")


addresses = st.integers(1, 2**24).map(lambda n: f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")


@st.composite
def tables(draw: st.DrawFn) -> dict[ServiceKey, ServiceEntry]:
    out: dict[ServiceKey, ServiceEntry] = {}
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            key = ServiceKey("fwmark", "", 0, draw(st.integers(1, 2**31)))
        else:
            key = ServiceKey(draw(st.sampled_from(["tcp", "udp"])), draw(addresses), draw(st.integers(1, 65535)))
        sched = draw(st.sampled_from(["rr", "wlc", "sh", "mh", "lblc"]))
        flags = draw(st.sampled_from([(), (f"{sched}-port",)])) if sched in ("sh", "mh") else ()
        persistent = draw(st.sampled_from([0, 0, 300]))
        pmask = draw(st.sampled_from([None, "255.255.0.0"])) if persistent else None
        dests = {}
        for _ in range(draw(st.integers(0, 4))):
            dkey = DestKey(draw(addresses), draw(st.integers(0, 65535)))
            dests[dkey] = Dest(dkey, draw(st.integers(0, 65535)), draw(st.sampled_from(["masq", "route", "tunnel"])))
        out[key] = ServiceEntry(Service(key, sched, flags, persistent, pmask), dests)
    return out


@given(tables())
def test_save_parse_round_trip(table: dict[ServiceKey, ServiceEntry]) -> None:
    assert parse_save(format_save(table)) == canonical(table)
