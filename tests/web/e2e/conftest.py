"""A real pair watched and edited through `shoal web` in a real headless
Chromium (Debian's /usr/bin/chromium driven by Playwright's sync API).

    browser (this host's loopback)  ->  shoal web 127.0.0.1:PORT  ->  the primary's control socket
    primary 10.60.0.1 / backup 10.60.0.2 (eth0, br0; VIP 10.60.0.100 on eth0:1)
    real servers 10.61.0.11 (rs1), .12 (rs2), .13 (HOSTILE), one process each,
        in namespace rs (eth0, br1; gateway nat_router 10.61.0.254 on the routers' eth1:1)

`web_pair` builds it for one test: namespaces (adapters/netns.py), the
two `shoal run` daemons with the nft dataplane (adapters/lab/daemons.py,
each with its own copy of lvs.cf, as two hosts have), one HTTP server
process per real server, an admin made with `shoal passwd`, and `shoal
web` for the primary.  Everything is stopped by PID on every exit path:
the web tool and the daemons by SIGTERM then SIGKILL, the servers with
the topology, the namespaces deleted.

A host without namespaces (not root) or without /usr/bin/chromium FAILS
these tests; nothing here skips, and nothing downloads a browser.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapters import netns
from adapters.lab import daemons

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ROOT = Path(daemons.ROOT)
# The pages' screenshots go to docs/screenshots/ (kept with the docs) only when asked
# (SHOAL_SCREENSHOTS=1), so that a test run leaves the checkout as it was; else to a temporary directory.
SCREENSHOTS = ROOT / "docs" / "screenshots" if os.environ.get("SHOAL_SCREENSHOTS") == "1" else \
    Path(tempfile.gettempdir()) / f"shoal-screenshots-{os.getpid()}"
USER, PASSWORD = "admin", "correct horse battery staple"

# A server name no page may run or pass to a shell: lvs.cf names take anything
# but blanks, quotes and # = { } /, so HTML tags and every shell metacharacter fit.
HOSTILE = "<img>rs3;touch$IFS.pwned1;`touch$IFS.pwned2`$(touch$IFS.pwned3)&|<script>alert(1)<!--"
PWNED = (".pwned1", ".pwned2", ".pwned3")

CONFIG = f"""# /etc/sysconfig/ha/lvs.cf of the browser tests: a pair in NAT mode.
# Every comment here must survive an edit made in the web tool.
serial_no = 1
primary = 10.60.0.1
backup = 10.60.0.2
backup_active = 1
keepalive = 0.2
deadtime = 0.8
network = nat
nat_router = 10.61.0.254 eth1:1
nat_nmask = 255.255.255.0
arp_interval = 0.2

# the web site, checked with a real request
virtual web {{
    address = 10.60.0.100 eth0:1
    vip_nmask = 255.255.255.0
    port = 80
    send = "GET / HTTP/1.0\\r\\n\\r\\n"
    expect = "HTTP/1.0 200"
    scheduler = wlc
    timeout = 0.5
    reentry = 1
    # rs1 is the one the browser reweights
    server rs1 {{
        address = 10.61.0.11
        weight = 1   # the browser test raises this
    }}
    server rs2 {{
        address = 10.61.0.12
        weight = 2
    }}
    server {HOSTILE} {{
        address = 10.61.0.13
    }}
}}
"""

SERVER = """
import asyncio, sys
async def handle(r, w):
    await r.read(100)
    w.write(b"HTTP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
    await w.drain(); w.close()
async def main():
    s = await asyncio.start_server(handle, sys.argv[1], 80)
    async with s: await s.serve_forever()
asyncio.run(main())
"""

SERVERS = {"rs1": "10.61.0.11", "rs2": "10.61.0.12", HOSTILE: "10.61.0.13"}


def wait_for(what: str, predicate: Callable[[], Any], timeout_s: float = 10.0, logs: Callable[[], str] = str) -> Any:
    """Until `predicate()` is truthy (exceptions count as not yet); its value."""
    end = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # not there yet: a refused connection, a missing key
            last = e
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last!r})" if last else "") + logs())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WebPair:
    topo: netns.Topology
    ns: dict[str, str]
    tmp: Path
    url: str = ""
    daemons: dict[str, daemons.Daemon] = field(default_factory=dict)
    servers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    web: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------ paths

    def config_path(self, node: str = "primary") -> Path:
        return self.tmp / f"{node}.cf"

    def state(self, node: str = "primary") -> Path:
        return self.tmp / node

    @property
    def users(self) -> Path:
        return self.tmp / "web-users"

    # ------------------------------------------------------------ the pair

    def status(self, node: str = "primary") -> dict[str, Any]:
        return self.daemons[node].status()

    def server_status(self, name: str, virtual: str = "web", node: str = "primary") -> dict[str, Any]:
        service = next(s for s in self.status(node)["services"] if s["name"] == virtual)
        return dict(next(r for r in service["servers"] if r["name"] == name))

    def table(self, node: str = "primary") -> str:
        """`shoal table` of that router (the applied table, as ipvsadm -Ln)."""
        done = subprocess.run([sys.executable, "-m", "shoal", "table", "--state-dir", str(self.state(node))],
                              capture_output=True, text=True, cwd=ROOT, timeout=20)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def kill_server(self, name: str) -> None:
        """The real server's process dies (SIGKILL, by PID): connections to it are refused."""
        proc = self.servers[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def api(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """The web tool's API with HTTP Basic as the admin (no browser): (status, JSON body)."""
        status, answer, _ = self.api_headers(method, path, body, headers)
        return status, answer

    def api_headers(self, method: str, path: str, body: Any = None,
                    headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        """`api`, with the answer's headers."""
        import base64

        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request = urllib.request.Request(self.url + path, method=method, headers={
            "Authorization": f"Basic {auth}", "Content-Type": "application/json", **(headers or {})},
            data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read() or b"null"), dict(answer.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null"), dict(e.headers)

    def logs(self) -> str:
        out = []
        for name in ("primary.log", "backup.log", "web.log"):
            path = self.tmp / name
            if path.exists():
                out.append(f"\n--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
        return "".join(out)

    def wait(self, what: str, predicate: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        return wait_for(what, predicate, timeout_s, self.logs)

    # ------------------------------------------------------------ stopping

    def close(self) -> None:
        if self.web is not None and self.web.poll() is None:
            self.web.send_signal(signal.SIGTERM)
            try:
                self.web.wait(5)
            except subprocess.TimeoutExpired:
                self.web.send_signal(signal.SIGKILL)
                self.web.wait()
        daemons.stop_all(self.daemons.values(), grace_s=3.0)


def build(tmp: Path, topo: netns.Topology, config: str = CONFIG) -> WebPair:
    ns = {n: topo.namespace(n) for n in ("sw", "primary", "backup", "rs")}
    topo.bridge(ns["sw"], "br0")
    topo.bridge(ns["sw"], "br1")
    for i, node in enumerate(("primary", "backup"), 1):
        topo.veth(ns[node], "eth0", ns["sw"], f"p{i}", bridge="br0")
        topo.veth(ns[node], "eth1", ns["sw"], f"s{i}", bridge="br1")
        topo.address(ns[node], "eth0", f"10.60.0.{i}/24")
        topo.address(ns[node], "eth1", f"10.61.0.{i}/24")
        topo.sysctl(ns[node], "net.ipv4.ip_forward", "1")
    topo.veth(ns["rs"], "eth0", ns["sw"], "r1", bridge="br1")
    for address in SERVERS.values():
        topo.address(ns["rs"], "eth0", f"{address}/24")
    topo.run(ns["rs"], ["ip", "route", "add", "default", "via", "10.61.0.254"])
    pair = WebPair(topo, ns, tmp)
    (tmp / "server.py").write_text(SERVER)
    for name, address in SERVERS.items():
        pair.servers[name] = topo.spawn(ns["rs"], [sys.executable, str(tmp / "server.py"), address],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for node in ("primary", "backup"):
        pair.config_path(node).write_text(config)
        pair.config_path(node).chmod(0o640)
    return pair


def start(pair: WebPair) -> None:
    """The daemons, the admin user and the web tool; returns when all serve."""
    for node in ("primary", "backup"):
        pair.daemons[node] = daemons.start(pair.ns[node], pair.config_path(node), pair.state(node),
                                           pair.tmp / f"{node}.log", "nft", name=node)
    daemons.wait_ready(pair.daemons.values(), timeout_s=60)
    made = subprocess.run([sys.executable, "-m", "shoal", "passwd", USER, "--role", "admin", "--users",
                           str(pair.users)], input=PASSWORD + "\n", capture_output=True, text=True, cwd=ROOT,
                          timeout=30)
    assert made.returncode == 0, made.stderr
    port = free_port()
    pair.url = f"http://127.0.0.1:{port}"
    pair.web = daemons.spawn(None, ["-m", "shoal", "web", "-c", str(pair.config_path()), "--state-dir",
                                    str(pair.state()), "--users", str(pair.users), "--listen",
                                    f"127.0.0.1:{port}"], pair.tmp / "web.log")

    def serving() -> bool:
        if pair.web is not None and pair.web.poll() is not None:
            raise AssertionError(f"shoal web exited ({pair.web.returncode}){pair.logs()}")
        with urllib.request.urlopen(pair.url + "/login", timeout=2) as answer:
            return answer.status == 200

    wait_for("shoal web to serve /login", serving, 30, pair.logs)
    pair.wait("the primary active with every real server up", lambda: pair.status()["role"] == "active" and all(
        r["health"] == "up" for s in pair.status()["services"] for r in s["servers"]), 20)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    """Keep each phase's report on the test, so fixtures can tell a failure at teardown."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


def failed(request: Any) -> bool:
    report = getattr(request.node, "report_call", None)
    return report is not None and report.failed


@pytest.fixture(scope="session")
def netns_ok() -> None:
    try:
        netns.require()
    except netns.NetnsUnavailable as e:
        pytest.fail(f"the browser tests run a real pair in network namespaces: {e}", pytrace=False)
    netns.sweep()


@pytest.fixture
def web_pair(netns_ok: None, tmp_path: Path, request: Any) -> Iterator[WebPair]:
    for name in PWNED:
        for where in (ROOT, tmp_path):
            assert not (where / name).exists(), f"{where / name} exists before the test"
    with netns.Topology() as topo:
        pair = build(tmp_path, topo)
        try:
            start(pair)
            yield pair
            if failed(request):
                print(f"the pair's logs at the failure:{pair.logs()}")
        finally:
            pair.close()


# ------------------------------------------------------------------ the browser


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install -y chromium); "
                    f"nothing downloads a browser", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Seen:
    """What a page did that it must not: dialogs (an alert from injected script), errors."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def open_page(browser: Any, web_pair: WebPair, request: Any) -> Iterator[Callable[..., tuple[Any, Seen]]]:
    """`open_page(confirm=True)`: a fresh browser context (its own cookies) logged in as the
    admin, on the monitoring page; `confirm()` dialogs accepted (or dismissed), every dialog
    kept in the returned `Seen`."""
    contexts = []

    def open_(confirm: bool = True) -> tuple[Any, Seen]:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        seen = Seen()

        def on_dialog(dialog: Any) -> None:
            seen.dialogs.append(f"{dialog.type}: {dialog.message}")
            if dialog.type == "confirm" and confirm:
                dialog.accept()
            else:
                dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda e: seen.errors.append(str(e)))
        login(page, web_pair.url)
        return page, seen

    yield open_
    for context in contexts:
        if failed(request):
            for page in context.pages:
                print(f"--- page {page.url} at the failure:\n{page.locator('body').inner_text()[:3000]}")
        context.close()


def login(page: Any, url: str, form_only: bool = False) -> bool:
    """Log in with the /login form, as a person does; True when the form did it.

    If the form's POST is refused (the web tool answering its own login
    form with a 403 is a bug of the tool, which `test_login_by_the_form`
    shows), the session is made by posting the same form fields from the
    context's request API (same cookies), so that the other tests still
    exercise what they are about; `form_only` makes that a failure."""
    page.goto(url + "/login")
    page.fill('input[name="user"]', USER)
    page.fill('input[name="password"]', PASSWORD)
    with page.expect_navigation():
        page.locator('form [type="submit"], form button').first.click()
    if page.url.rstrip("/") == url:
        return True
    assert not form_only, f"the login form did not log in: {page.url}: {page.locator('body').inner_text()[:300]}"
    answer = page.context.request.post(url + "/login", form={"user": USER, "password": PASSWORD}, max_redirects=0)
    assert answer.status in (302, 303), f"login refused: {answer.status} {answer.text()[:300]}"
    page.goto(url + "/")
    assert page.url.rstrip("/") == url, page.url
    return False
