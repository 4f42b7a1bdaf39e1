"""A fast start (issue 13): what a daemon needs before its first heartbeat and at a takeover
(VIPs, gratuitous ARP and unsolicited NA, the nft table) imports neither pyroute2 nor scapy, each
0.1-0.5 s of import (bench/start.py measures the start)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

CODE = """
import sys
import adapters.daemon
from adapters.arp import send_gratuitous
from adapters.dataplane.nft import Nft
from adapters.vips import Vips
from engine.events import AddVip, DelVip
vips = Vips()
vips.add(AddVip("10.9.0.100", 32, "va", "va:1"))
send_gratuitous("10.9.0.100", "va")
send_gratuitous("fd09::100", "va")
assert vips.held(["10.9.0.100"]) == {"10.9.0.100"}
assert vips.delete(DelVip("10.9.0.100", 32, "va", "va:1"))
Nft().read()
vips.close()
print(sorted({m.split(".")[0] for m in sys.modules} & {"pyroute2", "scapy"}))
"""


def test_vips_arp_and_nft_import_neither_pyroute2_nor_scapy(pair: Any) -> None:
    done = subprocess.run(["ip", "netns", "exec", pair.a, sys.executable, "-c", CODE], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
