"""Copying the configuration to the partner router's web tool.

`shoal web --partner https://ADDR:PORT --partner-user NAME
--partner-password-file F [--partner-ca F]` names the other router's web
tool and the credentials this one uses there (an admin of the partner's
own users file).  TLS, with the partner's certificate verified (against
`--partner-ca` when given, else the system's roots); plain HTTP only to a
loopback address (tests).

A copy (`POST /api/v1/config/push`, admin) is refused when:

- this file is no longer the version the admin looked at (If-Match, 412);
- the partner's file changed since the last copy: its ETag is not the one
  the partner answered the last copy with (kept in
  `STATE_DIR/partner-config.json`); someone edited it there, and copying
  over it would lose that (409, look at it there first); the first copy
  has nothing to compare with;
- the partner refuses it (its answer, 409).

Both routers must end with the same `serial_no` (the failover waits for
it): when this file's `serial_no` is not above the partner's, this file is
first written again with the partner's plus one (and the daemon reloaded),
so the partner keeps the copy's number rather than raising its own.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

TIMEOUT_S = 15.0


class PartnerError(Exception):
    """The partner's web tool could not be asked (or answered nonsense)."""


@dataclass(frozen=True, slots=True)
class Partner:
    url: str
    user: str
    password: str
    ca_file: str | None = None

    def problem(self) -> str | None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            return f"--partner {self.url}: expected https://ADDR:PORT"
        if parts.scheme == "http":
            try:
                loopback = ipaddress.ip_address(parts.hostname).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                return f"--partner {self.url}: TLS (https) to the partner; plain HTTP only to a loopback address"
        return None

    def _ssl(self) -> ssl.SSLContext | bool:
        if urlsplit(self.url).scheme != "https":
            return False
        return ssl.create_default_context(cafile=self.ca_file)

    async def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any], str | None]:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        try:
            async with aiohttp.ClientSession(headers={"Authorization": f"Basic {token}"}, timeout=timeout) as session:
                async with session.request(method, self.url.rstrip("/") + path, ssl=self._ssl(),
                                           allow_redirects=False, **kwargs) as r:
                    try:
                        body = await r.json(content_type=None)
                    except ValueError:
                        body = {}
                    return r.status, body if isinstance(body, dict) else {}, r.headers.get("ETag")
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise PartnerError(f"the partner's web tool at {self.url} does not answer: {e or type(e).__name__}") \
                from e

    async def config(self) -> tuple[str, str, int | None]:
        """The partner's file: text, ETag, serial_no."""
        status, body, tag = await self._call("GET", "/api/v1/config")
        if status != 200 or not isinstance(body.get("text"), str) or not tag:
            raise PartnerError(f"the partner's web tool answered {status} to GET /api/v1/config"
                               + (f": {body['error']}" if "error" in body else ""))
        return body["text"], tag, body.get("serial_no")

    async def status(self) -> dict[str, Any]:
        """The partner daemon's status, through the partner's web tool."""
        status, body, _ = await self._call("GET", "/api/v1/status")
        if status != 200 or "role" not in body:
            raise PartnerError(f"the partner's web tool answered {status} to GET /api/v1/status"
                               + (f": {body['error']}" if "error" in body else ""))
        return body

    async def put(self, text: str, if_match: str) -> tuple[int, dict[str, Any], str | None]:
        return await self._call("PUT", "/api/v1/config", json={"text": text}, headers={"If-Match": if_match})


def read_record(state_dir: str) -> dict[str, Any]:
    try:
        with open(os.path.join(state_dir, "partner-config.json"), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_record(state_dir: str, record: dict[str, Any]) -> None:
    path = os.path.join(state_dir, "partner-config.json")
    tmp = path + ".new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record, f)
    os.replace(tmp, path)
