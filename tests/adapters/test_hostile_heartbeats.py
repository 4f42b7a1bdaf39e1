"""Forged heartbeats and operator failovers on the real pair (issue 9,
items 1 and 3), on tests/adapters/pairlab.py: two `shoal run` daemons in
namespaces started as a Piranha site starts them (no heartbeat key), and a
third host "mallory" on their LAN (10.50.0.66 on br0).

mallory sends raw IPv4/UDP packets (IP_HDRINCL, built here with `struct`)
with any source address, TTL 255 unless said otherwise, to port 539 (the
lab's config leaves `heartbeat_port` at its default).  The payloads are
real shoal heartbeats (`engine.wire.encode`); what mallory cannot know is
the sequence numbers the two routers exchange (they start at each daemon's
start time in microseconds), so it sends random 60-bit ones or counts from
1, with `ack = 0`.

Each test failed before the engine stopped acting on single unauthenticated
heartbeats (045f54d), see the module's report in the commit:

- a forged `active` from the backup's address made the active primary give
  up its VIP ("one-way failure: partner active and cannot hear us");
- a forged `leaving` from the primary's address made the backup take the
  VIP over a live primary;
- forged `active` heartbeats from a dead primary's address kept the backup
  from taking over (or made it yield again);
- a TTL below 255 from the partner's own address is dropped by the
  heartbeat sockets before the engine sees it (2fe4df5), even when it
  carries the right sequence numbers;
- an operator failover while the active router cannot hear its partner
  was carried out: the VIPs went to nobody.

Roles and VIP ownership are sampled every `SAMPLE_S`: "exactly one owner"
means the active router holds the VIP and the other does not, at every
sample.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from adapters import netns
from adapters.control import ask
from engine.wire import Heartbeat, decode, encode
from tests.adapters.pairlab import Lab

VIP = "10.50.0.100"
PRIMARY = "10.50.0.1"
BACKUP = "10.50.0.2"
PORT = 539  # the lab's config leaves heartbeat_port at its default
DEADTIME_S = 0.8  # pairlab.CONFIG
SAMPLE_S = 0.05
RATE_PER_S = 10
ROUTERS = ("primary", "backup")
# The engine's reasons for dropping a heartbeat (status "counters"), and the
# heartbeat sockets' (status "loop" "drops", "heartbeat-" + reason).
ENGINE_DROPS = ("heartbeats_bad", "heartbeats_unauthenticated", "heartbeats_replayed", "heartbeats_foreign",
                "heartbeats_out_of_sequence", "heartbeats_wrong_path")

# Run inside mallory's namespace: argv[1] is a JSON file {"src", "dst", "port",
# "ttl", "packets": [[at_s, payload_hex], ...]}.  Prints "start" when its clock
# starts, then one JSON line {"sent", "failed"} when done.
SENDER = r'''
import json, socket, struct, sys, time

def checksum(header):
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF

spec = json.load(open(sys.argv[1]))
src, dst = socket.inet_aton(spec["src"]), socket.inet_aton(spec["dst"])
port, ttl = spec["port"], spec["ttl"]
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
sent = failed = 0
print("start", flush=True)
t0 = time.monotonic()
for ident, (at, payload) in enumerate(spec["packets"], 1):
    payload = bytes.fromhex(payload)
    delay = t0 + at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    udp = struct.pack("!HHHH", port, port, 8 + len(payload), 0) + payload  # UDP checksum 0: none
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0x4000, ttl,
                         socket.IPPROTO_UDP, 0, src, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    try:
        sock.sendto(header + udp, (spec["dst"], 0))
        sent += 1
    except OSError as e:
        failed += 1
        print(f"send: {e}", file=sys.stderr, flush=True)
print(json.dumps({"sent": sent, "failed": failed}), flush=True)
'''


# ---------------------------------------------------------------- forging


def heartbeats(state: str, node: str, seqs: Sequence[int], ack: int = 0) -> list[bytes]:
    return [encode(Heartbeat("shoal", state, node, seq, ack, 1)) for seq in seqs]  # type: ignore[arg-type]


def random_seqs(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(60) | 1 for _ in range(n)]


def counting_seqs(n: int) -> list[int]:
    return list(range(1, n + 1))


def once_then_stream(payloads: list[bytes], gap_s: float, seconds: float) -> list[tuple[float, bytes]]:
    """The first payload at once, then RATE_PER_S a second for `seconds`
    from `gap_s` on (payloads used in order)."""
    count = 1 + int(RATE_PER_S * seconds)
    assert len(payloads) >= count
    return [(0.0, payloads[0])] + [(gap_s + i / RATE_PER_S, payloads[i]) for i in range(1, count)]


class Forger:
    """A sender in mallory's namespace; `t0` is when its clock started."""

    _count = 0

    def __init__(self, lab: Lab, src: str, dst: str, packets: list[tuple[float, bytes]], ttl: int = 255) -> None:
        Forger._count += 1
        script = lab.tmp / "forge.py"
        script.write_text(SENDER)
        spec = lab.tmp / f"forge-{Forger._count}.json"
        spec.write_text(json.dumps({"src": src, "dst": dst, "port": PORT, "ttl": ttl,
                                    "packets": [[at, p.hex()] for at, p in packets]}))
        self.planned = len(packets)
        self.last_at_s = packets[-1][0]
        self.proc = lab.topo.spawn(lab.ns["mallory"], [sys.executable, str(script), str(spec)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.t0 = time.monotonic()
        assert line.strip() == b"start", (line, self.proc.stderr.read() if self.proc.stderr else b"")

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def done(self) -> int:
        """Wait for the last packet; the number sent (every one of them)."""
        out, err = self.proc.communicate(timeout=self.last_at_s + 15)
        assert self.proc.returncode == 0, err.decode()
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert result["failed"] == 0 and result["sent"] == self.planned, (result, err.decode())
        return int(result["sent"])


# ---------------------------------------------------------------- observing


@dataclass
class Sample:
    at: float
    roles: dict[str, str]
    holders: list[str]  # the routers holding the VIP

    def __str__(self) -> str:
        roles = ", ".join(f"{n} {r}" for n, r in self.roles.items())
        return f"{self.at:6.2f} s: {roles}; VIP on {self.holders or 'nobody'}"


def sample(lab: Lab, t0: float, nodes: Sequence[str] = ROUTERS) -> Sample:
    roles = {}
    for node in nodes:
        try:
            roles[node] = str(lab.status(node)["role"])
        except (OSError, ValueError, KeyError) as e:
            roles[node] = f"no answer ({e})"
    return Sample(time.monotonic() - t0, roles, [n for n in nodes if VIP in lab.vips(n)])


def watch(lab: Lab, t0: float, until_s: float, nodes: Sequence[str] = ROUTERS) -> list[Sample]:
    """Samples every SAMPLE_S until `until_s` after t0."""
    samples = []
    while time.monotonic() - t0 < until_s:
        began = time.monotonic()
        samples.append(sample(lab, t0, nodes))
        time.sleep(max(0.0, SAMPLE_S - (time.monotonic() - began)))
    return samples


def one_owner(s: Sample, active: str) -> bool:
    """`active` is active and the only holder of the VIP; the other standby."""
    return all(role == ("active" if node == active else "standby") for node, role in s.roles.items()) \
        and s.holders == [active]


def wrong(samples: list[Sample], ok: Callable[[Sample], bool]) -> list[str]:
    return [str(s) for s in samples if not ok(s)]


def drops(status: dict[str, Any]) -> dict[str, int]:
    """Every heartbeat dropped so far, by reason: the engine's and the sockets'."""
    counters = status.get("counters", {})
    found = {k: int(counters.get(k, 0)) for k in ENGINE_DROPS}
    for k, v in status.get("loop", {}).get("drops", {}).items():
        if k.startswith("heartbeat-"):
            found[k] = int(v)
    return found


def grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def slack(sent: int) -> int:
    """Forged heartbeats that may be believed, not dropped: one that lands
    when the partner's stream has been quiet for more than a keepalive (its
    next heartbeat a few ms late) starts a new, untrusted stream, which moves
    nothing and is replaced by the partner's next heartbeat (about 1% at
    50 a second in this lab)."""
    return max(3, sent // 20)


def settled(lab: Lab) -> bool:
    """Primary active with the VIP, backup standby without, each hearing the other."""
    p, b = lab.status("primary"), lab.status("backup")
    return (p["role"], b["role"]) == ("active", "standby") and bool(p["partner"]["alive"]) \
        and bool(b["partner"]["alive"]) and not p["partner"].get("deaf") and not b["partner"].get("deaf") \
        and VIP in lab.vips("primary") and VIP not in lab.vips("backup")


def start_pair(lab: Lab) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    primary, backup = lab.start("primary"), lab.start("backup")
    lab.wait("the pair settled", lambda: settled(lab), timeout_s=20)
    # Heard both ways for longer than deadtime + keepalive: before 045f54d,
    # that is when a stale ack (0) made the partner look deaf.
    time.sleep(1.5)
    assert settled(lab)
    return primary, backup


def logs(lab: Lab) -> str:
    return "\n".join(f"--- {n} (last lines)\n{lab.log(n)[-4000:]}" for n in ROUTERS)


def report(title: str, problems: list[str], lab: Lab, extra: str = "") -> str:
    return f"{title}: {len(problems)} bad sample(s)\n" + "\n".join(problems[:15]) + f"\n{extra}\n{logs(lab)}"


def kill_router(lab: Lab, node: str, proc: subprocess.Popen[bytes]) -> None:
    """The host dies: its daemon SIGKILLed (process group), its links down."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    lab.topo.run(lab.ns[node], ["ip", "link", "set", "eth0", "down"])
    lab.topo.run(lab.ns[node], ["ip", "link", "set", "eth1", "down"])


# ---------------------------------------------------------------- sniffing


class Sniffer:
    """The heartbeats `node` receives from `src` (a raw UDP socket in its
    namespace): what an observer of the link knows, the latest sequence and
    ack.  The test's privilege, standing for a host that can see the pair's
    traffic."""

    def __init__(self, lab: Lab, node: str, src: str) -> None:
        self.src = src
        self.latest: Heartbeat | None = None
        self.stop = threading.Event()
        with netns.entered(lab.ns[node]):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                packet, _ = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            ihl = (packet[0] & 0x0F) * 4
            if socket.inet_ntoa(packet[12:16]) != self.src or len(packet) < ihl + 8:
                continue
            if struct.unpack("!H", packet[ihl + 2:ihl + 4])[0] != PORT:
                continue
            heartbeat = decode(packet[ihl + 8:])
            if isinstance(heartbeat, Heartbeat) and heartbeat.format == "shoal":
                self.latest = heartbeat

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


# ---------------------------------------------------------------- tests


def test_a_forged_active_from_the_backups_address_moves_nothing(lab: Lab) -> None:
    """Issue 9 item 1: one forged `active` (node backup, ack 0) from the
    backup's address made the active primary yield ("one-way failure");
    ten a second kept the VIP unowned."""
    start_pair(lab)
    before = drops(lab.status("primary"))
    payloads = heartbeats("active", "backup", random_seqs(60, seed=1) + counting_seqs(41))
    forger = Forger(lab, BACKUP, PRIMARY, once_then_stream(payloads, gap_s=1.0, seconds=10.0))
    samples = watch(lab, forger.t0, forger.last_at_s + 1.0)
    sent = forger.done()
    bad = wrong(samples, lambda s: one_owner(s, "primary"))
    assert not bad, report(f"{sent} forged `active` heartbeats from {BACKUP}", bad, lab)
    status = lab.status("primary")
    dropped = grown(before, drops(status))
    print(f"\n{sent} forged, {len(samples)} samples over {samples[-1].at:.1f} s; the primary dropped {dropped}; "
          f"its counters: {status['counters']}")
    assert sum(dropped.values()) >= sent - slack(sent), f"{sent} forged, the primary's drops grew by {dropped}"
    assert status["partner"]["alive"] and not status["partner"]["deaf"], status["partner"]
    assert "one-way failure" not in lab.log("primary")
    assert len(samples) >= 50


def test_a_forged_leaving_from_the_primarys_address_moves_nothing(lab: Lab) -> None:
    """Issue 9 item 1: a forged `leaving` made the backup take the VIP over
    a live primary (both held it)."""
    start_pair(lab)
    before = drops(lab.status("backup"))
    payloads = heartbeats("leaving", "primary", random_seqs(25, seed=2) + counting_seqs(26))
    forger = Forger(lab, PRIMARY, BACKUP, once_then_stream(payloads, gap_s=1.0, seconds=5.0))
    samples = watch(lab, forger.t0, forger.last_at_s + 1.0)
    sent = forger.done()
    bad = wrong(samples, lambda s: one_owner(s, "primary"))
    assert not bad, report(f"{sent} forged `leaving` heartbeats from {PRIMARY}", bad, lab)
    status = lab.status("backup")
    dropped = grown(before, drops(status))
    print(f"\n{sent} forged, {len(samples)} samples over {samples[-1].at:.1f} s; the backup dropped {dropped}")
    assert sum(dropped.values()) >= sent - slack(sent), f"{sent} forged, the backup's drops grew by {dropped}"
    assert status["partner"]["alive"] and status["partner"]["state"] == "active", status["partner"]
    assert "partner leaving" not in lab.log("backup")


@pytest.mark.parametrize("forger_seqs", ["random", "counting"])
def test_forged_actives_from_a_dead_primarys_address_do_not_keep_the_backup_standby(
        lab: Lab, forger_seqs: str) -> None:
    """Issue 9 item 1: forged `active` heartbeats from the primary's address
    kept the backup standby after the primary died.  The forger starts
    before the crash and goes on after it; its sequence numbers are random
    60-bit ones, or counted from 1 (then, once the primary is dead, they
    form a stream of their own)."""
    primary, _ = start_pair(lab)
    seqs = random_seqs(80, seed=3) if forger_seqs == "random" else counting_seqs(80)
    forger = Forger(lab, PRIMARY, BACKUP, once_then_stream(heartbeats("active", "primary", seqs), 0.1, 7.0))
    before = watch(lab, forger.t0, 1.0)
    bad = wrong(before, lambda s: one_owner(s, "primary"))
    assert not bad, report("forged `active` heartbeats, the primary alive", bad, lab)
    kill_router(lab, "primary", primary)
    killed = time.monotonic()
    took = lab.wait("the backup active with the VIP",
                    lambda: lab.role("backup") == "active" and VIP in lab.vips("backup"),
                    timeout_s=DEADTIME_S + 2.0)
    # ... and it keeps them while the forgery goes on.
    after = watch(lab, killed, forger.t0 + forger.last_at_s + 0.5 - killed, nodes=("backup",))
    forger.done()
    bad = wrong(after, lambda s: one_owner(s, "backup"))
    assert not bad, report(f"backup active {took:.2f} s after the crash, then", bad, lab)
    print(f"\nbackup active with the VIP {took:.2f} s after the crash, kept for {after[-1].at:.1f} s "
          f"({len(after)} samples) under forged `active` heartbeats ({forger_seqs} sequence numbers)")


def test_a_ttl_below_255_from_the_partners_address_is_not_acted_on(lab: Lab) -> None:
    """Issue 9 item 1 ("sent and required with TTL 255"): mallory forges the
    partner's address at TTL 64.  First a blind `active` from the backup's
    address to the primary; then a `leaving` from the primary's address to
    the backup that continues the primary's own stream (sequence and ack
    read off the link, so the engine would believe it: at TTL 255 the
    backup takes over at once).  At 64 both are dropped by the heartbeat
    sockets (2fe4df5) before the engine sees them, and counted there."""
    start_pair(lab)
    before = {n: drops(lab.status(n)) for n in ROUTERS}
    payloads = heartbeats("active", "backup", random_seqs(20, seed=4))
    forger = Forger(lab, BACKUP, PRIMARY, [(i / RATE_PER_S, p) for i, p in enumerate(payloads)], ttl=64)
    samples = watch(lab, forger.t0, forger.last_at_s + 0.5)
    sent_active = forger.done()
    bad = wrong(samples, lambda s: one_owner(s, "primary"))
    assert not bad, report(f"{sent_active} forged `active` heartbeats at TTL 64", bad, lab)

    sniffer = Sniffer(lab, "backup", PRIMARY)
    try:
        lab.wait("a heartbeat of the primary seen", lambda: sniffer.latest is not None, timeout_s=3)
        seen = sniffer.latest
        assert seen is not None
        payloads = [encode(Heartbeat("shoal", "leaving", "primary", seen.seq + 3 + i, seen.ack, seen.serial_no))
                    for i in range(5)]
        forger = Forger(lab, PRIMARY, BACKUP, [(i / RATE_PER_S, p) for i, p in enumerate(payloads)], ttl=64)
        samples = watch(lab, forger.t0, forger.last_at_s + 1.5)
        sent_leaving = forger.done()
    finally:
        sniffer.close()
    bad = wrong(samples, lambda s: one_owner(s, "primary"))
    assert not bad, report(f"{sent_leaving} in-sequence `leaving` heartbeats at TTL 64 (after seq {seen.seq})",
                           bad, lab)
    assert "partner leaving" not in lab.log("backup")

    for node, sent in (("primary", sent_active), ("backup", sent_leaving)):
        dropped = grown(before[node], drops(lab.status(node)))
        print(f"\n{sent} forged at TTL 64 to the {node}: it dropped {dropped}")
        by_socket = sum(v for k, v in dropped.items() if k.startswith("heartbeat-"))
        assert by_socket >= sent, f"{sent} forged at TTL 64, not dropped by the {node}'s heartbeat socket: {dropped}"
        assert sum(dropped.values()) - by_socket < sent, f"the {node}'s engine saw the TTL 64 packets: {dropped}"


def test_an_operator_failover_is_refused_while_the_partner_is_not_heard(lab: Lab) -> None:
    """Issue 9 item 3: an operator failover while the active router cannot
    hear its partner was carried out, and nobody served.  It is refused with
    the reason until the partner is heard both ways; then it is carried out
    and exactly one router holds the VIP."""
    start_pair(lab)
    primary_ns = lab.ns["primary"]
    for rule in (["add", "table", "inet", "t"],
                 ["add", "chain", "inet", "t", "in", "{ type filter hook input priority 0; }"],
                 ["add", "rule", "inet", "t", "in", "ip", "saddr", BACKUP, "udp", "dport", str(PORT), "drop"]):
        lab.topo.run(primary_ns, ["nft", *rule])
    t0 = time.monotonic()
    lab.wait("the primary no longer hears the backup", lambda: not lab.status("primary")["partner"]["alive"],
             timeout_s=DEADTIME_S + 3)
    samples = watch(lab, t0, time.monotonic() - t0 + 0.5)
    answer = ask(lab.state("primary"), {"cmd": "admin", "action": "failover"})
    print(f"\nfailover asked during a one-way failure: {answer}")
    samples += watch(lab, t0, time.monotonic() - t0 + 2.5)  # past deadtime + keepalive
    bad = wrong(samples, lambda s: one_owner(s, "primary"))
    assert not bad, report(f"failover asked during a one-way failure (answer {answer}), then", bad, lab)
    assert answer.get("ok") is False and answer.get("error"), answer

    lab.topo.run(primary_ns, ["nft", "delete", "table", "inet", "t"])
    lab.wait("the partner heard both ways again", lambda: settled(lab), timeout_s=5)
    answer = ask(lab.state("primary"), {"cmd": "admin", "action": "failover"})
    print(f"failover asked with the partner heard both ways: {answer}")
    assert answer.get("ok") is True, answer
    asked = time.monotonic()
    took = lab.wait("the backup active with the VIP, the primary standby without",
                    lambda: one_owner(sample(lab, asked), "backup"), timeout_s=3)
    samples = watch(lab, asked, took + 3.0)
    bad = wrong(samples, lambda s: one_owner(s, "backup"))
    assert not bad, report(f"failover carried out in {took:.2f} s, then", bad, lab)
    print(f"failover carried out in {took:.2f} s; one owner (the backup) for {len(samples)} samples since")
