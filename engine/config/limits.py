"""The bounds of an lvs.cf: what shoal reads at all, and what the daemon,
the kernel and the heartbeat can carry.

Rules:
- `check-config` accepts only what the daemon can run.  Every number is
  bounded by where it goes (the heartbeat's u64 `serial_no`, IPVS's u16
  weight and u32 fwmark, ipvsadm's 31-day timeouts); every time is at
  most a day; every string has a length and no control characters.
- Reading is linear and bounded: a file over `MAX_FILE_BYTES` or
  `MAX_LINES`, or a line over `MAX_LINE_CHARS`, is refused before any
  token is made of it; a number's digits are counted before it is
  converted; after `MAX_ISSUES` errors the parser stops.  So no input,
  however made, costs more than one bounded pass.
- Each refusal is one `file:line:col: message` like any other error.
"""

from __future__ import annotations

import re

MAX_FILE_BYTES = 4 * 1024 * 1024  # a 10,000-server Piranha-style file is about 1 MiB
MAX_LINES = 100_000
MAX_LINE_CHARS = 4096
MAX_ISSUES = 100  # then the parser stops: one more issue says so
MAX_VIRTUALS = 4096
MAX_SERVERS = 32_768  # real servers in the whole file (each one checked: the daemon runs a checker per server)
MAX_NAME_CHARS = 255  # a virtual's or server's name
MAX_STRING_CHARS = 1024  # a command, a word
MAX_PATH_CHARS = 4095  # a file name: PATH_MAX less its NUL
MAX_CHECK_CHARS = 255  # `send` and `expect`, after unescaping (Piranha's limit)

MAX_TIME_MS = 86_400_000  # every time: at most a day
MAX_IPVS_TIMEOUT_S = 86_400 * 31  # persistence and connection timeouts: ipvsadm's MAX_TIMEOUT (31 days)
U8 = 2**8 - 1
U16 = 2**16 - 1
U32 = 2**32 - 1
U64 = 2**64 - 1

# Not allowed anywhere in the file: C0 controls but tab (a newline ends the
# line; a carriage return only before it), DEL, C1 controls, the Unicode
# line and paragraph separators, and lone surrogates (not characters).
FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# The same in a value after unescaping (so an escaped newline is refused
# too), but in `send` and `expect`, where the escapes \r \n are the point.
CHECK_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

_NAMES = {0x00: "NUL", 0x09: "tab", 0x0A: "newline", 0x0D: "carriage return", 0x1B: "ESC", 0x7F: "DEL",
          0x2028: "line separator", 0x2029: "paragraph separator"}


def character(ch: str) -> str:
    """A forbidden character, for a message: `U+0000 (NUL)`."""
    code = ord(ch)
    name = _NAMES.get(code) or ("surrogate" if 0xD800 <= code <= 0xDFFF else "control character")
    return f"U+{code:04X} ({name})"


def shown(text: str, limit: int = 40) -> str:
    """`text` quoted for a message, cut to `limit` characters."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} characters)"
