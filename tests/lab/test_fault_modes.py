"""One fault model in both worlds (issue 10, part 1): every fault mode of
SPEC.md, answered by the lab's real server (`adapters/lab/server.py`, a
real process on loopback) and judged by the real checker
(`adapters/checks.py`), must get the verdict the simulator's server model
(`sim/servers.py`) gives, for every kind of check a scenario can ask for.
The bytes each mode answers are defined once, in `scenario/faults.py`.

UDP too (issue 12): the lab server answers on a UDP port in every mode,
the daemon's udp check (`adapters/checks.py`) must judge it as the
simulator's model does; and the lab's client (`adapters/lab/client.py`),
over TCP and UDP, must count each mode a success or a failure as the
simulator's clients do (`sim.servers.answers_client`).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.checks import run_check
from adapters.lab.client import attempt, attempt_udp
from adapters.lab.server import ask
from engine.events import CheckSpec
from sim.servers import CLIENT_TIMEOUT_MS, ServerModel, answers_client, check_result

TIMEOUT_MS = 600
CHECKS: dict[str, dict[str, object]] = {
    "tcp connect": {"kind": "tcp"},
    "tcp expect literal": {"kind": "tcp", "send": "GET / HTTP/1.0\r\n\r\n", "expect": "HTTP/1.0 200"},
    "tcp expect prefix HTTP": {"kind": "tcp", "send": "GET / HTTP/1.0\r\n\r\n", "expect": "HTTP"},
    "tcp expect regex": {"kind": "tcp", "send": "GET / HTTP/1.0\r\n\r\n", "expect": "^HTTP/1.. 200",
                         "use_regex": True},
    "tcp expect regex .*": {"kind": "tcp", "send": "GET / HTTP/1.0\r\n\r\n", "expect": ".*", "use_regex": True},
    "tcp expect *": {"kind": "tcp", "send": "GET / HTTP/1.0\r\n\r\n", "expect": "*"},
    "tcp expect other": {"kind": "tcp", "send": "GET / HTTP/1.0\r\n\r\n", "expect": "SSH-2.0"},
    "http": {"kind": "http"},
    "http body": {"kind": "http", "expect": "ok"},
    "http status 500": {"kind": "http", "http_status": 500},
}
UDP_CHECKS: dict[str, dict[str, object]] = {
    "udp empty datagram, no expect": {"kind": "udp"},
    "udp send, no expect": {"kind": "udp", "send": "GET / HTTP/1.0\r\n\r\n"},
    "udp expect prefix HTTP": {"kind": "udp", "send": "GET / HTTP/1.0\r\n\r\n", "expect": "HTTP"},
    "udp expect regex": {"kind": "udp", "send": "GET / HTTP/1.0\r\n\r\n", "expect": "^HTTP/1.. 200",
                         "use_regex": True},
    "udp expect *": {"kind": "udp", "send": "ping", "expect": "*"},
    "udp expect other": {"kind": "udp", "send": "ping", "expect": "PONG"},
}
MODES: dict[str, tuple[str, float]] = {  # name: (control command, the simulator's delay in seconds)
    "up": ("up", 0.0), "down": ("down", 0.0), "hang": ("hang", 0.0), "wrong": ("wrong", 0.0),
    "slow, in time": ("slow 0.2", 0.2), "slow, too late": ("slow 1.0", 1.0),
}


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """The lab server on a TCP port and a UDP port of the same number (both free)."""
    control = str(tmp_path_factory.mktemp("faults") / "server.sock")
    port = free_port()
    while True:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", port))
            break
        except OSError:
            port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "adapters.lab.server", "--ports", str(port), "--udp-ports",
                             str(port), "--addresses", "127.0.0.1", "--control", control],
                            cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if ask(control, "ping") == "ok":
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("the lab server did not start") from None
                time.sleep(0.05)
        yield port, control
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("mode", list(MODES))
def test_both_worlds_give_every_check_the_same_verdict(server: tuple[int, str], mode: str) -> None:
    port, control = server
    command, delay_s = MODES[mode]
    assert ask(control, command) == "ok"
    specs = {name: CheckSpec(address="127.0.0.1", port=port, timeout_ms=TIMEOUT_MS, **kw)  # type: ignore[arg-type]
             for name, kw in {**CHECKS, **UDP_CHECKS}.items()}

    async def real() -> list[tuple[bool, str]]:
        return list(await asyncio.gather(*(run_check(s) for s in specs.values())))

    lab = dict(zip(specs, asyncio.run(real())))
    model = ServerModel(command.split()[0], round(delay_s * 1000))
    disagree = []
    for name, spec in specs.items():
        _, sim_ok, sim_detail = check_result(spec, model, 1)
        lab_ok, lab_detail = lab[name]
        if sim_ok != lab_ok:
            disagree.append(f"{name}: simulator {'passes' if sim_ok else 'fails'} ({sim_detail}), "
                            f"lab {'passes' if lab_ok else 'fails'} ({lab_detail})")
    assert not disagree, f"server {mode}: the worlds disagree:\n" + "\n".join(disagree)


@pytest.mark.parametrize("mode", list(MODES))
def test_both_worlds_clients_judge_every_mode_the_same(server: tuple[int, str], mode: str) -> None:
    """The lab's client over TCP and over UDP, with the simulator's client timeout, against the
    lab server in each mode: a success exactly when the simulator's clients count one."""
    port, control = server
    command, delay_s = MODES[mode]
    assert ask(control, command) == "ok"
    timeout_s = CLIENT_TIMEOUT_MS / 1000

    async def real() -> list[bool]:
        return list(await asyncio.gather(attempt("127.0.0.1", port, timeout_s),
                                         attempt_udp("127.0.0.1", port, timeout_s)))

    tcp, udp = asyncio.run(real())
    want = answers_client(ServerModel(command.split()[0], round(delay_s * 1000)))
    assert (tcp, udp) == (want, want), f"server {mode}: simulator {want}, lab client tcp {tcp}, udp {udp}"
