"""`shoal import` round trip through the simulator (issue 14): the lvs.cf
made from each Debian keepalived sample, run by `shoal sim`'s machinery
for a few simulated seconds, serves the virtual services and real
servers the keepalived.conf describes: the active router's table is
rebuilt from the trace and compared, by address and port, with the
`virtual_server` and `real_server` statements of the keepalived.conf
(read with the importer's syntax module, not its converter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.keepalived.convert import convert
from adapters.keepalived.syntax import Stmt, load
from engine.config import parse
from engine.model import Config
from scenario.model import loads
from shoal.import_cli import lvs_cf
from sim.runner import run

SAMPLES = Path("/usr/share/doc/keepalived/samples")
Service = tuple[str, ...]


def described(statements: list[Stmt]) -> dict[Service, set[tuple[str, str]]]:
    """What the keepalived.conf says: each virtual_server and its real servers (address, port as written)."""
    out: dict[Service, set[tuple[str, str]]] = {}
    for vs in statements:
        if vs.word != "virtual_server" or vs.args[:1] == ("group",):
            continue
        key = ("fwmark", vs.args[1]) if vs.args[0] == "fwmark" else (vs.args[0], vs.args[1])
        out[key] = {(rs.args[0], rs.args[1] if len(rs.args) > 1 else key[1] if key[0] != "fwmark" else "")
                    for rs in vs.block or [] if rs.word == "real_server"}
    return out


def served(config: Config, records: list[dict[str, object]]) -> dict[Service, set[tuple[str, str]]]:
    """The active router's table at the end of the run, by address and port."""
    roles = {r["node"]: r["to"] for r in records if r["kind"] == "role"}
    (active,) = [n for n, role in roles.items() if role == "active"]
    table: dict[str, set[str]] = {}
    for r in records:
        if r["kind"] != "table" or r["node"] != active:
            continue
        service, server = str(r["service"]), r["server"]
        if r["op"] == "add_service":
            table[service] = set()
        elif r["op"] == "del_service":
            table.pop(service, None)
        elif r["op"] == "add_dest":
            table[service].add(str(server))
        elif r["op"] == "del_dest":
            table[service].discard(str(server))
    out: dict[Service, set[tuple[str, str]]] = {}
    for v in config.virtuals:
        key = ("fwmark", str(v.fwmark)) if v.fwmark is not None else (v.address or "", str(v.port))
        servers = {s.name: s for s in v.servers}
        out[key] = {(servers[n].address or "", "" if v.fwmark is not None and servers[n].port is None
                     else str(servers[n].port or v.port)) for n in table.get(v.name, set())}
    return out


def samples() -> list[Path]:
    return sorted(SAMPLES.glob("keepalived.conf.*")) if SAMPLES.is_dir() else []


def usable() -> list[tuple[Path, object, str]]:
    """The samples that give an lvs.cf (the others, VRRP only or a virtual_server_group, exit 1:
    tests/config/test_import_keepalived.py), with their tree and text."""
    out = []
    for sample in samples():
        tree = load(str(sample))
        text = lvs_cf(tree, convert(tree), sample.name)
        if text is not None:
            out.append((sample, tree, text))
    return out


USABLE = usable()


def test_the_samples_are_there() -> None:
    """Debian's keepalived package installs them (scripts/test.sh installs it): missing is a failure."""
    assert SAMPLES.is_dir() and len(samples()) >= 20, f"{SAMPLES}: keepalived's samples are not installed"
    assert len(USABLE) >= 15, [p.name for p, _, _ in USABLE]


@pytest.mark.parametrize("sample,tree,text", USABLE, ids=lambda x: x.name.removeprefix("keepalived.conf.")
                         if isinstance(x, Path) else "")
def test_the_imported_lvs_cf_serves_what_keepalived_conf_described(sample: Path, tree: Any, text: str) -> None:
    config = parse(text)
    scenario = loads(f"title = 'import {sample.name}'\nseed = 1\nduration = 8.0\nconfig = '''\n{text}'''\n",
                     f"{sample.name}.toml")
    outcome = run(scenario)
    assert not outcome.violations, [v.message for v in outcome.violations]
    want = described(tree.statements)
    got = served(config, outcome.records)
    assert got == {k: {(a, p) for a, p in servers} for k, servers in _normal(want).items()}
    assert all(got.values()), "every virtual serves at least one real server"


def _normal(want: dict[Service, set[tuple[str, str]]]) -> dict[Service, set[tuple[str, str]]]:
    """Addresses as lvs.cf writes them (IPv6 compressed)."""
    import ipaddress

    def norm(a: str) -> str:
        return ipaddress.ip_address(a).compressed

    return {(k if k[0] == "fwmark" else (norm(k[0]), k[1])): {(norm(a), p) for a, p in v} for k, v in want.items()}
