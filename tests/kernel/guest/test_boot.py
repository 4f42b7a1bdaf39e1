"""The guest itself: the kernel the suite runs on has IPVS, netns and the tools."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from adapters.dataplane.ipvs import Ipvs
from engine.events import AddDest, AddService
from engine.table import Dest, DestKey, Service, ServiceKey


def test_ipvs_loaded_and_programmable() -> None:
    assert Path("/proc/net/ip_vs").exists(), "ip_vs not loaded"
    print("kernel", platform.release())
    dp = Ipvs()
    try:
        key = ServiceKey("tcp", "192.0.2.10", 80)
        dp.apply([AddService(Service(key, "rr")), AddDest(key, Dest(DestKey("192.0.2.21", 80), 3, "masq"))])
        table = dp.read()
        assert table[key].dests[DestKey("192.0.2.21", 80)].weight == 3
        listing = subprocess.run(["ipvsadm", "-Sn"], capture_output=True, text=True, check=True).stdout
        assert "-a -t 192.0.2.10:80 -r 192.0.2.21:80 -m -w 3" in listing, listing
    finally:
        subprocess.run(["ipvsadm", "-C"], check=True)
        dp.close()
