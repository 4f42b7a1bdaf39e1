"""The web tool in a real headless Chromium against a real pair (conftest.py):
log in by the form (and nothing without a session); a real server's
failure seen live, without a reload; a drain reaching the table, and an
operator weight and a drain of a selection; a weight edited in the
configuration page, previewed (diff and ipvsadm operation), applied with
the file's comments kept and serial_no raised, then reverted from the
history; an invalid value refused at its line with the file untouched; a
hostile server name shown as text everywhere, never run; a second
browser's stale edit refused (412); the forms page's weight applied and
its invalid value refused at its field; what if, the real pair untouched.

The page hooks are SPEC.md's ("Operating a running pair"): `/login`'s
`user` and `password`; on `/`, `data-role`, one element per real server
with `data-server="VIRTUAL/SERVER"` and `data-health`, holding a button
`data-action="drain"` or `"undrain"`.  The others are the web tool's own
(adapters/web/templates/): on `/`, `input[data-weight-input]` with
`data-action="weight"`, `input[data-select]` with
`data-action="drain-selected"`; on `/config`, the editor `#config-text`,
the buttons `data-action="check"`/`"preview"`/`"apply"`, the outcome
`#config-result[data-result]`, the errors `#config-errors li[data-line]`,
`#config-diff`, `#config-ops`, and the history's
`[data-version] button[data-action="revert"]`; on `/config/forms`,
`fieldset[data-path]` > `label[data-key]` > `input` and `[data-error]`,
`#forms-result[data-result]`; on `/whatif`, `#whatif-form` and
`#whatif-outcome [data-field]`.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable


from adapters.web import configedit
from engine.config import parse
from tests.web.e2e.conftest import HOSTILE, PWNED, ROOT, SCREENSHOTS, Seen, WebPair, login

OpenPage = Callable[..., tuple[Any, Seen]]


def row(page: Any, server: str, virtual: str = "web") -> Any:
    return page.locator(f'[data-server="{virtual}/{server}"]')


def weight_of(config_text: str, server: str, virtual: str = "web") -> int:
    v = next(v for v in parse(config_text).virtuals if v.name == virtual)
    return next(s for s in v.servers if s.name == server).weight


def comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


def test_login_by_the_form(web_pair: WebPair, browser: Any) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        assert login(page, web_pair.url, form_only=True)
        page.wait_for_selector('[data-role="active"]')
    finally:
        context.close()


def test_logged_in_the_page_shows_the_pair(web_pair: WebPair, open_page: OpenPage) -> None:
    page, seen = open_page()
    page.wait_for_selector('[data-role="active"]')
    for name in ("rs1", "rs2", HOSTILE):
        assert row(page, name).get_attribute("data-health") == "up"
    assert page.locator('[data-server] button[data-action="drain"]').count() == 3
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "monitoring.png"), full_page=True)
    assert seen.dialogs == [] and seen.errors == []


def test_without_a_session_every_page_sends_to_login(web_pair: WebPair, browser: Any) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(web_pair.url + "/")
        assert page.url.startswith(web_pair.url + "/login")
        page.fill('input[name="user"]', "admin")
        page.fill('input[name="password"]', "wrong password")
        page.locator('form [type="submit"], form button').first.click()
        page.wait_for_load_state()
        assert page.url.startswith(web_pair.url + "/login")
        assert page.locator("[data-server]").count() == 0
        answer = page.context.request.get(web_pair.url + "/api/v1/status")
        assert answer.status == 401
        page.goto(web_pair.url + "/config")
        assert page.url.startswith(web_pair.url + "/login") and page.locator("#config-text").count() == 0
    finally:
        context.close()


def test_a_real_server_failure_turns_its_row_down_without_a_reload(web_pair: WebPair, open_page: OpenPage) -> None:
    page, _ = open_page()
    assert row(page, "rs1").get_attribute("data-health") == "up"
    page.evaluate("""() => {
        window.__not_reloaded = true;
        new MutationObserver(() => {
            const rs1 = document.querySelector('[data-server="web/rs1"]');
            if (rs1 && rs1.dataset.health === "down" && !window.__down_ms) window.__down_ms = Date.now();
        }).observe(document.body, {subtree: true, childList: true, attributes: true});
    }""")
    killed = time.time()
    web_pair.kill_server("rs1")
    daemon_down = web_pair.wait("the daemon to see rs1 down", lambda: web_pair.server_status("rs1")["health"] == "down"
                                and time.time(), 15)
    page.wait_for_selector('[data-server="web/rs1"][data-health="down"]', timeout=15_000)
    assert page.evaluate("window.__not_reloaded") is True  # the same document: updated live
    page_down = page.evaluate("window.__down_ms") / 1000
    print(f"\nrs1 killed -> the daemon's status says down: {daemon_down - killed:.3f} s; "
          f"-> the page shows it: {page_down - killed:.3f} s (the page {page_down - daemon_down:+.3f} s after "
          f"the status poll saw it)")
    assert page_down - daemon_down < 3.0  # live: an event, not the page's 5 s refresh
    assert row(page, "rs2").get_attribute("data-health") == "up"
    assert web_pair.server_status("rs1")["health"] == "down"
    assert "10.61.0.11:80" not in web_pair.table()


def test_drain_from_the_page_reaches_the_table(web_pair: WebPair, open_page: OpenPage) -> None:
    page, seen = open_page()
    assert re.search(r"10\.61\.0\.12:80\s+\S+\s+2\b", web_pair.table())
    row(page, "rs2").locator('button[data-action="drain"]').click()
    web_pair.wait("rs2 at weight 0 in the primary's table",
                  lambda: re.search(r"10\.61\.0\.12:80\s+\S+\s+0\b", web_pair.table()))
    assert web_pair.server_status("rs2")["admin"] == "drain"
    page.wait_for_selector('[data-server="web/rs2"] button[data-action="undrain"]')
    row(page, "rs2").locator('button[data-action="undrain"]').click()
    web_pair.wait("rs2 back at weight 2", lambda: re.search(r"10\.61\.0\.12:80\s+\S+\s+2\b", web_pair.table()))
    assert seen.errors == []


def test_an_operator_weight_and_a_drain_of_a_selection_reach_the_table(web_pair: WebPair,
                                                                        open_page: OpenPage) -> None:
    page, _ = open_page()
    row(page, "rs2").locator("input[data-weight-input]").fill("7")
    row(page, "rs2").locator('button[data-action="weight"]').click()
    web_pair.wait("rs2 at operator weight 7", lambda: re.search(r"10\.61\.0\.12:80\s+\S+\s+7\b", web_pair.table()))
    row(page, "rs1").locator("input[data-select]").check()
    row(page, "rs2").locator("input[data-select]").check()
    page.click('button[data-action="drain-selected"]')
    web_pair.wait("rs1 and rs2 drained", lambda: all(re.search(rf"10\.61\.0\.1{n}:80\s+\S+\s+0\b", web_pair.table())
                                                     for n in (1, 2)))
    assert re.search(r"10\.61\.0\.13:80\s+\S+\s+1\b", web_pair.table())  # not selected: untouched
    page.wait_for_selector('[data-server="web/rs1"] button[data-action="undrain"]')


def open_config(page: Any, url: str) -> str:
    page.goto(url + "/config")
    page.wait_for_selector("#config-text")
    return str(page.input_value("#config-text"))


def test_a_weight_edited_in_the_page_is_applied_with_the_comments_kept(web_pair: WebPair,
                                                                      open_page: OpenPage) -> None:
    page, _ = open_page()
    path = web_pair.config_path()
    before = path.read_text()
    text = open_config(page, web_pair.url)
    assert text == before
    edited = text.replace("        weight = 1   # the browser test raises this",
                          "        weight = 5   # the browser test raises this")
    assert edited != text
    page.fill("#config-text", edited)
    page.click('button[data-action="preview"]')  # first the change as a diff and as the table's operations
    page.wait_for_selector("#config-ops:not([hidden])")
    assert "-e -t 10.60.0.100:80 -r 10.61.0.11:80 -m -w 5 (web/rs1)" in page.inner_text("#config-ops")
    assert "+        weight = 5   # the browser test raises this" in page.inner_text("#config-diff")
    assert path.read_text() == before  # a preview writes nothing
    page.click('button[data-action="apply"]')
    page.wait_for_selector('#config-result[data-result="applied"]')
    after = path.read_text()
    assert weight_of(after, "rs1") == 5
    assert comments(after) == comments(before)
    assert parse(after).serial_no == 2  # raised by the tool: the edit did not raise it
    assert [line for line in configedit.unified_diff(before, after).splitlines()
            if line[:1] in "+-" and line[:3] not in ("+++", "---")] == [
        "-serial_no = 1", "+serial_no = 2",
        "-        weight = 1   # the browser test raises this", "+        weight = 5   # the browser test raises this"]
    web_pair.wait("rs1 at weight 5 in the primary's table",
                  lambda: re.search(r"10\.61\.0\.11:80\s+\S+\s+5\b", web_pair.table()))
    assert web_pair.status()["serial_no"] == 2
    assert page.input_value("#config-text") == after  # the editor shows the file as written
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "configuration.png"), full_page=True)
    # the version replaced is in the history; reverting to it (the page's button) is a new version,
    # serial_no raised again
    status, history = web_pair.api("GET", "/api/v1/config/history")
    assert status == 200 and [v["serial_no"] for v in history["versions"]] == [1]
    page.click(f'[data-version="{history["versions"][0]["id"]}"] button[data-action="revert"]')
    web_pair.wait("the file reverted", lambda: parse(path.read_text()).serial_no == 3)
    reverted = path.read_text()
    assert reverted == before.replace("serial_no = 1\n", "serial_no = 3\n")
    web_pair.wait("rs1 back at weight 1", lambda: re.search(r"10\.61\.0\.11:80\s+\S+\s+1\b", web_pair.table()))
    assert web_pair.status()["serial_no"] == 3


def test_an_invalid_value_is_refused_at_its_line_and_the_file_untouched(web_pair: WebPair,
                                                                       open_page: OpenPage) -> None:
    page, _ = open_page()
    path = web_pair.config_path()
    before = path.read_bytes()
    text = open_config(page, web_pair.url)
    bad = text.replace("        weight = 2\n", "        weight = heavy\n")
    line = bad.splitlines().index("        weight = heavy") + 1
    page.fill("#config-text", bad)
    page.click('button[data-action="apply"]')
    page.wait_for_selector('#config-result[data-result="invalid"]')
    error = page.locator("#config-errors li").first
    assert error.get_attribute("data-line") == str(line) and error.get_attribute("data-col") == "18"
    assert "weight" in error.inner_text() and "heavy" in error.inner_text()
    assert path.read_bytes() == before
    # the same through the API: 422, the body as /config/check's
    status, body = web_pair.api("PUT", "/api/v1/config", {"text": bad}, {"If-Match": configedit.etag(before.decode())})
    assert status == 422 and body["errors"][0]["line"] == line
    assert path.read_bytes() == before


def test_a_hostile_server_name_is_shown_as_text_and_never_run(web_pair: WebPair, open_page: OpenPage) -> None:
    page, seen = open_page()
    hostile = row(page, HOSTILE)
    hostile.wait_for()
    assert HOSTILE in hostile.locator("td").all_inner_texts()  # a cell holding exactly the name, as text
    assert page.locator("#services img, #services script").count() == 0
    assert HOSTILE not in page.content()  # only its escaped form (&lt;img&gt;...) is in the document
    hostile.locator('button[data-action="drain"]').click()  # the name goes through the API to the daemon
    web_pair.wait("the hostile server drained", lambda: web_pair.server_status(HOSTILE)["admin"] == "drain")
    page.wait_for_selector(f'[data-server="web/{HOSTILE}"] button[data-action="undrain"]')
    text = open_config(page, web_pair.url)  # and through the configuration page
    assert HOSTILE in text and page.locator("#config-page img, #config-page script").count() == 0
    page.click('button[data-action="check"]')
    page.wait_for_selector('#config-result[data-result="valid"]')
    page.goto(web_pair.url + "/audit")  # the audit log names the drained server: as text too
    entry = page.locator("tr[data-audit-action]", has_text="rs3;touch").first
    assert HOSTILE in entry.inner_text()
    assert page.locator("main img, main script").count() == 0
    assert seen.dialogs == []
    for name in PWNED:
        for where in (ROOT, web_pair.tmp, web_pair.state("primary"), web_pair.state("backup")):
            assert not (where / name).exists(), f"{where / name}: a shell ran the server's name"


def test_a_second_browsers_stale_edit_is_refused(web_pair: WebPair, open_page: OpenPage) -> None:
    first, _ = open_page()
    second, _ = open_page()
    path = web_pair.config_path()
    text_one = open_config(first, web_pair.url)
    text_two = open_config(second, web_pair.url)
    assert text_one == text_two
    first.fill("#config-text", text_one.replace("        weight = 2\n", "        weight = 3\n"))
    first.click('button[data-action="apply"]')
    first.wait_for_selector('#config-result[data-result="applied"]')
    written = path.read_text()
    second.fill("#config-text", text_two.replace("        weight = 1   #", "        weight = 9   #"))
    second.click('button[data-action="apply"]')
    second.wait_for_selector('#config-result[data-result="stale"]')
    assert path.read_text() == written
    assert weight_of(written, "rs2") == 3 and weight_of(written, "rs1") == 1


def test_what_if_a_router_crashes_shows_the_takeover_and_touches_nothing_real(web_pair: WebPair,
                                                                              open_page: OpenPage) -> None:
    page, seen = open_page()
    files = {node: web_pair.config_path(node).read_bytes() for node in ("primary", "backup")}
    table_before = web_pair.table()
    page.goto(web_pair.url + "/whatif")
    page.select_option('#whatif-form select[name="kind"]', "crash")
    page.fill('#whatif-form input[name="value"]', "primary")
    page.click('#whatif-form button[data-action="whatif"]')
    page.wait_for_selector('#whatif-result[data-result="done"]')
    outcome = page.locator("#whatif-outcome")
    assert outcome.locator('[data-field="vip_owner"]').inner_text() == "backup"
    assert "primary down" in outcome.locator('[data-field="roles"]').inner_text()
    table = outcome.locator('[data-field="table"]').inner_text()
    assert "TCP  10.60.0.100:80 wlc" in table and "10.61.0.11:80" in table
    timeline = outcome.locator('[data-field="timeline"]').inner_text()
    assert "becomes ACTIVE" in timeline and HOSTILE in timeline  # the hostile name as text here too
    assert page.locator("#whatif-outcome img, #whatif-outcome script").count() == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "whatif.png"), full_page=True)
    # the real pair did not move
    assert web_pair.status("primary")["role"] == "active" and web_pair.status("backup")["role"] == "standby"
    assert "10.60.0.100" in web_pair.status("primary")["vips"] and not web_pair.status("backup")["vips"]
    assert web_pair.table() == table_before
    assert {node: web_pair.config_path(node).read_bytes() for node in ("primary", "backup")} == files
    # a name the configuration does not have is refused, with the reason
    page.select_option('#whatif-form select[name="kind"]', "server_down")
    page.fill('#whatif-form input[name="value"]', "web/rs9")
    page.click('#whatif-form button[data-action="whatif"]')
    page.wait_for_selector('#whatif-result[data-result="error"]')
    assert "no real server 'web/rs9'" in page.inner_text("#whatif-result")
    assert seen.errors == []


def form_field(page: Any, block: list[str], key: str) -> Any:
    """The label of `key` in the forms page's fieldset of `block` (its data-path)."""
    handle = page.evaluate_handle("""([block, key]) => {
        for (const set of document.querySelectorAll("fieldset[data-path]"))
            if (JSON.stringify(JSON.parse(set.dataset.path)) === JSON.stringify(block))
                return set.querySelector('label[data-key="' + key + '"]');
        return null;
    }""", [block, key])
    element = handle.as_element()
    assert element is not None, f"no field {key} for {block}"
    return element


def test_forms_a_weight_applied_and_an_invalid_value_refused_at_its_field(web_pair: WebPair,
                                                                         open_page: OpenPage) -> None:
    page, _ = open_page()
    path = web_pair.config_path()
    before = path.read_bytes()
    page.goto(web_pair.url + "/config/forms")
    page.wait_for_selector("#forms-form")
    weight = form_field(page, ["web", "rs2"], "weight")
    assert weight.query_selector("input").input_value() == "2"
    # an invalid value: refused at its field, nothing written
    weight.query_selector("input").fill("heavy")
    page.click('#forms-form button[data-action="apply"]')
    page.wait_for_selector('#forms-result[data-result="invalid"]')
    error = weight.query_selector("[data-error]")
    assert error.is_visible() and "weight" in error.inner_text() and "heavy" in error.inner_text()
    assert weight.query_selector("input").get_attribute("aria-invalid") == "true"
    assert path.read_bytes() == before
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "forms.png"), full_page=True)
    # a valid one: applied, one line changed (and serial_no), the comments kept, in the table
    weight.query_selector("input").fill("4")
    page.click('#forms-form button[data-action="apply"]')
    page.wait_for_selector('#forms-result[data-result="applied"]')
    after = path.read_text()
    assert weight_of(after, "rs2") == 4 and parse(after).serial_no == 2
    assert comments(after) == comments(before.decode())
    assert len(after.splitlines()) == len(before.decode().splitlines())
    web_pair.wait("rs2 at weight 4 in the primary's table",
                  lambda: re.search(r"10\.61\.0\.12:80\s+\S+\s+4\b", web_pair.table()))
