"""The lab (adapters/lab, `shoal lab`) on real namespaces: root needed.

Not root, or `ip`/`nft` missing: these tests FAIL (never skip) -- the lab
is part of what the project must show (issue 4).  Every test checks that
no lab namespace is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from adapters import netns
from adapters.lab import compare, server as lab_server
from adapters.lab.plan import LabError, plan, scale_config, scale_scenario
from adapters.lab.runner import table_problem
from adapters.lab.topology import Topology, lab_namespaces, preflight
from adapters.lab.world import LabWorld, table_from_json
from scenario.model import load

ROOT = Path(__file__).resolve().parents[2]
CRASH = ROOT / "scenarios" / "active-crash-takeover.toml"
# The eight scenarios issue 4 names, issue 10's link faults and adoption over a killed
# daemon's kernel state, and the time scale each runs at here.
LAB_SCENARIOS = ["active-crash-takeover", "primary-return-no-preempt", "heartbeat-loss-one-path",
                 "partition-all-heal", "one-way-failure", "server-down-reentry", "server-hang",
                 "reload-one-server", "monitor-links", "kill-restart-adopt", "vrrp-crash-takeover"]
SCALE = 0.25
LAB = [sys.executable, "-c", "import sys; from shoal.lab_cli import main; sys.exit(main(sys.argv[1:]))"]


def _labs() -> set[str]:
    """The lab namespaces on this host left by a lab that is gone: not bench/failover.py's (tag
    `fo<pid>...`), nor those of a lab still running (`shoal-lab-<pid>-...`, another process's)."""
    return {n for n in lab_namespaces() if not n.startswith("shoal-lab-fo") and not _running(n)}


def _running(name: str) -> bool:
    """Made by another process that still runs (this one's own are judged: they must be gone)."""
    pid = name.removeprefix("shoal-lab-").split("-", 1)[0]
    return pid.isdigit() and int(pid) != os.getpid() and os.path.exists(f"/proc/{pid}")


@pytest.fixture(autouse=True)
def no_leftovers():
    before = _labs() if os.geteuid() == 0 else set()
    yield
    if os.geteuid() == 0:
        assert _labs() - before == set(), "the lab left namespaces behind"


def test_root_and_tools() -> None:
    preflight()  # raises LabError: the lab cannot run on this machine, and that is a failure


def test_plan_from_config() -> None:
    p = plan([load(CRASH).config])
    primary = p.node("primary")
    assert [(i.name, i.net, i.addresses) for i in primary.ifaces] == [
        ("eth0", "public", ("10.0.0.1/24",)), ("eth1", "server", ("10.1.0.253/24",)),
        ("eth2", "private", ("192.168.0.1/24",))]
    assert p.client_address == "10.0.0.250"
    assert p.vips == ("10.0.0.100", "10.1.0.254")
    assert p.targets == (("10.0.0.100", 80),)
    web1 = p.node("srv-10.1.0.11")
    assert web1.gateway == "10.1.0.254" and web1.ports == (80,) and "web1" in web1.servers


def test_time_scale() -> None:
    s = scale_scenario(load(CRASH), 0.25)
    assert s.duration_ms == 15_000
    assert (s.config.keepalive_ms, s.config.deadtime_ms) == (250, 750)
    assert (s.config.virtuals[0].timeout_ms, s.config.virtuals[0].reentry_ms) == (500, 1500)
    assert s.config.virtuals[0].rise_count == load(CRASH).config.virtuals[0].rise_count
    assert s.faults[0].at_ms == 5_000
    assert [e.window_ms for e in s.expects if e.window_ms][0] == (250, 5_000)
    assert scale_config(s.config, 1) is s.config


def test_table_round_trip_and_health_comparison() -> None:
    config = load(CRASH).config
    rows = [{"protocol": "tcp", "address": "10.0.0.100", "port": 80, "fwmark": 0, "family": 4,
             "scheduler": "wlc", "dests": [{"address": "10.1.0.11", "port": 80, "weight": 1, "forward": "masq"}]}]
    table = table_from_json(rows, config)
    (entry,) = table.values()
    assert [d.name for d in entry.dests.values()] == ["web1"]
    status = {"role": "active", "services": [{"name": "web", "address": "10.0.0.100", "port": 80,
                                              "protocol": "tcp", "fwmark": None, "servers": [
        {"address": "10.1.0.11", "port": 80, "weight": 1, "in_table": True},
        {"address": "10.1.0.12", "port": 80, "weight": 1, "in_table": False}]}]}
    assert table_problem(status, table) == ""
    status["services"][0]["servers"][1]["in_table"] = True
    assert "status calls for" in table_problem(status, table)
    status["services"][0]["servers"][1]["in_table"] = False
    standby = {**status, "role": "standby"}
    assert table_problem(standby, table) == ""  # a standby keeps the table
    assert table_problem(standby, table, frozenset({"10.0.0.100"})) == "a standby router holds 10.0.0.100"
    assert table_problem(status, table, frozenset({"10.0.0.100"})) == ""


def test_topology_removed_after_an_error() -> None:
    p = plan([load(CRASH).config])
    topo = Topology(p, tag="t-error")
    with pytest.raises(RuntimeError):
        with topo:
            assert topo.ns("client") in lab_namespaces()
            raise RuntimeError("boom")
    assert not [n for n in lab_namespaces() if n.startswith(topo.prefix)]


def test_servers_faults_and_client_through_a_hand_made_router() -> None:
    """No daemon: the VIP, nat_router and an nft DNAT set by hand on the primary."""
    config = load(CRASH).config
    with Topology(plan([config]), tag="t-servers") as topo, tempfile.TemporaryDirectory() as tmp:
        world = LabWorld(topo, config, Path(tmp), 0.5)
        try:
            world.start_servers()
            ns = topo.ns("primary")
            netns.ip("-n", ns, "addr", "add", "10.0.0.100/24", "dev", "eth0")
            netns.ip("-n", ns, "addr", "add", "10.1.0.254/24", "dev", "eth1")
            netns.run_in(ns, ["nft", "-f", "-"], input=(
                "table ip lb { chain pre { type nat hook prerouting priority dstnat;\n"
                "ip daddr 10.0.0.100 tcp dport 80 dnat to numgen inc mod 3 map "
                "{ 0 : 10.1.0.11, 1 : 10.1.0.12, 2 : 10.1.0.13 }\n}\n}\n"))
            assert world.vips("primary") == {"10.0.0.100", "10.1.0.254"}
            world.start_client()
            time.sleep(1.5)
            lab_server.ask(world.servers["web2"], "down")
            time.sleep(1.0)
            world.stop_client()
            records = world.client_records()
            assert len(records) >= 15
            first = [ok for t, ok in records[:10]]
            assert sum(ok for _, ok in records) < len(records), "web2 down: a third of the connections fail"
            assert sum(first) >= 8, records
            assert lab_server.ask(world.servers["web2"], "bogus").startswith("error")
        finally:
            world.close()


def test_client_neighbour_table_names_the_vip_holder() -> None:
    """`vip_owner` in the lab also reads the client's neighbour table: the
    entry's MAC is mapped back to the router that has it, and a wrong one
    fails the expectation with what the client sees."""
    from adapters.lab.runner import _client_arp
    from scenario.checks import View

    config = load(CRASH).config
    with Topology(plan([config]), tag="t-neigh") as topo, tempfile.TemporaryDirectory() as tmp:
        world = LabWorld(topo, config, Path(tmp), 0.5)
        try:
            client = topo.ns("client")

            def mac(router: str) -> str:
                out = netns.ip("-n", topo.ns(router), "-j", "link", "show", "eth0").stdout
                return str(__import__("json").loads(out)[0]["address"])

            assert world.arp_holder("10.0.0.100") == "nobody"
            netns.ip("-n", client, "neigh", "replace", "10.0.0.100", "lladdr", mac("backup"), "dev", "eth0")
            assert world.arp_holder("10.0.0.100") == "backup"
            view = View(0, config, {})
            ok, what = _client_arp(world, view, True, "vip_owner primary", "primary")
            assert not ok and "10.0.0.100 -> backup" in what
            netns.ip("-n", client, "neigh", "replace", "10.0.0.100", "lladdr", mac("primary"), "dev", "eth0")
            assert _client_arp(world, view, True, "vip_owner primary", "primary") == (True, "vip_owner primary")
            netns.ip("-n", client, "neigh", "replace", "10.0.0.100", "lladdr", "02:00:00:00:00:99", "dev", "eth0")
            assert world.arp_holder("10.0.0.100") == "02:00:00:00:00:99"
        finally:
            world.close()


def _lab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAB, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_bad_scenario_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("title = 1\nbogus = 2\n")
    done = _lab(str(bad))
    assert done.returncode == 2 and "bad.toml:2:" in done.stderr


def test_interrupted_lab_removes_everything() -> None:
    proc = subprocess.Popen([*LAB, str(CRASH), "--time-scale", "0.25"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mine = f"shoal-lab-{proc.pid}-"  # another lab (a benchmark) may run on this host meanwhile

    def ours() -> list[str]:
        return [n for n in lab_namespaces() if n.startswith(mine)]

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not ours() and proc.poll() is None:
        time.sleep(0.05)
    assert ours(), "the lab never built its namespaces"
    time.sleep(1.0)
    children = _descendants(proc.pid)  # its daemons, servers and client (another lab's are not judged)
    assert children, "the lab started no process"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode in (1, 2), (out, err)
    assert not ours()
    assert not [pid for pid, born in children.items() if _started(pid) == born], "the lab left processes behind"


def _started(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot; /proc/PID/stat field 22), None when
    there is no such process: a PID that exists again after its process ended (pid_max is 32768
    here, and another run may start processes meanwhile) is not the same process."""
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _descendants(pid: int) -> dict[int, int | None]:
    """Every descendant of `pid` now, with when it started (`_started`)."""
    found = _descendant_pids(pid)
    return {p: _started(p) for p in found}


def _descendant_pids(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.parametrize("name", LAB_SCENARIOS)
def test_scenario_passes_in_both_worlds(name: str) -> None:
    """The scenario passes in the lab and in the simulator, and the two judge every expectation
    alike (adapters/lab/compare.py; the whole table is scripts/sim_vs_lab.py's)."""
    path = ROOT / "scenarios" / f"{name}.toml"
    sim = compare.sim(path)
    lab = compare.lab(path, SCALE)
    assert lab.code == 0 and "FAIL" not in lab.output, lab.output
    assert sim.code == 0, sim.output
    assert len(sim.verdicts) == len(lab.verdicts) >= 1, (sim.verdicts, lab.verdicts)
    assert compare.first_difference(sim, lab) == ""
    for router in ("primary", "backup"):  # every lab run's journals replay identically (runner.judge_journals)
        assert f"{router:<8} journal replayed identically: " in lab.output, lab.output


def test_a_disagreement_is_named() -> None:
    """What the comparison says when the worlds differ: the first expectation marked differently,
    in the failing world's words."""
    sim = compare.Run("sim", 0, ("ok   vip_owner primary at 1 s", "ok   client_success >= 0.99"))
    lab = compare.Run("lab", 1, ("ok   vip_owner primary at 1 s", "FAIL client_success 0.98 < 0.99"))
    assert compare.first_difference(sim, lab) == "lab: client_success 0.98 < 0.99"
    assert compare.first_difference(sim, sim) == ""
    short = compare.Run("lab", 1, ("ok   vip_owner primary at 1 s",))
    assert compare.first_difference(sim, short) == "sim: ok   client_success >= 0.99"
    out = "# t\n\nok   a\nFAIL b: why\nskip c\nFAIL invariant single_owner: x\n     what led there:\n"
    assert compare.summary(out) == ("ok   a", "FAIL b: why", "skip c", "FAIL invariant single_owner: x")


def test_dataplane_option(tmp_path: Path) -> None:
    done = _lab(str(CRASH), "--dataplane", "bogus")
    assert done.returncode == 2 and "invalid choice: 'bogus'" in done.stderr, done.stderr
    if os.path.exists("/proc/net/ip_vs"):  # a kernel with IPVS: tests/kernel/guest/test_lab_ipvs.py runs it
        return
    done = _lab(str(CRASH), "--dataplane", "ipvs")  # this host's kernel has no IPVS: said, before any namespace
    assert done.returncode == 2, done.stdout + done.stderr
    assert "needs the kernel's IPVS (modprobe ip_vs)" in done.stderr, done.stderr


def test_a_journal_that_does_not_replay_fails_the_run(tmp_path: Path) -> None:
    """The runner replays each router's journal at the end (runner.judge_journals): identical
    ones are said with their counts, an edited one is a failed verdict naming its line."""
    from types import SimpleNamespace

    from adapters.journal import NAME
    from adapters.lab.runner import judge_journals
    from tests.adapters.test_journal import drive

    drive(tmp_path)
    world = SimpleNamespace(plan=SimpleNamespace(routers=("primary", "backup")),
                            routers={r: SimpleNamespace(state_dir=tmp_path / r) for r in ("primary", "backup")})
    judged = dict(judge_journals(world))  # type: ignore[arg-type]
    assert not isinstance(judged["primary"], str) and judged["primary"].identical and judged["primary"].steps > 50
    path = tmp_path / "primary" / NAME
    lines = path.read_text().splitlines()
    at = next(n for n, line in enumerate(lines) if '"CheckCompleted"' in line and ',false,' in line)
    lines[at] = lines[at].replace(',false,"connection refused"', ',true,"connected"')
    path.write_text("\n".join(lines) + "\n")
    judged = dict(judge_journals(world))  # type: ignore[arg-type]
    assert isinstance(judged["primary"], str) and "does not replay identically" in judged["primary"]
    assert f"{path}:{at + 1}:" in judged["primary"]
    assert not isinstance(judged["backup"], str)
    (tmp_path / "backup" / NAME).write_text("")  # a daemon that ran and journaled nothing
    assert "journal of backup" in dict(judge_journals(world))["backup"]  # type: ignore[arg-type]
