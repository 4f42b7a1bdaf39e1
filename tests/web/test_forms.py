"""The configuration as forms (adapters/web/forms.py, POST /api/v1/config/check,
the /config/forms page): every key shown as written, an edit changes its
own line only, an error comes back at its field, a stale form is refused."""

from __future__ import annotations

from adapters.web import forms
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
