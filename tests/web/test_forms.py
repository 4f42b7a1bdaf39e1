"""The configuration as forms (adapters/web/forms.py, POST /api/v1/config/check,
the /config/forms page): every key shown as written, an edit changes its
own line only, an error comes back at its field, a stale form is refused;
keys added (with their default and meaning offered) and removed, virtuals
and real servers added, deleted, (de)activated; only an admin gets the controls."""

from __future__ import annotations

from adapters.web import configedit, forms
from adapters.web.keyhelp import addable
from engine.config import parse
from engine.config.keys import TABLES
from tests.web.harness import ROOT, Harness, basic, run

TEXT = (ROOT / "examples" / "lvs.cf").read_text()


def test_every_key_is_shown_and_setting_it_back_changes_nothing_but_quoting():
    blocks = forms.blocks(TEXT)
    assert [b.ident for b in blocks][:3] == ["", "HTTP", "HTTP/web1"]
    send = next(f for f in blocks[1].fields if f.key == "send")
    assert send.value == r"GET / HTTP/1.0\r\n\r\n"
    edits = [{"block": list(b.path), "key": f.key, "value": f.value} for b in blocks for f in b.fields]
    edited = forms.edit(TEXT, edits)
    assert edited.errors == []
    changed = [(a, b) for a, b in zip(TEXT.splitlines(), edited.text.splitlines()) if a != b]
    assert changed == [('     expect = "HTTP"', "     expect = HTTP"), ('     expect = "220"', "     expect = 220")]


def test_an_edit_changes_its_line_and_an_error_is_at_its_field():
    edited = forms.edit(TEXT, [{"block": ["HTTP", "web3"], "key": "weight", "value": "5"},
                               {"block": ["HTTP"], "key": "send", "value": r"GET /x HTTP/1.0\r\n\r\n"}])
    assert edited.errors == []
    diff = [line for line in edited.text.splitlines() if line not in TEXT.splitlines()]
    assert diff == [r'     send = "GET /x HTTP/1.0\r\n\r\n"', "         weight = 5"]
    bad = forms.edit(TEXT, [{"block": ["HTTP", "web3"], "key": "weight", "value": "five"}])
    assert [(e["block"], e["key"]) for e in bad.errors] == [(["HTTP", "web3"], "weight")]
    missing = forms.edit(TEXT, [{"block": ["HTTP", "nope"], "key": "weight", "value": "1"}])
    assert missing.errors[0]["key"] == "weight" and "no server nope" in missing.errors[0]["message"]
    unknown = forms.edit(TEXT, [{"block": [], "key": "no_such_key", "value": "1"}])
    assert "no global key" in unknown.errors[0]["message"]


def test_the_edit_route(tmp_path):
    async def body(h: Harness) -> None:
        r = await h.client.get("/api/v1/config", headers=basic("viewer"))
        tag = r.headers["ETag"]
        before = h.config.read_bytes()
        edit = {"block": ["HTTP", "web3"], "key": "weight", "value": "4"}
        r = await h.client.post("/api/v1/config/check", json={"etag": tag, "edits": [edit]}, headers=basic("viewer"))
        got = await r.json()
        assert r.status == 200 and got["valid"] and "weight = 4" in got["text"] and got["serial_no"] == 38
        assert any("-w 4" in op for op in got["table_ops"])
        assert h.config.read_bytes() == before  # nothing written
        r = await h.client.post("/api/v1/config/check", json={"etag": tag, "edits": [{**edit, "value": "x"}]},
                                headers=basic("viewer"))
        got = await r.json()
        assert got["valid"] is False and got["errors"][0]["block"] == ["HTTP", "web3"]
        r = await h.client.post("/api/v1/config/check", json={"etag": '"old"', "edits": [edit]},
                                headers=basic("viewer"))
        assert r.status == 412
        for bad in ({"etag": tag, "edits": "x"}, {"etag": tag, "edits": [{"block": "HTTP", "key": "k", "value": "v"}]},
                    {"etag": tag, "edits": [{"block": ["a", "b", "c"], "key": "k", "value": "v"}]},
                    {"etag": tag, "edits": [{"block": [], "key": "serial_no", "value": 3}]}):
            r = await h.client.post("/api/v1/config/check", json=bad, headers=basic("viewer"))
            assert r.status == 400, bad
        page = await (await h.client.get("/config/forms", headers=basic("viewer"))).text()
        assert '<fieldset data-block="HTTP/web3"' in page and 'data-action="apply"' not in page
        assert 'value="GET / HTTP/1.0\\r\\n\\r\\n"' in page
    run(tmp_path, body)


# ------------------------------------------------ keys and blocks added and removed (Piranha's add/delete/(de)activate)


async def _check(h: Harness, edits: list[dict], user: str = "viewer") -> tuple[int, dict]:
    r = await h.client.get("/api/v1/config", headers=basic(user))
    r = await h.client.post("/api/v1/config/check", json={"etag": r.headers["ETag"], "edits": edits},
                            headers=basic(user))
    return r.status, await r.json()


def test_every_key_a_block_lacks_is_offered_with_its_default_and_meaning():
    blocks = forms.blocks(TEXT)
    web1 = next(b for b in blocks if b.path == ("HTTP", "web1"))
    offered = {c.key: c for c in web1.addable}
    assert set(offered) == set(TABLES["server"]) - {"address", "active", "weight"}
    assert offered["port"].default == "the virtual's" and "port" in offered["port"].meaning
    assert offered["notify_up"].default == "none"
    for kind, path in (("global", ()), ("virtual", ("v",)), ("server", ("v", "s"))):
        choices = addable(path, set())
        assert [c.key for c in choices] == list(TABLES[kind])
        assert all(c.meaning and c.default for c in choices), [c.key for c in choices if not c.meaning]
    http = next(b for b in blocks if b.path == ("HTTP",))
    assert "scheduler" not in {c.key for c in http.addable} and "fwmark" in {c.key for c in http.addable}


def test_a_key_added_and_one_removed_back_to_its_default(tmp_path):
    async def body(h: Harness) -> None:
        status, got = await _check(h, [{"block": ["HTTP", "web1"], "key": "port", "value": "8080"},
                                       {"block": ["HTTP"], "key": "quiesce_server", "value": None}])
        assert status == 200 and got["valid"], got
        assert "+         port = 8080" in got["diff"] and "-     quiesce_server = 0" in got["diff"]
        assert any(":8080" in op for op in got["table_ops"])
        config = parse(got["text"])
        assert config.virtual("HTTP").servers[0].port == 8080 and config.virtual("HTTP").quiesce_server is False
    run(tmp_path, body)


def test_a_virtual_and_a_real_server_added_then_applied(tmp_path):
    async def body(h: Harness) -> None:
        before = h.config.read_text()
        edits = [{"op": "add_block", "kind": "virtual", "name": "ftp"},
                 {"block": ["ftp"], "key": "address", "value": "192.168.26.11 eth0:2"},
                 {"block": ["ftp"], "key": "port", "value": "21"},
                 {"op": "add_block", "kind": "server", "name": "ftp1", "parent": "ftp"},
                 {"block": ["ftp", "ftp1"], "key": "address", "value": "10.11.12.21"},
                 {"op": "add_block", "kind": "server", "name": "web4", "parent": "HTTP"},
                 {"block": ["HTTP", "web4"], "key": "address", "value": "10.11.12.14"}]
        status, got = await _check(h, edits)
        assert status == 200 and got["valid"], got
        assert sorted(got["table_ops"]) == ["-A -t 192.168.26.11:21 -s wlc (ftp)",
                                            "-a -t 192.168.26.10:80 -r 10.11.12.14:80 -m -w 1 (HTTP/web4)",
                                            "-a -t 192.168.26.11:21 -r 10.11.12.21:21 -m -w 1 (ftp/ftp1)"]
        assert got["text"].endswith("\nvirtual ftp {\n     address = 192.168.26.11 eth0:2\n     port = 21\n"
                                    "     server ftp1 {\n         address = 10.11.12.21\n     }\n}\n")
        old = [line for line in before.splitlines()]
        assert [line for line in got["text"].splitlines() if line in old or line.startswith("serial_no")]
        r = await h.client.get("/api/v1/config", headers=basic("admin"))
        r = await h.client.put("/api/v1/config", json={"text": got["text"]},
                               headers={**basic("admin"), "If-Match": r.headers["ETag"]})
        assert r.status == 200
        after = h.config.read_text()
        assert [s.name for s in parse(after).virtual("ftp").servers] == ["ftp1"]
        assert [c for c in after.splitlines() if c.lstrip().startswith("#")] == \
               [c for c in before.splitlines() if c.lstrip().startswith("#")]
    run(tmp_path, body)


def test_a_virtual_and_a_server_deleted_and_one_deactivated(tmp_path):
    async def body(h: Harness) -> None:
        status, got = await _check(h, [{"op": "remove_block", "block": ["HTTP", "web2"]},
                                       {"op": "remove_block", "block": ["HTTPS"]},
                                       {"block": ["HTTP", "web3"], "key": "active", "value": "0"}])
        assert status == 200 and got["valid"], got
        config = parse(got["text"])
        assert "HTTPS" not in [v.name for v in config.virtuals]
        assert [(s.name, s.active) for s in config.virtual("HTTP").servers] == [("web1", True), ("web3", False)]
        # web2 is down in the daemon's status (tests/web/fakedaemon.py): not in the table, nothing to delete
        assert got["table_ops"] == ["-d -t 192.168.26.10:80 -r 10.11.12.13:80 (HTTP/web3)",
                                    "-D -t 192.168.26.10:443 (HTTPS)"]
        assert "server web2" not in got["text"].split("virtual HTTPS")[0]
        assert "# HTTPS with persistence" not in got["text"]
    run(tmp_path, body)


def test_a_bad_block_edit_is_refused_at_its_control_and_the_file_is_untouched(tmp_path):
    async def body(h: Harness) -> None:
        before = h.config.read_bytes()
        status, got = await _check(h, [{"op": "add_block", "kind": "virtual", "name": "two words"},
                                       {"op": "add_block", "kind": "server", "name": "web1", "parent": "HTTP"},
                                       {"op": "remove_block", "block": ["HTTP", "nope"]},
                                       {"block": ["HTTP", "web1"], "key": "weight", "value": "heavy"}])
        assert status == 200 and got["valid"] is False
        where = [(e.get("op"), e["block"], e.get("name"), e.get("key")) for e in got["errors"]]
        assert where == [("add_block", [], "two words", None), ("add_block", ["HTTP"], "web1", None),
                         ("remove_block", ["HTTP", "nope"], None, None)]
        assert "without blanks" in got["errors"][0]["message"]
        assert "already has a server web1" in got["errors"][1]["message"]
        status, got = await _check(h, [{"block": ["HTTP", "web1"], "key": "weight", "value": "heavy"}])
        assert got["errors"][0]["block"] == ["HTTP", "web1"] and got["errors"][0]["key"] == "weight"
        # a virtual without an address: the form's error, at no field
        status, got = await _check(h, [{"op": "add_block", "kind": "virtual", "name": "bare"}])
        assert got["valid"] is False and "virtual bare has no 'address'" in got["errors"][0]["message"]
        for bad in ({"op": "add_block", "kind": "listener", "name": "x"}, {"op": "add_block", "kind": "virtual"},
                    {"op": "remove_block", "block": []}, {"op": "rename", "block": ["HTTP"]},
                    {"op": "add_block", "kind": "server", "name": "s", "parent": ["HTTP"]}):
            r = await h.client.post("/api/v1/config/check", json={"etag": configedit.etag(before.decode()),
                                                                  "edits": [bad]}, headers=basic("viewer"))
            assert r.status == 400, bad
        assert h.config.read_bytes() == before
    run(tmp_path, body)


HOSTILE = "<img_src_onerror_alert(1)>$(reboot);`id`|&amp;"  # no blank, quote, # = { } /: a valid name


def test_a_name_with_html_and_shell_characters_is_kept_as_text_and_shown_escaped(tmp_path):
    async def body(h: Harness) -> None:
        status, got = await _check(h, [{"op": "add_block", "kind": "server", "name": HOSTILE, "parent": "HTTP"},
                                       {"block": ["HTTP", HOSTILE], "key": "address", "value": "10.11.12.15"}])
        assert status == 200 and got["valid"], got
        assert f"     server {HOSTILE} {{" in got["text"].splitlines()
        refused = await _check(h, [{"op": "add_block", "kind": "virtual", "name": "<b>x y</b>"},
                                   {"op": "add_block", "kind": "virtual", "name": "a\";rm -rf /;\""}])
        assert [e["op"] for e in refused[1]["errors"]] == ["add_block", "add_block"]
        r = await h.client.get("/api/v1/config", headers=basic("admin"))
        r = await h.client.put("/api/v1/config", json={"text": got["text"]},
                               headers={**basic("admin"), "If-Match": r.headers["ETag"]})
        assert r.status == 200
        page = await (await h.client.get("/config/forms", headers=basic("admin"))).text()
        assert HOSTILE not in page and "<img_src" not in page
        assert "&lt;img_src_onerror_alert(1)&gt;$(reboot);`id`|&amp;amp;" in page
    run(tmp_path, body)


def test_the_page_offers_the_controls_to_an_admin_and_is_read_only_for_the_others(tmp_path):
    async def body(h: Harness) -> None:
        page = await (await h.client.get("/config/forms", headers=basic("admin"))).text()
        for hook in ('data-action="add-key"', 'data-action="remove-key"', 'data-action="delete-block"',
                     'data-action="toggle-active"', 'data-add="virtual"', 'data-add="server" data-parent="HTTP"',
                     '<option value="fwmark"', 'data-action="apply"'):
            assert hook in page, hook
        assert "fwmark (default none): 1-4294967295: the service is keyed by this firewall mark" in page
        for user in ("viewer", "operator"):
            page = await (await h.client.get("/config/forms", headers=basic(user))).text()
            assert "data-read-only" in page and " readonly" in page
            for hook in ('data-action="add-key"', 'data-action="delete-block"', 'data-add=', 'data-action="apply"'):
                assert hook not in page, (user, hook)
        # the API refuses anyway: only an admin writes
        status, got = await _check(h, [{"op": "remove_block", "block": ["HTTPS"]}], user="operator")
        r = await h.client.get("/api/v1/config", headers=basic("operator"))
        r = await h.client.put("/api/v1/config", json={"text": got["text"]},
                               headers={**basic("operator"), "If-Match": r.headers["ETag"]})
        assert r.status == 403
    run(tmp_path, body)
