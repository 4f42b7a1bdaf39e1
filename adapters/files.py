"""Files written whole or not at all: the one way shoal replaces a small
file it owns (a heartbeat key, the operator's overrides, the web users).

`replace_file(path, text)`: a new file beside `path` (mkstemp: a unique
name, mode 0600, never following a link), written, flushed and fsync'd,
renamed over `path`, then the directory fsync'd, so that after a crash
either the old file or the new one is there, never a part.  A failure
removes the temporary file and raises OSError.
"""

from __future__ import annotations

import os
import tempfile


def replace_file(path: str | os.PathLike[str], text: str, *, prefix: str = ".shoal-") -> None:
    target = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(target)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
