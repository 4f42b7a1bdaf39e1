"""adapters/web/whatif.py: the current lvs.cf in the simulator with one fault."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from adapters.web.whatif import WhatIfError, what_if
from scenario.model import loads
from sim.runner import run

EXAMPLE = (Path(__file__).parent.parent.parent / "examples" / "lvs.cf").read_text()
# a shorter deadtime than the example's 18 s, so a takeover fits in the default 30 s
FAST = EXAMPLE.replace("keepalive = 6", "keepalive = 1").replace("deadtime = 18", "deadtime = 3")


def servers_in(table: tuple[str, ...]) -> list[str]:
    return [line.split()[1] for line in table if line.startswith("  -> ") and "RemoteAddress" not in line]


def test_steady_state_without_harm() -> None:
    r = what_if(FAST, {"server_up": "HTTP/web1"})  # already up: nothing changes
    assert (r.vip_owner, r.active, dict(r.roles)) == ("primary", "primary", {"primary": "active", "backup": "standby"})
    assert r.table[0] == "Prot LocalAddress:Port Scheduler Flags"
    assert "TCP  192.168.26.10:80 wlc" in r.table and "TCP  192.168.26.10:443 wlc persistent 300" in r.table
    assert "FWM  21 rr persistent 120" in r.table
    assert servers_in(r.table) == ["10.11.12.11:80", "10.11.12.12:80", "10.11.12.13:80", "10.11.12.11:443",
                                   "10.11.12.12:443", "10.11.12.21:0", "10.11.12.22:0"]
    assert r.violations == ()
    assert any("FAULT  real server HTTP/web1 is healthy again" in line for line in r.timeline)


def test_a_router_crash_moves_the_vips_and_the_table() -> None:
    r = what_if(FAST, {"crash": "primary"})
    assert (r.vip_owner, r.active, r.roles["primary"]) == ("backup", "backup", "down")
    assert r.tables["primary"][2:] == ()  # its host is down: nothing in its kernel
    assert len(servers_in(r.table)) == 7
    takeover = next(line for line in r.timeline if "becomes ACTIVE" in line and "backup" in line)
    assert 5 + 3 - 1 <= float(takeover.split()[0]) <= 5 + 3 + 0.1  # deadtime after the last heartbeat (keepalive 1 s)


def test_a_real_server_down_leaves_the_table_and_quiesce_keeps_it_at_weight_0() -> None:
    r = what_if(FAST, {"server_down": "HTTP/web1"})
    assert "10.11.12.11:80" not in servers_in(r.table) and "10.11.12.11:443" in servers_in(r.table)
    assert any("health HTTP/web1: up -> down" in line for line in r.timeline)
    r = what_if(FAST, {"server_down": "HTTPS/web1"})  # HTTPS has quiesce_server = 1
    quiesced = next(line for line in r.table if "10.11.12.11:443" in line)
    assert quiesced.split()[2:4] == ["Masq", "0"]


def test_every_server_down_brings_the_sorry_server_and_back_up_removes_it() -> None:
    down = [{"server_down": f"HTTP/{s}", "at": 5} for s in ("web1", "web2", "web3")]
    r = what_if(FAST, down)
    http = r.table[r.table.index("TCP  192.168.26.10:80 wlc") + 1:][:1]
    assert servers_in(http) == ["10.11.12.99:80"]
    r = what_if(FAST, down + [{"server_up": "HTTP/web2", "at": 10}])
    http = r.table[r.table.index("TCP  192.168.26.10:80 wlc") + 1:][:1]
    assert servers_in(http) == ["10.11.12.12:80"]


def test_a_full_partition_is_a_split_brain_and_says_so() -> None:
    r = what_if(FAST, {"partition": "all"})
    assert (r.vip_owner, r.active) == ("primary+backup", None)
    assert dict(r.roles) == {"primary": "active", "backup": "active"}
    assert r.table == () and len(servers_in(r.tables["backup"])) == 7
    one_way = what_if(FAST, {"partition": "public"})  # the private path still carries heartbeats
    assert one_way.vip_owner == "primary"


CASES = [
    {"crash": "primary"}, {"kill": "primary"}, {"server_down": "HTTP/web1"}, {"partition": "all"},
    {"partition": "public"}, [{"crash": "primary"}, {"restart": "primary", "at": 12}],
    {"admin": "drain HTTP/web2"}, {"server_hang": "FTP/ftp1"}, {"partition": "all", "from": "primary"},
]


@pytest.mark.parametrize("fault", CASES, ids=lambda f: str(f))
def test_the_end_state_is_the_simulators_own_judgement(fault: object) -> None:
    """What what_if reads from the trace, the simulator's own expectation checks confirm."""
    r = what_if(FAST, fault)  # type: ignore[arg-type]
    expects = [f'[[expect]]\nat = 30.0\nrole = {{ primary = "{r.roles["primary"]}", backup = "{r.roles["backup"]}" }}']
    if "+" not in r.vip_owner:
        expects.append(f'[[expect]]\nat = 30.0\nvip_owner = "{r.vip_owner}"')
    if r.active:
        names = {"10.11.12.11": "web1", "10.11.12.12": "web2", "10.11.12.13": "web3", "10.11.12.21": "ftp1",
                 "10.11.12.22": "ftp2", "10.11.12.99": "sorry"}
        for service, port in (("HTTP", "80"), ("HTTPS", "443"), ("FTP", "0")):
            weights = {names[line.split()[1].split(":")[0]]: int(line.split()[3]) for line in r.table
                       if line.startswith("  -> ") and line.split()[1].endswith(f":{port}")}
            if weights:
                expects.append("[[expect]]\nat = 30.0\nweight = { "
                               + ", ".join(f'"{service}/{n}" = {w}' for n, w in sorted(weights.items())) + " }")
    text = r.scenario + "\n" + "\n\n".join(expects)
    result = run(loads(text, "check.toml"))
    assert [v.what for v in result.verdicts if not v.ok] == []
    assert len(result.verdicts) == len(expects)


def test_refusals_name_the_problem() -> None:
    with pytest.raises(WhatIfError, match="invalid"):
        what_if(EXAMPLE.replace("weight = 2", "weight = x"), {"crash": "primary"})
    for fault, says in [({"crash": "tertiary"}, "no router"), ({"server_down": "HTTP/web9"}, "no real server"),
                        ({"explode": "primary"}, "exactly one"), ({"crash": "primary", "at": 31}, "between 0 and 30"),
                        ({"crash": True}, "not true/false"), ({"partition": "sideways"}, "no path"),
                        ({"crash": "primary", "x\n[evil]": 1}, "unknown fault key"), ([], "between 1 and")]:
        with pytest.raises(WhatIfError, match=says):
            what_if(FAST, fault)  # type: ignore[arg-type]
    with pytest.raises(WhatIfError, match="duration"):
        what_if(FAST, {"crash": "primary"}, duration_s=10_000)


def test_a_hostile_name_stays_a_name() -> None:
    """A value that would end a TOML string and add a fault is one (unknown) server name."""
    sneaky = 'web1"\n[[fault]]\nat = 1.0\ncrash = "primary'
    with pytest.raises(WhatIfError, match="no real server"):
        what_if(FAST, {"server_down": sneaky})
    quoted = FAST.replace("expect = \"HTTP\"", "expect = \"'''HTTP\\\"\"")
    assert what_if(quoted, {"crash": "primary"}).vip_owner == "backup"  # ''' and \" in the config are fine


def test_fast_deterministic_and_touching_nothing_real(monkeypatch: pytest.MonkeyPatch) -> None:
    def no(*_: object, **__: object) -> None:
        raise AssertionError("what_if opened a socket")

    monkeypatch.setattr(socket, "socket", no)
    start = time.perf_counter()
    first = what_if(FAST, {"crash": "primary"})
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, elapsed
    assert what_if(FAST, {"crash": "primary"}) == first


def test_it_starts_from_healthy_servers_or_from_the_ones_said_down() -> None:
    r = what_if(FAST, {"crash": "backup"})
    assert r.assumed == ('virtual FTP: expect "220" simulated as "HTTP/1.0 200" (the simulated real servers '
                         'answer as web servers)',)
    assert "10.11.12.21:0" in servers_in(r.table)
    r = what_if(FAST, {"crash": "backup"}, down=["HTTP/web1", "FTP/ftp2"])
    assert "10.11.12.11:80" not in servers_in(r.table) and "10.11.12.22:0" not in servers_in(r.table)
    assert r.timeline[0].split()[:3] == ["0.000", "world", "FAULT"]
    assert what_if(FAST.replace('expect = "220"', 'expect = "HTTP"'), {"crash": "backup"}).assumed == ()


def test_shoal_sim_replays_the_scenario_it_ran(tmp_path: Path) -> None:
    import subprocess
    import sys

    from sim.timeline import json_lines

    r = what_if(FAST, {"partition": "all", "from": "backup"})
    (tmp_path / "what-if.toml").write_text(r.scenario)
    done = subprocess.run([sys.executable, "-m", "shoal", "sim", str(tmp_path / "what-if.toml"), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == json_lines(list(r.records)) + "\n"


def test_the_answer_as_json() -> None:
    import json

    r = what_if(FAST, {"crash": "primary"})
    data = json.loads(json.dumps(r.as_json()))
    assert data["vip_owner"] == "backup" and data["active"] == "backup" and data["table"] == list(r.table)
    assert data["roles"] == {"primary": "down", "backup": "active"} and data["timeline"] == list(r.timeline)


def test_a_single_router_crashing_leaves_nobody_and_a_key_file_is_not_read() -> None:
    single = what_if(FAST.replace("backup_active = 1", "backup_active = 0"), {"crash": "primary"})
    assert (single.vip_owner, single.active, single.table) == ("none", None, ())
    keyed = FAST.replace("deadtime = 3", "deadtime = 3\nheartbeat_key_file = /nonexistent/heartbeat.key")
    assert what_if(keyed, {"crash": "primary"}).vip_owner == "backup"  # the simulator needs no key
