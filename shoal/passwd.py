"""`shoal passwd USER [--role viewer|operator|admin] [--users FILE] [--state-dir DIR]`

Reads one line from standard input (its newline stripped) as USER's
password and stores its argon2id hash in the web tool's users file
(`STATE_DIR/web-users` unless `--users FILE`; format in
adapters/web/users.py), adding the user or replacing their password and
role.  No shell, no echo: `printf '%s\\n' "$pw" | shoal passwd admin --role admin`.
Exit 0 stored; 2 bad input (an empty password, a bad user name or role) or
the file cannot be written.
"""

from __future__ import annotations

import argparse
import os
import sys

from adapters.web import users


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shoal passwd", description="store a web tool user's password")
    parser.add_argument("user")
    parser.add_argument("--role", default="viewer", choices=users.ROLES)
    parser.add_argument("--users", default=None, help="the users file (default STATE_DIR/web-users)")
    parser.add_argument("--state-dir", default="/run/shoal")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    path = args.users or os.path.join(args.state_dir, "web-users")
    line = sys.stdin.readline(users.MAX_PASSWORD + 2)
    password = line[:-1] if line.endswith("\n") else line
    if password.endswith("\r"):
        password = password[:-1]
    try:
        user = users.make(args.user, args.role, password)
        table = users.load(path)
        replaced = args.user in table
        table[args.user] = user
        users.save(path, table)
    except users.UsersError as e:
        print(f"shoal passwd: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"shoal passwd: cannot write {path}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"shoal passwd: {'changed' if replaced else 'added'} user {args.user} ({args.role}) in {path}")
    return 0
