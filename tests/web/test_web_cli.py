"""`shoal web`'s refusals to start (no admin user, plain HTTP off loopback,
bad arguments) and a real start on 127.0.0.1 answering 401 without a user."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from adapters.web import users
from shoal import web_cli
from tests.web.harness import ROOT, write_users


def start(tmp_path, *extra: str) -> int:
    return web_cli.main(["-c", str(ROOT / "examples" / "lvs.cf"), "--state-dir", str(tmp_path), *extra])


def test_refuses_to_start_without_an_admin(tmp_path, capsys):
    assert start(tmp_path) == 1
    assert "no admin user" in capsys.readouterr().err
    users.save(str(tmp_path / "web-users"), {"v": users.make("v", "viewer", "pw")})
    assert start(tmp_path) == 1
    err = capsys.readouterr().err
    assert "no admin user" in err and "shoal passwd NAME --role admin" in err


def test_refuses_plain_http_off_loopback(tmp_path, capsys):
    write_users(tmp_path / "web-users")
    assert start(tmp_path, "--listen", "0.0.0.0:3636") == 1
    assert "not a loopback address" in capsys.readouterr().err
    assert start(tmp_path, "--listen", "[::]:3636") == 1
    assert start(tmp_path, "--listen", "192.0.2.1:3636", "--tls-cert", "c.pem") == 1
    assert "go together" in capsys.readouterr().err


@pytest.mark.parametrize("listen", ["localhost:3636", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "1.2.3:80"])
def test_bad_listen_is_exit_2(tmp_path, listen):
    write_users(tmp_path / "web-users")
    assert start(tmp_path, "--listen", listen) == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_starts_on_loopback_and_asks_for_authentication(tmp_path):
    serve(tmp_path, "http", "127.0.0.1")


def test_with_tls_it_listens_on_any_address(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=shoal",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    serve(tmp_path, "https", "0.0.0.0", "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key",
          str(tmp_path / "key.pem"))


def serve(tmp_path, scheme: str, address: str, *extra: str) -> None:
    write_users(tmp_path / "web-users")
    port = free_port()
    context = ssl._create_unverified_context() if scheme == "https" else None
    shoal = shutil.which("shoal", path=os.path.dirname(sys.executable)) or "shoal"
    proc = subprocess.Popen([shoal, "web", "-c", str(ROOT / "examples" / "lvs.cf"), "--state-dir", str(tmp_path),
                             "--listen", f"{address}:{port}", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        status = None
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/api/v1/status", timeout=1, context=context)
            except urllib.error.HTTPError as e:
                status = e.code
                break
            except OSError:
                time.sleep(0.05)
        assert status == 401
        assert oct(os.stat(tmp_path / "web-audit.log").st_mode & 0o777) == "0o600"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_partner_options_are_checked_at_start(tmp_path, capsys):
    write_users(tmp_path / "web-users")
    assert start(tmp_path, "--partner", "https://192.0.2.2:3636") == 1
    assert "go together" in capsys.readouterr().err
    (tmp_path / "pw").write_text("secret\n")
    assert start(tmp_path, "--partner", "http://192.0.2.2:3636", "--partner-user", "a",
                 "--partner-password-file", str(tmp_path / "pw")) == 1
    assert "TLS" in capsys.readouterr().err
    assert start(tmp_path, "--partner", "https://192.0.2.2:3636", "--partner-user", "a",
                 "--partner-password-file", str(tmp_path / "missing")) == 1
    assert "missing" in capsys.readouterr().err
