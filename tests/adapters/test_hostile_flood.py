"""A flood at the standby's heartbeat port (issue 9, item 2), on the real
pair of tests/adapters/pairlab.py: two `shoal run` daemons in namespaces,
a third host "mallory" on their LAN.

Before the heartbeat sockets filtered in the kernel, every datagram was
queued to the daemon before any check: garbage at one core's sending rate
put the standby's loop so far behind that it declared its healthy partner
dead and took over (the primary then yielded), and its memory grew.

Here mallory floods the backup's heartbeat port (10.50.0.2:539) for
`FLOOD_S` seconds, as fast as two Python processes send (a tight sendto
loop each), with

- garbage from its own address (random bytes of every size, forged shoal
  and piranha heartbeats among them), from both processes; or
- that from one process, and from the other the same with the primary's
  address forged as the source through a raw socket, at TTL 64 (what an
  off-link host, or an on-link one that does not bother, sends).

Sampled every 50 ms during the flood and for `AFTER_S` seconds after it:
the backup never goes active, the primary stays active with the VIP (and
the backup never holds it), `shoal status` of the backup answers within
1 s, and the backup's RSS stays within `RSS_GROWTH_MB` of what it was
before the flood.

Last, garbage forging the primary's address at TTL 255 from the LAN: the
limit of what an unauthenticated heartbeat port can do (see that test).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.control import ask
from engine import wire
from tests.adapters.pairlab import Lab

VIP = "10.50.0.100"
BACKUP = "10.50.0.2"
PRIMARY = "10.50.0.1"
PORT = 539  # the lab's config leaves heartbeat_port at its default
FLOOD_S = 5.0
AFTER_S = 3.0
SAMPLE_S = 0.05
STATUS_LIMIT_S = 1.0
RSS_GROWTH_MB = 5.0  # before the filter: 9 to 18 MB in 5 s; after: under 0.5 MB

FORGED = [
    wire.encode(wire.Heartbeat("shoal", "active", "primary", 1, 0, 1)),
    wire.encode(wire.Heartbeat("shoal", "leaving", "primary", 2, 0, 1)),
    wire.encode(wire.Heartbeat("piranha", "active", None, 0, 0, 0)),
]

# One sender: argv = kind ("udp" | "spoofed" | "spoofed255"), seconds, forged payloads in hex.
# Prints "sent failed" when done.  A tight sendto loop: ~100k datagrams/s.
SENDER = r"""
import os, random, socket, struct, sys, time
kind, seconds = sys.argv[1], float(sys.argv[2])
forged = [bytes.fromhex(h) for h in sys.argv[3:]]
rng = random.Random(9)
sizes = [0, 1, 3, 4, 5, 16, 31, 32, 33, 63, 64, 65, 100, 200, 512, 1400]
payloads = [rng.randbytes(rng.choice(sizes)) for _ in range(48)] + forged * 5
rng.shuffle(payloads)
dst, port = "%(backup)s", %(port)d
if kind == "udp":
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    packets = [(p, (dst, port)) for p in payloads]
else:  # the primary's address forged, TTL 64 (or 255), through a raw socket (IP_HDRINCL)
    ttl = 255 if kind == "spoofed255" else 64
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    src = socket.inet_aton("%(primary)s")
    packets = []
    for p in payloads:
        udp = struct.pack("!HHHH", port, port, 8 + len(p), 0) + p
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, ttl, 17, 0, src, socket.inet_aton(dst))
        packets.append((ip + udp, (dst, 0)))
sent = failed = 0
send = sock.sendto
end = time.monotonic() + seconds
while time.monotonic() < end:
    for payload, address in packets:
        try:
            send(payload, address)
            sent += 1
        except OSError:
            failed += 1
print(sent, failed, flush=True)
""" % {"backup": BACKUP, "primary": PRIMARY, "port": PORT}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0  # a zombie has no VmRSS line


@dataclass
class Flood:
    sent: dict[str, int]  # by sender
    samples: int
    worst_status_s: float
    rss_before_mb: float
    rss_peak_mb: float
    moved: list[str]  # what was wrong with the roles or the VIP, at which time
    slow: list[str]  # when the backup's status did not answer in time

    @property
    def rate_per_s(self) -> float:
        return sum(self.sent.values()) / FLOOD_S

    def __str__(self) -> str:
        sent = " + ".join(f"{n} {kind}" for kind, n in self.sent.items())
        return (f"flood: {sent} datagrams in {FLOOD_S:.0f} s ({self.rate_per_s / 1000:.0f}k/s); "
                f"{self.samples} samples; backup status {self.worst_status_s * 1000:.0f} ms at worst; "
                f"backup RSS {self.rss_before_mb:.1f} -> {self.rss_peak_mb:.1f} MB at peak")


def start_pair(lab: Lab) -> None:
    lab.start("primary")
    lab.wait("primary active", lambda: lab.role("primary") == "active", timeout_s=10)
    lab.start("backup")
    lab.wait("primary active, backup standby",
             lambda: lab.role("primary") == "active" and lab.role("backup") == "standby", timeout_s=10)
    lab.wait("the primary holds the VIP", lambda: VIP in lab.vips("primary"))
    time.sleep(1.0)  # settled: the backup's start-up allocations done


def flood(lab: Lab, kinds: tuple[str, ...], forged: list[bytes]) -> Flood:
    """Flood from mallory, one sender per kind, sampling the pair meanwhile."""
    pid = lab.daemons["backup"].pid
    rss_before = rss_mb(pid)
    (lab.tmp / "sender.py").write_text(SENDER)
    senders = [(kind, lab.topo.spawn(lab.ns["mallory"], [sys.executable, str(lab.tmp / "sender.py"), kind,
                                                         str(FLOOD_S), *[p.hex() for p in forged]],
                                     stdout=-1, stderr=-1))
               for kind in kinds]
    t0 = time.monotonic()
    found = Flood({}, 0, 0.0, rss_before, rss_before, [], [])
    while time.monotonic() - t0 < FLOOD_S + AFTER_S:
        at = time.monotonic() - t0
        asked = time.monotonic()
        try:
            backup: dict[str, Any] = ask(lab.state("backup"), {"cmd": "status"}, timeout_s=STATUS_LIMIT_S)
        except (OSError, ValueError) as e:
            found.slow.append(f"{at:.2f} s: shoal status of the backup: {e}")
            backup = {}
        took = time.monotonic() - asked
        found.worst_status_s = max(found.worst_status_s, took)
        if took > STATUS_LIMIT_S:
            found.slow.append(f"{at:.2f} s: shoal status of the backup took {took:.2f} s")
        if backup and backup.get("role") != "standby":
            found.moved.append(f"{at:.2f} s: backup {backup.get('role')}")
        try:
            primary_role = lab.role("primary")
        except (OSError, ValueError) as e:
            primary_role = f"no answer ({e})"
        if primary_role != "active":
            found.moved.append(f"{at:.2f} s: primary {primary_role}")
        if VIP not in lab.vips("primary"):
            found.moved.append(f"{at:.2f} s: the primary does not hold the VIP")
        if VIP in lab.vips("backup"):
            found.moved.append(f"{at:.2f} s: the backup holds the VIP")
        found.rss_peak_mb = max(found.rss_peak_mb, rss_mb(pid))
        found.samples += 1
        time.sleep(max(0.0, SAMPLE_S - (time.monotonic() - asked)))
    for i, (kind, proc) in enumerate(senders):
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, (kind, err.decode())
        sent, failed = map(int, out.split())
        found.sent[f"{kind}#{i}" if kind in found.sent else kind] = sent
        assert failed < sent / 10, (kind, sent, failed)
    print(f"\n{found}")
    drops = backup.get("loop", {}).get("drops") if backup else None  # informative: the daemon's status
    if drops:
        print(f"the backup's drop counters: {drops}")
    assert found.rate_per_s > 20_000, f"the flood was too slow to mean anything: {found}"
    return found


@pytest.mark.parametrize("kinds", [("udp", "udp"), ("udp", "spoofed")], ids=["garbage", "spoofed-ttl64"])
def test_a_flood_at_the_standbys_heartbeat_port_moves_nothing(lab: Lab, kinds: tuple[str, ...]) -> None:
    start_pair(lab)
    found = flood(lab, kinds, FORGED)
    assert not found.slow and not found.moved, (
        f"{found}\n" + "\n".join((found.slow + found.moved)[:20]) + "\n" + lab.log("backup")[-3000:])
    assert found.rss_peak_mb - found.rss_before_mb < RSS_GROWTH_MB, str(found)
    assert lab.role("backup") == "standby" and lab.role("primary") == "active"


def test_a_flood_forging_the_partner_on_the_link_cannot_freeze_or_bloat_the_standby(lab: Lab) -> None:
    """Garbage with the primary's address forged at TTL 255, from the LAN:
    nothing in the IP header tells it from the primary's heartbeats, so it
    passes every filter and spends the path's rate (the primary's own
    heartbeats among it are mostly dropped: the backup may well take over,
    which only a check of the content before the rate could prevent).  What
    the rate does bound: the standby answers at once throughout, its memory
    stays flat, and once the flood stops the pair settles on one owner."""
    start_pair(lab)
    found = flood(lab, ("spoofed255",), [])
    assert not found.slow, f"{found}\n" + "\n".join(found.slow[:20]) + "\n" + lab.log("backup")[-3000:]
    assert found.rss_peak_mb - found.rss_before_mb < RSS_GROWTH_MB, str(found)

    def one_owner() -> bool:
        roles = {node: lab.role(node) for node in ("primary", "backup")}
        holders = [node for node in roles if VIP in lab.vips(node)]
        return sorted(roles.values()) == ["active", "standby"] and holders == [
            node for node, role in roles.items() if role == "active"]

    lab.wait("one router active with the VIP after the flood", one_owner, timeout_s=5)
    print(f"during the flood: {found.moved[0] if found.moved else 'nothing moved'}"
          f"{f' (and {len(found.moved) - 1} more samples)' if len(found.moved) > 1 else ''}")
