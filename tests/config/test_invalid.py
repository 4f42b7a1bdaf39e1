"""Invalid lvs.cf files and the exact errors `shoal check-config` prints.

Each `invalid/NAME.cf` has `invalid/NAME.expected`: every stderr line of
`shoal check-config NAME.cf` run from that directory.  After a deliberate
change of messages, regenerate them and review the diff:

    SHOAL_REWRITE=1 .venv/bin/pytest tests/config/test_invalid.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.config import ConfigError, parse
from shoal.check_config import main as check_config

HERE = Path(__file__).parent
INVALID = HERE / "invalid"
EXAMPLE = HERE.parent.parent / "examples" / "lvs.cf"
REWRITE = os.environ.get("SHOAL_REWRITE") == "1"


def invalid_files() -> list[Path]:
    return sorted(INVALID.glob("*.cf"))


def test_enough_invalid_files() -> None:
    assert len(invalid_files()) >= 20
    assert sorted(p.stem for p in INVALID.glob("*.expected")) == [p.stem for p in invalid_files()]


@pytest.mark.parametrize("path", invalid_files(), ids=lambda p: p.stem)
def test_invalid_file_gives_exactly_its_errors(path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(INVALID)
    code = check_config([path.name])
    captured = capsys.readouterr()
    expected_path = path.with_suffix(".expected")
    if REWRITE:
        expected_path.write_text(captured.err)
    expected = expected_path.read_text()
    assert expected.strip(), f"{path.name}: no expected errors recorded"
    assert code == 2
    assert captured.out == ""
    assert captured.err == expected
    with pytest.raises(ConfigError) as info:
        parse(path.read_bytes().decode("utf-8"), path.name)  # as check-config reads it: a lone \r kept
    assert str(info.value) + "\n" == expected
    assert [str(i) for i in info.value.issues] == expected.splitlines()
    for issue in info.value.issues:
        assert (issue.file, issue.line >= 1, issue.col >= 1) == (path.name, True, True)


def test_every_error_line_names_file_line_and_column() -> None:
    for path in invalid_files():
        for line in path.with_suffix(".expected").read_text().splitlines():
            file, line_no, col, message = line.split(":", 3)
            assert file == path.name and line_no.isdigit() and col.isdigit() and message.startswith(" ")


def test_example_is_valid_and_warned_about_its_missing_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config([str(EXAMPLE)]) == 0
    out = capsys.readouterr()
    assert out.out.count("\n") == 1
    assert "3 virtual(s) (3 active), 7 real server(s)" in out.out
    assert out.err.count("\n") == 1  # as Piranha writes it: a pair without a heartbeat key
    assert out.err.startswith(f"{EXAMPLE}: warning: heartbeats are not authenticated: ")


def test_unreadable_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config([str(tmp_path / "nope.cf")]) == 2
    err = capsys.readouterr().err
    assert "nope.cf" in err and "cannot read" in err
    assert check_config([str(tmp_path)]) == 2  # a directory
    (tmp_path / "latin1.cf").write_bytes(b"primary = 10.0.0.1\n# caf\xe9\n")
    assert check_config([str(tmp_path / "latin1.cf")]) == 2


def test_usage_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config([]) == 2
    assert check_config(["a.cf", "b.cf"]) == 2
    assert "usage" in capsys.readouterr().err
