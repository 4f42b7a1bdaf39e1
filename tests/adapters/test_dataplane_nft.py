"""The nft dataplane on real namespaces, with real packets.

    client (10.0.0.2) -- director (10.0.0.1 = VIP; shoal's nft NAT) -+- rs1 (10.1.1.2, HTTP :80)
                                                                      +- rs2 (10.1.2.2, HTTP :80)

Each real server answers every GET with its own name; the client makes N
fresh connections to the VIP and counts the names.  Needs root and nft: the
tests FAIL (never skip) without them.  Every namespace is created under a
name unique to this run and removed by that name on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Iterator

import pytest

from adapters.dataplane import DataplaneError
from adapters.dataplane.nft import Nft, delete_tables, parse_ruleset, rule_text
from engine.events import AddDest, AddService, DelDest, DelService, EditDest, EditService, TableOp
from engine.table import Dest, DestKey, Service, ServiceEntry, ServiceKey

TAG = f"sdp{os.getpid() % 100000}"
NS = {role: f"{TAG}-{role}" for role in ("c", "d", "r1", "r2")}
VIP = ServiceKey("tcp", "10.0.0.1", 80)
RS1 = DestKey("10.1.1.2", 80)
RS2 = DestKey("10.1.2.2", 80)

SERVER = r"""
import http.server, sys
name = sys.argv[1].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(len(name))); self.end_headers()
        self.wfile.write(name)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("0.0.0.0", 80), H)
print("ready", flush=True)
s.serve_forever()
"""

CLIENT = r"""
import json, socket, sys
host, n = sys.argv[1], int(sys.argv[2])
counts = {}
for _ in range(n):
    try:
        with socket.create_connection((host, 80), timeout=1.0) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        name = data.split(b"\r\n\r\n", 1)[1].decode()
    except OSError:
        name = "fail"
    counts[name] = counts.get(name, 0) + 1
print(json.dumps(counts))
"""


def sh(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def _cleanup() -> None:
    for name in NS.values():
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, str]]:
    assert os.geteuid() == 0, "the nft dataplane tests need root (network namespaces, nftables)"
    assert shutil.which("nft") or os.path.exists("/usr/sbin/nft"), "nft missing: apt-get install -y nftables"
    _cleanup()
    servers: list[subprocess.Popen[str]] = []
    try:
        for name in NS.values():
            sh("ip", "netns", "add", name)
            sh("ip", "link", "set", "lo", "up", ns=name)
        links = [("c", "c0", "10.0.0.2", "d", "d0", "10.0.0.1", "10.0.0"),
                 ("r1", "e0", "10.1.1.2", "d", "d1", "10.1.1.1", "10.1.1"),
                 ("r2", "e0", "10.1.2.2", "d", "d2", "10.1.2.1", "10.1.2")]
        for a, a_if, a_ip, b, b_if, b_ip, _ in links:
            sh("ip", "link", "add", a_if, "netns", NS[a], "type", "veth", "peer", b_if, "netns", NS[b])
            for ns, dev, ip in ((NS[a], a_if, a_ip), (NS[b], b_if, b_ip)):
                sh("ip", "addr", "add", f"{ip}/24", "dev", dev, ns=ns)
                sh("ip", "link", "set", dev, "up", ns=ns)
            sh("ip", "route", "add", "default", "via", b_ip, ns=NS[a])
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=NS["d"])
        for role in ("r1", "r2"):
            proc = subprocess.Popen(["ip", "netns", "exec", NS[role], sys.executable, "-c", SERVER, role],
                                    stdout=subprocess.PIPE, text=True)
            servers.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", f"{role} did not start"
        yield NS
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        _cleanup()


def hits(n: int = 40) -> dict[str, int]:
    out = sh(sys.executable, "-c", CLIENT, VIP.address, str(n), ns=NS["c"]).stdout
    counts: dict[str, int] = json.loads(out)
    return counts


def entry_ops(nft: Nft) -> list[TableOp]:
    """Operations that empty the dataplane."""
    return [DelService(k) for k in sorted(nft.model)]


def fresh(lab: dict[str, str]) -> Nft:
    nft = Nft(netns=lab["d"])
    nft.apply(entry_ops(nft))
    assert nft.read() == {}
    return nft


def read_as_applied(nft: Nft) -> bool:
    """The kernel holds what the applies made of the table last read (a read resets the model)."""
    applied = nft.model
    return nft.read() == applied


def svc(scheduler: str = "wrr", **kw: object) -> Service:
    return Service(VIP, scheduler, **kw)  # type: ignore[arg-type]


def test_rr_balances_evenly_and_read_matches(lab: dict[str, str]) -> None:
    nft = fresh(lab)
    nft.apply([AddService(svc("rr")), AddDest(VIP, Dest(RS1, 1)), AddDest(VIP, Dest(RS2, 5))])
    assert read_as_applied(nft)
    counts = hits(40)
    assert counts.get("r1", 0) == counts.get("r2", 0) == 20, counts  # rr ignores weights; numgen inc is exact


def test_weights_3_to_1_then_0_then_removal(lab: dict[str, str]) -> None:
    nft = fresh(lab)
    nft.apply([AddService(svc("wlc")), AddDest(VIP, Dest(RS1, 3)), AddDest(VIP, Dest(RS2, 1))])
    assert read_as_applied(nft)
    counts = hits(40)
    assert counts.get("r1") == 30 and counts.get("r2") == 10, counts

    nft.apply([EditDest(VIP, Dest(RS2, 0))])
    assert read_as_applied(nft) and nft.model[VIP].dests[RS2].weight == 0
    counts = hits(20)
    assert counts == {"r1": 20}, counts

    nft.apply([EditDest(VIP, Dest(RS2, 2)), DelDest(VIP, RS1)])
    assert read_as_applied(nft) and set(nft.model[VIP].dests) == {RS2}
    counts = hits(20)
    assert counts == {"r2": 20}, counts

    nft.apply([DelDest(VIP, RS2)])  # no destination: dropped, as IPVS refuses
    assert read_as_applied(nft)
    assert hits(1) == {"fail": 1}


def test_source_hash_sticks_and_edit_service(lab: dict[str, str]) -> None:
    nft = fresh(lab)
    nft.apply([AddService(svc("rr")), AddDest(VIP, Dest(RS1, 1)), AddDest(VIP, Dest(RS2, 1))])
    nft.apply([EditService(svc("sh", sched_flags=("sh-fallback",)))])
    assert read_as_applied(nft)
    counts = hits(20)
    assert len(counts) == 1 and sum(counts.values()) == 20, counts  # one client address: one server
    nft.apply([EditService(svc("wrr", persistent_s=300, pmask="255.255.255.0"))])
    assert read_as_applied(nft)
    counts = hits(10)
    assert len(counts) == 1 and "fail" not in counts, counts


def test_second_instance_adopts_without_flushing(lab: dict[str, str]) -> None:
    nft = fresh(lab)
    sh("nft", "add", "table", "ip", "bystander", ns=lab["d"])
    sh("nft", "add", "chain", "ip", "bystander", "c", ns=lab["d"])
    sh("nft", "add", "rule", "ip", "bystander", "c", "counter", "comment", '"shoal s=rr"', ns=lab["d"])
    try:
        nft.apply([AddService(svc("wrr")), AddDest(VIP, Dest(RS1, 1)), AddDest(VIP, Dest(RS2, 1))])
        other = Nft(netns=lab["d"])
        assert other.read() == nft.model == other.model
        counts = hits(20)
        assert counts == {"r1": 10, "r2": 10}, counts
        # the adopting instance carries on from the adopted table
        other.apply([EditDest(VIP, Dest(RS1, 0))])
        assert hits(4) == {"r2": 4}
        ruleset = sh("nft", "list", "table", "ip", "bystander", ns=lab["d"]).stdout
        assert 'comment "shoal s=rr"' in ruleset  # another table: untouched, and not read as ours
        assert set(other.read()) == {VIP}
    finally:
        sh("nft", "delete", "table", "ip", "bystander", ns=lab["d"], check=False)


def test_refusals_carry_the_op_and_keep_what_came_before(lab: dict[str, str]) -> None:
    nft = fresh(lab)
    add = AddService(svc("wrr"))
    bad = AddDest(VIP, Dest(RS2, 1, "route"))
    with pytest.raises(DataplaneError) as e:
        nft.apply([add, AddDest(VIP, Dest(RS1, 1)), bad, AddDest(VIP, Dest(DestKey("10.1.1.9", 80), 1))])
    assert e.value.op == bad and e.value.code == "EINVAL" and "NAT" in str(e.value)
    assert set(nft.read()[VIP].dests) == {RS1} and read_as_applied(nft)
    for op, code in ((add, "EEXIST"), (DelDest(VIP, RS2), "ENOENT"),
                     (EditService(Service(ServiceKey("udp", "10.0.0.1", 53))), "ESRCH"),
                     (AddService(svc("nosuch")), "EEXIST")):
        with pytest.raises(DataplaneError) as e:
            nft.apply([op])
        assert e.value.code == code and e.value.op == op
    with pytest.raises(DataplaneError) as e:
        nft.apply([EditService(svc("nosuch"))])
    assert e.value.code == "EINVAL"
    assert read_as_applied(nft)


def test_ipv6_udp_and_fwmark_round_trip(lab: dict[str, str]) -> None:
    nft = fresh(lab)
    k6 = ServiceKey("udp", "2001:db8::1", 53, family=6)
    kf = ServiceKey("fwmark", "", 0, fwmark=7, family=4)
    kf6 = ServiceKey("fwmark", "", 0, fwmark=8, family=6)
    nft.apply([
        AddService(Service(k6, "mh", ("mh-port",), 60, "64")),
        AddDest(k6, Dest(DestKey("2001:db8:1::2", 53), 2)), AddDest(k6, Dest(DestKey("2001:db8:2::2", 53), 0)),
        AddService(Service(kf, "lblc")), AddDest(kf, Dest(DestKey("10.1.1.2", 0), 1)),
        AddService(Service(kf6, "fo")), AddDest(kf6, Dest(DestKey("2001:db8:1::2", 443), 4)),
        AddDest(kf6, Dest(DestKey("2001:db8:2::2", 443), 9)),
    ])
    assert read_as_applied(nft) and len(nft.model) == 3
    nft.apply([DelService(k6), DelService(kf)])
    assert read_as_applied(nft) and set(nft.model) == {kf6}
    delete_tables(lab["d"])
    assert Nft(netns=lab["d"]).read() == {}


def test_rule_text_and_parse_are_pure() -> None:
    entry = ServiceEntry(svc("wrr"), {RS1: Dest(RS1, 6), RS2: Dest(RS2, 2)})
    text = rule_text(entry)
    assert "numgen inc mod 4" in text and text.count("10.1.1.2 . 80") == 3
    assert parse_ruleset({"nftables": [{"table": {"family": "ip", "name": "other"}}]}) == {}


HOLD = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=5)
print("connected", flush=True)
sys.stdin.readline()
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
data = b""
while chunk := s.recv(4096):
    data += chunk
print(data.split(b"\r\n\r\n", 1)[1].decode(), flush=True)
"""


def test_open_connection_survives_a_restart_and_a_table_change(lab: dict[str, str]) -> None:
    nft = fresh(lab)
    nft.apply([AddService(svc("rr")), AddDest(VIP, Dest(RS1, 1))])
    proc = subprocess.Popen(["ip", "netns", "exec", lab["c"], sys.executable, "-c", HOLD, VIP.address],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "connected"
        nft.close()
        restarted = Nft(netns=lab["d"])  # a daemon restart: adopt, rewrite the base chains
        restarted.apply([AddDest(VIP, Dest(RS2, 1)), EditDest(VIP, Dest(RS1, 0))])  # new connections: rs2 only
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "r1"  # the open connection still reaches rs1
        assert hits(4) == {"r2": 4}
    finally:
        proc.kill()
        proc.wait()


def test_a_change_behind_shoals_back_is_what_the_next_operations_are_checked_against(lab: dict[str, str]) -> None:
    """A service deleted, or the whole ruleset flushed, behind shoal's back: the read that sees
    it (the engine's drift check) is what the reconciling operations are checked against and
    written over, so they are carried out, not refused with EEXIST at every reconcile."""
    nft = fresh(lab)
    ops: list[TableOp] = [AddService(svc("wrr")), AddDest(VIP, Dest(RS1, 1)), AddDest(VIP, Dest(RS2, 1))]
    nft.apply(ops)
    sh("nft", "delete", "element", "ip", "shoal", "svc", "{ 10.0.0.1 . tcp . 80 }", ns=lab["d"])
    assert nft.read() == {}
    nft.apply(ops)
    assert read_as_applied(nft) and set(nft.model[VIP].dests) == {RS1, RS2}
    assert sorted(hits(20).items()) == [("r1", 10), ("r2", 10)]
    sh("nft", "flush", "ruleset", ns=lab["d"])
    assert nft.read() == {}
    nft.apply(ops)
    assert read_as_applied(nft)
    assert sorted(hits(20).items()) == [("r1", 10), ("r2", 10)]


class Counting(Nft):
    runs: list[str]

    def _run(self, script: str | None, *args: str) -> str:
        self.runs = [*getattr(self, "runs", []), "write" if script is not None else "read"]
        return super()._run(script, *args)


def test_a_start_over_a_kept_table_runs_nft_once(lab: dict[str, str]) -> None:
    """Before a daemon's first heartbeat: one `nft` run over shoal's tables as it left them (a
    restart after a kill), the skeleton written too on a first start (or after a flush)."""
    nft = fresh(lab)
    nft.apply([AddService(svc("wrr")), AddDest(VIP, Dest(RS1, 1))])
    kept = Counting(netns=lab["d"])
    assert set(kept.read()) == {VIP} and kept.runs == ["read"]
    sh("nft", "flush", "chain", "ip", "shoal", "prerouting", ns=lab["d"])  # a dispatch rule gone: repaired
    again = Counting(netns=lab["d"])
    assert set(again.read()) == {VIP} and again.runs == ["read", "write"]
    assert hits(4) == {"r1": 4}
    delete_tables(lab["d"])
    first = Counting(netns=lab["d"])
    assert first.read() == {} and first.runs == ["read", "write"] and first.read() == {}
