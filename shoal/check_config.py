"""`shoal check-config FILE`: parse and validate an lvs.cf.

Exit 0 and a one-line summary on stdout when it is valid (and a line on
stderr for each warning: valid, but at a risk; see engine/config/advice.py);
exit 2 with every error as `file:line:col: message` on stderr when it is
not, or with one clear line when it cannot be read.  A file is read up to
one byte past MAX_FILE_BYTES: a bigger one is refused unread.
"""

from __future__ import annotations

import os
import sys

from engine.config import MAX_FILE_BYTES, ConfigError, parse_bytes, warnings
from engine.model import Config


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: shoal check-config FILE", file=sys.stderr)
        return 2
    path = argv[0]
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
            size = max(len(data), os.fstat(f.fileno()).st_size)  # a bigger file is not read to its end
    except (OSError, ValueError) as e:
        print(f"shoal check-config: cannot read {path}: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
        return 2
    try:
        config = parse_bytes(data, path, size)
    except ConfigError as e:
        for issue in e.issues:
            print(issue, file=sys.stderr)
        return 2
    print(summary(path, config))
    for warning in warnings(config):
        print(f"{path}: warning: {warning}", file=sys.stderr)
    return 0


def summary(path: str, config: Config) -> str:
    servers = sum(len(v.servers) for v in config.virtuals)
    active = sum(1 for v in config.virtuals if v.active)
    failover = "failover on" if config.backup_active else "no failover (backup_active = 0)"
    return (f"{path}: valid: serial_no {config.serial_no}, {len(config.virtuals)} virtual(s) ({active} active), "
            f"{servers} real server(s), network {config.network}, {failover}")
