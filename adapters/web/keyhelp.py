"""What the forms page says about a key it offers to add: its default and
a one-line meaning.

    addable(("HTTP",), {"address", "port"}) -> [KeyChoice("active", "1", "0: the virtual is kept ..."), ...]

- The keys are the block's table (`engine.config.keys`: GLOBAL_KEYS,
  VIRTUAL_KEYS, SERVER_KEYS), in the table's order, less those the block
  has.
- The default is the model's (`engine.model`: Config, Virtual, Server), as
  lvs.cf writes it (the key's own `render`); when the model has none, the
  docs' default column ("(required)", "the virtual's"), else "none".  A few defaults depend on another key (a server's
  `port` is its virtual's, `heartbeat_min_ttl` follows `heartbeat_format`):
  the meaning says so.
- The meaning is the key's row of docs/CONFIG.md (the third column of
  the tables "Global keys", "`virtual NAME { }` keys", "`server NAME { }`
  keys"; a row may name several keys), markup off, cut at its first
  sentence.  Where the docs are not installed with the code, "" (the key
  is still offered).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping

from engine.config.keys import TABLES, render_value
from engine.model import Config, Server, Virtual

DOC = Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md"
_KINDS = ("global", "virtual", "server")
_SECTIONS = {"## Global keys": "global", "## `virtual NAME { }` keys": "virtual", "## `server NAME { }` keys": "server",
             "## VRRP": "global"}
_LAST_COLUMNS = {"## VRRP": 1}  # its table has a fourth column (keepalived.conf's name), not part of the meaning
_MODELS: Mapping[str, Any] = {"global": Config(), "virtual": Virtual(name="v"), "server": Server(name="s")}
MAX_MEANING_CHARS = 200


@dataclass(frozen=True, slots=True)
class KeyChoice:
    key: str
    default: str
    meaning: str


def _plain(cell: str) -> str:
    text = re.sub(r"\*\*|`", "", cell).strip()
    first = re.split(r"(?<=[a-z0-9)])\. ", text, maxsplit=1)[0].rstrip(".")
    return first if len(first) <= MAX_MEANING_CHARS else first[: MAX_MEANING_CHARS - 3].rstrip() + "..."


@functools.lru_cache(maxsize=1)
def meanings() -> Mapping[tuple[str, str], tuple[str, str]]:
    """(block kind, key) -> its (default, meaning) as docs/CONFIG.md says them ({} without it)."""
    try:
        text = DOC.read_text(encoding="utf-8")
    except OSError:
        return {}
    out: dict[tuple[str, str], tuple[str, str]] = {}
    kind: str | None = None
    extra = 0
    for line in text.splitlines():
        if line.startswith("## "):
            kind = _SECTIONS.get(line.strip())
            extra = _LAST_COLUMNS.get(line.strip(), 0)
        elif kind and line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if len(cells) >= 3 + extra:
                cells = cells[: len(cells) - extra]
                for name in re.findall(r"`([a-z_0-9]+)`", cells[0]):
                    out.setdefault((kind, name), (re.sub(r"\*\*|`", "", cells[1]), _plain(" | ".join(cells[2:]))))
    return out


def default_of(kind: str, key: str) -> str:
    """The key's default as lvs.cf writes it; else as the docs say it; else "none"."""
    rendered = render_value(TABLES[kind][key], _MODELS[kind])
    return " ".join(rendered) if rendered else meanings().get((kind, key), ("none", ""))[0]


def addable(path: tuple[str, ...], present: Collection[str]) -> list[KeyChoice]:
    """The keys of the block's table it does not have yet, each with its default and meaning."""
    kind = _KINDS[min(len(path), 2)]
    said = meanings()
    return [KeyChoice(name, default_of(kind, name), said.get((kind, name), ("", ""))[1])
            for name in TABLES[kind] if name not in present]
