"""`shoal keygen FILE [--force]`: the key that `heartbeat_key_file` names."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from engine.wire import Heartbeat, decode, encode
from shoal.cli import USAGE
from shoal.cli import main as cli

ROOT = Path(__file__).parent.parent.parent


def test_writes_64_hex_characters_mode_0600(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "heartbeat.key"
    old = os.umask(0)  # the mode is 0600 whatever the umask
    try:
        assert cli(["keygen", str(path)]) == 0
    finally:
        os.umask(old)
    text = path.read_text()
    assert len(text) == 65 and text.endswith("\n") and int(text, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    out = capsys.readouterr().out
    assert str(path) in out and f"heartbeat_key_file = {path}" in out


def test_the_key_is_what_the_daemon_reads_and_signs_with(tmp_path: Path) -> None:
    path = tmp_path / "k"
    assert cli(["keygen", str(path)]) == 0
    key = path.read_bytes().strip()  # as adapters/daemon.py load_key reads it
    assert len(key) == 64
    beat = Heartbeat("shoal", "active", "primary", seq=1, ack=0, serial_no=2**64 - 1)
    assert decode(encode(beat, key), key) == Heartbeat("shoal", "active", "primary", 1, 0, 2**64 - 1, authenticated=True)


def test_two_keys_differ(tmp_path: Path) -> None:
    assert cli(["keygen", str(tmp_path / "a")]) == 0
    assert cli(["keygen", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a").read_text() != (tmp_path / "b").read_text()


def test_an_existing_file_is_kept_unless_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "k"
    path.write_text("the old key\n")
    assert cli(["keygen", str(path)]) == 2
    assert path.read_text() == "the old key\n"
    assert "exists" in capsys.readouterr().err
    assert cli(["keygen", "--force", str(path)]) == 0
    assert len(path.read_text()) == 65 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]  # no temporary file left


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("precious\n")
    (tmp_path / "link").symlink_to(target)
    assert cli(["keygen", str(tmp_path / "link")]) == 2
    assert target.read_text() == "precious\n"


@pytest.mark.parametrize("argv", [[], ["a", "b"], ["--force"], ["--bogus"], ["a", "--force", "--force"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli(["keygen", *argv]) == 2
    assert "usage: shoal keygen FILE [--force]" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_place_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["keygen", str(tmp_path / "no" / "such" / "dir")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_in_the_help_and_as_a_process(tmp_path: Path) -> None:
    assert "keygen FILE [--force]" in USAGE
    done = subprocess.run([sys.executable, "-m", "shoal.cli", "keygen", "k"], cwd=tmp_path, text=True,
                          capture_output=True, timeout=60, env={"PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stderr) == (0, "")
    assert len((tmp_path / "k").read_text()) == 65
