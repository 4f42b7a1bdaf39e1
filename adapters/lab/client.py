"""The lab's client: `python -m adapters.lab.client --target VIP:PORT ... [--udp-target VIP:PORT ...] --out FILE`.

Opens a TCP connection to every target at a steady rate, sends an HTTP/1.0
request and counts it a success when the answer starts with `HTTP/1.0 200`
within the timeout (refused, reset, garbage, silence: a failure).  A UDP
target (a `protocol = udp` virtual) is judged the same way, as the
simulator judges it (`sim.servers.answers_client`): the request in one
datagram from a fresh socket (a new source port: a new connection for the
director to schedule), a success when the answer datagram starts with
`HTTP/1.0 200` within the timeout (ICMP port unreachable, garbage,
silence: a failure).  VIPs may be IPv4 or IPv6.  One line a finished
connection in FILE: `OPENED_MONOTONIC OK TARGET` (OK 1 or 0; TARGET
`VIP:PORT`, `VIP:PORT/udp` for UDP),
flushed as it goes; the runner reads it afterwards.  CLOCK_MONOTONIC is the
host's, the same in every network namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import time
from typing import TextIO

REQUEST = b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n"


async def attempt(host: str, port: int, timeout_s: float) -> bool:
    writer = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(REQUEST)
            await writer.drain()
            line = await reader.readline()
            return line.startswith(b"HTTP/1.0 200")
    except (OSError, asyncio.TimeoutError, ConnectionError):
        return False
    finally:
        if writer is not None:
            writer.close()


async def attempt_udp(host: str, port: int, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((host, port))  # connected: an ICMP port unreachable comes back as ECONNREFUSED
        sock.send(REQUEST)
        async with asyncio.timeout(timeout_s):
            answer = await loop.sock_recv(sock, 65535)
        return answer.startswith(b"HTTP/1.0 200")
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        sock.close()


async def one(host: str, port: int, udp: bool, timeout_s: float, out: TextIO) -> None:
    opened = time.monotonic()
    ok = await (attempt_udp if udp else attempt)(host, port, timeout_s)
    out.write(f"{opened:.4f} {int(ok)} {host}:{port}{'/udp' if udp else ''}\n")
    out.flush()


async def run(targets: list[tuple[str, int, bool]], rate: float, timeout_s: float, out: TextIO) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks: set[asyncio.Task[None]] = set()
    period = 1 / rate
    start = time.monotonic()
    n = 0
    while not stop.is_set():
        for host, port, udp in targets:
            task = asyncio.ensure_future(one(host, port, udp, timeout_s, out))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        n += 1
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, start + n * period - time.monotonic()))
        except asyncio.TimeoutError:
            pass
    if tasks:
        await asyncio.wait(tasks)  # every opened connection is reported


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m adapters.lab.client")
    parser.add_argument("--target", action="append", default=[], help="VIP:PORT, TCP (repeatable)")
    parser.add_argument("--udp-target", action="append", default=[], help="VIP:PORT, UDP (repeatable)")
    parser.add_argument("--rate", type=float, default=10.0, help="connections per second per target")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds before a connection counts as failed")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    targets = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1]), udp)
               for udp, given in ((False, args.target), (True, args.udp_target)) for t in given]
    if not targets:
        parser.error("no --target or --udp-target")
    with open(args.out, "a") as out:
        asyncio.run(run(targets, args.rate, args.timeout, out))


if __name__ == "__main__":
    main()
