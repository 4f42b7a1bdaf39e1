"""The configuration file as the web routes read, check and replace it:
one seam (`CONFIG`) over adapters/web/configedit.py, the editing library.

- `read(path)` -> Current(text, etag, serial_no): the ETag is configedit's
  (a hash of the file's bytes), so any change to the file, by anyone,
  changes it.
- `check(text)` -> [{"line", "col", "message"}]: engine.config's errors.
- `preview(path, text, health)`: what applying would write (serial_no
  raised if the text did not raise it), its diff and the table operations
  an active router would make (ipvsadm arguments).
- `apply(path, text, etag, history_dir, health)`: refused (Conflict, 412)
  when the file's ETag is no longer `etag`, refused (Invalid, 422) when the
  text does not parse; otherwise written atomically, comments and order
  kept, the replaced version saved in `history_dir`.
- `history(history_dir)`, `revert(path, version, etag, history_dir)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from adapters.web import configedit
from adapters.web.configedit import Applied, Conflict, Invalid, Prepared, Version
from engine.config import MAX_FILE_BYTES, ConfigError, parse

__all__ = ["CONFIG", "Applied", "Conflict", "Current", "Invalid", "Prepared", "Version", "health_of"]


@dataclass(frozen=True, slots=True)
class Current:
    text: str
    etag: str
    serial_no: int | None


def health_of(status: Mapping[str, Any] | None) -> dict[tuple[str, str], str] | None:
    """The servers' standing in a daemon status, for the table preview (None: all healthy)."""
    if not status:
        return None
    out = {}
    for s in status.get("services", ()):
        for r in s.get("servers", ()):
            standing = "drained" if r.get("admin") == "drain" else r.get("health", "unknown")
            out[(str(s.get("name")), str(r.get("name")))] = standing if standing in (
                "up", "down", "drained", "unknown") else "unknown"
    return out


class Config:
    def read(self, path: str) -> Current:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        text = data.decode("utf-8", "surrogateescape")
        try:
            serial: int | None = parse(text).serial_no
        except ConfigError:
            serial = None
        return Current(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), configedit.etag(text),
                       serial)

    def check(self, text: str) -> list[dict[str, Any]]:
        return configedit.check(text)

    def preview(self, path: str, text: str, health: Mapping[tuple[str, str], str] | None = None) -> Prepared:
        with open(path, "rb") as f:
            current = f.read(MAX_FILE_BYTES + 1).decode("utf-8", "surrogateescape")
        return configedit.prepare(current, text, health)

    def diff(self, old: str, new: str) -> str:
        return configedit.unified_diff(old, new)

    def apply(self, path: str, text: str, if_match: str, history_dir: str,
              health: Mapping[tuple[str, str], str] | None = None) -> Applied:
        return configedit.apply(path, text, if_match, history_dir, health)

    def history(self, history_dir: str) -> list[Version]:
        return configedit.history(history_dir)

    def version_text(self, history_dir: str, version: str) -> str:
        return configedit.version_text(history_dir, version)

    def revert(self, path: str, version: str, if_match: str, history_dir: str) -> Applied:
        return configedit.revert(path, version, if_match, history_dir)


CONFIG = Config()
