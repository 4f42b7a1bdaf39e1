"""VRRP's raw sockets (adapters/vrrp_net.py) between two namespaces, and with
Debian's keepalived: what each side saw of the other (issue 14).

The `pair` fixture (conftest.py): a: va 10.9.0.1 fd09::1 <-> b: vb 10.9.0.2 fd09::2.
"""

from __future__ import annotations

import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from adapters.netns import entered
from adapters.vrrp_net import BURST, VrrpSocket
from engine.vrrp_wire import Advert, VrrpError, decode, encode


def opened(ns: str, sock: VrrpSocket) -> VrrpSocket:
    with entered(ns):
        sock.open()
    return sock


def receive(sock: VrrpSocket, timeout_s: float = 3.0, want: int = 1) -> list[tuple[str, str, int, bytes]]:
    got: list[tuple[str, str, int, bytes]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        if select.select([sock.fileno()], [], [], 0.05)[0]:
            sock.read(lambda *item: got.append(item))
    return got


def link_local_ready(pair: Any, ns: str, dev: str) -> str:
    """The link-local address of `dev` once it has left duplicate address detection."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = pair.run(ns, "ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link").stdout
        if out and "tentative" not in out:
            return out.split()[3].split("/")[0]
        time.sleep(0.1)
    raise AssertionError(f"{dev} in {ns} has no usable link-local address")


def test_an_advert_crosses_the_link_with_ttl_255_ipv4(pair: Any) -> None:
    a = opened(pair.a, VrrpSocket("va", 4, "10.9.0.1"))
    b = opened(pair.b, VrrpSocket("vb", 4, "10.9.0.2"))
    try:
        advert = Advert(3, 51, 150, 2, ("10.9.0.100",))
        a.send(encode(advert, "10.9.0.1", "224.0.0.18"))
        ((source, destination, ttl, payload),) = receive(b)
        assert (source, destination, ttl) == ("10.9.0.1", "224.0.0.18", 255)
        assert decode(payload, source=source, destination=destination, ttl=ttl, version=3) == advert
        assert receive(a, 0.3) == []  # our own multicast is not looped back
    finally:
        a.close()
        b.close()


def test_an_advert_crosses_the_link_with_hop_limit_255_ipv6(pair: Any) -> None:
    a_link = link_local_ready(pair, pair.a, "va")
    link_local_ready(pair, pair.b, "vb")
    a = opened(pair.a, VrrpSocket("va", 6, "fd09::1"))
    b = opened(pair.b, VrrpSocket("vb", 6, "fd09::2"))
    try:
        advert = Advert(3, 51, 150, 100, ("fd09::100",))
        a.send(encode(advert, a_link, "ff02::12"))  # the kernel writes the checksum (IPV6_CHECKSUM)
        ((source, destination, ttl, payload),) = receive(b)
        assert (source, destination, ttl) == (a_link, "ff02::12", 255)
        assert decode(payload, source=source, destination=destination, ttl=ttl, version=3) == advert
    finally:
        a.close()
        b.close()


def test_unicast_goes_to_the_partner(pair: Any) -> None:
    a = opened(pair.a, VrrpSocket("va", 4, "10.9.0.1", partner="10.9.0.2"))
    b = opened(pair.b, VrrpSocket("vb", 4, "10.9.0.2", partner="10.9.0.1"))
    try:
        advert = Advert(2, 7, 100, 100, ("10.9.0.100",))
        a.send(encode(advert, "10.9.0.1", "10.9.0.2"))
        ((source, destination, ttl, payload),) = receive(b)
        assert (source, destination, ttl) == ("10.9.0.1", "10.9.0.2", 255)
        assert decode(payload, source=source, destination=destination, ttl=ttl, version=2) == advert
    finally:
        a.close()
        b.close()


def test_a_flood_is_cut_by_the_rate(pair: Any) -> None:
    a = opened(pair.a, VrrpSocket("va", 4, "10.9.0.1"))
    b = opened(pair.b, VrrpSocket("vb", 4, "10.9.0.2"))
    try:
        data = encode(Advert(3, 51, 150, 2, ("10.9.0.100",)), "10.9.0.1", "224.0.0.18")
        for _ in range(400):
            a.send(data)
        got = receive(b, 1.0, want=400)
        assert BURST <= len(got) < 200 and b.drops["rate"] > 0, (len(got), b.drops)
    finally:
        a.close()
        b.close()


KEEPALIVED = """global_defs {{
    router_id test
}}
vrrp_instance VI_1 {{
    state {state}
    interface va
    virtual_router_id 51
    priority 100
    advert_int 1
    version {version}
    virtual_ipaddress {{
        {vip}
    }}
}}
"""


@pytest.mark.parametrize("version,family", [(2, 4), (3, 4), (3, 6)])
def test_keepalived_hears_ours_and_we_hear_keepalived(pair: Any, tmp_path: Path, version: int, family: int) -> None:
    if shutil.which("keepalived") is None:
        pytest.fail("keepalived is not installed (scripts/test.sh installs it)")
    vip = "10.9.0.100" if family == 4 else "fd09::100"
    conf = tmp_path / "keepalived.conf"
    conf.write_text(KEEPALIVED.format(state="MASTER", version=version, vip=vip))
    if family == 6:
        link_local_ready(pair, pair.a, "va")
        our_source = link_local_ready(pair, pair.b, "vb")
    else:
        our_source = "10.9.0.2"
    group = "224.0.0.18" if family == 4 else "ff02::12"
    log = tmp_path / "keepalived.log"
    ours = opened(pair.b, VrrpSocket("vb", family, "10.9.0.2" if family == 4 else "fd09::2"))
    with open(log, "wb") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", pair.a, "keepalived", "-n", "-l", "-D", "-P", "-f", str(conf),
                                 "-p", str(tmp_path / "k.pid"), "-r", str(tmp_path / "v.pid")],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # We hear keepalived: its adverts decode, priority 100, VRID 51, once it is master.
        heard = None
        deadline = time.monotonic() + 15
        while heard is None and time.monotonic() < deadline:
            for source, destination, ttl, payload in receive(ours, 0.5):
                got = decode(payload, source=source, destination=destination, ttl=ttl, version=version)
                if not isinstance(got, VrrpError) and got.priority == 100:
                    heard = got
        assert heard is not None, log.read_text()
        assert (heard.vrid, heard.addresses, heard.interval_cs) == (51, (vip,), 100)
        assert vip in pair.run(pair.a, "ip", "addr", "show", "dev", "va").stdout
        # keepalived hears ours: a higher priority master makes it a backup, and it gives its VIP up.
        advert = Advert(version, 51, 200, 100, (vip,))
        deadline = time.monotonic() + 10
        def after_master() -> str:
            text = log.read_text(errors="replace")
            return text[text.index("Entering MASTER STATE"):]

        while time.monotonic() < deadline and "Entering BACKUP STATE" not in after_master():
            ours.send(encode(advert, our_source, group))
            time.sleep(0.2)
        assert "Entering BACKUP STATE" in after_master() and "higher priority 200" in after_master(), \
            log.read_text(errors="replace")
        assert vip not in pair.run(pair.a, "ip", "addr", "show", "dev", "va").stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        ours.close()
