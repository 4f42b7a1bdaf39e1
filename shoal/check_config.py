"""`shoal check-config FILE`: parse and validate an lvs.cf.

Exit 0 and a one-line summary when it is valid; exit 2 with every error as
`file:line:col: message` on stderr when it is not (or cannot be read).
"""

from __future__ import annotations

import sys

from engine.config import ConfigError, parse


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: shoal check-config FILE", file=sys.stderr)
        return 2
    path = argv[0]
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        print(f"{path}:1:1: cannot read: {e}", file=sys.stderr)
        return 2
    try:
        config = parse(text, path)
    except ConfigError as e:
        for issue in e.issues:
            print(issue, file=sys.stderr)
        return 2
    servers = sum(len(v.servers) for v in config.virtuals)
    failover = "failover on" if config.backup_active else "no failover (backup_active = 0)"
    print(f"{path}: valid: serial_no {config.serial_no}, {len(config.virtuals)} virtual(s), "
          f"{servers} real server(s), network {config.network}, {failover}")
    return 0
