"""The rules every request passes (adapters/web/app.py): a sweep of every
route and method without authentication (401; pages redirect to /login)
and with too small a role (403); CSRF and Origin refusals; sessions
(cookie flags, renewed at login, idle and absolute timeouts, logout); the
login rate limit; request size limits; security headers; names with HTML
and shell characters shown escaped."""

from __future__ import annotations

import re

import markupsafe
import pytest

from adapters.web import users
from adapters.web.app import SESSIONS, routes
from tests.web.fakedaemon import WEIRD
from tests.web.harness import PASSWORDS, Harness, basic, run

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


def concrete(path: str) -> str:
    return path.replace("{name}", "someone").replace("{version}", "20260101T000000.000000Z-1")


def test_every_route_and_method_without_authentication(tmp_path):
    async def body(h: Harness) -> None:
        paths = sorted({concrete(r.path) for r in routes()}) + ["/api/v1/nothing-here", "/nothing-here"]
        for path in paths:
            for method in METHODS:
                r = await h.client.request(method, path, allow_redirects=False, json={})
                public = path == "/login" and method in ("GET", "POST")
                if public:
                    continue
                if path.startswith("/api/") or path == "/metrics":
                    assert r.status == 401, (method, path, r.status)
                    assert r.headers["WWW-Authenticate"].startswith("Basic")
                    assert "error" in await r.json()
                else:
                    assert r.status in (302, 303), (method, path, r.status)
                    assert r.headers["Location"] == "/login"
        # a wrong password or a garbled header is nobody too
        for header in ({"Authorization": "Basic bm9wZTpub3Bl"}, {"Authorization": "Basic !!!"},
                       {"Authorization": "Bearer x"}, {"Cookie": "shoal_session=forged"}):
            r = await h.client.get("/api/v1/status", headers=header)
            assert r.status == 401, header
        # the login page and static files need nobody
        assert (await h.client.get("/login")).status == 200
        assert (await h.client.get("/static/shoal.js")).status == 200
        assert (await h.client.get("/static/shoal.css")).status == 200
    run(tmp_path, body)


def test_too_small_a_role_is_403_on_every_route(tmp_path):
    async def body(h: Harness) -> None:
        rank = {"viewer": 0, "operator": 1, "admin": 2}
        checked = 0
        for route in routes():
            if route.role is None:
                continue
            for user in ("viewer", "operator"):
                if rank[user] >= rank[route.role]:
                    continue
                r = await h.client.request(route.method, concrete(route.path), headers=basic(user), json={},
                                           allow_redirects=False)
                assert r.status == 403, (user, route.method, route.path, r.status)
                checked += 1
        assert checked >= 8
        # and enough of a role passes the check (whatever the handler then says)
        r = await h.client.post("/api/v1/config/check", json={"text": ""}, headers=basic("viewer"))
        assert r.status == 200
        r = await h.client.post("/api/v1/admin", json={"action": "drain", "server": "HTTP/web1"},
                                headers=basic("operator"))
        assert r.status == 200
    run(tmp_path, body)


def test_csrf_token_is_required_on_cookie_authenticated_changes(tmp_path):
    async def body(h: Harness) -> None:
        csrf = await h.login("admin")
        drain = {"action": "drain", "server": "HTTP/web1"}
        for method, path, payload in (("POST", "/api/v1/admin", drain), ("PUT", "/api/v1/config", {"text": ""}),
                                      ("POST", "/api/v1/config/check", {"text": ""}),
                                      ("DELETE", "/api/v1/users/viewer", None), ("POST", "/logout", None)):
            for headers in ({}, {"X-CSRF-Token": ""}, {"X-CSRF-Token": csrf[:-1] + "x"}):
                r = await h.client.request(method, path, json=payload, headers=headers, allow_redirects=False)
                assert r.status == 403, (method, path, headers, r.status)
        assert not any(req.get("cmd") == "admin" for req in h.fake.requests)
        r = await h.client.post("/api/v1/admin", json=drain, headers={"X-CSRF-Token": csrf})
        assert r.status == 200
        # a GET needs none
        assert (await h.client.get("/api/v1/status")).status == 200
    run(tmp_path, body)


def test_cross_origin_changes_are_refused(tmp_path):
    async def body(h: Harness) -> None:
        drain = {"action": "drain", "server": "HTTP/web1"}
        for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
            r = await h.client.post("/api/v1/admin", json=drain, headers={**basic("operator"), **headers})
            assert r.status == 403, headers
            r = await h.client.post("/login", data={"user": "admin", "password": PASSWORDS["admin"]},
                                    headers=headers, allow_redirects=False)
            assert r.status == 403, headers
        origin = str(h.client.make_url("/")).rstrip("/")
        r = await h.client.post("/api/v1/admin", json=drain, headers={**basic("operator"), "Origin": origin})
        assert r.status == 200
    run(tmp_path, body)


def test_login_sets_a_strict_httponly_cookie_renewed_at_each_login(tmp_path):
    async def body(h: Harness) -> None:
        r = await h.client.post("/login", data={"user": "viewer", "password": PASSWORDS["viewer"]},
                                allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/"
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP on loopback
        first = h.client.session.cookie_jar.filter_cookies(h.client.make_url("/"))["shoal_session"].value
        assert (await h.client.get("/api/v1/status")).status == 200
        await h.login("viewer")
        second = h.client.session.cookie_jar.filter_cookies(h.client.make_url("/"))["shoal_session"].value
        assert second != first
        h.client.session.cookie_jar.clear()
        r = await h.client.get("/api/v1/status", headers={"Cookie": f"shoal_session={first}"})
        assert r.status == 401  # the old session ended at the new login
        # logout ends it
        page = await (await h.client.get("/", headers={"Cookie": f"shoal_session={second}"})).text()
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        r = await h.client.post("/logout", headers={"X-CSRF-Token": csrf, "Cookie": f"shoal_session={second}"})
        assert r.status == 200
        r = await h.client.get("/api/v1/status", headers={"Cookie": f"shoal_session={second}"})
        assert r.status == 401
    run(tmp_path, body)


def test_sessions_time_out_idle_and_absolute(tmp_path):
    async def body(h: Harness) -> None:
        now = [1000.0]
        sessions = h.client.app[SESSIONS]
        sessions.clock = lambda: now[0]
        await h.login("viewer")
        now[0] += 50
        assert (await h.client.get("/api/v1/status")).status == 200
        # a page's background refresh is not activity
        now[0] += 50
        assert (await h.client.get("/api/v1/status", headers={"X-Shoal-Background": "1"})).status == 200
        now[0] += 61
        assert (await h.client.get("/api/v1/status")).status == 401  # idle: 111 s since the last activity
        await h.login("viewer")
        for _ in range(4):
            now[0] += 90
            assert (await h.client.get("/api/v1/status")).status == 200
        now[0] += 90
        assert (await h.client.get("/api/v1/status")).status == 401  # absolute: 450 s > 400 s
    run(tmp_path, body, idle_s=100, absolute_s=400)


def test_login_rate_limit(tmp_path):
    async def body(h: Harness) -> None:
        for _ in range(3):
            r = await h.client.post("/login", data={"user": "admin", "password": "wrong"}, allow_redirects=False)
            assert r.status == 401 and "wrong user or password" in await r.text()
        r = await h.client.post("/login", data={"user": "admin", "password": PASSWORDS["admin"]},
                                allow_redirects=False)
        assert r.status == 429 and "too many failed logins" in await r.text()
        r = await h.client.get("/api/v1/status", headers=basic("admin"))
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
        # another user from the same address is limited too (by address)
        r = await h.client.get("/api/v1/status", headers=basic("viewer"))
        assert r.status == 429
        log = (h.state / "web-audit.log").read_text()
        assert log.count('"result": "denied"') == 3
    run(tmp_path, body, login_failures=3, login_window_s=60)


def test_request_size_limits(tmp_path):
    async def body(h: Harness) -> None:
        r = await h.client.post("/api/v1/admin", data=b'{"action": "' + b"x" * 100_000 + b'"}',
                                headers={**basic("operator"), "Content-Type": "application/json"})
        assert r.status == 413
        r = await h.client.post("/login", data=b"user=a&password=" + b"x" * 20_000,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 413
        r = await h.client.put("/api/v1/config", data=b"x" * (13 * 1024 * 1024),
                               headers={**basic("admin"), "If-Match": '"x"'})
        assert r.status == 413
    run(tmp_path, body)


def test_security_headers_and_no_inline_script(tmp_path):
    async def body(h: Harness) -> None:
        for path in ("/", "/config", "/audit", "/users", "/login", "/api/v1/status"):
            r = await h.client.get(path, headers=basic("admin"))
            assert r.status == 200, path
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["X-Frame-Options"] == "DENY"
            assert r.headers["Cache-Control"] == "no-store"
            assert "aiohttp" not in r.headers.get("Server", "")
            if r.content_type == "text/html":
                page = await r.text()
                for tag in re.findall(r"<script\b[^>]*>", page):
                    assert re.search(r'src="/static/[a-z]+\.js"', tag), tag
                assert "</script>" not in page.replace('<script src="/static/shoal.js" defer></script>', "")
                assert not re.search(r"\son[a-z]+\s*=", page), path
                assert "javascript:" not in page
    run(tmp_path, body)


def test_names_with_html_and_shell_characters_are_shown_escaped(tmp_path):
    async def body(h: Harness) -> None:
        await h.login(WEIRD)  # a user named like that, and a real server too (the fake's status)
        page = await (await h.client.get("/")).text()
        assert WEIRD not in page and "<script>alert(1)</script>" not in page
        escaped = str(markupsafe.escape(WEIRD))
        assert f'data-server="HTTP/{escaped}"' in page
        assert f"<span data-user>{escaped}</span>" in page
        r = await h.client.post("/login", data={"user": WEIRD + "x", "password": "nope"})
        audit = await (await h.client.get("/audit")).text()
        assert WEIRD not in audit and escaped in audit
        # the API gives the name back as data, unchanged
        status = await (await h.client.get("/api/v1/status")).json()
        assert status["services"][0]["servers"][2]["name"] == WEIRD
        assert not (tmp_path / "pwned").exists()
    run(tmp_path, body)


def test_a_user_without_admin_cannot_see_users_page(tmp_path):
    async def body(h: Harness) -> None:
        await h.login("operator")
        r = await h.client.get("/users", allow_redirects=False)
        assert r.status == 403
        page = await (await h.client.get("/")).text()
        assert 'href="/users"' not in page
        assert 'data-action="drain"' in page and 'data-action="failover"' in page
        await h.login("viewer")
        page = await (await h.client.get("/")).text()
        assert 'data-action="drain"' not in page  # a viewer is shown no button it may not use
    run(tmp_path, body)


@pytest.mark.parametrize("name", ["", "a:b", "a b", "x" * 65, "tab\there"])
def test_bad_user_names(name):
    assert users.name_problem(name)


def test_under_tls_the_cookie_is_secure_and_hsts_is_sent(tmp_path):
    async def body(h: Harness) -> None:
        r = await h.client.post("/login", data={"user": "viewer", "password": PASSWORDS["viewer"]},
                                allow_redirects=False)
        cookie = r.headers["Set-Cookie"]
        assert cookie.startswith("__Host-shoal_session=") and "Secure" in cookie and "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    run(tmp_path, body, tls=True)


def test_the_file_is_shown_escaped_in_the_editor(tmp_path):
    async def body(h: Harness) -> None:
        hostile = "# </textarea><script>alert(1)</script><!--\n"
        h.config.write_text(hostile + h.config.read_text())
        page = await (await h.client.get("/config", headers=basic("viewer"))).text()
        assert "</textarea><script>" not in page
        assert "&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;!--" in page
        assert 'data-action="apply"' not in page  # a viewer may check, not apply
        page = await (await h.client.get("/config", headers=basic("admin"))).text()
        assert 'data-action="apply"' in page
    run(tmp_path, body)


def test_the_audit_page_shows_who_did_what(tmp_path):
    async def body(h: Harness) -> None:
        await h.client.post("/api/v1/admin", json={"action": "drain", "server": "HTTP/web2"},
                            headers=basic("operator"))
        page = await (await h.client.get("/audit", headers=basic("viewer"))).text()
        assert '<tr data-audit-action="admin" data-result="ok">' in page
        assert "<td>operator</td>" in page and "drain HTTP/web2" in page
    run(tmp_path, body)


def test_no_password_prompt_for_a_pages_own_requests(tmp_path):
    async def body(h: Harness) -> None:
        r = await h.client.get("/api/v1/status")
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
        for mode in ("cors", "same-origin"):  # fetch() and EventSource: a prompt would stall them
            r = await h.client.get("/api/v1/status", headers={"Sec-Fetch-Mode": mode})
            assert r.status == 401 and "WWW-Authenticate" not in r.headers
    run(tmp_path, body)


def test_shoal_passwd_while_logged_in_ends_the_session(tmp_path):
    async def body(h: Harness) -> None:
        await h.login("operator")
        assert (await h.client.get("/api/v1/status")).status == 200
        table = users.load(str(h.state / "web-users"))
        table["operator"] = users.make("operator", "viewer", "a new password")  # as shoal passwd does
        users.save(str(h.state / "web-users"), table)
        assert (await h.client.get("/api/v1/status")).status == 401
        # a damaged file while running: the last good table stays in force
        await h.login("viewer")
        (h.state / "web-users").write_text("garbage\n")
        assert (await h.client.get("/api/v1/status")).status == 200
        assert (await h.client.get("/api/v1/status", headers=basic("admin"))).status == 200
    run(tmp_path, body)


def test_no_shell_and_no_program_anywhere_in_the_web_tool():
    from tests.web.harness import ROOT

    files = sorted((ROOT / "adapters" / "web").glob("*.py")) + [ROOT / "shoal" / "web_cli.py",
                                                                 ROOT / "shoal" / "passwd.py"]
    banned = re.compile(r"\b(subprocess|os\.system|os\.popen|os\.exec\w*|os\.spawn\w*|create_subprocess_\w+|"
                        r"pty\.spawn|shell\s*=\s*True)\b")
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not banned.search(line), f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
