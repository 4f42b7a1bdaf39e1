"""lvs.cf: parse it into the model (every problem of the file reported at
once, as `file:line:col: message`), and render the model back.

    config = parse(text, "lvs.cf")     # raises ConfigError(.issues)
    text = render(config)              # keeps comments, order, spelling
    text = render(replace(config, serial_no=config.serial_no + 1))  # one line changes

Modules: `lexer` (a line into tokens), `keys` (every key: value count,
conversion, rendering), `parser` (lines into the model and a `Document`),
`validate` (checks across keys and blocks), `render` (the writer).  Pure:
no I/O, no clock.  The grammar and the checks: docs/CONFIG.md.
"""

from __future__ import annotations

from engine.config.parser import ConfigError, Document, Issue, Parser
from engine.config.render import render
from engine.config.validate import validate
from engine.model import Config

__all__ = ["ConfigError", "Document", "Issue", "parse", "render"]


def parse(text: str, filename: str = "lvs.cf") -> Config:
    """The model of `text`; `config.source` holds its document for `render`.

    Raises ConfigError holding every problem of the file, in file order.
    """
    parser = Parser(text, filename)
    config = parser.run()
    issues = parser.issues + validate(config, parser.doc, filename)
    if issues:
        raise ConfigError(issues)
    return config
