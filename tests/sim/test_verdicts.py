"""scenario/verdicts.py: the end-of-run judging `shoal sim` and `shoal lab` share."""

from __future__ import annotations

from scenario.model import Expect
from scenario.verdicts import Verdicts, all_hold, exit_code, summary_lines

EXPECTS = (Expect("vip_owner", "backup", 30_000, line=7), Expect("always", "single_owner", None, line=11),
           Expect("role", {"primary": "active"}, 90_000, line=14))


def test_judged_always_and_not_judged_in_file_order() -> None:
    v = Verdicts(EXPECTS)
    v.judged(0, True, "vip_owner backup at 30 s")
    v.always(1, "at 12.000 s: 10.0.0.1 held by both")
    out = v.close(60_000, scale=0.5)
    assert [x.line for x in out] == [7, 11, 14]
    assert summary_lines(out) == [
        "ok   vip_owner backup at 30 s",
        "FAIL always single_owner: at 12.000 s: 10.0.0.1 held by both",
        "skip role {primary = active} at 90 s (not judged: the run stopped at 120 s)"]
    assert not all_hold(out) and exit_code(all_hold(out)) == 1


def test_not_judged_does_not_fail_a_run() -> None:
    v = Verdicts(EXPECTS)
    v.always(1, None)
    out = v.close(10_000)
    assert [x.mark for x in out] == ["skip", "ok  ", "skip"]
    assert out[1].what == "always single_owner"
    assert all_hold(out) and exit_code(True) == 0
