"""The kernel suite: one guest boot runs every test in tests/kernel/guest/.

On the host, tests/kernel/guest/ is not collected (the host kernel has no
IPVS); `test_kernel.py` boots the guest once (session fixture `guest`),
runs pytest there on tests/kernel/guest/ with a JUnit report written to the
guest's /results, and turns each guest test into a host-side result:
`test_guest[<guest test id>]` passes only if that test passed in the guest
(a skip in the guest is a failure here).  The terminal summary names the
kernel, the accelerator and every guest test with its outcome.

Inside the guest (SHOAL_IN_GUEST=1) this file collects tests/kernel/guest/
normally.
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
IN_GUEST = os.environ.get("SHOAL_IN_GUEST") == "1"

if not IN_GUEST:
    collect_ignore_glob = ["guest/*"]


def guest_test_ids() -> list[str]:
    """Guest test modules, as collected on the host (one host test per module)."""
    return sorted(p.name for p in (HERE / "guest").glob("test_*.py"))


@dataclass
class GuestCase:
    module: str
    name: str
    outcome: str  # passed, failed, error, skipped
    text: str = ""
    seconds: float = 0.0


@dataclass
class GuestSuite:
    kernel: str = "?"
    accel: str = "?"
    wall_s: float = 0.0
    rc: int | None = None
    failure: str | None = None  # the guest did not run to the end
    console: str = ""
    cases: list[GuestCase] = field(default_factory=list)


SUITE: GuestSuite | None = None


def parse_junit(path: Path) -> list[GuestCase]:
    cases: list[GuestCase] = []
    root = ET.parse(path).getroot()
    for tc in root.iter("testcase"):
        classname = tc.get("classname", "")
        module = classname.split(".")[-1] if classname else "?"
        for part in classname.split("."):
            if part.startswith("test_"):
                module = part + ".py"
                break
        outcome, text = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = tc.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                text = (el.get("message") or "") + "\n" + (el.text or "")
                break
        out = tc.find("system-out")
        if out is not None and out.text and outcome != "passed":
            text += "\n--- captured stdout ---\n" + out.text
        cases.append(GuestCase(module, tc.get("name", "?"), outcome, text, float(tc.get("time", "0") or 0)))
    return cases


@pytest.fixture(scope="session")
def guest() -> Iterator[GuestSuite]:
    global SUITE
    from tests.kernel.harness import GuestFailure, boot

    suite = GuestSuite()
    SUITE = suite
    argv = [
        "python", "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rA",
        "--junitxml=/results/junit.xml", "tests/kernel/guest",
    ]
    try:
        run = boot(argv)
    except GuestFailure as e:
        suite.failure = str(e)
        suite.console = e.console
        yield suite
        return
    suite.kernel, suite.accel, suite.wall_s, suite.rc, suite.console = (
        run.kernel, run.accel, run.wall_s, run.rc, run.console,
    )
    junit = run.results / "junit.xml"
    if junit.exists():
        suite.cases = parse_junit(junit)
    else:
        suite.failure = f"the guest's pytest wrote no report (exit {run.rc})"
    try:
        yield suite
    finally:
        shutil.rmtree(run.results, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SUITE is None:
        return
    tr = terminalreporter
    tr.section("kernel suite (guest)")
    tr.write_line(f"kernel {SUITE.kernel}, accelerator {SUITE.accel}, {SUITE.wall_s:.1f} s wall, guest pytest exit {SUITE.rc}")
    if SUITE.failure:
        tr.write_line(f"GUEST FAILURE: {SUITE.failure.splitlines()[0]}")
    for c in SUITE.cases:
        tr.write_line(f"  {c.outcome.upper():7} {c.module}::{c.name} ({c.seconds:.2f} s)")
