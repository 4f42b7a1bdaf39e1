"""Shared fixtures for the adapters' real-network tests.

`pair` is two namespaces joined by two veth pairs (a public and a private
path), IPv4 and IPv6 on each:

    a: va 10.9.0.1/24 fd09::1/64    <->  b: vb 10.9.0.2/24 fd09::2/64
       pa 10.9.1.1/24 fd09:1::1/64  <->     pb 10.9.1.2/24 fd09:1::2/64

A test that needs namespaces FAILS (never skips) when this host cannot make
them: run the adapter tests as root with iproute2 installed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters import netns
from tests.adapters.pairlab import Lab, make_lab


@dataclass
class Pair:
    topo: netns.Topology
    a: str  # namespace names
    b: str

    def run(self, ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.topo.run(ns, list(argv))


@pytest.fixture(scope="session")
def netns_ok() -> None:
    try:
        netns.require()
    except netns.NetnsUnavailable as e:
        pytest.fail(f"adapter tests need network namespaces: {e}", pytrace=False)
    netns.sweep()


@pytest.fixture
def pair(netns_ok: None) -> Iterator[Pair]:
    with netns.Topology() as topo:
        a, b = topo.namespace("a"), topo.namespace("b")
        topo.veth(a, "va", b, "vb")
        topo.veth(a, "pa", b, "pb")
        for ns, side in ((a, 1), (b, 2)):
            pub, prv = ("va", "pa") if ns == a else ("vb", "pb")
            topo.address(ns, pub, f"10.9.0.{side}/24")
            topo.address(ns, pub, f"fd09::{side}/64")
            topo.address(ns, prv, f"10.9.1.{side}/24")
            topo.address(ns, prv, f"fd09:1::{side}/64")
        yield Pair(topo, a, b)


@pytest.fixture
def lab(netns_ok: None, tmp_path: Path) -> Iterator[Lab]:
    """The two-daemon lab of pairlab.py with its default lvs.cf (a test module
    may define its own `lab`)."""
    with make_lab(tmp_path) as built:
        yield built
