"""`shoal lab --dataplane ipvs` on the guest's real IPVS (issue 5).

The lab's two daemons program their namespaces' IPVS tables; the lab reads
them back through the daemons' control sockets (the kernel's table, as the
`in_table` expectations and the `table_matches_health` invariant see it) and
judges the scenario exactly as it does with nft.  The run must exit 0 with
a verdict line per expectation, every one `ok`.

Time scale: 0.5.  Under TCG the guest is some twenty times slower than the
host (a daemon needs half a minute to start), and at 0.25 the scaled
keepalive (0.25 s) and check timeout (0.5 s) leave no room for a late step.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from adapters.lab.topology import lab_namespaces
from scenario.model import load

ROOT = Path(__file__).resolve().parents[3]
SCALE = "0.5"
# scenario -> (router, servers its kernel table must list at some point, one it must then lack)
SCENARIOS = {"active-crash-takeover": ("backup", ("web1", "web2", "web3"), None),
             "server-down-reentry": ("primary", ("web1", "web3"), "web2")}


def tables(stdout: str, router: str) -> list[str]:
    """The timeline's `table now` lines of `router` (what its daemon read back from the kernel)."""
    return [line for line in stdout.splitlines() if line.split()[1:4] == [router, "table", "now"]]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_lab_scenario_on_ipvs(name: str) -> None:
    path = ROOT / "scenarios" / f"{name}.toml"
    expects = len(load(path).expects)
    done = subprocess.run([sys.executable, "-m", "shoal", "lab", str(path), "--dataplane", "ipvs",
                           "--time-scale", SCALE, "--keep-going"],
                          capture_output=True, text=True, cwd=ROOT, timeout=400)
    print(done.stdout[-6000:], done.stderr[-3000:])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "# lab, dataplane ipvs," in done.stdout
    verdicts = [line for line in done.stdout.splitlines() if line[:4] in ("ok  ", "FAIL", "skip")]
    assert len(verdicts) == expects and all(v.startswith("ok  ") for v in verdicts), verdicts
    router, present, absent = SCENARIOS[name]
    seen = tables(done.stdout, router)
    assert any(all(f"{s}/" in t for s in present) and (absent is None or f"{absent}/" not in t) for t in seen), seen
    assert not lab_namespaces(), "the lab left namespaces behind"  # nothing else runs a lab in the guest
