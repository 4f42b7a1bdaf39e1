"""Capture real keepalived adverts, as test vectors for engine/vrrp_wire.py (issue 14).

    .venv/bin/python scripts/capture_vrrp.py > tests/engine/vrrp_keepalived.txt

Root.  Two namespaces joined by a veth; Debian's keepalived runs in one as
the master of one instance (VRID 51, priority 150, advert 1 s, the VIPs
below), the other captures its frames on an AF_PACKET socket.  For each
variant (VRRPv2; VRRPv3 over IPv4; VRRPv3 over IPv6; Debian's keepalived
2.2.7 has no `v3_checksum_as_v2`, a later version's option: its VRRPv3
IPv4 checksum always sums the pseudo-header) it keeps the first two adverts and, after a SIGTERM, the
priority-0 advert a master sends when it stops.  One line per advert:

    VARIANT SOURCE DESTINATION TTL HEX_OF_THE_IP_PAYLOAD

Everything it starts is stopped by PID, and both namespaces removed, on
every exit path.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.netns import entered  # noqa: E402

NS = (f"shoal-vrrpcap-a-{os.getpid()}", f"shoal-vrrpcap-b-{os.getpid()}")
CONF = """global_defs {{
    router_id cap
    {globals}
}}
vrrp_instance VI_1 {{
    state MASTER
    interface va
    virtual_router_id 51
    priority 150
    advert_int 1
    version {version}
    {extra}
    virtual_ipaddress {{
        {vips}
    }}
}}
"""
VARIANTS = {
    "v2": dict(version=2, extra="", globals="", vips="10.99.0.100\n        10.99.0.101"),
    "v3": dict(version=3, extra="", globals="", vips="10.99.0.100\n        10.99.0.101"),
    "v3-ipv6": dict(version=3, extra="", globals="", vips="fd99::100"),
}


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def capture(variant: str, spec: dict[str, object], work: Path) -> list[str]:
    conf = work / f"{variant}.conf"
    conf.write_text(CONF.format(**spec))
    sock = _packet_socket()
    proc = subprocess.Popen(["ip", "netns", "exec", NS[0], "keepalived", "-n", "-l", "-D", "-P", "-f", str(conf),
                             "-p", str(work / f"{variant}.pid"), "-r", str(work / f"{variant}-vrrp.pid")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 15
        while len(lines) < 2 and time.monotonic() < deadline:
            line = _advert(sock, variant)
            if line:
                lines.append(line)
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            line = _advert(sock, variant)
            if line and line.split()[-1][4:6] == "00":  # priority 0
                lines.append(line)
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        sock.close()
    return lines


def _packet_socket() -> socket.socket:
    with entered(NS[1]):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind(("vb", 0))
    sock.settimeout(0.5)
    return sock


def _advert(sock: socket.socket, variant: str) -> str | None:
    try:
        frame = sock.recv(65535)
    except socket.timeout:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    ip = frame[14:]
    if ethertype == 0x0800 and ip[9] == 112:
        header = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        src, dst = socket.inet_ntop(socket.AF_INET, ip[12:16]), socket.inet_ntop(socket.AF_INET, ip[16:20])
        return f"{variant} {src} {dst} {ip[8]} {ip[header:total].hex()}"
    if ethertype == 0x86DD and ip[6] == 112:
        length = struct.unpack_from("!H", ip, 4)[0]
        src, dst = socket.inet_ntop(socket.AF_INET6, ip[8:24]), socket.inet_ntop(socket.AF_INET6, ip[24:40])
        return f"{variant} {src} {dst} {ip[7]} {ip[40:40 + length].hex()}"
    return None


def main() -> int:
    if os.geteuid() != 0 or shutil.which("keepalived") is None:
        print("capture_vrrp.py: needs root and Debian's keepalived", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="shoal-vrrpcap-"))
    try:
        for ns in NS:
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", "va", "netns", NS[0], "type", "veth", "peer", "name", "vb", "netns", NS[1])
        for ns, dev, v4, v6 in ((NS[0], "va", "10.99.0.1/24", "fd99::1/64"), (NS[1], "vb", "10.99.0.2/24", "fd99::2/64")):
            sh("ip", "-n", ns, "addr", "add", v4, "dev", dev)
            sh("ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        time.sleep(2)  # the link-local addresses (keepalived's IPv6 source) leave tentative
        print("# keepalived " + subprocess.run(["keepalived", "--version"], capture_output=True, text=True)
              .stderr.splitlines()[0])
        print("# VARIANT SOURCE DESTINATION TTL HEX (scripts/capture_vrrp.py)")
        for variant, spec in VARIANTS.items():
            for line in capture(variant, spec, work):
                print(line)
        return 0
    finally:
        for ns in NS:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
