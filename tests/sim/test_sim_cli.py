"""`shoal sim`: the embedded default, determinism, exit codes (partial issue 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.sim_cli import main

DEFAULT = (Path(__file__).parent.parent.parent / "sim" / "default.toml").read_text()


def test_default_scenario_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "backup   becomes ACTIVE (partner dead" in out
    assert "FAIL" not in out


def test_same_seed_same_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--json"])
    first = capsys.readouterr().out
    main(["--json"])
    assert capsys.readouterr().out == first
    assert '"kind":"role"' in first


def test_wrong_expectation_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(DEFAULT.replace('vip_owner = "backup"', 'vip_owner = "primary"'))
    assert main([str(wrong)]) == 1
    assert "FAIL vip_owner primary at 45 s" in capsys.readouterr().out


def test_never_removed_server_exits_1(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong2.toml"
    wrong.write_text(DEFAULT.replace('not_in_table = ["web2"]', 'in_table = ["web2"]'))
    assert main([str(wrong)]) == 1


def test_bad_config_is_exit_2_with_the_scenario_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT.replace("    port = 80\n", "    port = 80000\n"))
    assert main([str(bad)]) == 2
    lines = bad.read_text().splitlines()
    err = capsys.readouterr().err
    line = int(err.split(":")[1])
    assert lines[line - 1].strip() == "port = 80000", err


def test_bad_toml_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("title = \nseed = 1\n")
    assert main([str(bad)]) == 2
    assert "bad.toml:1:" in capsys.readouterr().err
