"""Health checks that cannot freeze or bloat the daemon (issue 9, items 4
and 5), on the real pair of tests/adapters/pairlab.py: two `shoal run`
daemons in namespaces, a real server behind them.

- A catastrophic regular expression (`expect = "^(a+)+$"`, `use_regex = 1`)
  against a server answering forty `a` and a `!`: a backtracking matcher
  spins for hours on that reply, in both daemons (the standby checks too).
  The pair must keep serving: the primary holds the VIP, both answer
  `shoal status` at once, round after round, and SIGTERM stops them.
- A `send_program` that floods its output once the server fails (`yes`):
  the check must fail within its timeout, the server leave the table, and
  the daemons stay small; when the flood stops the server comes back.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.pairlab import CONFIG, Lab, make_lab

VIP = "10.50.0.100"
CHECK_TIMEOUT_S = 0.5  # `timeout` in CONFIG: the poll interval and the check's hard timeout
RSS_LIMIT_MB = 200


def with_check(lines: str) -> str:
    """CONFIG with its `send` / `expect` lines replaced by `lines`."""
    kept = [line for line in CONFIG.splitlines(keepends=True)
            if not line.lstrip().startswith(("send =", "expect ="))]
    at = next(i for i, line in enumerate(kept) if line.lstrip().startswith("scheduler ="))
    config = "".join(kept[:at]) + lines + "".join(kept[at:])
    assert "HTTP/1.0 200" not in config and lines in config
    return config


REGEX_CONFIG = with_check('    expect = "^(a+)+$"\n    use_regex = 1\n')

REGEX_SERVER = """
import asyncio
async def handle(r, w):
    w.write(b"a" * 40 + b"!")
    await w.drain(); w.close()
async def main():
    s = await asyncio.start_server(handle, "0.0.0.0", 80)
    async with s: await s.serve_forever()
asyncio.run(main())
"""


def server(lab: Lab, node: str) -> dict[str, Any]:
    found: dict[str, Any] = lab.status(node)["services"][0]["servers"][0]
    return found


def timed_status(lab: Lab, node: str) -> float:
    t0 = time.monotonic()
    lab.status(node)  # raises (socket timeout) after 2 s without an answer
    return time.monotonic() - t0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0  # a zombie has no VmRSS line


def stops_on_sigterm(lab: Lab, node: str, within_s: float = 5.0) -> float:
    proc = lab.daemons[node]
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(within_s)
    except Exception:
        raise AssertionError(f"{node} ignored SIGTERM for {within_s} s\n{lab.log(node)[-3000:]}") from None
    assert proc.returncode == 0, (proc.returncode, lab.log(node)[-3000:])
    return time.monotonic() - t0


@pytest.fixture
def regex_lab(netns_ok: None, tmp_path: Path) -> Iterator[Lab]:
    with make_lab(tmp_path, config=REGEX_CONFIG, server=REGEX_SERVER) as built:
        yield built


def test_catastrophic_regex_neither_freezes_the_pair_nor_stops_sigterm(regex_lab: Lab) -> None:
    lab = regex_lab
    lab.start("primary")
    lab.start("backup")
    lab.wait("primary active, backup standby",
             lambda: lab.role("primary") == "active" and lab.role("backup") == "standby", timeout_s=10)
    lab.wait("the primary holds the VIP", lambda: VIP in lab.vips("primary"))
    lab.wait("rs1 checked and found down on both routers",
             lambda: all(server(lab, n)["checks_failed"] >= 1 and server(lab, n)["health"] == "down"
                         for n in ("primary", "backup")))
    detail = server(lab, "primary")["last_detail"]
    assert "does not match expect" in detail, detail

    # Several check rounds: both daemons answer at once every time, the VIP stays put.
    worst = 0.0
    failed_before = server(lab, "primary")["checks_failed"]
    end = time.monotonic() + 8 * CHECK_TIMEOUT_S
    while time.monotonic() < end:
        for node in ("primary", "backup"):
            worst = max(worst, timed_status(lab, node))
        assert VIP in lab.vips("primary") and VIP not in lab.vips("backup")
        time.sleep(0.1)
    assert worst < 2.0, worst
    assert lab.role("primary") == "active" and lab.role("backup") == "standby"
    assert server(lab, "primary")["checks_failed"] >= failed_before + 4  # checks go on, each one decided

    took = stops_on_sigterm(lab, "primary")
    assert VIP not in lab.vips("primary")
    stops_on_sigterm(lab, "backup")
    print(f"\nstatus answered in {worst * 1000:.0f} ms at worst; SIGTERM stopped the primary in {took:.2f} s")


@pytest.fixture
def flood_lab(netns_ok: None, tmp_path: Path) -> Iterator[Lab]:
    flood = tmp_path / "flood"  # while it exists, the check program floods
    config = with_check(f'    send_program = "if test -e {flood}; then exec yes; fi"\n')
    with make_lab(tmp_path, config=config) as built:
        yield built


def test_flooding_check_program_fails_in_time_and_stays_small(flood_lab: Lab) -> None:
    lab = flood_lab
    lab.start("primary")
    lab.start("backup")
    lab.wait("primary active", lambda: lab.role("primary") == "active", timeout_s=10)
    lab.wait("rs1 in the primary's table", lambda: server(lab, "primary")["in_table"])
    lab.wait("a client request through the VIP", lab.get)

    (lab.tmp / "flood").touch()
    t0 = time.monotonic()
    took = lab.wait("rs1 out of the primary's table", lambda: not server(lab, "primary")["in_table"],
                    timeout_s=2 * CHECK_TIMEOUT_S + 2.0)
    detail = server(lab, "primary")["last_detail"]
    assert "exceeded" in detail, detail

    # The flood goes on for several check rounds: the daemons answer and stay small.
    peak = {node: 0.0 for node in lab.daemons}
    end = t0 + 8 * CHECK_TIMEOUT_S
    while time.monotonic() < end:
        for node, proc in lab.daemons.items():
            peak[node] = max(peak[node], rss_mb(proc.pid))
            assert timed_status(lab, node) < 2.0
        time.sleep(0.1)
    assert max(peak.values()) < RSS_LIMIT_MB, peak
    assert server(lab, "primary")["health"] == "down"

    (lab.tmp / "flood").unlink()
    lab.wait("rs1 back in the table once the flood stops", lambda: server(lab, "primary")["in_table"])
    stops_on_sigterm(lab, "primary")
    stops_on_sigterm(lab, "backup")
    print(f"\nrs1 out of the table {took:.2f} s after the flood began; "
          f"peak RSS {', '.join(f'{n} {mb:.0f} MB' for n, mb in sorted(peak.items()))}")
