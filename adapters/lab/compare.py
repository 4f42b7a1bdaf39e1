"""The simulator and the lab on one scenario, compared verdict by verdict.

Both worlds run as a user would run them (`shoal sim FILE`, `shoal lab FILE
--time-scale F --keep-going`, each a child process); their summaries (one
line per expectation, in file order: `ok  `, `FAIL` or `skip`, then what
was judged; the simulator's broken invariants after them) are read back
and compared by mark.  `first_difference` names the first expectation the
two worlds judged differently.  Used by `scripts/sim_vs_lab.py` (the
table in docs/SIM-VS-LAB.md) and by the lab tests.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOAL = (sys.executable, "-c", "import sys; from shoal.cli import main; sys.exit(main(sys.argv[1:]))")
MARKS = ("ok  ", "FAIL", "skip")


@dataclass(frozen=True, slots=True)
class Run:
    world: str  # "sim" | "lab"
    code: int  # the command's exit: 0 pass, 1 fail, 2 refused (a bad file, or a network the lab cannot build)
    verdicts: tuple[str, ...] = ()  # the summary's lines, file order
    reason: str = ""  # exit 2 or a timeout: the last line of stderr, or what went wrong
    output: str = ""  # stdout and stderr, for a failing test's message
    wall_s: float = 0.0

    @property
    def word(self) -> str:
        return {0: "pass", 1: "FAIL", 2: "refused"}.get(self.code, f"exit {self.code}")


def summary(stdout: str) -> tuple[str, ...]:
    """The verdict lines of a `shoal sim` / `shoal lab` summary (and `FAIL invariant` lines)."""
    return tuple(text for text in stdout.splitlines()
                 if (text[:4] in MARKS and text[4:5] == " ") or text.startswith("FAIL invariant"))


def _run(world: str, argv: list[str], timeout_s: float, where: str = "") -> Run:
    """Run `argv` (a command line of `SHOAL`, or one that wraps it) and read its summary back."""
    t = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return Run(world, 124, reason=f"no verdict within {timeout_s:g} s{where}", output=out,
                   wall_s=time.monotonic() - t)
    err = done.stderr.strip().splitlines()
    reason = err[-1] if done.returncode not in (0, 1) and err else ""
    return Run(world, done.returncode, summary(done.stdout), reason, done.stdout + done.stderr,
               time.monotonic() - t)


def _lab_args(scenario: Path, time_scale: float, dataplane: str) -> list[str]:
    return ["lab", str(scenario), "--time-scale", f"{time_scale:g}", "--dataplane", dataplane, "--keep-going"]


def sim(scenario: Path, timeout_s: float = 600) -> Run:
    return _run("sim", [*SHOAL, "sim", str(scenario)], timeout_s)


def lab(scenario: Path, time_scale: float = 0.25, dataplane: str = "nft", timeout_s: float = 900) -> Run:
    return _run("lab", [*SHOAL, *_lab_args(scenario, time_scale, dataplane)], timeout_s)


def lab_in_guest(scenario: Path, time_scale: float = 0.5, timeout_s: float = 1200) -> Run:
    """`shoal lab --dataplane ipvs` in the kernel guest (tests/kernel/harness.py: Debian's kernel
    under qemu, with IPVS): for what the host's kernel cannot forward (direct routing,
    tunnelling).  Under software emulation a step comes late and a check is slow, hence the
    longer default time scale (as tests/kernel/guest/test_lab_ipvs.py)."""
    harness = [sys.executable, str(ROOT / "tests" / "kernel" / "harness.py"), "--timeout", f"{timeout_s:g}", "--"]
    return _run("lab", [*harness, *SHOAL, *_lab_args(scenario, time_scale, "ipvs")], timeout_s + 120,
                " (kernel guest)")


def first_difference(a: Run, b: Run) -> str:
    """The first expectation judged differently (by mark) in the two runs, as the failing side
    says it (`sim: ...` or `lab: ...`); '' when every verdict has the same mark."""
    for x, y in zip(a.verdicts, b.verdicts):
        if x[:4] != y[:4]:
            side, text = (a.world, x) if x.startswith("FAIL") else (b.world, y)
            return f"{side}: {text[5:]}"
    longer = a if len(a.verdicts) > len(b.verdicts) else b
    if len(a.verdicts) != len(b.verdicts):
        return f"{longer.world}: {longer.verdicts[min(len(a.verdicts), len(b.verdicts))]}"
    return ""
