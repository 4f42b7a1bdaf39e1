"""The web tool's users: the file `shoal passwd` writes and `shoal web` reads.

The file (`STATE_DIR/web-users` unless `--users FILE`) is text, one user a
line, three fields separated by `:`:

    NAME:ROLE:HASH

NAME is 1 to 64 printable characters, none of them blank, `:` or a control
character (HTTP Basic splits at the first `:`); ROLE is `viewer`,
`operator` or `admin`; HASH is the argon2id hash in its standard encoded
form (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`, which holds no `:`).
Lines starting with `#` and blank lines are ignored.  The file is written
whole to a new file beside it (mode 0600) and renamed over the old one, so
a reader sees the old file or the new one, never half of one.  A password
is never stored, only its hash.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from adapters.files import replace_file

ROLES = ("viewer", "operator", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
MAX_NAME = 64
MAX_PASSWORD = 1024
HEADER = "# shoal web users (shoal passwd): NAME:ROLE:ARGON2ID-HASH, one a line\n"

_hasher = PasswordHasher()  # argon2id, the library's (RFC 9106 low-memory) parameters
# a hash checked when the user is unknown, so that a wrong name costs as much as a wrong password
_DUMMY = _hasher.hash("shoal: no such user")


class UsersError(ValueError):
    """A bad user name, role or password, or a users file that cannot be read."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    hash: str


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a user name, or None."""
    if not name:
        return "the user name is empty"
    if len(name) > MAX_NAME:
        return f"the user name is longer than {MAX_NAME} characters"
    for ch in name:
        if ch == ":" or ch.isspace() or not ch.isprintable():
            return f"the user name holds {ch!r}: blanks, ':' and control characters are not allowed"
    return None


def password_problem(password: str) -> str | None:
    if not password:
        return "the password is empty"
    if len(password) > MAX_PASSWORD:
        return f"the password is longer than {MAX_PASSWORD} characters"
    return None


def load(path: str) -> dict[str, User]:
    """The users of `path` ({} when it does not exist); UsersError for a bad line."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise UsersError(f"{path}: cannot read: {e}") from e
    users: dict[str, User] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or parts[1] not in ROLES or name_problem(parts[0]) or not parts[2].startswith("$argon2id$"):
            raise UsersError(f"{path}:{number}: expected NAME:ROLE:ARGON2ID-HASH")
        users[parts[0]] = User(parts[0], parts[1], parts[2])
    return users


def save(path: str, users: dict[str, User]) -> None:
    """Write `users` to `path` atomically, mode 0600."""
    text = HEADER + "".join(f"{u.name}:{u.role}:{u.hash}\n" for u in sorted(users.values(), key=lambda u: u.name))
    replace_file(path, text, prefix=".web-users-")


def make(name: str, role: str, password: str) -> User:
    problem = name_problem(name) or password_problem(password)
    if problem is None and role not in ROLES:
        problem = f"unknown role {role!r}: one of {', '.join(ROLES)}"
    if problem is not None:
        raise UsersError(problem)
    return User(name, role, _hasher.hash(password))


def verify(users: dict[str, User], name: str, password: str) -> User | None:
    """The user when `password` is theirs; None otherwise (the same cost either way)."""
    user = users.get(name)
    try:
        _hasher.verify(user.hash if user else _DUMMY, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return user


def allows(role: str, needed: str) -> bool:
    return RANK.get(role, -1) >= RANK[needed]
