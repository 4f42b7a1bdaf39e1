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
