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
- with `expect`: the reply is compared, prefix match or regex search
  (`use_regex`, on the first 254 bytes); `*` matches anything.  A healthy
  server answers what `expect` wants; a `wrong` server answers
  `WRONG_REPLY`, which is compared for real, so an `expect` that would match
  it anyway (`*`, `.*`) still passes;
- slow: the reply comes after `delay_ms`; at or past the timeout, fails
  at the timeout;
- http checks: a wrong server answers status 500.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]

from engine.events import CheckSpec

WRONG_REPLY = "HTTP/1.0 500 Internal Server Error\r\n\r\nsimulated wrong reply\r\n"
CLIENT_TIMEOUT_MS = 3_000  # a client gives up on a server after this long


@dataclass(slots=True)
class ServerModel:
    mode: str = "up"  # up | down | hang | wrong | slow
    delay_ms: int = 0
    load: float = 1.0


def expect_matches(spec: CheckSpec, reply: str) -> bool:
    expect = spec.expect
    if expect is None or expect == "*":
        return True
    if spec.use_regex:
        pattern = _regex(expect)
        return pattern is not None and pattern.search(reply.encode()[:254]) is not None
    return reply[: len(expect)] == expect


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
    delay = rtt + (server.delay_ms if mode == "slow" else 0)
    if delay >= timeout:
        return timeout, False, "timeout"
    if connect_only:
        return delay, True, "connected"
    if spec.kind in ("http", "https"):
        ok = mode != "wrong" or spec.http_status == 500
        return delay, ok, "status 200" if mode != "wrong" else "status 500"
    if mode == "wrong":
        ok = expect_matches(spec, WRONG_REPLY)
        return delay, ok, "reply matches expect" if ok else "reply does not match expect"
    return delay, True, "reply matches expect"


def answers_client(server: ServerModel) -> bool:
    """Does a client connection scheduled to this server succeed?"""
    if server.mode == "up":
        return True
    if server.mode == "slow":
        return server.delay_ms < CLIENT_TIMEOUT_MS
    return False  # down: refused; hang: timeout; wrong: a broken answer is a failed request
