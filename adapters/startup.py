"""What the daemon checks of its host before it starts: the state
directory (mode 0700, owned, no symlink, writable) and which router this
host is (the configured address that is local).  Each problem is a
`StartError` with a message an operator can act on."""

from __future__ import annotations

import os
import socket
import stat

from engine.model import Config, Node


class StartError(Exception):
    """The daemon cannot start: a clear message, exit non-zero."""


# ---------------------------------------------------------------- host


def prepare_state_dir(path: str) -> None:
    """Make the state directory (mode 0700), or say clearly why it cannot be used."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            os.mkdir(path, 0o700)
            st = os.lstat(path)
        except OSError as e:
            raise StartError(f"state directory {path}: cannot create it: {e.strerror}") from None
    except OSError as e:
        raise StartError(f"state directory {path}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise StartError(f"state directory {path} is a symbolic link: refusing it (give the real directory)")
    if not stat.S_ISDIR(st.st_mode):
        raise StartError(f"state directory {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise StartError(f"state directory {path} belongs to uid {st.st_uid}, not to this user ({os.geteuid()})")
    if st.st_mode & 0o022:
        raise StartError(f"state directory {path} is writable by others (mode {st.st_mode & 0o777:o}): chmod 700 it")
    probe = os.path.join(path, f".probe-{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        os.unlink(probe)
    except OSError as e:
        raise StartError(f"state directory {path}: cannot write in it: {e.strerror}") from None


def is_local(address: str) -> bool:
    """Whether `address` is configured on this host (binding to it works)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0))
            return True
        except OSError:
            return False


def find_node(config: Config) -> Node:
    """Our role, from which configured address is local."""
    mine = [node for node, addresses in (
        ("primary", (config.primary, config.primary_private)),
        ("backup", (config.backup, config.backup_private)),
    ) if any(a and is_local(a) for a in addresses)]
    if len(mine) != 1:
        found = "both the primary's and the backup's" if mine else "neither the primary's nor the backup's"
        raise StartError(f"this host holds {found} addresses ({config.primary}, {config.backup}): "
                         "cannot tell which router it is")
    return mine[0]  # type: ignore[return-value]
