"""lvs.cf: parse it into the model (every problem of the file reported at
once, as `file:line:col: message`), and render the model back.

    config = parse(text, "lvs.cf")     # raises ConfigError(.issues)
    text = render(config)              # keeps comments and order
"""

from __future__ import annotations

from engine.config.parser import ConfigError, Document, Issue, Parser
from engine.config.render import render
from engine.config.validate import validate
from engine.model import Config

__all__ = ["ConfigError", "Document", "Issue", "parse", "render"]


def parse(text: str, filename: str = "lvs.cf") -> Config:
    parser = Parser(text, filename)
    config = parser.run()
    issues = parser.issues + validate(config, parser.doc, filename)
    if issues:
        raise ConfigError(issues)
    return config
