"""adapters/netns.py: a bridge topology works, and everything it made is gone
after the `with`, on an exception too."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from adapters import netns


def namespaces() -> set[str]:
    return set(os.listdir(netns.NETNS_DIR)) if os.path.isdir(netns.NETNS_DIR) else set()


def test_bridge_topology_carries_packets_and_is_removed_with_its_processes(netns_ok: None) -> None:
    with netns.Topology() as topo:
        sw, a, b = topo.namespace("sw"), topo.namespace("a"), topo.namespace("b")
        topo.bridge(sw, "br0")
        topo.veth(a, "eth0", sw, "pa", bridge="br0")
        topo.veth(b, "eth0", sw, "pb", bridge="br0")
        topo.address(a, "eth0", "10.8.0.1/24")
        topo.address(b, "eth0", "10.8.0.2/24")
        with netns.entered(b):
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with netns.entered(a):
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with rx, tx:
            rx.bind(("10.8.0.2", 9999))
            rx.settimeout(2)
            tx.sendto(b"across the bridge", ("10.8.0.2", 9999))
            assert rx.recvfrom(100) == (b"across the bridge", ("10.8.0.1", tx.getsockname()[1]))
        assert "10.8.0.1/24" in topo.run(a, ["ip", "-o", "addr", "show", "dev", "eth0"]).stdout
        proc = topo.spawn(b, ["sleep", "30"])
        made = set(topo.names.values())
        assert made <= namespaces()
    assert proc.poll() is not None
    assert not made & namespaces()


def test_everything_is_removed_when_the_body_raises(netns_ok: None) -> None:
    with pytest.raises(netns.NetnsCommandFailed, match="no-such-dev"):
        with netns.Topology() as topo:
            a = topo.namespace("a")
            made = set(topo.names.values())
            topo.address(a, "no-such-dev", "10.8.0.1/24")
    assert not made & namespaces()


def test_sweep_removes_only_dead_processes_namespaces(netns_ok: None) -> None:
    dead = 2**22 + 17  # above pid_max's default range: no such process
    while os.path.exists(f"/proc/{dead}"):
        dead += 1
    stale = netns.Topology(prefix=f"sh{dead}-1-")
    live = netns.Topology()
    try:
        stale.namespace("x")
        live.namespace("x")
        assert netns.sweep() == [stale.names["x"]]
        assert live.names["x"] in namespaces()
    finally:
        stale.close()
        live.close()


def test_entered_restores_this_threads_namespace(netns_ok: None) -> None:
    before = os.readlink("/proc/thread-self/ns/net")
    with netns.Topology() as topo:
        a = topo.namespace("a")
        with netns.entered(a):
            assert os.readlink("/proc/thread-self/ns/net") != before
        with pytest.raises(RuntimeError), netns.entered(a):
            raise RuntimeError("inside")
    assert os.readlink("/proc/thread-self/ns/net") == before
    assert time.monotonic() > 0


def test_a_child_enters_a_namespace_with_netns_preexec(netns_ok: None) -> None:
    """adapters/netns.preexec: the one way a child process enters a namespace
    without `ip netns exec` (the kernel guest's ipvsadm runs use it)."""
    ns = f"shoal-preexec-{os.getpid()}"
    netns.ip("netns", "add", ns)
    try:
        out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True,
                             preexec_fn=netns.preexec(ns)).stdout
        assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]  # not the host's links
        assert subprocess.run(["true"], preexec_fn=netns.preexec(ns + "-gone")).returncode == 120
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
