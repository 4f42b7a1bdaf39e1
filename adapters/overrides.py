"""The operator's overrides (drain, weight, force_down, force_up) kept in
the state directory, so that a restarted daemon puts them back.

`STATE_DIR/overrides.json` (docs/OVERRIDES.md):

    {"version": 1, "serial_no": 7,
     "overrides": [{"virtual": "web", "server": "rs1", "action": "drain"},
                   {"virtual": "web", "server": "rs2", "action": "weight", "weight": 5}]}

The engine owns the set (`Engine.overrides`); this module only moves it to
and from the file.  The rules:

- written whole, atomically (a temporary file in the same directory,
  fsync'd, renamed over the old one, the directory fsync'd), mode 0600,
  after every change of the set; a write that fails is logged by the
  caller and the daemon keeps running (the set in memory is the truth);
- read at start: a missing file is an empty set; an unreadable or
  malformed one is reported (`OverridesError`) and ignored, never fatal;
  a malformed entry is skipped with its reason;
- `serial_no` is the configuration's when the file was written: for the
  operator's eyes only (an override names servers, not a file version).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from adapters.files import replace_file
from engine.registry import MAX_WEIGHT, SERVER_ACTIONS, Override

FILE = "overrides.json"
VERSION = 1
MAX_BYTES = 4 * 1024 * 1024  # a file larger than this is not read (1000s of servers fit well under it)
KEPT = tuple(sorted(set(SERVER_ACTIONS.values()) - {"auto"}))  # the actions an override is kept as


log = logging.getLogger("shoal")

GONE = "the configuration no longer has this real server (or it is not active)"


class OverridesError(Exception):
    """The file cannot be read or is not an overrides file."""


def path_of(state_dir: str) -> Path:
    return Path(state_dir) / FILE


def to_json(overrides: tuple[Override, ...], serial_no: int) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for o in overrides:
        entry: dict[str, Any] = {"virtual": o.virtual, "server": o.server, "action": o.action}
        if o.action == "weight":
            entry["weight"] = o.weight
        entries.append(entry)
    return {"version": VERSION, "serial_no": serial_no, "overrides": entries}


def from_json(data: Any) -> tuple[list[Override], list[str]]:
    """The overrides in `data`, and a reason for each entry skipped."""
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("overrides"), list):
        raise OverridesError(f"not an overrides file of version {VERSION}")
    out: list[Override] = []
    skipped: list[str] = []
    for i, entry in enumerate(data["overrides"]):
        problem = _problem(entry)
        if problem is not None:
            skipped.append(f"entry {i + 1}: {problem}")
            continue
        out.append(Override(entry["virtual"], entry["server"], entry["action"],
                            entry["weight"] if entry["action"] == "weight" else None))
    return out, skipped


def _problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "not an object"
    for key in ("virtual", "server"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            return f"no {key} name"
    if entry.get("action") not in KEPT:
        return f"action must be one of {', '.join(KEPT)}"
    if entry["action"] == "weight":
        weight = entry.get("weight")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= MAX_WEIGHT:
            return f"weight must be an integer 0 to {MAX_WEIGHT}"
    return None


def load(state_dir: str) -> tuple[list[Override], list[str]]:
    """The overrides kept in `state_dir` ([] when there is no file), and the entries skipped."""
    path = path_of(state_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return [], []
    except OSError as e:
        raise OverridesError(f"{path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise OverridesError(f"{path}: {e.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise OverridesError(f"{path}: larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise OverridesError(f"{path}: not JSON ({e})") from None
    try:
        return from_json(data)
    except OverridesError as e:
        raise OverridesError(f"{path}: {e}") from None


def save(state_dir: str, overrides: tuple[Override, ...], serial_no: int) -> None:
    """Write the set atomically (see the rules); raises OSError."""
    replace_file(path_of(state_dir), json.dumps(to_json(overrides, serial_no), indent=1) + "\n",
                 prefix=f".{FILE}.")


class Keeper:
    """The daemon's side: the set last written to the file, and what is said
    about it (docs/LOGS.md, kind `overrides`).  Never raises."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.written: tuple[Override, ...] = ()
        self._force = False

    def read(self) -> list[Override]:
        """What a previous life kept, to replay (each refused one goes to `dropped`)."""
        try:
            kept, skipped = load(self.state_dir)
        except OverridesError as e:
            log.error("overrides: %s: none restored (the file is left as it is)", e,
                      extra={"fields": {"kind": "overrides", "ok": False, "error": str(e)}})
            return []
        for reason in skipped:
            log.warning("overrides: %s in %s: skipped", reason, path_of(self.state_dir),
                        extra={"fields": {"kind": "overrides", "op": "skip", "reason": reason}})
        self.written, self._force = tuple(kept), bool(skipped)  # what the file holds: rewritten if it differs
        return kept

    def restored(self, count: int) -> None:
        if self.written or self._force:
            log.info("overrides: %d restored from %s", count, path_of(self.state_dir),
                     extra={"fields": {"kind": "overrides", "op": "restore", "restored": count}})

    @staticmethod
    def dropped(override: Override, why: str) -> None:
        what = override.action + (f" {override.weight}" if override.action == "weight" else "")
        log.warning("overrides: %s/%s (%s) dropped: %s", override.virtual, override.server, what, why,
                    extra={"fields": {"kind": "overrides", "op": "drop", "virtual": override.virtual,
                                      "server": override.server, "action": override.action, "reason": why}})

    def keep(self, now: tuple[Override, ...], serial_no: int, after_reload: bool = False) -> None:
        """Write `now` (the engine's set) when it differs from the file; after
        a reload, say which overrides it dropped."""
        if now == self.written and not self._force:
            return
        if after_reload:
            still = {(o.virtual, o.server) for o in now}
            for gone in self.written:
                if (gone.virtual, gone.server) not in still:
                    self.dropped(gone, GONE)
        try:
            save(self.state_dir, now, serial_no)
        except OSError as e:
            log.error("overrides: cannot write %s: %s (they hold until the daemon stops)", path_of(self.state_dir),
                      e, extra={"fields": {"kind": "overrides", "ok": False, "error": str(e)}})
            return
        self.written, self._force = now, False
