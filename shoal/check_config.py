"""`shoal check-config FILE`: parse and validate an lvs.cf.

Exit 0 and a one-line summary on stdout when it is valid; exit 2 with every
error as `file:line:col: message` on stderr when it is not, or with one
clear line when it cannot be read.
"""

from __future__ import annotations

import sys

from engine.config import ConfigError, parse
from engine.model import Config


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: shoal check-config FILE", file=sys.stderr)
        return 2
    path = argv[0]
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except OSError as e:
        print(f"shoal check-config: cannot read {path}: {e.strerror or e}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as e:
        print(f"shoal check-config: cannot read {path}: not UTF-8 text (byte {e.object[e.start]:#04x} "
              f"at offset {e.start})", file=sys.stderr)
        return 2
    try:
        config = parse(text, path)
    except ConfigError as e:
        for issue in e.issues:
            print(issue, file=sys.stderr)
        return 2
    print(summary(path, config))
    return 0


def summary(path: str, config: Config) -> str:
    servers = sum(len(v.servers) for v in config.virtuals)
    active = sum(1 for v in config.virtuals if v.active)
    failover = "failover on" if config.backup_active else "no failover (backup_active = 0)"
    return (f"{path}: valid: serial_no {config.serial_no}, {len(config.virtuals)} virtual(s) ({active} active), "
            f"{servers} real server(s), network {config.network}, {failover}")
