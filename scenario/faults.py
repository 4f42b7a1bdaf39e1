"""What a real server answers in each fault mode of SPEC.md: defined once,
here, for both worlds (`sim/servers.py` compares these bytes with a check's
`expect`; the lab's real servers, `adapters/lab/server.py`, send them).

| mode     | TCP (and what a client sees)                                  |
|----------|---------------------------------------------------------------|
| `up`     | `HEALTHY_REPLY`, at once                                      |
| `down`   | nothing listens: connection refused (UDP: port unreachable)   |
| `hang`   | accepts, reads, never answers                                 |
| `wrong`  | `WRONG_REPLY`: "answers, but not what `expect` wants"          |
| `slow`   | `HEALTHY_REPLY` after the fault's `delay`                     |

A check compares the reply for real, in both worlds: `expect` (prefix, or
a regex search in the first 254 bytes; `*` matches anything) against
these bytes, an http check the status line and the body.  So a scenario's
`expect` must match `HEALTHY_REPLY` (`HTTP/1.0 200`, `^HTTP/1.. 200`, `ok`
in an http body...) for a healthy server to pass, and `WRONG_REPLY`
matches no `expect` but `*` (or a pattern as loose as `.*`): it is not an
HTTP status line, so every http check fails on it too.
"""

from __future__ import annotations

HEALTHY_BODY = b"ok\n"
HEALTHY_REPLY = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n" + HEALTHY_BODY)
WRONG_REPLY = b"garbage, not what you expected\r\n"
MODES = ("up", "down", "hang", "wrong", "slow")


def reply(mode: str) -> bytes | None:
    """The bytes a server in `mode` sends to a request (None: it sends none)."""
    if mode not in MODES:
        raise ValueError(f"not a fault mode: {mode}")
    return {"up": HEALTHY_REPLY, "slow": HEALTHY_REPLY, "wrong": WRONG_REPLY}.get(mode)


def http_answer(data: bytes) -> tuple[int | None, bytes]:
    """The status code and body of an HTTP reply (None: no status line)."""
    head, _, body = data.partition(b"\r\n\r\n")
    words = head.split(b"\r\n", 1)[0].split()
    if len(words) >= 2 and words[0].startswith(b"HTTP/") and words[1].isdigit():
        return int(words[1]), body
    return None, body
