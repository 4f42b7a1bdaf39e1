"""What really happened replays (issue 12): a real pair of `shoal run`
daemons in namespaces (tests/adapters/pairlab.py, nft dataplane, journals
on by default), a real server killed and started again, the active
router's daemon killed (SIGKILL) and started again, both stopped.

- Each router's journal replays identically (`shoal replay STATE_DIR`, exit 0),
  the primary's with its two starts.
- The primary's journal edited at one input (the check that saw the server
  go down made a success) is reported at exactly that line, exit 1.
- The two journals become a scenario (`shoal replay --scenario`) that
  `shoal sim` runs, with the faults the inputs showed and the roles the
  routers really had.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from adapters.journal import DIRECTORY, NAME
from adapters.lab import daemons
from scenario.model import load
from tests.adapters.pairlab import Lab, make_lab


def _health(lab: Lab, node: str) -> str:
    servers = lab.status(node)["services"][0]["servers"]
    return str(servers[0]["health"])


def _takes_out(record: dict[str, Any]) -> bool:
    """A step whose input, a check result, took a server out (health up -> down)."""
    return record.get("i", [""])[0] == "CheckCompleted" and any(
        c[:2] == ["Notify", "health"] and c[2]["from"] == "up" and c[2]["to"] == "down" for c in record["o"])


def _shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shoal", *args], capture_output=True, text=True, timeout=120,
                          cwd=daemons.ROOT)


def _run_incident(lab: Lab) -> None:
    lab.start("primary")
    lab.start("backup")
    daemons.wait_ready(lab.started, timeout_s=60)
    lab.wait("the primary active, rs1 up on both", lambda: lab.role("primary") == "active" and _health(
        lab, "primary") == "up" and _health(lab, "backup") == "up", timeout_s=20)
    server = lab.topo.processes[0]  # the real server (make_lab's only spawned process)
    server.kill()
    server.wait()
    lab.wait("rs1 down on both", lambda: _health(lab, "primary") == "down" and _health(lab, "backup") == "down",
             timeout_s=20)
    journal = Path(lab.state("primary")) / DIRECTORY / NAME  # written every FLUSH_S: a SIGKILL loses the rest
    def after_take_out() -> bool:
        """The journal holds rs1 taken out and a step a keepalive (200 ms) later: the kill comes
        after it in the incident's scenario, not within the same millisecond (its order then
        depends on the two routers' clocks)."""
        records = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
        out = next((r["t"] for r in records if _takes_out(r)), None)
        return out is not None and any(r.get("t", -1) >= out + 200 for r in records)

    lab.wait("the primary's journal holds rs1 taken out, and a keepalive after", after_take_out)
    lab.running["primary"].kill()  # SIGKILL: no goodbye; its kernel keeps the VIPs and the table
    lab.wait("the backup takes over", lambda: lab.role("backup") == "active")
    lab.start("primary")
    lab.running["primary"].wait_ready(timeout_s=60)
    lab.wait("the primary back as standby", lambda: lab.role("primary") == "standby", timeout_s=20)
    lab.topo.spawn(lab.ns["rs1"], [sys.executable, str(lab.tmp / "server.py")])
    lab.wait("rs1 up again on both", lambda: _health(lab, "primary") == "up" and _health(lab, "backup") == "up",
             timeout_s=20)
    lab.close()  # SIGTERM both: ShutdownRequested journaled


def test_a_real_pair_s_journals_replay_and_become_a_scenario(netns_ok: None, tmp_path: Path) -> None:
    with make_lab(tmp_path) as lab:
        _run_incident(lab)
        for node in ("primary", "backup"):  # each stopped cleanly once (the primary's first life was killed)
            assert lab.log(node).count(": stopped\n") == 1, lab.log(node)[-3000:]
    states = {node: tmp_path / node for node in ("primary", "backup")}

    # Each journal replays identically.
    for node, starts in (("primary", 2), ("backup", 1)):
        done = _shoal("replay", str(states[node]))
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith(f"identical: {starts} start(s), "), done.stdout
        steps = int(done.stdout.split(", ")[1].split()[0])
        assert steps > 20, done.stdout

    # One input edited: the check that took rs1 out (up -> down) made a success; replay names that line.
    edited = tmp_path / "edited"
    shutil.copytree(states["primary"] / DIRECTORY, edited)
    path = edited / NAME
    lines = path.read_text().splitlines()
    at = next(n for n, line in enumerate(lines) if _takes_out(json.loads(line)))
    record: dict[str, Any] = json.loads(lines[at])
    check_id = record["i"][1]
    record["i"] = ["CheckCompleted", check_id, True, "connected"]
    lines[at] = json.dumps(record, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    done = _shoal("replay", str(edited))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[1].startswith(f"{path}:{at + 1}: the primary's step "), done.stdout
    assert f"the result of check {check_id} (ok: connected)" in done.stdout
    assert "health web/rs1: up -> down" in done.stdout  # what the daemon decided there, not replayed

    # The incident as a scenario that the simulator runs.
    out = tmp_path / "incident.toml"
    done = _shoal("replay", "--scenario", str(states["backup"]), str(states["primary"]), "-o", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    scenario = load(out)
    kinds = [(f.kind, f.value) for f in scenario.faults]
    assert ("server_down", "rs1") in kinds and ("server_up", "rs1") in kinds, kinds
    assert kinds.index(("server_down", "rs1")) < kinds.index(("kill", "primary")) < \
        kinds.index(("restart", "primary")) < kinds.index(("server_up", "rs1")), kinds
    assert {("crash", "primary"), ("crash", "backup")} <= set(kinds)  # the final SIGTERMs
    role = next(e for e in scenario.expects if e.kind == "role")
    assert role.value == {"primary": "standby", "backup": "active"}
    assert out.read_text().startswith("# An incident, as the routers' journals saw it")
    done = _shoal("sim", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   role {primary = standby, backup = active}" in done.stdout
