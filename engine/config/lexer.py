"""lvs.cf lines into tokens, with their columns.

A line is blank, a comment (`#` first), `}`, `virtual NAME {`,
`server NAME {`, or `key = value [value...]`.  Tokens are blank separated;
a token that starts with `"` or `'` runs to the matching quote, and inside
it `\\\\ \\r \\n \\t \\' \\"` are escapes (any other backslash escape is an
error: write `\\\\` for a backslash, as in a regex `HTTP/1\\\\.1`).  A `#`
that starts a token outside quotes starts a trailing comment.  The first
`=` of a line ends the key even without blanks (`weight=2`); later ones
are ordinary characters (`http_path = /?a=b`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

ESCAPES = {"\\": "\\", "r": "\r", "n": "\n", "t": "\t", "'": "'", '"': '"'}
UNESCAPES = {v: "\\" + k for k, v in ESCAPES.items()}
BLANKS = " \t\r"
_BARE_KEY = re.compile(r"[^ \t\r=]+")  # a bare token before the line's first '='
_BARE = re.compile(r"[^ \t\r]+")  # after it
_SKIP = re.compile(r"[ \t\r]*")
_WORD = re.compile(r"[^ \t\r]+")


class Token(NamedTuple):  # a tuple, not a frozen dataclass: made for every word of the file, 3x cheaper
    text: str  # the value (unescaped, without quotes)
    col: int  # 1-based column of its first character
    quoted: bool = False
    end: int = 0  # 0-based index just past its last character in the line


class LexError(Exception):
    def __init__(self, col: int, message: str) -> None:
        super().__init__(message)
        self.col = col
        self.message = message


def tokens(line: str) -> list[Token]:
    """The tokens of one line (no trailing comment).  Raises LexError."""
    if '"' not in line and "'" not in line:
        return _bare_tokens(line)
    out: list[Token] = []
    n = len(line)
    i = _SKIP.match(line, 0).end()  # type: ignore[union-attr]  # always matches
    seen_equals = False
    while i < n:
        ch = line[i]
        if ch == "#":
            break
        start = i
        if ch in "\"'":
            text, i = _quoted(line, i)
            out.append(Token(text, start + 1, True, i))
            if i < n and line[i] not in BLANKS:
                raise LexError(i + 1, f"expected a blank after the closing quote, found {line[i]!r}")
        elif ch == "=" and not seen_equals:
            seen_equals = True
            i += 1
            out.append(Token("=", start + 1, False, i))
        else:
            bare = (_BARE if seen_equals else _BARE_KEY).match(line, i)
            assert bare is not None  # line[i] is neither a blank nor (before the first '=') an '='
            i = bare.end()
            out.append(Token(line[start:i], start + 1, False, i))
        i = _SKIP.match(line, i).end()  # type: ignore[union-attr]
    return out


def _bare_tokens(line: str) -> list[Token]:
    """`tokens` of a line without quotes (most lines), the same, faster."""
    out: list[Token] = []
    equals = line.find("=")
    for m in _WORD.finditer(line, 0, len(line) if equals < 0 else equals):
        if m.group()[0] == "#":
            return out
        out.append(Token(m.group(), m.start() + 1, False, m.end()))
    if equals < 0:
        return out
    out.append(Token("=", equals + 1, False, equals + 1))
    for m in _WORD.finditer(line, equals + 1):
        if m.group()[0] == "#":
            break
        out.append(Token(m.group(), m.start() + 1, False, m.end()))
    return out


def _quoted(line: str, i: int) -> tuple[str, int]:
    quote_char = line[i]
    start = i
    i += 1
    chars: list[str] = []
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            if i + 1 >= len(line):
                break
            nxt = line[i + 1]
            if nxt not in ESCAPES:
                raise LexError(i + 1, f"unknown escape \\{nxt} (known: \\\\ \\r \\n \\t \\' \\\"; "
                                      f"write \\\\ for a backslash)")
            chars.append(ESCAPES[nxt])
            i += 2
            continue
        if ch == quote_char:
            return "".join(chars), i + 1
        chars.append(ch)
        i += 1
    raise LexError(start + 1, f"unclosed quote {quote_char}: expected a closing {quote_char} "
                              f"before the end of the line")


def quote(text: str) -> str:
    """`text` as one lvs.cf token: bare when it can be, else double-quoted."""
    if text and text[0] not in "\"'#" and not any(c in text for c in " \t\r\n\"'\\#={}"):
        return text
    return '"' + "".join(UNESCAPES.get(c, c) for c in text) + '"'
