"""lvs.cf lines into tokens, with their columns.

A line is blank, a comment (`#` first), `}`, `virtual NAME {`,
`server NAME {`, or `key = value [value...]`.  Tokens are blank separated;
a token that starts with `"` or `'` runs to the matching quote, and inside
it `\\\\ \\r \\n \\t \\' \\"` are escapes.  A `#` that starts a token
outside quotes starts a trailing comment.
"""

from __future__ import annotations

from dataclasses import dataclass

ESCAPES = {"\\": "\\", "r": "\r", "n": "\n", "t": "\t", "'": "'", '"': '"'}
UNESCAPES = {v: "\\" + k for k, v in ESCAPES.items()}


@dataclass(frozen=True, slots=True)
class Token:
    text: str  # the value (unescaped, without quotes)
    col: int  # 1-based column of its first character
    quoted: bool = False


class LexError(Exception):
    def __init__(self, col: int, message: str) -> None:
        super().__init__(message)
        self.col = col
        self.message = message


def tokens(line: str) -> list[Token]:
    """The tokens of one line (no trailing comment).  Raises LexError."""
    out: list[Token] = []
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if ch in " \t\r":
            i += 1
            continue
        if ch == "#":
            break
        start = i
        if ch in "\"'":
            text, i = _quoted(line, i)
            out.append(Token(text, start + 1, True))
            if i < n and line[i] not in " \t\r":
                raise LexError(i + 1, f"expected a blank after the closing quote, found {line[i]!r}")
            continue
        if ch == "=":
            out.append(Token("=", start + 1))
            i += 1
            continue
        while i < n and line[i] not in " \t\r=":
            i += 1
        out.append(Token(line[start:i], start + 1))
    return out


def _quoted(line: str, i: int) -> tuple[str, int]:
    quote = line[i]
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
                raise LexError(i + 1, f"unknown escape \\{nxt} (known: \\\\ \\r \\n \\t \\' \\\")")
            chars.append(ESCAPES[nxt])
            i += 2
            continue
        if ch == quote:
            return "".join(chars), i + 1
        chars.append(ch)
        i += 1
    raise LexError(start + 1, f"unclosed quote {quote}: expected a closing {quote} before the end of the line")


def quote(text: str) -> str:
    """`text` as one lvs.cf token: bare when it can be, else double-quoted."""
    if text and not any(c in text for c in " \t\r\n\"'\\#=") :
        return text
    return '"' + "".join(UNESCAPES.get(c, c) for c in text) + '"'
