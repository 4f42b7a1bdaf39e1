"""The simulator's invariants on a VRRP pair (issue 14) can fail: a loser that ignores the
winner's adverts after a healed split is caught by single_owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.vrrp import Election
from scenario.model import loads
from sim.runner import run

SCENARIO = (Path(__file__).resolve().parents[2] / "scenarios" / "vrrp-partition-heal.toml").read_text()


def test_the_healed_split_passes() -> None:
    assert run(loads(SCENARIO)).ok


def test_a_master_that_ignores_a_higher_priority_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Election.heard

    def deaf_backup(self: Election, now_ms: int, priority: int, interval_ms: int, sender: str):  # type: ignore[no-untyped-def]
        if self.settings.priority == 100 and self.state == "master":
            return [], False  # the backup (priority 100) never yields
        return original(self, now_ms, priority, interval_ms, sender)

    monkeypatch.setattr(Election, "heard", deaf_backup)
    result = run(loads(SCENARIO))
    failed = [v.what for v in result.verdicts if v.ok is False]
    assert any("single_owner" in what for what in failed), failed
