"""Scenario files: every mistake is `file:line: message`, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenario.model import ScenarioError, loads
from shoal.sim_cli import default_scenario_text, main

DEFAULT = default_scenario_text()


def _error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as e:
        loads(text, "s.toml")
    return e.value


def _line_of(text: str, needle: str, nth: int = 0) -> int:
    return [i + 1 for i, line in enumerate(text.splitlines()) if needle in line][nth]


def test_default_loads() -> None:
    s = loads(DEFAULT, "d.toml")
    assert s.duration_ms == 60_000 and s.latency_ms == 1 and len(s.faults) == 3


def test_config_error_points_at_the_scenario_line() -> None:
    text = DEFAULT.replace("    port = 80\n", "    port = 80000\n")
    e = _error(text)
    assert e.line == _line_of(text, "port = 80000"), e


def test_config_error_on_the_literal_first_line() -> None:
    text = DEFAULT.replace("config = '''\nserial_no = 1", "config = '''bogus_key = 1\nserial_no = 1")
    e = _error(text)
    assert e.line == _line_of(text, "bogus_key"), e


def test_reload_config_error_points_at_the_scenario_line() -> None:
    body = DEFAULT[DEFAULT.index("config = '''") + 12:DEFAULT.index("'''\n\n[network]")]
    text = DEFAULT + "\n[[fault]]\nat = 50.0\nreload = '''" + body.replace("keepalive = 1", "keepalive = x") + "'''\n"
    e = _error(text)
    assert e.line == _line_of(text, "keepalive = x"), e


def test_toml_error_has_its_line() -> None:
    e = _error("title = 'x'\nseed = \n")
    assert e.line == 2


@pytest.mark.parametrize("fault, message", [
    ('crash = "tertiary"', "no router"),
    ('server_down = "web9"', "no real server"),
    ('partition = "middle"', "no path"),
    ('partition = "all"\nfrom = "nobody"', "from must be"),
    ('server_slow = "web1"', "needs `delay`"),
    ('loss = 1.5', "between 0 and 1"),
    ('admin = "reboot"', "admin: expected"),
    ('admin = "drain web9"', "no real server"),
    ('explode = "primary"', "exactly one of"),
    ('crash = "primary"\nwhy = "because"', "unexpected key"),
    ('link_down = "primary"', "needs `device`"),
    ('link_down = "primary"\ndevice = "eth7"', "no interface 'eth7' on the routers (by the config: eth0, eth1, eth2)"),
    ('link_up = "tertiary"\ndevice = "eth0"', "no router"),
    ('link_down = "primary"\ndevice = 1', "device must be a string"),
])
def test_bad_faults(fault: str, message: str) -> None:
    text = DEFAULT + f"\n[[fault]]\nat = 50.0\n{fault}\n"
    e = _error(text)
    assert message in e.message
    assert e.line == len(DEFAULT.splitlines()) + 2  # the [[fault]] header


@pytest.mark.parametrize("expect, message", [
    ('vip_owner = "tertiary"', "vip_owner: expected"),
    ('role = { primary = "boss" }', "role: expected"),
    ('in_table = ["web9"]', "no real server"),
    ('weight = { web1 = "heavy" }', "weight: expected"),
    ('always = "happiness"', "always: expected"),
    ('in_table = ["web1"]\nat = 1.0\nwhen = 2', "unexpected key"),
])
def test_bad_expectations(expect: str, message: str) -> None:
    needs_at = "at" not in expect and not expect.startswith("always")
    text = DEFAULT + "\n[[expect]]\n" + ("at = 5.0\n" if needs_at else "") + expect + "\n"
    assert message in _error(text).message


def test_client_success_window() -> None:
    e = _error(DEFAULT + "\n[[expect]]\nclient_success = { min = 0.9, from = 10.0, to = 5.0 }\n")
    assert "must come before" in e.message
    s = loads(DEFAULT + "\n[[expect]]\nclient_success = { min = 0.9 }\n", "s.toml")
    assert s.expects[-1].window_ms == (0, 60_000)


def test_unknown_top_level_key() -> None:
    assert "unknown scenario key" in _error("colour = 'blue'\n" + DEFAULT).message


def test_cli_exit_2_with_file_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT.replace('server_down = "web2"', 'server_down = "web7"'))
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:{_line_of(bad.read_text(), 'web7') - 2}: server_down: no real server 'web7'")
    assert main([str(tmp_path / "missing.toml")]) == 2


def test_config_file(tmp_path: Path) -> None:
    body = DEFAULT[DEFAULT.index("config = '''") + 12:DEFAULT.index("'''\n\n[network]")]
    (tmp_path / "lvs.cf").write_text(body.lstrip("\n"))
    rest = DEFAULT[DEFAULT.index("[network]"):]
    scenario = tmp_path / "s.toml"
    scenario.write_text('config_file = "lvs.cf"\n' + rest)
    assert main([str(scenario)]) == 0
    (tmp_path / "lvs.cf").write_text(body.lstrip("\n").replace("keepalive = 1", "keepalive = x"))
    with pytest.raises(ScenarioError) as e:
        from scenario.model import load
        load(scenario)
    assert e.value.file.endswith("lvs.cf") and e.value.line == _line_of(body.lstrip("\n"), "keepalive")


def test_link_faults_name_the_interfaces_of_the_rule() -> None:
    """scenario.devices: VIP interfaces, nat_router's, a private path's."""
    from scenario.devices import devices

    s = loads(DEFAULT + '\n[[fault]]\nat = 50.0\nlink_down = "backup"\ndevice = "eth1"\n', "s.toml")
    fault = s.faults[-1]
    assert (fault.kind, fault.value, fault.extra) == ("link_down", "backup", {"device": "eth1"})
    d = devices(s.config)
    assert (d.carries("eth0"), d.carries("eth1")) == (("vip", "public"), ("server",))
    two = s.config.__class__(**{**{f: getattr(s.config, f) for f in s.config.__dataclass_fields__},
                                "primary_private": "10.9.0.1", "backup_private": "10.9.0.2",
                                "nat_router_device": "eth2:1"})
    d2 = devices(two)
    assert (d2.server, d2.private, d2.names) == ("eth2", "eth3", ("eth0", "eth2", "eth3"))
