"""The control socket (adapters/control.py): every request line gets exactly
one answer line, whatever it holds, and the server keeps serving.

Unit tests on a real `ControlServer` (a Unix socket in a temp directory, its
loop on a thread), a hypothesis fuzz of it with the daemon's own request
handler (`Daemon._request` over a real engine), and a fuzz of a real `shoal
run` daemon in a namespace.  The fuzz budgets are small here; set
SHOAL_FUZZ_EXAMPLES for a longer run (docs/FUZZING.md, "Control socket").
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import netns
from adapters.control import MAX_LINE, ControlError, ControlServer, ask
from adapters.lab import daemons
from tests.adapters.pairlab import CONFIG

EXAMPLES = int(os.environ.get("SHOAL_FUZZ_EXAMPLES", "0"))


class Served:
    """A ControlServer on its own loop thread."""

    def __init__(self, state_dir: Path, handler: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
                 **limits: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ControlServer(str(state_dir), handler, **limits)
        self.call(self.server.start())
        self.path = self.server.path

    def call(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    def close(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.call(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(self.path)
        return sock


def exchange(path: str, lines: list[bytes], timeout_s: float = 5.0) -> list[bytes]:
    """Send `lines` (each ending in a newline) on one connection; every answer line until EOF."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(path)
        sock.sendall(b"".join(lines))
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.splitlines()


async def stub(request: dict[str, Any]) -> dict[str, Any]:
    match request.get("cmd"):
        case "status":
            return {"role": "active"}
        case "boom":
            raise RuntimeError("the handler's own bug")
        case "args":
            raise ValueError("bad arguments")
        case "reprs":
            return {"not json": object()}
        case "slow":
            await asyncio.sleep(10)
    raise ValueError(f"unknown command {request.get('cmd')!r}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path, stub, idle_timeout_s=0.5, handler_timeout_s=0.5, max_clients=4)
    try:
        yield s
    finally:
        s.close()


def test_every_request_line_gets_one_answer(served: Served) -> None:
    lines = [b'{"cmd": "status"}\n', b"\xff not json\n", b"[1, 2]\n", b'{"cmd": "nope"}\n', b'{"cmd": "boom"}\n',
             b'{"cmd": "args"}\n', b'{"cmd": "reprs"}\n', b"\n", b"[" * 50_000 + b"\n", b'{"cmd": "slow"}\n',
             b'{"cmd": "status"}']  # the last one ends at EOF, without a newline
    answers = [json.loads(a) for a in exchange(served.path, lines)]
    assert answers[0] == {"role": "active"} and answers[-1] == {"role": "active"}
    assert [a["error"].split(":")[0] for a in answers[1:-1]] == [
        "bad request", "bad request", "bad request", "internal error", "bad request", "internal error",
        "bad request", "bad request", "no answer within 0.5 s"]
    assert "not JSON" in answers[1]["error"] and "expected a JSON object" in answers[2]["error"]
    assert "RuntimeError: the handler's own bug" in answers[4]["error"]
    assert served.server.errors == {"not-json": 3, "not-object": 1, "bad-request": 2, "handler-error": 2,
                                    "handler-timeout": 1}


def test_an_oversize_line_is_answered_and_the_connection_closed(served: Served) -> None:
    answers = exchange(served.path, [b"x" * (MAX_LINE + 10) + b"\n", b'{"cmd": "status"}\n'])
    assert [json.loads(a)["error"] for a in answers] == [f"bad request: longer than {MAX_LINE} bytes"]
    assert json.loads(exchange(served.path, [b'{"cmd": "status"}\n'])[0]) == {"role": "active"}


def test_a_silent_client_times_out_and_connections_are_bounded(served: Served) -> None:
    idle = [served.connect() for _ in range(4)]
    try:
        with served.connect() as extra:
            assert b"busy: 4 control connections" in extra.recv(1000)
        started = time.monotonic()
        assert b"no request within 0.5 s" in idle[0].recv(1000) and idle[0].recv(1000) == b""
        assert time.monotonic() - started < 2
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.1)
    assert json.loads(exchange(served.path, [b'{"cmd": "status"}\n'])[0]) == {"role": "active"}
    assert served.server.errors["busy"] == 1 and served.server.errors["idle"] >= 1


def test_the_socket_path_is_made_safely(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    target = tmp_path / "precious"
    target.write_text("keep me")
    path.symlink_to(target)
    first = Served(tmp_path, stub)  # a symlink at the path: the link removed, never its target
    try:
        assert target.read_text() == "keep me" and path.is_socket()
        with pytest.raises(ControlError, match="another daemon answers on"):
            Served(tmp_path, stub)
    finally:
        first.close()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a previous life's socket: nobody listens
    stale.close()
    second = Served(tmp_path, stub)
    try:
        assert json.loads(exchange(second.path, [b'{"cmd": "status"}\n'])[0]) == {"role": "active"}
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        second.close()
    path.write_text("a file")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        Served(tmp_path, stub)


# ---------------------------------------------------------------- fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
requests = st.fixed_dictionaries(
    {"cmd": st.sampled_from(["status", "table", "admin", "reload", "nope"]) | json_values},
    optional={"action": st.sampled_from(["failover", "drain", "undrain", "force_down", "force_up", "auto", "x"])
              | json_values,
              "server": st.sampled_from(["rs1", "web/rs1", "web/nobody", "", "/", "web/"]) | json_values})
lines = st.lists(
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b""))
    | json_values.map(lambda v: json.dumps(v).encode())
    | requests.map(lambda v: json.dumps(v).encode()),
    min_size=1, max_size=8)


def check_answers(path: str, sent: list[bytes]) -> None:
    answers = exchange(path, [line + b"\n" for line in sent])
    assert len(answers) == len(sent), (sent, answers)
    for answer in answers:
        assert isinstance(json.loads(answer), dict), answer


@pytest.fixture(scope="module")
def daemon_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The daemon's own request handler over a real engine (no adapters but a dry-run table)."""
    from adapters.daemon import Daemon
    from adapters.dataplane import make
    from adapters.notify import NotifyWriter
    from engine.config import parse
    from engine.engine import Engine
    from engine.events import TableRead

    tmp = tmp_path_factory.mktemp("control")
    daemon = Daemon(str(tmp / "lvs.cf"), "dry-run", str(tmp))
    daemon.config = parse(CONFIG)
    daemon.node = "primary"
    daemon.engine = Engine(daemon.config, "primary")
    daemon.engine.step(0, TableRead({}))
    daemon.dataplane = make("dry-run")
    daemon.sockets = SimpleNamespace(errors={}, drops={})
    daemon.notify = NotifyWriter(None)
    daemon.serving = True
    daemon.admin_answer_s = 0.01  # no loop steps the engine here: an accepted request is answered "accepted"

    def reload(waiter: Any = None) -> None:  # a reload forks a parser: the live daemon's fuzz covers it
        if waiter is not None:
            waiter.set_result({"ok": False, "error": "not in this test"})

    daemon.reloads.request = reload  # type: ignore[method-assign]
    served = Served(tmp, daemon._request)
    daemon.control = served.server
    try:
        yield served
    finally:
        served.close()


@settings(max_examples=EXAMPLES or 300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines)
def test_fuzz_the_daemons_request_handler(daemon_served: Served, sent: list[bytes]) -> None:
    check_answers(daemon_served.path, sent)


def test_the_handler_kept_serving(daemon_served: Served) -> None:
    status = json.loads(exchange(daemon_served.path, [b'{"cmd": "status"}\n'])[0])
    assert status["node"] == "primary" and "handler-error" not in daemon_served.server.errors, \
        daemon_served.server.errors
    print("answered with errors:", dict(sorted(daemon_served.server.errors.items())))


# ---------------------------------------------------------------- a real daemon


@pytest.fixture(scope="module")
def live(netns_ok: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("live")
    (tmp / "lvs.cf").write_text(CONFIG)
    with netns.Topology() as topo:
        ns, peer = topo.namespace("solo"), topo.namespace("peer")
        topo.veth(ns, "eth0", peer, "eth0")
        topo.veth(ns, "eth1", peer, "eth1")
        topo.address(ns, "eth0", "10.50.0.1/24")
        topo.address(ns, "eth1", "10.51.0.1/24")
        d = daemons.start(ns, tmp / "lvs.cf", tmp / "state", tmp / "daemon.log", "dry-run", name="solo")
        try:
            d.wait_ready(60)
            yield str(tmp / "state" / "control.sock"), tmp
            assert d.running(), d.log()[-3000:]
        finally:
            code = d.stop()
        assert code == 0, d.log()[-3000:]


@settings(max_examples=EXAMPLES or 60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines)
def test_fuzz_a_running_daemon(live: tuple[str, Path], sent: list[bytes]) -> None:
    check_answers(live[0], sent)


def test_the_running_daemon_survived_the_fuzz(live: tuple[str, Path]) -> None:
    path, tmp = live
    status = ask(str(tmp / "state"), {"cmd": "status"})
    assert status["node"] == "primary", status
    log = (tmp / "daemon.log").read_text()
    assert "Traceback" not in log, log[-5000:]
    print("control errors:", status["loop"]["control_errors"], "reloads:", status["loop"]["reloads"])
