"""Nothing hides (issue 12): a daemon's warning or error line fails a lab run unless the
scenario's faults or configuration explain it (adapters/lab/loglines.py has the rules)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from adapters.lab import loglines
from adapters.lab.runner import Hooks, run
from scenario.model import load, loads

ROOT = Path(__file__).resolve().parents[2]
CRASH = load(ROOT / "scenarios" / "active-crash-takeover.toml")  # crash primary at 20 s
SERVER = load(ROOT / "scenarios" / "server-down-reentry.toml")  # server_down web2


def _json(t: float, level: str, kind: str, msg: str, **fields: object) -> str:
    return json.dumps({"t": t, "level": level, "msg": msg, "kind": kind, **fields})


def _lines(scenario_text: list[str], router: str = "backup") -> list[loglines.Line]:
    return loglines.parse(router, "\n".join(scenario_text), t0_unix=1000.0, scale=0.25)


def test_a_failed_table_operation_is_never_explained() -> None:
    lines = _lines([_json(1000.5, "warning", "table", "table: -A -t 10.0.0.100:80 -s wlc (web) failed: EEXIST: "
                          "service TCP 10.0.0.100:80 exists", op="-A", failed="EEXIST"),
                    _json(1000.6, "warning", "error", "error: table -A failed: EEXIST: service TCP 10.0.0.100:80 "
                          "exists")])
    assert lines[0].t_s == 2.0  # scenario seconds: 0.5 wall s at time scale 0.25
    assert loglines.unexplained(lines, CRASH) == lines
    text = loglines.verdict_text("backup", lines)
    assert text.startswith("log of backup at 2.000 s: warning: table: -A -t 10.0.0.100:80 -s wlc (web) failed: EEXIST")
    assert text.endswith("(and 1 more unexplained line(s))")


def test_a_crash_explains_the_partners_lines_from_its_time_on() -> None:
    before = _json(1000 + 19 * 0.25, "warning", "partner", "partner: dead (no heartbeat for 3.0 s)", alive=False)
    after = _json(1000 + 21 * 0.25, "warning", "partner", "partner: dead (no heartbeat for 3.0 s)", alive=False)
    lost = _json(1000 + 21 * 0.25, "warning", "heartbeat_lost", "heartbeat: nothing heard on the public path")
    boot = _json(1000 - 0.5, "warning", "heartbeat_lost", "heartbeat: nothing heard on the public path")
    lines = _lines([boot, before, after, lost])
    assert [line.t_s for line in loglines.unexplained(lines, CRASH)] == [19.0]
    assert loglines.explanation(lines[2], CRASH) == "crash primary at 20 s"
    assert loglines.explanation(lines[0], CRASH) == "the routers' boot at 0 s"  # before scenario time 0
    lossy = load(ROOT / "scenarios" / "loss-gap-primary-yields.toml")  # [network] loss = 0.2, no fault
    assert loglines.unexplained(lines, lossy) == []


def test_a_server_fault_explains_that_servers_health_only() -> None:
    at = 1000 + 31 * 0.25  # server_down web2 at 30 s
    web2 = _json(at, "warning", "health", "health web/web2: up -> down (connection refused)",
                 service="web", server="web2", to="down")
    web1 = _json(at, "warning", "health", "health web/web1: up -> down (connection refused)",
                 service="web", server="web1", to="down")
    lines = _lines([web2, web1], router="primary")
    assert loglines.unexplained(lines, SERVER) == [lines[1]]


def test_config_warnings_and_info_lines_pass_and_raw_lines_fail() -> None:
    lines = _lines([_json(999.0, "warning", "warning", "WARNING: heartbeats are not authenticated: ..."),
                    _json(1001.0, "info", "table", "table: -A -t 10.0.0.100:80 -s wlc (web)"),
                    "Traceback (most recent call last):",
                    ""])
    bad = loglines.unexplained(lines, CRASH)
    assert [line.level for line in bad] == ["raw"]
    assert loglines.verdict_text("primary", bad) == \
        "log of primary (a line outside the log): Traceback (most recent call last):"


# Timers far from a loaded host's stalls (deadtime 2.5 wall seconds at time scale 0.25): the
# passing half must not fail on a heartbeat gap that the scenario does not explain.
SHORT = '''
title = "a quiet pair"
duration = 6.0
config = """
serial_no = 1
primary = 10.0.0.1
backup = 10.0.0.2
backup_active = 1
keepalive = 2
deadtime = 10
network = nat
nat_router = 10.1.0.254 eth1:1
virtual web {
    address = 10.0.0.100 eth0:1
    port = 80
    timeout = 2
    server web1 {
        address = 10.1.0.11
    }
}
"""

[[expect]]
at = 4.0
vip_owner = "primary"
'''.replace('"""', "'''")


class Inject(Hooks):
    """Writes one line into the backup's log as the daemon would (its JSON format)."""

    def __init__(self, line: dict[str, object]) -> None:
        self.line = line

    def started(self, world, t0: float) -> None:  # type: ignore[no-untyped-def]
        with open(world.routers["backup"].log_path, "a") as log:
            log.write(json.dumps({"t": time.time(), **self.line}) + "\n")


def test_an_unexplained_error_line_fails_a_lab_run_and_an_explained_one_does_not() -> None:
    scenario = loads(SHORT, "quiet.toml")
    failing = run(scenario, 0.25, hooks=Inject({"level": "error", "kind": "engine_error",
                                                 "msg": "dropped a tick: the engine failed on it: boom"}))
    assert [v.what for v in failing.verdicts if v.ok is False] == [
        next(v.what for v in failing.verdicts if v.what.startswith("log of backup at "))]
    assert failing.verdicts[0].ok  # the expectation itself held: the log alone failed the run
    assert "dropped a tick: the engine failed on it: boom" in failing.verdicts[-1].what
    assert not failing.ok
    passing = run(scenario, 0.25, hooks=Inject({"level": "warning", "kind": "warning",
                                                 "msg": "WARNING: a configuration warning"}))
    assert passing.ok, [v.what for v in passing.verdicts]
