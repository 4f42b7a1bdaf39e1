"""`shoal passwd`: the users file it writes (mode 0600, argon2id, atomic) and its refusals."""

from __future__ import annotations

import io
import os
import stat

import pytest

from adapters.web import users
from shoal import passwd


def run(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return passwd.main(argv)


def test_passwd_writes_an_argon2id_hash_mode_0600(tmp_path, monkeypatch):
    assert run(monkeypatch, ["alice", "--role", "admin", "--state-dir", str(tmp_path)], "s3cret pass\n") == 0
    path = tmp_path / "web-users"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert "s3cret" not in text
    table = users.load(str(path))
    assert table["alice"].role == "admin" and table["alice"].hash.startswith("$argon2id$")
    assert users.verify(table, "alice", "s3cret pass") == table["alice"]
    assert users.verify(table, "alice", "s3cret pass\n") is None
    assert users.verify(table, "bob", "s3cret pass") is None


def test_passwd_replaces_and_keeps_others(tmp_path, monkeypatch):
    f = str(tmp_path / "u")
    assert run(monkeypatch, ["alice", "--users", f], "one\n") == 0
    assert run(monkeypatch, ["bob", "--users", f, "--role", "operator"], "two") == 0
    assert run(monkeypatch, ["alice", "--users", f, "--role", "admin"], "three\n") == 0
    table = users.load(f)
    assert sorted(table) == ["alice", "bob"]
    assert table["alice"].role == "admin" and users.verify(table, "alice", "three")
    assert table["bob"].role == "operator" and users.verify(table, "bob", "two")
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no temporary file left


@pytest.mark.parametrize("argv,stdin", [
    (["alice"], "\n"),                      # empty password
    (["alice"], ""),                        # no line at all
    ([""], "pw\n"),                         # empty name
    (["al:ice"], "pw\n"),                   # ':' splits HTTP Basic
    (["al ice"], "pw\n"),
    (["al\x1bice"], "pw\n"),
    (["x" * 65], "pw\n"),
    (["alice", "--role", "root"], "pw\n"),
    (["alice", "--bogus"], "pw\n"),
])
def test_passwd_bad_input_exits_2_and_writes_nothing(tmp_path, monkeypatch, argv, stdin):
    assert run(monkeypatch, argv + ["--state-dir", str(tmp_path)], stdin) == 2
    assert not (tmp_path / "web-users").exists()


def test_a_name_with_html_and_shell_characters_is_a_name(tmp_path, monkeypatch):
    name = "<b>x</b>&$(id);`id`|'\""
    assert run(monkeypatch, [name, "--state-dir", str(tmp_path)], "pw\n") == 0
    assert name in users.load(str(tmp_path / "web-users"))


def test_a_damaged_users_file_is_an_error(tmp_path):
    (tmp_path / "u").write_text("alice:root:$argon2id$x\n")
    with pytest.raises(users.UsersError, match=":1:"):
        users.load(str(tmp_path / "u"))
