"""Real servers and their fault modes, answering nanny's checks and clients.

A server is keyed by (address, port): every virtual that names it shares
its fate.  Modes (SPEC.md faults): `up`, `down` (connection refused),
`hang` (accepts, never answers), `wrong` (answers, but not what `expect`
wants), `slow` (answers after `delay_ms`).  `load` is the 1-minute load
average `load_monitor` reads.

Check semantics (PIRANHA.md, "nanny health checks"), decided when the
check starts (a fault that begins during a check is seen by the next one):

- down: refused after one round trip (UDP: ICMP unreachable), whatever the
  check; a `send_program` sees the refusal and prints nothing;
- hang: no answer; fails at the check's timeout (UDP without `expect`: no
  ICMP error means success, as for the original);
- connect-only (no `expect`, no `send_program`): success once connected;
  a hung server still accepts, so it passes such a check;
- with `expect`: the reply is compared for real, prefix match or regex
  search (`use_regex`, on the first 254 bytes); `*` matches anything.  What
  a server answers in each mode is `scenario.faults` (the lab's servers
  send the same bytes): a healthy one `HEALTHY_REPLY`, a `wrong` one
  `WRONG_REPLY`;
- slow: the reply comes after `delay_ms`; at or past the timeout, fails
  at the timeout (a connect-only check passes: the connection is accepted
  at once, as by the lab's real servers);
- http checks: the reply's status must be `http_status` and its body match
  `expect` (`WRONG_REPLY` has no status line: it fails every http check);
- `send_program`: what the program prints is not modelled: it passes
  against a healthy server and prints `WRONG_REPLY` against a wrong one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]

from engine.events import CheckSpec
from scenario.faults import HEALTHY_REPLY, WRONG_REPLY, http_answer

CLIENT_TIMEOUT_MS = 3_000  # a client gives up on a server after this long


@dataclass(slots=True)
class ServerModel:
    mode: str = "up"  # up | down | hang | wrong | slow
    delay_ms: int = 0
    load: float = 1.0


def expect_matches(spec: CheckSpec, reply: bytes) -> bool:
    expect = spec.expect
    if expect is None or expect == "*":
        return True
    if spec.use_regex:
        pattern = _regex(expect)
        return pattern is not None and pattern.search(reply[:254]) is not None
    want = expect.encode()
    return reply[: len(want)] == want


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.encoding = re2.Options.Encoding.LATIN1  # as adapters/checks.py: byte by byte, linear time
_RE2_OPTIONS.log_errors = False


@functools.lru_cache(maxsize=256)
def _regex(expect: str) -> Any:
    """`expect` compiled by RE2 as the real checks compile it (adapters/checks.py),
    or None when RE2 refuses it (the check then fails, as for real): a
    catastrophic pattern costs the simulator linear time, as it costs the
    daemon."""
    try:
        return re2.compile(expect.encode(), _RE2_OPTIONS)
    except re2.error:
        return None


def check_result(spec: CheckSpec, server: ServerModel, rtt_ms: int) -> tuple[int, bool, str]:
    """How long the check takes (ms) and what it finds: (delay, ok, detail)."""
    timeout = spec.timeout_ms
    rtt = max(1, rtt_ms)
    mode = server.mode
    if mode == "down":
        return rtt, False, "connection refused" if spec.kind != "udp" else "port unreachable"
    connect_only = spec.expect is None and spec.kind in ("tcp", "udp") and spec.send_program is None
    if mode == "hang":
        if connect_only:  # accepted (TCP), or no ICMP error (UDP): the original calls it alive
            return rtt, True, "connected"
        return timeout, False, "timeout"
    if connect_only:  # a slow server accepts at once: only its reply is late
        return rtt, True, "connected"
    delay = rtt + (server.delay_ms if mode == "slow" else 0)
    if delay >= timeout:
        return timeout, False, "timeout"
    answer = WRONG_REPLY if mode == "wrong" else HEALTHY_REPLY
    if spec.kind in ("http", "https") and spec.send_program is None:
        status, body = http_answer(answer)
        if status != spec.http_status:
            return delay, False, "no status line" if status is None else f"status {status}"
        ok = expect_matches(spec, body)
        return delay, ok, f"status {status}" if ok else "body does not match expect"
    if spec.send_program is not None and mode != "wrong":
        return delay, True, "program output matches expect"
    ok = expect_matches(spec, answer)
    return delay, ok, "reply matches expect" if ok else "reply does not match expect"


def answers_client(server: ServerModel) -> bool:
    """Does a client connection scheduled to this server succeed?"""
    if server.mode == "up":
        return True
    if server.mode == "slow":
        return server.delay_ms < CLIENT_TIMEOUT_MS
    return False  # down: refused; hang: timeout; wrong: a broken answer is a failed request
