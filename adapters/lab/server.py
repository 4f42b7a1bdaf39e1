"""A lab real server: `python -m adapters.lab.server --ports 80 [--udp-ports 53 --addresses A,B]
--control SOCK --load FILE`.

An asyncio HTTP/1.0 server on every TCP port given (IPv4 and IPv6),
answering `HTTP/1.0 200 OK` to any request, and on every UDP port given
answering each datagram with the same bytes (one datagram back, from the
address the request was sent to: the socket is bound to each of
`--addresses`, the server's own and the VIPs it holds for direct routing or
tunnelling), with the fault modes of SPEC.md, switched by one line on the
control socket (a Unix socket; the answer is `ok` or `error ...`):

- `up`: healthy; `down`: not listening (TCP: connections refused; UDP:
  the kernel answers ICMP port unreachable);
- `hang`: accepts (TCP), reads, never answers; `wrong`: answers, but not
  what `expect` wants (the bytes of each mode are `scenario.faults`', the
  ones the simulator compares);
- `slow SECONDS`: answers after that delay;
- `load X`: writes X to the load file (what a load command reads).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
from typing import Any

from scenario.faults import MODES, reply


class Datagrams(asyncio.DatagramProtocol):
    """One UDP socket of a real server: each datagram answered as the server's mode says."""

    def __init__(self, server: RealServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        mode = self.server.mode
        answer = reply(mode) if mode in MODES else None
        if answer is None:  # hang: read, never answered
            return
        if mode == "slow":
            asyncio.get_running_loop().call_later(self.server.delay_s, self.send, answer, addr)
        else:
            self.send(answer, addr)

    def send(self, data: bytes, addr: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error about an answer: the client's business


class RealServer:
    def __init__(self, ports: list[int], load_file: str | None, udp_ports: list[int] | None = None,
                 addresses: list[str] | None = None) -> None:
        self.ports = ports
        self.udp_ports = udp_ports or []
        self.addresses = addresses or ["0.0.0.0", "::"]  # UDP: bound to each (replies come from the address asked)
        self.load_file = load_file
        self.mode = "up"
        self.delay_s = 0.0
        self.listeners: list[asyncio.base_events.Server] = []
        self.datagrams: list[asyncio.DatagramTransport] = []
        self.hung: set[asyncio.StreamWriter] = set()

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        if not self.listeners:
            for port in self.ports:  # host None: every address of both families
                self.listeners.append(await asyncio.start_server(self.client, None, port, reuse_address=True))
        if not self.datagrams:
            for port in self.udp_ports:
                for address in self.addresses:
                    family = socket.AF_INET6 if ":" in address else socket.AF_INET
                    sock = socket.socket(family, socket.SOCK_DGRAM)
                    if family == socket.AF_INET6:  # beside 0.0.0.0 on the same port
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind((address, port))
                    transport, _ = await loop.create_datagram_endpoint(lambda: Datagrams(self), sock=sock)
                    self.datagrams.append(transport)

    async def stop_listening(self) -> None:
        for listener in self.listeners:
            listener.close()
        self.listeners = []
        for transport in self.datagrams:
            transport.close()
        self.datagrams = []

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass  # a bare connect (TCP check) or a short request: answer anyway
            if self.mode == "hang":
                self.hung.add(writer)
                await asyncio.sleep(3600)
                return
            if self.mode == "slow":
                await asyncio.sleep(self.delay_s)
            writer.write(reply(self.mode) or b"")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.hung.discard(writer)
            writer.close()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode().split()
        try:
            answer = await self.command(line)
        except (ValueError, IndexError) as e:
            answer = f"error {e}"
        writer.write((answer + "\n").encode())
        await writer.drain()
        writer.close()

    async def command(self, words: list[str]) -> str:
        match words:
            case ["up" | "hang" | "wrong" as mode]:
                self.mode = mode
                await self.listen()
            case ["down"]:
                self.mode = "down"
                await self.stop_listening()
            case ["slow", delay]:
                self.mode, self.delay_s = "slow", float(delay)
                await self.listen()
            case ["load", value]:
                if self.load_file is None:
                    raise ValueError("no load file")
                tmp = self.load_file + ".tmp"
                with open(tmp, "w") as f:
                    f.write(f"{float(value):.2f} {float(value):.2f} {float(value):.2f}\n")
                os.replace(tmp, self.load_file)
            case ["ping"]:
                pass
            case _:
                raise ValueError(f"unknown command {' '.join(words)!r}")
        return "ok"


async def serve(ports: list[int], control: str, load_file: str | None, udp_ports: list[int] | None = None,
                addresses: list[str] | None = None) -> None:
    server = RealServer(ports, load_file, udp_ports, addresses)
    if load_file:
        await server.command(["load", "1.0"])
    await server.listen()
    if os.path.exists(control):
        os.unlink(control)
    ctl = await asyncio.start_unix_server(server.control, path=control)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    ctl.close()
    await server.stop_listening()


def ask(control: str, command: str, timeout_s: float = 2.0) -> str:
    """Send one command to a running lab server (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(control)
        sock.sendall((command + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode().strip()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m adapters.lab.server")
    parser.add_argument("--ports", default="", help="comma separated TCP ports")
    parser.add_argument("--udp-ports", default="", help="comma separated UDP ports")
    parser.add_argument("--addresses", default="", help="comma separated addresses the UDP ports are bound to "
                        "(default: every IPv4 and IPv6 address)")
    parser.add_argument("--control", required=True, help="the control socket's path")
    parser.add_argument("--load", help="the load file (`load X` writes it)")
    args = parser.parse_args()
    asyncio.run(serve([int(p) for p in args.ports.split(",") if p], args.control, args.load,
                      [int(p) for p in args.udp_ports.split(",") if p], [a for a in args.addresses.split(",") if a] or None))


if __name__ == "__main__":
    main()
