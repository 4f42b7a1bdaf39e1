"""Host side of the kernel suite: each guest test module passes in the guest.

See conftest.py: one boot runs all of tests/kernel/guest/.  A guest that does
not boot, hangs or loses its console fails every test here with the
console attached; a guest test that is skipped fails too.
"""

from __future__ import annotations

import pytest

from tests.kernel.conftest import GuestSuite, guest_test_ids


def _check(suite: GuestSuite) -> None:
    if suite.failure:
        pytest.fail(f"kernel suite: {suite.failure}", pytrace=False)


def test_guest_booted_real_ipvs(guest: GuestSuite) -> None:
    _check(guest)
    assert guest.kernel.endswith("-amd64"), guest.kernel
    assert guest.accel == "tcg"
    assert "shoal-guest: modprobe ip_vs failed" not in guest.console, guest.console[-3000:]
    assert guest.cases, "the guest ran no test"


@pytest.mark.parametrize("module", guest_test_ids())
def test_guest(guest: GuestSuite, module: str) -> None:
    _check(guest)
    cases = [c for c in guest.cases if c.module == module]
    assert cases, f"{module}: no test of this module ran in the guest (collection error?)\n{guest.console[-4000:]}"
    bad = [c for c in cases if c.outcome != "passed"]
    if bad:
        detail = "\n\n".join(f"{c.outcome.upper()} {c.module}::{c.name}\n{c.text}" for c in bad)
        pytest.fail(f"{len(bad)} of {len(cases)} guest tests in {module} did not pass:\n{detail}", pytrace=False)
