"""The operator's overrides shared over the authenticated heartbeat channel
(issue 11, engine/sync.py), on a real pair (tests/adapters/pairlab.py,
nft dataplane) with a heartbeat key: a drain given to the active primary
with `shoal admin` reaches the standby backup, which keeps it when it takes
over after the primary's crash (its table holds rs1 at weight 0) and in
its own state directory.  Without a key the same drain stays on the
primary (the partner hears nothing it could trust)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from adapters.lab.daemons import ROOT as ROOT_DIR
from tests.adapters.pairlab import CONFIG, make_lab


def _admin(state: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shoal", "admin", *args, "--state-dir", state],
                          capture_output=True, text=True, timeout=30, cwd=ROOT_DIR)


def _rs1(status: dict[str, Any]) -> dict[str, Any]:
    return next(r for s in status["services"] for r in s["servers"] if r["name"] == "rs1")


def test_a_drain_reaches_the_partner_and_survives_a_failover(netns_ok: None, tmp_path: Path) -> None:
    key = tmp_path / "heartbeat.key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    os.chmod(key, 0o600)
    config = CONFIG.replace("serial_no = 1", f"serial_no = 1\nheartbeat_key_file = {key}")
    with make_lab(tmp_path, config=config) as lab:
        lab.start("primary")
        lab.start("backup")
        lab.wait("primary active, backup standby", lambda: lab.role("primary") == "active"
                 and lab.role("backup") == "standby", timeout_s=30)
        done = _admin(lab.state("primary"), "drain", "web/rs1")
        assert done.returncode == 0, done.stderr
        lab.wait("the backup holds rs1 drained", lambda: _rs1(lab.status("backup"))["admin"] == "drain")
        assert lab.status("backup")["counters"]["overrides_taken"] >= 1
        kept = json.loads((Path(lab.state("backup")) / "overrides.json").read_text())
        assert kept["overrides"] == [{"virtual": "web", "server": "rs1", "action": "drain"}]
        lab.daemons["primary"].send_signal(signal.SIGKILL)  # the primary dies without a goodbye
        lab.wait("the backup active", lambda: lab.role("backup") == "active", timeout_s=15)
        lab.wait("rs1 at weight 0 in the backup's table",
                 lambda: _rs1(lab.status("backup"))["weight"] == 0 and _rs1(lab.status("backup"))["in_table"])
        assert "overrides: the partner's set taken (generation 1, 1 override(s))" in lab.log("backup")


def test_without_a_key_nothing_is_shared(netns_ok: None, tmp_path: Path) -> None:
    with make_lab(tmp_path) as lab:
        lab.start("primary")
        lab.start("backup")
        lab.wait("primary active, backup standby", lambda: lab.role("primary") == "active"
                 and lab.role("backup") == "standby", timeout_s=30)
        assert _admin(lab.state("primary"), "drain", "web/rs1").returncode == 0
        lab.wait("rs1 drained on the primary", lambda: _rs1(lab.status("primary"))["admin"] == "drain")
        time.sleep(3)  # keepalive 0.2 s: a resend every RESEND_KEEPALIVES (5) keepalives, 1 s; three rounds
        assert _rs1(lab.status("backup"))["admin"] == "auto"
        assert lab.status("backup")["counters"].get("overrides_taken", 0) == 0
