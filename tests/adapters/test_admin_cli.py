"""`shoal admin` (SPEC.md, "Operating a running pair"): its arguments, what
it asks the daemon and its exit status, against a fake control socket that
records each request and answers what the test says."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.cli import main


class FakeDaemon:
    """A control socket at STATE_DIR/control.sock answering one canned object per request."""

    def __init__(self, state_dir: Path) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer: dict[str, Any] = {"ok": True}
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(state_dir / "control.sock"))
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(json.loads(data))
                conn.sendall((json.dumps(self.answer) + "\n").encode())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[FakeDaemon]:
    fake = FakeDaemon(tmp_path)
    yield fake
    fake.close()


def admin(tmp_path: Path, *argv: str) -> int:
    return main(["admin", *argv, "--state-dir", str(tmp_path)])


@pytest.mark.parametrize("argv", [
    [],  # no action
    ["frobnicate", "web/rs1"],
    ["drain"],  # no server
    ["drain", "rs1"],  # not VIRTUAL/SERVER
    ["drain", "web/"],
    ["drain", "/rs1"],
    ["drain", "web/rs1/x"],
    ["drain", "web/rs 1"],
    ["drain", "web/rs1", "extra"],
    ["undrain", ""],
    ["weight", "web/rs1"],  # no N
    ["weight", "web/rs1", "abc"],
    ["weight", "web/rs1", "1.5"],
    ["weight", "web/rs1", "65536"],
    ["weight", "web/rs1", "-1"],
    ["weight", "rs1", "3"],
    ["failover", "web/rs1"],
    ["reload", "now"],
])
def test_bad_arguments_exit_2_and_ask_nothing(tmp_path: Path, daemon: FakeDaemon, argv: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(tmp_path, *argv) == 2
    assert daemon.requests == []
    assert "usage: shoal admin" in capsys.readouterr().err


@pytest.mark.parametrize("argv, request_", [
    (["drain", "web/rs1"], {"cmd": "admin", "action": "drain", "server": "web/rs1"}),
    (["undrain", "web/rs1"], {"cmd": "admin", "action": "undrain", "server": "web/rs1"}),
    (["weight", "web/rs1", "0"], {"cmd": "admin", "action": "weight", "server": "web/rs1", "weight": 0}),
    (["weight", "web/rs1", "65535"], {"cmd": "admin", "action": "weight", "server": "web/rs1", "weight": 65535}),
    (["failover"], {"cmd": "admin", "action": "failover", "server": ""}),
    (["reload"], {"cmd": "reload"}),
])
def test_an_applied_request_exits_0(tmp_path: Path, daemon: FakeDaemon, argv: list[str],
                                    request_: dict[str, Any]) -> None:
    assert admin(tmp_path, *argv) == 0
    assert daemon.requests == [request_]


def test_the_state_dir_may_come_before_the_action(tmp_path: Path, daemon: FakeDaemon) -> None:
    assert main(["admin", "--state-dir", str(tmp_path), "drain", "web/rs1"]) == 0
    assert daemon.requests == [{"cmd": "admin", "action": "drain", "server": "web/rs1"}]


def test_a_refusal_exits_1_with_the_reason(tmp_path: Path, daemon: FakeDaemon,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer = {"ok": False, "error": "no real server named web/rs9"}
    assert admin(tmp_path, "drain", "web/rs9") == 1
    assert "no real server named web/rs9" in capsys.readouterr().err
    daemon.answer = {"ok": False, "error": "refused: the partner is not heard both ways"}
    assert admin(tmp_path, "failover") == 1
    assert "the partner is not heard both ways" in capsys.readouterr().err


def test_a_bad_request_answer_exits_1(tmp_path: Path, daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer = {"error": "starting: ask again in a moment"}
    assert admin(tmp_path, "undrain", "web/rs1") == 1
    assert "starting" in capsys.readouterr().err


def test_reload_prints_what_changed(tmp_path: Path, daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer = {"ok": True, "detail": "serial_no 1 -> 2; web/rs1 weight 3 -> 4"}
    assert admin(tmp_path, "reload") == 0
    assert capsys.readouterr().out == "serial_no 1 -> 2; web/rs1 weight 3 -> 4\n"


def test_reload_refused_prints_every_error(tmp_path: Path, daemon: FakeDaemon,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer = {"ok": False, "error": "lvs.cf: 2 error(s)",
                     "errors": ["lvs.cf:3:5: unknown key 'wieght'", "lvs.cf:9:1: '}' expected"]}
    assert admin(tmp_path, "reload") == 1
    err = capsys.readouterr().err
    assert "lvs.cf: 2 error(s)" in err
    assert "lvs.cf:3:5: unknown key 'wieght'\n" in err and "lvs.cf:9:1: '}' expected\n" in err


def test_no_daemon_is_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(tmp_path, "drain", "web/rs1") == 1
    err = capsys.readouterr().err
    assert "no shoal daemon is running" in err and str(tmp_path) in err
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a socket nobody listens on any more
    dead.bind(str(tmp_path / "control.sock"))
    dead.close()
    assert admin(tmp_path, "reload") == 1
    assert "no shoal daemon is running" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(word in out for word in ("drain", "undrain", "weight", "failover", "reload"))
