"""The daemon's log: the `shoal` logger, the JSON line format, lvs.cf's
`debug_level`, and the helpers that attach a line's fields (docs/LOGS.md)."""

from __future__ import annotations

import json
import logging
from typing import Any

from adapters.describe import plain
from engine.model import Config

log = logging.getLogger("shoal")


def fields_of(**fields: Any) -> dict[str, Any]:
    """`extra=` of a log call: these facts go into the JSON log beside the message."""
    return {"fields": fields}


def warn(warnings: list[str]) -> None:
    for warning in warnings:
        log.warning("WARNING: %s", warning, extra=fields_of(kind="warning", warning=warning))


def log_level(config: Config) -> None:
    """lvs.cf's debug_level: NONE logs decisions and errors; any other word
    (Piranha's tool wrote LOW, HIGH...) also every input the engine steps on."""
    log.setLevel(logging.INFO if config.debug_level.upper() == "NONE" else logging.DEBUG)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: `t`, `level`, `msg` (the text line), the
    line's fields (`kind` and the rest, docs/LOGS.md) and `exc`, the
    traceback of a bug.  The three first are never overwritten by a field."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"t": round(record.created, 3), "level": record.levelname.lower(),
                               "msg": record.getMessage()}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update((k, v) for k, v in fields.items() if k not in out)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=plain)
