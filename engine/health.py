"""Health of one checked (address, port, check): what nanny decided.

Everything that affects a real server's health lives here; this module does
not know which virtuals share the check (the engine fans a result out to
every (virtual, server) that uses it) nor what time it is.

Rules (../shared/PIRANHA.md, "nanny health checks"):

- a server healthy at start goes in at once (unknown + success -> up);
- while up, `fall` consecutive failures take it down (default 1: at once);
- while down, `rise` consecutive successes bring it back (default
  `reentry / interval`, rounded up, at least 1); a failure restarts the count;
- an operator can force a server down or up, drain it (in the table at
  weight 0), set its weight (the checks still decide whether it is in),
  and hand it back to the checks (`auto`).

Weights: a server coming back starts at `max(1, weight >> 5)` and doubles at
each adjust period up to its configured weight (slow start); `load_monitor`
moves the weight with the server's load by the original's formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

Status = Literal["unknown", "up", "down"]
Admin = Literal["auto", "force_up", "force_down", "drain", "weight"]  # "weight": the checks decide, at an operator weight


@dataclass(frozen=True, slots=True)
class Health:
    status: Status = "unknown"
    run: int = 0  # consecutive results pulling away from `status`
    ok_total: int = 0
    fail_total: int = 0
    last_ok: bool | None = None
    last_detail: str = ""


# (status, result ok?) -> what the run of results does.  "flip" changes the
# status at once; "count" flips it after the threshold; "reset" clears the run.
_RULES: Mapping[tuple[Status, bool], Literal["flip", "count", "reset"]] = {
    ("unknown", True): "flip",  # healthy at start: in at once
    ("unknown", False): "flip",  # failing at start: out, must then rise
    ("up", True): "reset",
    ("up", False): "count",  # `fall` failures in a row
    ("down", True): "count",  # `rise` successes in a row
    ("down", False): "reset",
}

_FLIPPED: Mapping[tuple[Status, bool], Status] = {
    ("unknown", True): "up",
    ("unknown", False): "down",
    ("up", False): "down",
    ("down", True): "up",
}


def observe(health: Health, ok: bool, detail: str, *, rise: int, fall: int) -> Health:
    """The health after one more check result."""
    if rise < 1 or fall < 1:
        raise ValueError(f"rise and fall must be >= 1 (rise={rise}, fall={fall})")
    ok_total = health.ok_total + ok
    fail_total = health.fail_total + (not ok)
    status = health.status
    rule = _RULES[(status, ok)]
    run = 0
    if rule == "count":
        run = health.run + 1
        if run >= (fall if status == "up" else rise):
            rule, run = "flip", 0
    if rule == "flip":
        status = _FLIPPED[(status, ok)]
    return Health(status, run, ok_total, fail_total, ok, detail)


def effective(status: Status, admin: Admin) -> Status:
    """The status the table follows once an operator's override is applied."""
    if admin == "force_up":
        return "up"
    if admin == "force_down":
        return "down"
    return status


def slow_start_weight(weight: int) -> int:
    """The first weight of a server coming back (`max(1, weight >> 5)`)."""
    return min(weight, max(1, weight >> 5))


def slow_start_next(current: int, weight: int) -> int:
    """One adjust period later: doubled, up to the configured weight."""
    if current >= weight:
        return current
    return min(weight, max(1, current * 2))


def load_adjust(last: int, weight: int, load: float | None) -> int | None:
    """The original's load_monitor formula: the new weight, or None to leave it.

    With w the configured weight and s = w / 2: below w the weight doubles
    (up to w, always applied); with load L < 1 it grows by s*(1-L)^(1/3) up to 10*w; with
    L > 1 it shrinks by s*(L-1)^(1/3) down to w.  A change smaller than w/4
    is not applied; L == 1 or an unreadable load leaves the weight alone.
    """
    if load is None or weight <= 0:
        return None
    if last < weight:
        # Slow start is always applied: the w/4 rule below would otherwise
        # leave a weight of 8 out of 10 stuck short of its target.
        return min(2 * max(last, 1), weight)
    else:
        spread = weight / 2
        if load < 1:
            new = min(last + spread * (1 - load) ** (1 / 3), 10.0 * weight)
        elif load > 1:
            new = max(last - spread * (load - 1) ** (1 / 3), float(weight))
        else:
            return None
    if abs(new - last) < weight / 4:
        return None
    return int(new)
