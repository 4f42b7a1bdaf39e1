"""genl.py's encoders agree with each other, and its decoders read what it encodes.

The real kernel's answers are tested in the guest (tests/kernel/guest/); here:
the fast destination encoder is byte for byte the generic one (the order of
attributes included), for every forwarding method, both families and each
command, and the dump decoders give back the fields.
"""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.dataplane import genl
from adapters.dataplane.ipvs import calls, encode_op, key_args
from engine.events import AddDest, AddService, DelDest, EditDest, EditService
from engine.table import Dest, DestKey, Service, ServiceKey

addresses = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)
)
keys = st.one_of(
    st.builds(lambda a, p, proto: ServiceKey(proto, str(a), p, 0, 4), st.ip_addresses(v=4),
              st.integers(0, 65535), st.sampled_from(["tcp", "udp"])),
    st.builds(lambda a, p: ServiceKey("tcp", str(a), p, 0, 6), st.ip_addresses(v=6), st.integers(0, 65535)),
    st.builds(lambda m, f: ServiceKey("fwmark", "", 0, m, f), st.integers(1, 2**32 - 1), st.sampled_from([4, 6])),
)
dests = st.builds(lambda a, p, w, f: Dest(DestKey(a, p), w, f), addresses, st.integers(0, 65535),
                  st.integers(0, 65535), st.sampled_from(["masq", "route", "tunnel"]))


@settings(max_examples=300, deadline=None)
@given(keys, dests)
def test_fast_dest_encoding_is_the_generic_encoding(key: ServiceKey, dest: Dest) -> None:
    for op in (AddDest(key, dest), EditDest(key, dest), DelDest(key, dest.key)):
        assert encode_op(op) == genl.encode(*calls(op)), op


def _nested(payload: bytes, which: int) -> bytes:
    found = genl._cmd_attr(payload, which)
    assert found is not None
    return found


@settings(max_examples=200, deadline=None)
@given(keys, dests)
def test_dest_decoders_read_back_the_encoded_fields(key: ServiceKey, dest: Dest) -> None:
    payload = encode_op(AddDest(key, dest))
    nested = _nested(payload, genl.CMD_ATTR_DEST)
    method = {"masq": 0, "tunnel": 2, "route": 3}[dest.forward]
    family = socket.AF_INET6 if ":" in dest.key.address else socket.AF_INET
    assert genl.dest_fields(nested, family) == (dest.key.address, dest.key.port, method, dest.weight)
    slow = genl.decode_dest(nested, family)
    assert slow.get_attr("IPVS_DEST_ATTR_ADDR") == dest.key.address
    assert slow.get_attr("IPVS_DEST_ATTR_WEIGHT") == dest.weight


def test_service_encoding_decodes_back() -> None:
    key = ServiceKey("udp", "2001:db8::10", 53, 0, 6)
    service = Service(key, "sh", ("sh-port",), 300, "64")
    for op in (AddService(service), EditService(service)):
        payload = encode_op(op)
        cmd, version = struct.unpack_from("=BB", payload)
        assert (cmd, version) == ({"add": 1, "set": 2}[calls(op)[1]], 1)
        got = genl.decode_service(_nested(payload, genl.CMD_ATTR_SERVICE))
        assert got.get_attr("IPVS_SVC_ATTR_AF") == socket.AF_INET6
        assert got.get_attr("IPVS_SVC_ATTR_ADDR") == "2001:db8::10"
        assert got.get_attr("IPVS_SVC_ATTR_PORT") == 53
        assert got.get_attr("IPVS_SVC_ATTR_SCHED_NAME") == "sh"
        assert got.get_attr("IPVS_SVC_ATTR_TIMEOUT") == 300
        assert got.get_attr("IPVS_SVC_ATTR_FLAGS")["flags"] & 1  # persistent


def test_key_fields_alone_name_the_service() -> None:
    key = ServiceKey("fwmark", "", 0, 7, 4)
    attrs = genl.decode_service(genl.service_attr(key_args(key))[4:])
    assert attrs == {"IPVS_SVC_ATTR_AF": socket.AF_INET, "IPVS_SVC_ATTR_FWMARK": 7}


def test_unknown_command_is_refused() -> None:
    with pytest.raises(KeyError):
        genl.encode("dest", "update", {}, {})


def test_refusal_names_a_missing_scheduler_only_for_services() -> None:
    import errno

    from adapters.dataplane.ipvs import refusal

    key = ServiceKey("tcp", "192.0.2.1", 80)
    edit = EditDest(key, Dest(DestKey("10.1.0.99", 80), 1))
    assert refusal(edit, errno.ENOENT).code == "ENOENT"  # a missing destination
    add = AddService(Service(key, "twos"))
    err = refusal(add, errno.ENOENT)
    assert err.code == "EINVAL" and "twos" in str(err) and err.op == add


def _stats(fields: dict[int, int], wide: bool) -> bytes:
    """IPVS_DEST_ATTR_STATS (conns and packets u32, bytes u64, as
    ip_vs_genl_fill_stats) or _STATS64 (every field u64, with a pad)."""
    out = b""
    for kind, value in fields.items():
        fmt = "=Q" if wide or kind in (4, 5) else "=I"
        out += genl._nla(kind, struct.pack(fmt, value))
    if wide:
        out += genl._nla(11, b"")  # IPVS_STATS_ATTR_PAD
    return out


def _dumped_dest(address: str, port: int, stats: bytes | None, stats64: bytes | None) -> bytes:
    """One IPVS_CMD_NEW_DEST dump reply as ip_vs_genl_fill_dest lays it out."""
    raw, family = genl._packed(address)
    attrs = (genl._nla(1, raw) + genl._nla(2, struct.pack("!H", port)) + genl._nla(3, struct.pack("=I", 0))
             + genl._nla(4, struct.pack("=I", 5)) + genl._nla(5, struct.pack("=I", 0))
             + genl._nla(6, struct.pack("=I", 0)) + genl._nla(7, struct.pack("=I", 3))
             + genl._nla(8, struct.pack("=I", 17)) + genl._nla(9, struct.pack("=I", 2)))
    if stats is not None:
        attrs += genl._nla(10 | 0x8000, stats)
    attrs += genl._nla(11, struct.pack("=H", family))
    if stats64 is not None:
        attrs += genl._nla(12 | 0x8000, stats64)
    return struct.pack("=BBH", 5, 1, 0) + genl._nla(genl.CMD_ATTR_DEST | 0x8000, attrs)


@pytest.mark.parametrize("address", ["10.0.0.7", "2001:db8::7"])
def test_dest_counters_decode_active_inactive_and_stats64(address: str) -> None:
    big = 2**40 + 3  # only a 64-bit field holds it
    stats = _stats({1: 90, 2: 1000, 3: 800, 4: 70000, 5: 9000, 6: 1}, wide=False)
    stats64 = _stats({1: big, 2: 1001, 3: 801, 4: 70001, 5: 9001, 6: 1}, wide=True)
    nested = _nested(_dumped_dest(address, 8080, stats, stats64), genl.CMD_ATTR_DEST)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    got = genl.dest_counters(nested, family)
    assert got == (address, 8080, {"active": 3, "inactive": 17, "total": big, "inpkts": 1001, "outpkts": 801,
                                   "inbytes": 70001, "outbytes": 9001})


def test_dest_counters_from_the_32_bit_stats_or_none() -> None:
    stats = _stats({1: 90, 2: 1000, 3: 800, 4: 70000, 5: 9000}, wide=False)
    nested = _nested(_dumped_dest("10.0.0.8", 80, stats, None), genl.CMD_ATTR_DEST)
    assert genl.dest_counters(nested, socket.AF_INET)[2] == {
        "active": 3, "inactive": 17, "total": 90, "inpkts": 1000, "outpkts": 800, "inbytes": 70000, "outbytes": 9000}
    bare = _nested(_dumped_dest("10.0.0.8", 80, None, None), genl.CMD_ATTR_DEST)
    assert genl.dest_counters(bare, socket.AF_INET)[2]["total"] == 0  # a field not sent is 0


def test_ipvs_connections_keys_counters_by_service_and_destination() -> None:
    from adapters.dataplane import Counters
    from adapters.dataplane.ipvs import Ipvs

    key = ServiceKey("tcp", "192.168.26.10", 80, 0, 4)
    service = genl.decode_service(genl.service_attr({**key_args(key), "sched_name": "wlc"})[4:])
    counters = {"active": 3, "inactive": 17, "total": 90, "inpkts": 0, "outpkts": 0, "inbytes": 0, "outbytes": 0}

    class FakeNetlink:
        def services(self) -> list[genl.Attrs]:
            return [service]

        def dest_counters(self, fields: dict[str, object]) -> list[tuple[str, int, dict[str, int]]]:
            assert fields == key_args(key)
            return [("10.11.12.11", 80, counters)]

        def close(self) -> None:
            pass

    class NoTable:
        def service(self, command: str, service: object = None) -> list[object]:
            return []

    ipvs = Ipvs(sock=NoTable())
    assert ipvs.connections() is None  # a fake IPVS socket: no counters
    ipvs.fast = ipvs.counting = FakeNetlink()  # type: ignore[assignment]
    assert ipvs.connections() == {(key, DestKey("10.11.12.11", 80)): Counters(3, 17, 90)}
