"""adapters/vips.py in namespace `a` of the `pair` fixture (pyroute2 NetNS),
checked against `ip -j addr` there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.vips import VipError, Vips
from engine.events import AddVip, DelVip


@pytest.fixture
def vips(pair: Any) -> Iterator[Vips]:
    v = Vips(pair.a)
    try:
        yield v
    finally:
        v.close()


def addrs(pair: Any, dev: str = "va") -> dict[str, dict[str, Any]]:
    out = pair.run(pair.a, "ip", "-j", "addr", "show", "dev", dev).stdout
    return {a["local"]: a for link in json.loads(out) for a in link["addr_info"]}


def test_ipv4_add_is_labelled_idempotent_and_delete_too(pair: Any, vips: Vips) -> None:
    add = AddVip("10.9.0.100", 24, "va", "va:1")
    vips.add(add)
    vips.add(add)  # present already: fine
    got = addrs(pair)["10.9.0.100"]
    assert (got["prefixlen"], got["label"]) == (24, "va:1")
    assert vips.held(["10.9.0.100", "10.9.0.101", "10.9.0.1"]) == {"10.9.0.100", "10.9.0.1"}
    assert vips.delete(DelVip("10.9.0.100", 24, "va", "va:1")) is True
    assert vips.delete(DelVip("10.9.0.100", 24, "va", "va:1")) is False  # absent: fine, and said
    assert "10.9.0.100" not in addrs(pair)
    assert vips.held(["10.9.0.100"]) == set()


def test_an_invalid_alias_label_is_left_out(pair: Any, vips: Vips) -> None:
    vips.add(AddVip("10.9.0.101", 32, "va", "eth0:1"))  # not this device's alias
    vips.add(AddVip("10.9.0.102", 32, "va", "va:12345678901234"))  # too long
    got = addrs(pair)
    assert got["10.9.0.101"]["label"] == "va" and got["10.9.0.102"]["label"] == "va"


def test_ipv6_is_usable_at_once(pair: Any, vips: Vips) -> None:
    vips.add(AddVip("FD09:0::64", 128, "va", "va:1"))  # normalised; label ignored for IPv6
    vips.add(AddVip("fd09::64", 128, "va", "va"))
    got = addrs(pair)["fd09::64"]
    assert got["prefixlen"] == 128
    assert not got.get("tentative") and not got.get("dadfailed")
    assert vips.held(["fd09:0:0::64"]) == {"fd09:0:0::64"}
    assert vips.delete(DelVip("fd09::64", 128, "va", "va")) is True
    assert vips.delete(DelVip("fd09::64", 128, "va", "va")) is False
    assert "fd09::64" not in addrs(pair)


def test_delete_removes_the_address_whatever_its_prefix(pair: Any, vips: Vips) -> None:
    vips.add(AddVip("10.9.0.103", 24, "va", "va"))
    vips.delete(DelVip("10.9.0.103", 32, "va", "va"))  # vip_nmask changed by a reload
    assert "10.9.0.103" not in addrs(pair)


def test_real_failures_raise_a_clear_vip_error(pair: Any, vips: Vips) -> None:
    with pytest.raises(VipError, match="no such device eth9$"):
        vips.add(AddVip("10.9.0.104", 32, "eth9", "eth9:1"))
    with pytest.raises(VipError, match="not an IP address"):
        vips.add(AddVip("10.9.0.300", 32, "va", "va"))
    with pytest.raises(VipError, match="cannot add VIP 10.9.0.105/33 on va"):
        vips.add(AddVip("10.9.0.105", 33, "va", "va"))
    assert vips.delete(DelVip("10.9.0.104", 32, "eth9", "eth9:1")) is False  # no device, no address: fine


def test_works_from_inside_a_running_event_loop(pair: Any, vips: Vips) -> None:
    import asyncio

    async def main() -> set[str]:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, vips.add, AddVip("10.9.0.106", 32, "va", "va:6"))
        vips.add(AddVip("10.9.0.107", 32, "va", "va:7"))  # on the loop's own thread too
        return await loop.run_in_executor(None, vips.held, ["10.9.0.106", "10.9.0.107"])

    assert asyncio.run(main()) == {"10.9.0.106", "10.9.0.107"}
