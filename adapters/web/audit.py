"""The audit log: one JSON object a line, appended, never rewritten.

`STATE_DIR/web-audit.log` (mode 0600, opened with O_APPEND and without
following a symbolic link).  Each entry: `time` (UTC, ISO 8601), `user`,
`from` (the client's address), `action` (login, logout, admin, config),
`target`, `before`, `after`, `result` (ok, refused, failed, denied) and
`detail`.  The web tool only ever appends; the audit page reads the tail.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from typing import Any

READ_TAIL_BYTES = 1024 * 1024


class Audit:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        # fails at start (a clear message) rather than at the first action
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)

    def write(self, *, user: str, source: str, action: str, target: str = "", before: Any = None,
              after: Any = None, result: str, detail: str = "") -> dict[str, Any]:
        entry = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "user": user, "from": source, "action": action, "target": target,
            "before": before, "after": after, "result": result, "detail": detail,
        }
        line = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode()
        with self.lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        return entry

    def tail(self, limit: int = 200) -> list[dict[str, Any]]:
        """The last `limit` entries, newest first."""
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - READ_TAIL_BYTES))
                data = f.read()
        except FileNotFoundError:
            return []
        lines = data.splitlines()
        if size > READ_TAIL_BYTES:
            lines = lines[1:]  # the first may be cut
        out = []
        for raw in reversed(lines[-limit:]):
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out
