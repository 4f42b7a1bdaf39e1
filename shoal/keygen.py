"""`shoal keygen FILE [--force]`: a new heartbeat key.

Writes 32 random bytes from the kernel (`os.urandom`), hex-encoded, 64
characters and a newline, to FILE with mode 0600: what `heartbeat_key_file`
names on both routers.  The daemon reads the file's stripped bytes as the
HMAC-SHA256 key (adapters/daemon.py `load_key`), so the 64 hex characters
are the key, and a key written by hand works the same.

An existing FILE is never overwritten unless `--force`; with it, the new
key replaces the old atomically (a reader sees one or the other, never a
half-written file).  Exit 0 written; 2 bad arguments or not written.
"""

from __future__ import annotations

import os
import sys

from adapters.files import replace_file

KEY_BYTES = 32
USAGE = "usage: shoal keygen FILE [--force]"


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--force"]
    force = len(args) != len(argv)
    if len(args) != 1 or args[0].startswith("-") or argv.count("--force") > 1:
        print(USAGE, file=sys.stderr)
        return 0 if args in (["-h"], ["--help"]) else 2
    path = args[0]
    text = os.urandom(KEY_BYTES).hex() + "\n"
    try:
        if force:
            replace_file(path, text, prefix=".shoal-keygen-")
        else:
            _create(path, text)
    except FileExistsError:
        print(f"shoal keygen: {path} exists: not overwritten (--force replaces it; the other router "
              f"needs the same key)", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"shoal keygen: cannot write {path}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"shoal keygen: wrote a new heartbeat key to {path} (mode 0600); copy it to the other router and set "
          f"heartbeat_key_file = {os.path.abspath(path)} in lvs.cf on both")
    return 0


def _create(path: str, text: str) -> None:
    """A new file only (O_EXCL, no symlink followed), removed again if writing it fails."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(path)
        raise


