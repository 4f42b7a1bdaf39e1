"""adapters/lab/daemons.py, the one way the lab, the tests and the benchmarks
start and stop `shoal run` (the lab, tests/adapters/pairlab.py and
test_control's live daemon exercise the happy path on namespaces)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.lab import daemons


def test_a_daemon_that_cannot_start_is_said_with_its_log(tmp_path: Path) -> None:
    d = daemons.start(None, tmp_path / "missing.cf", tmp_path / "state", tmp_path / "d.log", "dry-run", name="solo")
    with pytest.raises(daemons.DaemonFailed) as failed:
        d.wait_ready(60)
    message = str(failed.value)
    assert message.startswith("the solo daemon exited at start (exit "), message
    assert "missing.cf" in message, message  # the end of its log: why
    assert not d.running() and not d.stopped
    assert d.stop() == d.returncode != 0 and d.stopped


def test_stop_and_kill_of_a_daemon_already_gone_are_harmless(tmp_path: Path) -> None:
    d = daemons.start(None, tmp_path / "missing.cf", tmp_path / "state", tmp_path / "d.log", "dry-run")
    d.proc.wait(60)
    d.kill()
    d.signal(1)
    assert d.stop(grace_s=0.1) == d.returncode
    assert daemons.log_tail(tmp_path / "nothing.log") == "(no log)"
