"""monitor_links and debug_level on a real daemon (issue 10, part 5).

One `shoal run` (dry-run dataplane: the engine's table goes nowhere, its
VIPs onto the namespace's real interfaces) on a single router with
`monitor_links = 1` and `debug_level = LOW`.  The link of its VIP
interface eth0 is cut from the other end of the veth (carrier lost, as a
pulled cable): the router gives the VIP up; the link returns: it takes the
VIP back.  The log says so in operator lines, and with debug_level every
input the engine stepped on.

    router 10.70.0.1/24 eth0  <-veth->  peer (eth0)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters import netns
from adapters.lab import daemons

CONFIG = """serial_no = 1
primary = 10.70.0.1
backup_active = 0
network = nat
monitor_links = 1
debug_level = LOW
virtual web {
    address = 10.70.0.100 eth0:1
    vip_nmask = 255.255.255.0
    port = 80
    check = none
    server rs1 {
        address = 10.70.0.11
    }
}
"""


def _until(what: str, test: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = test()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def _vip_on(ns: str) -> bool:
    return "10.70.0.100/24" in netns.ip("-n", ns, "-o", "addr", "show", "dev", "eth0").stdout


def test_a_router_whose_vip_link_goes_down_gives_the_vip_up_and_takes_it_back(tmp_path: Path) -> None:
    netns.require()
    with netns.Topology() as topo:
        router, peer = topo.namespace("r"), topo.namespace("p")
        topo.veth(router, "eth0", peer, "eth0")
        topo.address(router, "eth0", "10.70.0.1/24")
        config = tmp_path / "lvs.cf"
        config.write_text(CONFIG)
        d = daemons.start(router, config, tmp_path / "state", tmp_path / "daemon.log", dataplane="dry-run",
                          args=["--log-format", "json"])
        try:
            d.wait_ready(timeout_s=60)
            _until("the VIP on eth0", lambda: _vip_on(router) and d.status()["role"] == "active")
            assert d.status()["links"] == {"down": [], "gave_up": False}

            netns.ip("-n", peer, "link", "set", "eth0", "down")  # carrier lost on the router's eth0
            status = _until("the router gives up", lambda: (s := d.status())["role"] == "standby" and s)
            assert status["links"] == {"down": ["eth0"], "gave_up": True} and status["vips"] == []
            _until("the VIP off eth0", lambda: not _vip_on(router))

            netns.ip("-n", peer, "link", "set", "eth0", "up")
            status = _until("the router takes over again", lambda: (s := d.status())["role"] == "active" and s)
            assert status["links"] == {"down": [], "gave_up": False} and status["vips"] == ["10.70.0.100"]
            _until("the VIP back on eth0", lambda: _vip_on(router))
        finally:
            d.stop()
        lines = [json.loads(line) for line in d.log().splitlines() if line.startswith("{")]
    said = [line["msg"] for line in lines]
    assert "links: eth0 down; down now: eth0 (monitor_links = 1)" in said
    assert "role: active -> standby (link down on eth0: monitor_links = 1)" in said
    assert "links: eth0 up; all up (monitor_links = 1)" in said
    assert any(m.startswith("role: standby -> active (links back up") for m in said), said
    inputs = [line for line in lines if line.get("kind") == "input"]
    assert inputs and all(line["level"] == "debug" for line in inputs)  # debug_level = LOW
    assert any("links down now: eth0" in line["input"] for line in inputs)
