"""The API under /api/v1 against a fake daemon: status, admin, config (ETag,
If-Match, 412/428/422, serial_no raised, comments kept), metrics, audit."""

from __future__ import annotations

import json

from tests.web.harness import Harness, basic, run


def test_status_is_the_daemons_answer(tmp_path):
    async def body(h: Harness) -> None:
        r = await h.client.get("/api/v1/status", headers=basic("viewer"))
        assert r.status == 200
        assert await r.json() == h.fake.status
        await h.fake.stop()
        r = await h.client.get("/api/v1/status", headers=basic("viewer"))
        assert r.status == 503 and "no answer from the daemon" in (await r.json())["error"]
    run(tmp_path, body)


def test_admin_drain_weight_failover_and_refusal(tmp_path):
    async def body(h: Harness) -> None:
        auth = basic("operator")
        r = await h.client.post("/api/v1/admin", json={"action": "drain", "server": "HTTP/web1"}, headers=auth)
        assert (r.status, await r.json()) == (200, {"ok": True})
        assert h.fake.requests[-2] == {"cmd": "admin", "action": "drain", "server": "HTTP/web1"}
        assert h.fake.server_row("HTTP/web1")["admin"] == "drain"
        r = await h.client.post("/api/v1/admin", json={"action": "weight", "server": "HTTP/web1", "weight": 7},
                                headers=auth)
        assert r.status == 200 and h.fake.server_row("HTTP/web1")["weight"] == 7
        r = await h.client.post("/api/v1/admin", json={"action": "failover"}, headers=auth)
        assert r.status == 200 and h.fake.status["role"] == "standby"
        h.fake.refuse = "the partner is not heard both ways"
        r = await h.client.post("/api/v1/admin", json={"action": "failover"}, headers=auth)
        assert (r.status, await r.json()) == (409, {"error": "the partner is not heard both ways"})
        for bad in ({"action": "explode"}, {"action": "drain"}, {"action": "weight", "server": "HTTP/web1"},
                    {"action": "weight", "server": "HTTP/web1", "weight": 70000},
                    {"action": "weight", "server": "HTTP/web1", "weight": True}, {"action": "drain", "server": 3}):
            r = await h.client.post("/api/v1/admin", json=bad, headers=auth)
            assert r.status == 400, bad
        r = await h.client.post("/api/v1/admin", data=b"{not json", headers=auth)
        assert r.status == 400
        audit = [json.loads(line) for line in (h.state / "web-audit.log").read_text().splitlines()]
        drain = next(e for e in audit if e["action"] == "admin" and e["target"] == "drain HTTP/web1")
        assert drain["user"] == "operator" and drain["result"] == "ok" and drain["from"]
        assert drain["before"]["admin"] == "auto" and drain["after"]["admin"] == "drain"
        assert audit[-1]["result"] == "refused" and audit[-1]["detail"] == "the partner is not heard both ways"
    run(tmp_path, body)


def test_config_get_check_put(tmp_path):
    async def body(h: Harness) -> None:
        admin = basic("admin")
        r = await h.client.get("/api/v1/config", headers=basic("viewer"))
        got = await r.json()
        tag = r.headers["ETag"]
        assert got["serial_no"] == 37 and got["text"] == h.config.read_text() and tag.startswith('"')
        new = got["text"].replace("weight = 2", "weight = 5")
        r = await h.client.post("/api/v1/config/check", json={"text": new}, headers=basic("viewer"))
        check = await r.json()
        assert check["valid"] is True and check["errors"] == [] and "+         weight = 5" in check["diff"]
        assert any("-w 5" in op for op in check["table_ops"]), check["table_ops"]
        bad = got["text"].replace("weight = 2", "weight = two")
        r = await h.client.post("/api/v1/config/check", json={"text": bad}, headers=basic("viewer"))
        check = await r.json()
        assert check["valid"] is False and check["errors"][0]["line"] == 51 and check["errors"][0]["col"] > 1
        before = h.config.read_bytes()
        r = await h.client.put("/api/v1/config", json={"text": new}, headers=admin)
        assert r.status == 428 and h.config.read_bytes() == before
        r = await h.client.put("/api/v1/config", json={"text": bad}, headers={**admin, "If-Match": tag})
        assert r.status == 422 and (await r.json())["errors"][0]["line"] == 51 and h.config.read_bytes() == before
        r = await h.client.put("/api/v1/config", json={"text": new}, headers={**admin, "If-Match": '"stale"'})
        assert r.status == 412 and h.config.read_bytes() == before
        r = await h.client.put("/api/v1/config", json={"text": new}, headers={**admin, "If-Match": tag})
        put = await r.json()
        assert r.status == 200, put
        assert put["serial_no"] == 38 and put["reloaded"] is True and put["detail"] == "serial_no 37 -> 38"
        assert h.fake.requests[-1] == {"cmd": "reload"}
        text = h.config.read_text()
        assert "serial_no = 38" in text and "weight = 5" in text
        assert "# HTTPS with persistence, so that a client's session stays on one server." in text  # comments kept
        assert r.headers["ETag"] != tag
        # a second editor holding the old ETag is refused
        r = await h.client.put("/api/v1/config", json={"text": new}, headers={**admin, "If-Match": tag})
        assert r.status == 412
        # history and revert
        r = await h.client.get("/api/v1/config/history", headers=admin)
        versions = (await r.json())["versions"]
        assert [v["serial_no"] for v in versions] == [37]
        r = await h.client.get(f"/api/v1/config/history/{versions[0]['id']}", headers=admin)
        assert (await r.json())["text"] == before.decode()
        current = (await h.client.get("/api/v1/config", headers=admin)).headers["ETag"]
        r = await h.client.post("/api/v1/config/revert", json={"version": versions[0]["id"]},
                                headers={**admin, "If-Match": current})
        assert r.status == 200 and (await r.json())["serial_no"] == 39
        assert "weight = 2" in h.config.read_text()
        h.fake.reload_answer = {"ok": False, "error": "refused"}
        current = (await h.client.get("/api/v1/config", headers=admin)).headers["ETag"]
        r = await h.client.put("/api/v1/config", json={"text": new}, headers={**admin, "If-Match": current})
        assert (await r.json())["reloaded"] is False
    run(tmp_path, body)


def test_metrics(tmp_path):
    async def body(h: Harness) -> None:
        r = await h.client.get("/metrics", headers=basic("viewer"))
        text = await r.text()
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        assert 'shoal_role{node="primary"} 1.0' in text
        assert 'shoal_server_up{server="web1",virtual="HTTP"} 1.0' in text
        assert 'shoal_server_up{server="web2",virtual="HTTP"} 0.0' in text
        assert 'shoal_server_weight{server="web2",virtual="HTTP"} 0.0' in text
        assert "shoal_failovers_total 0.0" in text
        assert 'shoal_heartbeats_received_total{path="all"} 42.0' in text
        h.fake.status["counters"].update(heartbeats_received_public=40, heartbeats_received_private=2, failovers=3)
        text = await (await h.client.get("/metrics", headers=basic("viewer"))).text()
        assert 'shoal_heartbeats_received_total{path="public"} 40.0' in text
        assert 'shoal_heartbeats_received_total{path="private"} 2.0' in text
        assert "shoal_failovers_total 3.0" in text
        await h.fake.stop()
        text = await (await h.client.get("/metrics", headers=basic("viewer"))).text()
        assert "shoal_up 0.0" in text
    run(tmp_path, body)


def test_users_api_keeps_an_admin(tmp_path):
    async def body(h: Harness) -> None:
        admin = basic("admin")
        r = await h.client.put("/api/v1/users/carol", json={"role": "operator", "password": "c-pw"}, headers=admin)
        assert r.status == 200
        r = await h.client.get("/api/v1/users", headers=admin)
        assert {"name": "carol", "role": "operator"} in (await r.json())["users"]
        r = await h.client.put("/api/v1/users/admin", json={"role": "viewer", "password": "x"}, headers=admin)
        assert r.status == 409
        r = await h.client.delete("/api/v1/users/admin", headers=admin)
        assert r.status == 409
        r = await h.client.delete("/api/v1/users/carol", headers=admin)
        assert r.status == 200
        r = await h.client.put("/api/v1/users/bad:name", json={"password": "x"}, headers=admin)
        assert r.status == 400
        r = await h.client.put("/api/v1/users/dave", json={"password": ""}, headers=admin)
        assert r.status == 400
    run(tmp_path, body)


def test_what_if(tmp_path):
    async def body(h: Harness) -> None:
        auth = basic("operator")
        r = await h.client.post("/api/v1/whatif", json={"faults": [{"crash": "primary"}]}, headers=auth)
        got = await r.json()
        assert r.status == 200, got
        assert got["vip_owner"] == "backup" and got["roles"]["backup"] == "active"
        assert any("crash" in line for line in got["timeline"])
        # the real servers down now (web2 in the fake status) start down in the simulation
        r = await h.client.post("/api/v1/whatif", json={"faults": {"server_down": "HTTP/web1"}}, headers=auth)
        table = "\n".join((await r.json())["table"])
        assert "10.11.12.13:80" in table and "10.11.12.11:80" not in table and "10.11.12.12:80" not in table
        r = await h.client.post("/api/v1/whatif", json={"faults": [{"server_down": "HTTP/nope"}]}, headers=auth)
        assert r.status == 422 and "error" in await r.json()
        r = await h.client.post("/api/v1/whatif", json={"faults": []}, headers=auth)
        assert r.status == 400
        r = await h.client.post("/api/v1/whatif", json={"faults": [{"crash": "primary"}]}, headers=basic("viewer"))
        assert r.status == 403
        assert h.config.read_text() == (h.config.parent / "lvs.cf").read_text()
        page = await (await h.client.get("/whatif", headers=basic("viewer"))).text()
        assert 'id="whatif-form"' in page and 'data-action="whatif"' not in page
    run(tmp_path, body)


def test_an_unknown_expectation_is_ignored_not_answered_417(tmp_path):
    """aiohttp answers any Expect but 100-continue with a text 417 the API
    does not document (schemathesis found it); the tool ignores it, as RFC
    9110 allows, and answers as usual."""
    async def body(h: Harness) -> None:
        r = await h.client.get("/api/v1/status", headers={**basic("viewer"), "Expect": "F"})
        assert r.status == 200 and (await r.json())["role"]
        r = await h.client.post("/api/v1/config/check", json={"text": "primary = 10.0.0.1\n"},
                                headers={**basic("viewer"), "Expect": "something-else"})
        assert r.status == 200 and (await r.json())["valid"] is True
        r = await h.client.get("/api/v1/status", headers={"Expect": "F"})
        assert r.status == 401  # and authentication still first
    run(tmp_path, body)
