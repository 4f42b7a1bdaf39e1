"""Copying the configuration to the partner's web tool (POST /api/v1/config/push):
two web tools, each with its fake daemon and its own lvs.cf; the copy keeps
one serial_no on both, and is refused when the partner's file changed since
the last copy."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
from pathlib import Path
from typing import Any, AsyncIterator

from adapters.web.partner import Partner
from tests.web.harness import PASSWORDS, Harness, basic, harness


@contextlib.asynccontextmanager
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Harness, Harness]]:
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    async with harness(tmp_path / "b") as backup:
        partner = Partner(str(backup.client.make_url("/")).rstrip("/"), "admin", PASSWORDS["admin"])
        async with harness(tmp_path / "a", partner=partner) as primary:
            yield primary, backup


def run(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        async with pair(tmp_path) as (a, b):
            await body(a, b)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, main()).result()


async def etag(h: Harness) -> str:
    return (await h.client.get("/api/v1/config", headers=basic("admin"))).headers["ETag"]


async def push(a: Harness, tag: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {**basic("admin"), "If-Match": tag or await etag(a)}
    r = await a.client.post("/api/v1/config/push", headers=headers, json={})
    return r.status, await r.json()


def test_copy_keeps_one_serial_no_and_refuses_over_a_partners_edit(tmp_path):
    async def body(a: Harness, b: Harness) -> None:
        # both start at serial_no 37: the copy raises ours to 38 first, so the partner keeps 38
        text = a.config.read_text().replace("weight = 2", "weight = 3")
        a.config.write_text(text)
        status, got = await push(a)
        assert status == 200, got
        assert got["serial_no"] == 38 and got["reloaded"] is True
        assert b.config.read_text() == a.config.read_text() and "serial_no = 38" in a.config.read_text()
        assert {"cmd": "reload"} in b.fake.requests and {"cmd": "reload"} in a.fake.requests
        # a change here, copied again: no refusal (the partner is as we left it)
        r = await a.client.put("/api/v1/config", json={"text": a.config.read_text().replace("weight = 3", "weight = 4")},
                               headers={**basic("admin"), "If-Match": await etag(a)})
        assert r.status == 200 and (await r.json())["serial_no"] == 39
        status, got = await push(a)
        assert status == 200 and got["serial_no"] == 39 and b.config.read_text() == a.config.read_text()
        # someone edits the partner's file there: the next copy is refused, the partner's file kept
        r = await b.client.put("/api/v1/config", json={"text": b.config.read_text().replace("weight = 4", "weight = 9")},
                               headers={**basic("admin"), "If-Match": await etag(b)})
        assert r.status == 200
        kept = b.config.read_text()
        status, got = await push(a)
        assert status == 409 and "changed since the last copy" in got["error"]
        assert b.config.read_text() == kept
        # a stale If-Match here, and a viewer, are refused too
        status, got = await push(a, '"old"')
        assert status == 412
        r = await a.client.post("/api/v1/config/push", headers={**basic("operator"), "If-Match": await etag(a)})
        assert r.status == 403
        audit = [json.loads(line) for line in (a.state / "web-audit.log").read_text().splitlines()]
        assert [e["result"] for e in audit if e["action"] == "config-push"] == ["ok", "ok", "refused"]
    run(tmp_path, body)


def test_without_a_partner_or_when_it_does_not_answer(tmp_path):
    async def body(a: Harness, b: Harness) -> None:
        await b.client.close()
        status, got = await push(a)
        assert status == 502 and "does not answer" in got["error"]
    run(tmp_path, body)


def test_partner_urls():
    assert Partner("https://192.0.2.2:3636", "a", "b").problem() is None
    assert Partner("http://127.0.0.1:3636", "a", "b").problem() is None
    assert "TLS" in (Partner("http://192.0.2.2:3636", "a", "b").problem() or "")
    assert Partner("ftp://x", "a", "b").problem()


def test_the_partners_own_status_side_by_side(tmp_path):
    async def body(a: Harness, b: Harness) -> None:
        b.fake.status.update(node="backup", role="standby", vips=[])
        r = await a.client.get("/api/v1/partner/status", headers=basic("viewer"))
        got = await r.json()
        assert r.status == 200 and (got["node"], got["role"]) == ("backup", "standby")
        page = await (await a.client.get("/", headers=basic("viewer"))).text()
        assert 'data-partner="true"' in page and 'data-field="partner_own"' in page
        await b.fake.stop()
        r = await a.client.get("/api/v1/partner/status", headers=basic("viewer"))
        assert r.status == 502
    run(tmp_path, body)
