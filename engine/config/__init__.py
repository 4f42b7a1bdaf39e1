"""lvs.cf: parse it into the model (every problem of the file reported at
once, as `file:line:col: message`), and render the model back.

    config = parse(text, "lvs.cf")     # raises ConfigError(.issues)
    config = parse_bytes(data, path)   # the same from the file's bytes (UTF-8, size bound first)
    text = render(config)              # keeps comments, order, spelling
    text = render(replace(config, serial_no=config.serial_no + 1))  # one line changes
    for line in warnings(config): ...  # valid, but risky: say so (check-config, the daemon's log and status)

Modules: `lexer` (a line into tokens), `keys` (every key: value count,
conversion, rendering), `parser` (lines into the model and a `Document`),
`validate` (checks across keys and blocks), `render` (the writer),
`limits` (every bound: sizes, numbers, characters), `advice` (warnings).
Pure: no I/O, no clock.  Linear and bounded: a file over MAX_FILE_BYTES is
refused before it is read, so no input costs more than one bounded pass.
The grammar and the checks: docs/CONFIG.md.
"""

from __future__ import annotations

from engine.config.advice import warnings
from engine.config.limits import MAX_FILE_BYTES, MAX_ISSUES
from engine.config.parser import ConfigError, Document, Issue, Parser, too_big
from engine.config.render import render
from engine.config.validate import validate
from engine.model import Config

__all__ = ["MAX_FILE_BYTES", "ConfigError", "Document", "Issue", "parse", "parse_bytes", "render", "warnings"]


def parse(text: str, filename: str = "lvs.cf") -> Config:
    """The model of `text`; `config.source` holds its document for `render`.

    Raises ConfigError holding every problem of the file, in file order
    (at most MAX_ISSUES of them, and one more saying so).
    """
    parser = Parser(text, filename)
    config = parser.run()
    if parser.stopped:
        raise ConfigError(parser.issues)
    issues = parser.issues + validate(config, parser.doc, filename)
    if len(issues) > MAX_ISSUES:
        shown = sorted(issues, key=lambda i: (i.line, i.col, i.message))
        issues = shown[:MAX_ISSUES]
        rest = shown[MAX_ISSUES]
        issues.append(Issue(filename, rest.line, rest.col, f"too many errors: {len(shown) - MAX_ISSUES} more "
                                                           f"not shown"))
    if issues:
        raise ConfigError(issues)
    return config


def parse_bytes(data: bytes, filename: str = "lvs.cf", size: int | None = None) -> Config:
    """`parse` of a file's bytes: its size is bounded before anything else,
    and a byte that is not UTF-8 is an error at its line and column.
    `size`: the file's size when `data` is only its head (a reader stops
    one byte past MAX_FILE_BYTES)."""
    size = len(data) if size is None else max(size, len(data))
    if size > MAX_FILE_BYTES:
        raise ConfigError([too_big(filename, data[:MAX_FILE_BYTES + 1], size)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1
        col = len(data[start:e.start].decode("utf-8", "replace")) + 1
        raise ConfigError([Issue(filename, line, col, f"byte {data[e.start]:#04x} is not UTF-8 "
                                                      f"(lvs.cf is UTF-8 text)")]) from None
    return parse(text, filename)
