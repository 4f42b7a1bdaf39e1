"""The web tool on aiohttp's test client, with a fake daemon, a users file
(viewer, operator, admin, and a user named with HTML and shell characters)
and a copy of examples/lvs.cf."""

from __future__ import annotations

import asyncio
import concurrent.futures
import base64
import contextlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from adapters.web import users
from adapters.web.app import Options, make_app
from tests.web.fakedaemon import WEIRD, FakeDaemon

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"viewer": "view-pw", "operator": "op-pw", "admin": "admin-pw", WEIRD: "weird-pw"}
ROLES = {"viewer": "viewer", "operator": "operator", "admin": "admin", WEIRD: "operator"}

# cheap hashes for the tests (the real ones cost ~50 ms each by design)
users._hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
users._DUMMY = users._hasher.hash("unknown user")


def basic(user: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def write_users(path: Path) -> None:
    users.save(str(path), {name: users.make(name, ROLES[name], pw) for name, pw in PASSWORDS.items()})


@dataclass
class Harness:
    client: TestClient
    fake: FakeDaemon
    state: Path
    config: Path

    async def login(self, user: str) -> str:
        """Log in through the form; the session's CSRF token."""
        r = await self.client.post("/login", data={"user": user, "password": PASSWORDS[user]},
                                   allow_redirects=False)
        assert r.status == 303, await r.text()
        page = await (await self.client.get("/")).text()
        match = re.search(r'<meta name="csrf-token" content="([^"]*)"', page)
        assert match and match.group(1)
        return match.group(1)


@contextlib.asynccontextmanager
async def harness(tmp_path: Path, **options: Any) -> AsyncIterator[Harness]:
    state = tmp_path / "state"
    state.mkdir()
    config = tmp_path / "lvs.cf"
    shutil.copy(ROOT / "examples" / "lvs.cf", config)
    write_users(state / "web-users")
    fake = FakeDaemon(str(state))
    await fake.start()
    app = make_app(Options(config_path=str(config), state_dir=str(state), users_path=str(state / "web-users"),
                           **options))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Harness(client, fake, state, config)
    finally:
        await client.close()
        await fake.stop()


def run(tmp_path: Path, body: Callable[[Harness], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        async with harness(tmp_path, **options) as h:
            await body(h)

    # a thread of its own: a session-wide Playwright (tests/web/e2e) keeps an
    # event loop running in the main thread, where asyncio.run refuses to start
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, main()).result()
