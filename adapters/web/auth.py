"""Who is asking: sessions, the login rate limit, the users file.

Sessions live in the web tool's memory only (a restart logs everyone out).
The cookie holds a random token (32 bytes); the server keeps only its
SHA-256, with the user, the role, the CSRF token and two times: a session
ends `idle_s` after its last request and `absolute_s` after its login,
whatever happens.  A login always makes a new session (the old cookie's
session, if any, is ended), so a token planted before login is worthless.

The rate limit counts failed logins (the form and HTTP Basic alike) per
client address and per user name: `max_failures` within `window_s` and
that address or name is refused (429) until the window has passed, before
any password is checked.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from adapters.web import users as users_file

Clock = Callable[[], float]


@dataclass(slots=True)
class Session:
    user: str
    role: str
    csrf: str
    created: float
    seen: float
    stamp: str = ""  # the user's hash at login: a new password (or removal) ends the session


@dataclass(slots=True)
class Sessions:
    idle_s: float = 15 * 60
    absolute_s: float = 8 * 3600
    max_sessions: int = 1000
    clock: Clock = time.monotonic
    by_hash: dict[str, Session] = field(default_factory=dict)

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def create(self, user: str, role: str, old_token: str | None = None, stamp: str = "") -> tuple[str, Session]:
        if old_token:
            self.end(old_token)
        self._expire()
        while len(self.by_hash) >= self.max_sessions:  # the oldest goes
            oldest = min(self.by_hash, key=lambda k: self.by_hash[k].created)
            del self.by_hash[oldest]
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(user, role, secrets.token_urlsafe(32), now, now, stamp)
        self.by_hash[self._key(token)] = session
        return token, session

    def get(self, token: str, touch: bool = True) -> Session | None:
        """The live session of `token`; `touch`: this request counts as activity
        (a page's own background refresh does not, so an open page still idles out)."""
        key = self._key(token)
        session = self.by_hash.get(key)
        if session is None:
            return None
        now = self.clock()
        if now - session.seen > self.idle_s or now - session.created > self.absolute_s:
            del self.by_hash[key]
            return None
        if touch:
            session.seen = now
        return session

    def alive(self, session: Session) -> bool:
        """`session` has not ended nor timed out (checked without counting as activity)."""
        now = self.clock()
        return (any(s is session for s in self.by_hash.values())
                and now - session.seen <= self.idle_s and now - session.created <= self.absolute_s)

    def end(self, token: str) -> None:
        self.by_hash.pop(self._key(token), None)

    def end_user(self, user: str) -> None:
        for key in [k for k, s in self.by_hash.items() if s.user == user]:
            del self.by_hash[key]

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, s in self.by_hash.items()
                    if now - s.seen > self.idle_s or now - s.created > self.absolute_s]:
            del self.by_hash[key]


@dataclass(slots=True)
class LoginLimit:
    max_failures: int = 5
    window_s: float = 60.0
    max_keys: int = 10000
    clock: Clock = time.monotonic
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str) -> deque[float]:
        times = self.failures.get(key)
        if times is None:
            return deque()
        cutoff = self.clock() - self.window_s
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self.failures[key]
        return times

    def retry_after(self, address: str, user: str) -> float:
        """Seconds until a login from `address` as `user` may be tried; 0: now."""
        worst = 0.0
        for key in (f"a:{address}", f"u:{user}"):
            times = self._recent(key)
            if len(times) >= self.max_failures:
                worst = max(worst, times[0] + self.window_s - self.clock())
        return worst

    def failed(self, address: str, user: str) -> None:
        if len(self.failures) >= self.max_keys:  # bounded: forget the stalest
            for key in list(self.failures)[: self.max_keys // 10]:
                del self.failures[key]
        now = self.clock()
        for key in (f"a:{address}", f"u:{user}"):
            times = self.failures.setdefault(key, deque())
            times.append(now)
            while len(times) > self.max_failures:
                times.popleft()


class Users:
    """The users file, read again whenever it changes (so `shoal passwd` needs no restart)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp: tuple[int, int, int] | None = None
        self.table: dict[str, users_file.User] = {}
        self.refresh()

    def refresh(self) -> dict[str, users_file.User]:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self.stamp:
            self.table = users_file.load(self.path)
            self.stamp = stamp
        return self.table

    def verify(self, name: str, password: str) -> users_file.User | None:
        return users_file.verify(self.current(), name, password)

    def current(self) -> dict[str, users_file.User]:
        """The table as it is now (the last good one when the file is damaged)."""
        try:
            return self.refresh()
        except users_file.UsersError:
            return self.table

    def admins(self) -> list[str]:
        return sorted(u.name for u in self.refresh().values() if u.role == "admin")
