"""shoal web's GET /api/v1/status for a big pair: 100 virtuals x 10 real
servers, one real `shoal run` daemon (dry-run dataplane, `check = none`:
every server up, no check traffic) in a namespace, `shoal web` in front of
it, a session cookie (one login: the argon2id hash is checked once, as a
browser does).  Prints the latency of `shoal status --json` (the control
socket alone) and of GET /api/v1/status (web tool + control socket), side
by side in one run, and the size of the answer.

    .venv/bin/python bench/web.py [--requests 200]    # as root (a namespace)

Public interfaces only: the CLI (`shoal passwd`, `shoal web`,
`shoal status`), adapters/lab/daemons.py to start the daemon and
adapters/netns.py for the namespace.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters import netns  # noqa: E402
from adapters.control import ask  # noqa: E402
from adapters.lab import daemons  # noqa: E402

PASSWORD = "bench-password-1"


def config(virtuals: int, servers: int) -> str:
    lines = ["serial_no = 1", "primary = 10.80.0.1", "backup_active = 0", "network = nat"]
    for v in range(virtuals):
        lines += [f"virtual v{v} {{", f"    address = 10.80.{1 + v // 200}.{1 + v % 200} eth0:{v + 1}",
                  "    port = 80", "    check = none"]
        for s in range(servers):
            lines += [f"    server s{s} {{", f"        address = 10.81.{v}.{10 + s}", "    }"]
        lines.append("}")
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(fn, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(name: str, ms: list[float], size: int) -> str:
    ranked = sorted(ms)
    p99 = ranked[max(0, math.ceil(0.99 * len(ranked)) - 1)]  # nearest rank
    return (f"{name:<34} p50 {statistics.median(ms):7.1f} ms  p99 {p99:7.1f} ms  "
            f"max {ranked[-1]:7.1f} ms  {size / 1024:6.0f} KiB  ({len(ms)} requests)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--virtuals", type=int, default=100)
    parser.add_argument("--servers", type=int, default=10)
    args = parser.parse_args()
    netns.require()
    shoal = [sys.executable, "-m", "shoal"]
    with tempfile.TemporaryDirectory() as tmp, netns.Topology() as topo:
        work = Path(tmp)
        ns, peer = topo.namespace("web"), topo.namespace("peer")
        topo.veth(ns, "eth0", peer, "eth0")
        topo.address(ns, "eth0", "10.80.0.1/16")
        cf = work / "lvs.cf"
        cf.write_text(config(args.virtuals, args.servers))
        state = work / "state"
        daemon = daemons.start(ns, cf, state, work / "daemon.log", dataplane="dry-run")
        web = None
        try:
            daemon.wait_ready(timeout_s=120)
            subprocess.run([*shoal, "passwd", "bench", "--role", "admin", "--state-dir", str(state)],
                           input=PASSWORD + "\n", text=True, check=True, cwd=ROOT, capture_output=True)
            port = free_port()
            web = subprocess.Popen([*shoal, "web", "-c", str(cf), "--state-dir", str(state),
                                    "--listen", f"127.0.0.1:{port}"], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=open(work / "web.log", "wb"))
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or web.poll() is not None:
                        raise SystemExit(f"shoal web did not start:\n{(work / 'web.log').read_text()[-2000:]}")
                    time.sleep(0.05)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            body = urllib.parse.urlencode({"user": "bench", "password": PASSWORD})
            conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
            answer = conn.getresponse()
            answer.read()
            cookie = (answer.getheader("Set-Cookie") or "").split(";", 1)[0]
            if answer.status not in (302, 303) or not cookie:
                raise SystemExit(f"login failed: {answer.status}")
            sizes: dict[str, int] = {}

            def api() -> None:
                conn.request("GET", "/api/v1/status", headers={"Cookie": cookie})
                response = conn.getresponse()
                data = response.read()
                assert response.status == 200, (response.status, data[:200])
                sizes["api"] = len(data)

            def cli() -> None:
                done = subprocess.run([*shoal, "status", "--json", "--state-dir", str(state)], cwd=ROOT,
                                      capture_output=True, check=True)
                sizes["cli"] = len(done.stdout)

            def control() -> None:
                sizes["control"] = len(json.dumps(ask(str(state), {"cmd": "status"}, timeout_s=10)))

            api(), control()  # warm
            n = args.requests
            rows = [("control socket {\"cmd\": \"status\"}", timed(control, n), "control"),
                    ("GET /api/v1/status (shoal web)", timed(api, n), "api"),
                    ("shoal status --json (a process)", timed(cli, max(5, n // 20)), "cli")]
            load = os.getloadavg()[0]
            print(f"status of {args.virtuals} virtuals x {args.servers} servers, {n} requests each, "
                  f"load average {load:.2f}")
            for name, ms, key in rows:
                print(summary(name, ms, sizes[key]))
        finally:
            if web is not None:
                web.terminate()
                web.wait(10)
            daemon.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
