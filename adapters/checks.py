r"""Health checkers: nanny's checks, all on one asyncio loop.

The daemon hands `StartCheck(check_id, spec)` to its `adapters.checker.Checker`,
which paces them and runs each as `run_check(spec)` or, for the common tcp
and http checks, as the same check in callbacks (`adapters.probes`); it
turns `ReadLoad(...)` into `await read_load(cmd)`, and feeds the answers
back as `CheckCompleted` / `LoadRead`.  Neither function ever raises
(except `CancelledError`, which is the caller's own doing).

Hard timeout: `spec.timeout_ms` bounds the whole check (connect, send,
read, or the whole program), so a hung server costs one timeout and never a
stuck loop.  Nothing here blocks the loop: 1,000 checks in flight at once
cost 1,000 sockets, not 1,000 threads or processes.  No reply and no
program can make a check slow the loop or grow the daemon (issue 9): regular
expressions run in RE2, in time linear in the 254-byte window whatever the
pattern, and programs' output is read up to a cap.

Semantics (PIRANHA.md, "nanny health checks"; `sim/servers.py` models the
same rules, so that real and simulated checks agree):

- tcp: connect; if `send`, write it; if `expect`, read up to its length (up
  to 254 bytes with `use_regex`) and compare: `*` matches any reply, else
  the reply must start with `expect` (prefix), or with `use_regex` a search
  of `expect` must match.  Regular expressions are RE2's (google-re2), a
  non-backtracking engine, standing in for the original's POSIX ERE: the
  ERE syntax (with `[[:digit:]]` classes) plus `\d`, `\s`, `\w`; the reply
  is matched byte by byte, as regexec in the C locale (a non-ASCII
  character of the pattern stands for its UTF-8 bytes); `$` also matches
  before a final newline (as Python's `re`, shoal's matcher before RE2, did).
  A pattern RE2 cannot compile (backreferences, lookaround) fails every
  check at once, with a detail naming the pattern.  Connect alone is
  success when there is no `expect`.  Reading stops as soon as the answer
  is certain (enough bytes, a regex match, a byte that breaks the prefix),
  or at end of stream.  With `*` an answer that is only an
  orderly close counts as a reply, as for the original's read().
- udp: send `send` (or an empty datagram) on a connected socket.  With
  `expect`: a reply matching it is success; no reply before the timeout is
  failure.  Without: an ICMP unreachable (ConnectionRefusedError on the
  connected socket) is failure; silence is success.  The silence is judged
  slightly before the hard timeout (10% of it, at most 100 ms, earlier), so
  such a check takes almost `timeout_ms` and still finishes inside it.
  A reply also ends the wait at once.
- http / https (a shoal extension): `GET http_path HTTP/1.1` with `Host:`
  the address (and the port when it is not the scheme's default),
  `Connection: close`.  Success when the status is `http_status` and, if
  `expect` is set, the body (chunked or not) matches it by the same rule.
  https does NOT verify the certificate or the host name: real servers
  behind a balancer often carry self-signed or VIP-named certificates, and a
  health check asks "is it serving", not "is it who it claims".
- send_program (any kind; replaces the network check): `/bin/sh -c` with
  `%h` -> address, `%p` -> port, `%%` -> `%`, in its own session.  The
  check is complete when the program has exited and its stdout and stderr
  are closed (by whatever it left in the background too).  With `expect`,
  its stdout is matched (its exit status is ignored, as in the original);
  without, exit status 0 is success.  More than 64 KiB on stdout or on
  stderr fails the check at once ("program output exceeded 64 KiB") and
  nothing more is read.  However the check ends, its whole process group is
  then killed; nothing waits on a pipe that a process which left the group
  still holds open (the check fails at its timeout, saying so).

Cancellation (the daemon shutting down) propagates as `CancelledError`;
sockets are closed and programs killed on the way out.

Capacity: measured on 2 cores, 1,000 concurrent checks (tcp send/expect,
http over ::1, udp send/expect) against local servers finish in about
250 ms.  A UDP server that gets hundreds of datagrams at the same instant
may drop some (its receive buffer), which then fail as timeouts: that is
the server's limit, not the checker's.  The common checks (tcp, http
without a body to match, to an IP literal) run as `adapters.probes.Probe`s,
callbacks on one shared epoll set, not as this module's coroutines: the
daemon, engine and journal included, about 45 us of CPU a tcp check and
60 us an http one (bench/checks.py, docs/PERFORMANCE.md); the daemon paces
and bounds them (`adapters.checker`).

`read_load` reads a real server's 1-minute load average for load_monitor:
method `command` runs `cmd.command` (`%h` substituted, `%p` -> "") and
takes the first number of its stdout; it runs as a check program does (the
64 KiB cap, its process group killed at the end), and too much output gives
None.  The original ran `rup`/`ruptime` or `rsh HOST uptime`; shoal has no
remote shell, so `uptime`, `rup` and `ruptime` work only for a loopback
address (the local `uptime` is run); for any other address they give None
(the engine then leaves the weight alone) -- use `load_monitor = command`
with your own ssh/snmp command.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import re
import signal
import socket
import ssl
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2: matching in linear time

from adapters.describe import quoted
from engine.events import CheckSpec, ReadLoad

REGEX_WINDOW = 254  # bytes compared with use_regex (the original's buffer)
HTTP_HEADER_LIMIT = 16 * 1024  # a status line and headers longer than this fail the check
UDP_MAX = 65535
UDP_SILENCE_MARGIN_S = 0.1  # the "no ICMP error" verdict comes this much (at most) before the hard timeout
DETAIL_BYTES = 40  # how much of a reply a failure detail shows
OUTPUT_CAP = 64 * 1024  # bytes of a program's stdout (and of its stderr) read; more fails the check

__all__ = ["run_check", "read_load", "matches", "substitute", "reply_verdict", "mismatch", "shown", "parse_head",
           "http_request"]


# ------------------------------------------------------------ matching


def matches(expect: str, use_regex: bool, reply: bytes) -> bool:
    """Does `reply` satisfy `expect`?  `*` matches anything; else a prefix
    match, or with `use_regex` a search in the first 254 bytes (a pattern
    RE2 cannot compile never matches: see `regex_problem`)."""
    if expect == "*":
        return True
    if use_regex:
        pattern = _regex(expect)
        if isinstance(pattern, str):
            return False
        window = reply[:REGEX_WINDOW]
        if pattern.search(window) is not None:
            return True
        # `$` also before a final newline, as Python's re (shoal's matcher before RE2) had it
        return window.endswith(b"\n") and pattern.search(window[:-1]) is not None
    want = expect.encode()
    return reply[: len(want)] == want


def regex_problem(expect: str) -> str | None:
    """Why `expect` cannot be used with `use_regex` (an operator-facing
    check detail), or None when it can."""
    pattern = _regex(expect)
    if not isinstance(pattern, str):
        return None
    return (f'expect "{expect}" cannot be matched with use_regex = 1: {pattern} '
            "(shoal matches RE2 syntax: no backreferences, no lookaround)")


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.encoding = re2.Options.Encoding.LATIN1  # byte by byte, as regexec in the C locale
_RE2_OPTIONS.log_errors = False  # a bad pattern is a check detail, not a line on stderr


@functools.lru_cache(maxsize=256)
def _regex(expect: str) -> Any:
    """`expect` compiled by RE2 (its bytes as UTF-8), or the reason it cannot be."""
    try:
        return re2.compile(expect.encode(), _RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else e
        return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)


def reply_verdict(expect: str, use_regex: bool, reply: bytes) -> bool | None:
    """True/False once `reply` (what has arrived so far) decides; None: read more."""
    if expect == "*":
        return True
    if use_regex:
        if matches(expect, True, reply):
            return True
        return False if len(reply) >= REGEX_WINDOW else None
    want = expect.encode()
    if not want.startswith(reply[: len(want)]):
        return False
    return True if len(reply) >= len(want) else None


def shown(reply: bytes) -> str:
    return quoted(reply, DETAIL_BYTES)  # as lvs.cf quotes send/expect: "HTTP/1.0 500\\r\\n"...


def mismatch(reply: bytes) -> str:
    return f"reply does not match expect: {shown(reply)}"


def substitute(template: str, address: str, port: str) -> str:
    """`%h` -> address, `%p` -> port, `%%` -> `%`; any other `%x` stays."""
    table = {"h": address, "p": port, "%": "%"}
    return re.sub(r"%([hp%])", lambda m: table[m.group(1)], template)


# ------------------------------------------------------------ the entry point


async def run_check(spec: CheckSpec) -> tuple[bool, str]:
    """Run one check with a hard timeout of `spec.timeout_ms`: (ok, detail). Never raises."""
    timeout_s = max(spec.timeout_ms, 1) / 1000
    partial = bytearray()  # what a tcp reply brought before the timeout, for the detail
    exited: list[int] = []  # a check program's exit status, once it has exited
    if spec.use_regex and spec.expect is not None and (problem := regex_problem(spec.expect)):
        return False, problem  # no reply can ever match: no need to ask the server
    from adapters.probes import fast

    if fast(spec):  # the common tcp and http checks: callbacks, no stream (adapters/probes.py)
        return await _probed(spec)
    try:
        async with asyncio.timeout(timeout_s):
            if spec.send_program is not None:
                return await _program_check(spec, exited)
            if spec.kind == "tcp":
                return await _tcp_check(spec, partial)
            if spec.kind == "udp":
                return await _udp_check(spec, timeout_s)
            if spec.kind in ("http", "https"):
                return await _http_check(spec)
            return False, f"unknown check kind {quoted(spec.kind)}"
    except TimeoutError:
        if partial:
            return False, f"timeout, reply so far does not match expect: {shown(bytes(partial))}"
        if exited:
            return False, (f"timeout: the program exited {exited[0]} "
                           "but a process it started still holds its output open")
        return False, "timeout"
    except ConnectionRefusedError:
        return False, "connection refused" if spec.kind != "udp" else "port unreachable"
    except ConnectionResetError:
        return False, "connection reset"
    except ssl.SSLError as e:
        return False, f"tls error: {e.reason or e}"
    except OutputTooLong as e:
        return False, str(e)
    except OSError as e:
        return False, e.strerror or str(e) or type(e).__name__
    except Exception as e:  # a bug here must cost one failed check, never the daemon
        return False, f"check error: {type(e).__name__}: {e}"


async def _probed(spec: CheckSpec) -> tuple[bool, str]:
    """`run_check` of a check `adapters.probes` can carry out; cancelled: the probe stops."""
    from adapters.probes import Probe

    answer: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()

    def done(ok: bool, detail: str) -> None:
        if not answer.done():
            answer.set_result((ok, detail))

    probe = Probe(spec, done)
    try:
        probe.start()
        return await answer
    except asyncio.CancelledError:
        raise
    except Exception as e:  # a bug here must cost one failed check, never the daemon
        return False, f"check error: {type(e).__name__}: {e}"
    finally:
        probe.abort()


# ------------------------------------------------------------ tcp


async def _open(spec: CheckSpec, tls: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if not tls:
        return await asyncio.open_connection(spec.address, spec.port)
    return await asyncio.open_connection(
        spec.address, spec.port, ssl=_insecure_tls(), server_hostname=spec.address,
        ssl_handshake_timeout=max(spec.timeout_ms, 1) / 1000,
    )


def _close(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()  # no lingering close: the verdict is in


async def _tcp_check(spec: CheckSpec, partial: bytearray) -> tuple[bool, str]:
    reader, writer = await _open(spec, tls=False)
    try:
        if spec.send:
            writer.write(spec.send.encode())
            await writer.drain()
        if spec.expect is None:
            return True, "connected"
        return await _read_expect(reader, spec.expect, spec.use_regex, partial)
    finally:
        _close(writer)


async def _read_expect(
    reader: asyncio.StreamReader, expect: str, use_regex: bool, partial: bytearray,
) -> tuple[bool, str]:
    """Read until the reply decides (see `reply_verdict`) or the stream ends.  A
    reply that is still undecided when the timeout strikes (a regex not yet
    matched, a prefix not yet complete) fails as a timeout."""
    reply = b""
    while True:
        chunk = await reader.read(REGEX_WINDOW)
        reply += chunk
        partial[:] = reply
        verdict = reply_verdict(expect, use_regex, reply)
        if verdict is None and not chunk:  # end of stream: judge what came
            verdict = matches(expect, use_regex, reply)
        if verdict is not None:
            return (True, "reply matches expect") if verdict else (False, mismatch(reply))


# ------------------------------------------------------------ udp


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.cancel()


async def _udp_check(spec: CheckSpec, timeout_s: float) -> tuple[bool, str]:
    loop = asyncio.get_running_loop()
    family, _, _, _, addr = (await loop.getaddrinfo(spec.address, spec.port, type=socket.SOCK_DGRAM))[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect(addr)  # connected: an ICMP unreachable comes back as ECONNREFUSED
        # sent here, not through the transport: asyncio (3.11) drops an empty datagram
        sock.send((spec.send or "").encode())
        transport, proto = await loop.create_datagram_endpoint(_Datagrams, sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        if spec.expect is not None:
            reply = await proto.answer  # the hard timeout bounds the wait
            ok = matches(spec.expect, spec.use_regex, reply)
            return (True, "reply matches expect") if ok else (False, mismatch(reply))
        quiet_s = timeout_s - min(UDP_SILENCE_MARGIN_S, timeout_s / 10)
        try:
            await asyncio.wait_for(asyncio.shield(proto.answer), quiet_s)
        except TimeoutError:
            return True, "no ICMP error"
        return True, "reply received"
    finally:
        transport.abort()
        if proto.answer.done() and not proto.answer.cancelled():
            proto.answer.exception()  # retrieved: no "exception never retrieved" noise


# ------------------------------------------------------------ http(s)


_TLS: ssl.SSLContext | None = None


def _insecure_tls() -> ssl.SSLContext:
    """A client context that does not verify certificates (see the module doc)."""
    global _TLS
    if _TLS is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _TLS = ctx
    return _TLS


def _host_header(spec: CheckSpec) -> str:
    host = f"[{spec.address}]" if ":" in spec.address else spec.address
    default = 443 if spec.kind == "https" else 80
    return host if spec.port == default else f"{host}:{spec.port}"


@functools.lru_cache(maxsize=65536)
def http_request(spec: CheckSpec) -> bytes:
    """The request an http(s) check sends (made once per check)."""
    return (f"GET {spec.http_path} HTTP/1.1\r\nHost: {_host_header(spec)}\r\n"
            "User-Agent: shoal-nanny\r\nAccept: */*\r\nConnection: close\r\n\r\n").encode("latin-1")


async def _http_check(spec: CheckSpec) -> tuple[bool, str]:
    reader, writer = await _open(spec, tls=spec.kind == "https")
    try:
        writer.write(http_request(spec))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > HTTP_HEADER_LIMIT:
            return False, "response headers too long"
        status, headers = parse_head(head)
        if status is None:
            return False, f"not an HTTP response: {shown(head)}"
        if status != spec.http_status:
            return False, f"status {status} (expected {spec.http_status})"
        if spec.expect is None:
            return True, f"status {status}"
        want = REGEX_WINDOW if spec.use_regex or spec.expect == "*" else len(spec.expect.encode())
        body = await _read_body(reader, headers, want)
        if matches(spec.expect, spec.use_regex, body):
            return True, f"status {status}, body matches expect"
        return False, f"status {status}, body does not match expect: {shown(body)}"
    except asyncio.IncompleteReadError as e:
        return False, f"connection closed mid-response after {len(e.partial)} bytes"
    except asyncio.LimitOverrunError:
        return False, "response headers too long"
    finally:
        _close(writer)


def parse_head(head: bytes) -> tuple[int | None, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return None, {}
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], want: int) -> bytes:
    """Up to `want` bytes of the body (fewer if it is shorter)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while len(body) < want:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)  # the CRLF after each chunk
        return body[:want]
    length = headers.get("content-length", "")
    if length.isdigit():
        want = min(want, int(length))
    body = b""
    while len(body) < want:
        chunk = await reader.read(want - len(body))
        if not chunk:
            break
        body += chunk
    return body


# ------------------------------------------------------------ programs


class OutputTooLong(Exception):
    """A program said more than OUTPUT_CAP bytes on stdout or stderr."""

    def __init__(self, stream: str) -> None:
        super().__init__(f"program output exceeded {OUTPUT_CAP // 1024} KiB on {stream}: killed")


class _Program(asyncio.SubprocessProtocol):
    """Keeps up to OUTPUT_CAP bytes of stdout and of stderr.  `finished`
    resolves when the program has exited and both pipes are closed (all it
    started has let go of them too), or at once when a pipe says more than
    the cap (`overflow` then names it, and the rest is dropped unread)."""

    def __init__(self, exited: list[int]) -> None:
        self.exited = exited  # gets the exit status
        self.output = {1: bytearray(), 2: bytearray()}
        self.overflow: str | None = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.SubprocessTransport = transport  # type: ignore[assignment]

    def process_exited(self) -> None:
        status = self.transport.get_returncode()
        self.exited.append(status if status is not None else -1)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        kept = self.output[fd]
        if self.overflow is not None:
            return
        if len(kept) + len(data) > OUTPUT_CAP:
            self.overflow = "stdout" if fd == 1 else "stderr"
            pipe = self.transport.get_pipe_transport(fd)
            if isinstance(pipe, asyncio.ReadTransport):
                pipe.pause_reading()  # until _run closes it: not one more read
            self._finish()
            return
        kept += data

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()  # the program exited and every pipe is closed

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


async def _run(command: str, exited: list[int] | None = None) -> tuple[int, bytes, bytes]:
    """Run `/bin/sh -c command` in its own process group (session):
    (status, stdout, stderr), or OutputTooLong.  However it ends (exit, too
    much output, timeout, cancellation) the group is then killed, so nothing
    a check program leaves in the background outlives it, and nothing waits
    on a pipe that something outside the group still holds open: our ends
    are closed, and the program is reaped by asyncio's child watcher.
    `exited` gets the exit status as soon as the program has exited."""
    loop = asyncio.get_running_loop()
    status_box = exited if exited is not None else []
    transport, program = await loop.subprocess_exec(
        lambda: _Program(status_box), "/bin/sh", "-c", command, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    pid = transport.get_pid()
    try:
        await program.finished
        if program.overflow is not None:
            raise OutputTooLong(program.overflow)
        status = transport.get_returncode()
        return status if status is not None else -1, bytes(program.output[1]), bytes(program.output[2])
    finally:
        transport.close()  # our ends of the pipes; SIGKILL to the shell if it still runs
        try:
            os.killpg(pid, signal.SIGKILL)  # and to what it left in the background
        except (ProcessLookupError, PermissionError):
            pass


async def _program_check(spec: CheckSpec, exited: list[int]) -> tuple[bool, str]:
    assert spec.send_program is not None
    status, out, err = await _run(substitute(spec.send_program, spec.address, str(spec.port)), exited)
    if spec.expect is not None:
        if matches(spec.expect, spec.use_regex, out):
            return True, "program output matches expect"
        return False, "program output does not match expect: " + shown(out)
    if status == 0:
        return True, "program exited 0"
    said = err.strip()
    return False, f"program exited {status}" + (f": {shown(said)}" if said else "")


# ------------------------------------------------------------ load


_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)")
_UPTIME_LOAD = re.compile(rb"load averages?:\s*(\d+(?:[.,]\d+)?)")


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


async def read_load(cmd: ReadLoad, timeout_ms: int = 5000) -> float | None:
    """The real server's 1-minute load average, or None (failure, timeout,
    or a method this host cannot carry out).  Never raises."""
    try:
        async with asyncio.timeout(max(timeout_ms, 1) / 1000):
            if cmd.method == "command":
                if not cmd.command:
                    return None
                status, out, _ = await _run(substitute(cmd.command, cmd.address, ""))
                found = _NUMBER.search(out) if status == 0 else None
                return float(found.group()) if found else None
            if cmd.method in ("uptime", "rup", "ruptime") and _is_loopback(cmd.address):
                status, out, _ = await _run("LC_ALL=C uptime")
                found = _UPTIME_LOAD.search(out) if status == 0 else None
                return float(found.group(1).replace(b",", b".")) if found else None
            return None  # no remote shell: see the module doc
    except asyncio.CancelledError:
        raise
    except Exception:
        return None
