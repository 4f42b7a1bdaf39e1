"""adapters/checks.py against real servers on 127.0.0.1 and ::1, in this
process (asyncio servers on the same loop as the checks) or, for programs,
in subprocesses.  No network beyond loopback.

Timeouts are small (a few hundred ms) so that the hung and slow cases stay
quick; assertions on time are loose (a loaded CI machine is slow)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
import tracemalloc
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, cast

import pytest

from adapters.checks import OUTPUT_CAP, matches, read_load, regex_problem, run_check, substitute
from engine.events import CheckSpec, ReadLoad

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HOSTS = ["127.0.0.1", "::1"]


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


# ------------------------------------------------------------ servers


@contextlib.asynccontextmanager
async def tcp_server(handler: Handler, host: str = "127.0.0.1",
                     tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    async def tidy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the checker hung up: its business
        except asyncio.CancelledError:
            pass  # the test is over (3.11's stream callback logs a cancelled handler as an error)
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(tidy, host, 0, backlog=2048, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def banner(text: bytes, close: bool = False) -> Handler:
    """Says `text` on connect (like SMTP's 220), then stays open (or closes)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(text)
        await writer.drain()
        if close:
            writer.close()
            return
        await reader.read()
    return handle


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers each line with 'echo: LINE'."""
    while line := await reader.readline():
        writer.write(b"echo: " + line)
        await writer.drain()


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts, never answers."""
    await reader.read()


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on (bound, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def spec(port: int, kind: str = "tcp", host: str = "127.0.0.1", **kw: Any) -> CheckSpec:
    kw.setdefault("timeout_ms", 500)
    return CheckSpec(address=host, port=port, kind=kind, **kw)  # type: ignore[arg-type]


async def timed(s: CheckSpec) -> tuple[bool, str, float]:
    t0 = time.monotonic()
    ok, detail = await run_check(s)
    return ok, detail, time.monotonic() - t0


# ------------------------------------------------------------ matching (pure)


def test_matches_rules() -> None:
    assert matches("220", False, b"220 ready\r\n")
    assert not matches("220", False, b"22")            # too short for the prefix
    assert not matches("220", False, b"500 no")
    assert matches("*", False, b"")
    assert matches(r"^2\d\d ", True, b"250 ok")
    assert not matches(r"^2\d\d ", True, b"550 no")
    assert not matches("x", True, b"." * 254 + b"x")  # beyond the regex window
    assert not matches("(", True, b"(")                # a bad regex never matches
    assert substitute("check %h %p 100%%", "::1", "80") == "check ::1 80 100%"


# Patterns that take a backtracking matcher exponential time on a reply
# that almost matches (issue 9, item 4), each with such a reply.
CATASTROPHIC = [
    ("^(a+)+$", b"a" * 40 + b"!"),
    ("(a|aa)+$", b"a" * 60 + b"!"),
    ("^(a*)*b", b"a" * 254),
    ("(x+x+)+y", b"x" * 254),
    ("^(([a-z])+.)+[A-Z]([a-z])+$", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"),
]


@pytest.mark.parametrize("pattern,reply", CATASTROPHIC)
def test_regex_time_is_bounded_whatever_the_pattern(pattern: str, reply: bytes) -> None:
    t0 = time.monotonic()
    for _ in range(100):
        assert not matches(pattern, True, reply)
    assert time.monotonic() - t0 < 0.5  # a hundred near misses; a backtracking matcher: not one in an hour


def test_regex_semantics() -> None:
    assert matches("[[:digit:]]{3} ok", True, b"HTTP 200 ok")   # POSIX classes
    assert matches(r"^\d+\s\w+", True, b"250 mail")             # and Perl's
    assert matches("^UP$", True, b"UP\n")                       # `$` before a final newline
    assert not matches("^UP$", True, b"UP\nmore")
    assert matches("^..ok", True, b"\xff\x00ok")                # byte by byte, NUL included
    assert matches("caf\u00e9", True, "café".encode())
    assert regex_problem("^(a+)+$") is None
    problem = regex_problem(r"(a)\1")
    assert problem is not None and problem.startswith('expect "(a)\\1" cannot be matched with use_regex = 1')
    assert regex_problem("(?=a)") is not None and not matches("(?=a)", True, b"a")


def test_uncompilable_regex_fails_the_check_at_once_naming_it() -> None:
    async def go() -> None:
        ok, detail, took = await timed(spec(free_port(), expect=r"^(OK)\1", use_regex=True, timeout_ms=2000))
        assert not ok and detail.startswith('expect "^(OK)\\1" cannot be matched with use_regex = 1'), detail
        assert took < 0.5
        ok, detail = await run_check(spec(1, send_program="echo OKOK", expect=r"^(OK)\1", use_regex=True))
        assert not ok and "cannot be matched" in detail
    run(go())


# ------------------------------------------------------------ tcp


@pytest.mark.parametrize("host", HOSTS)
def test_tcp_connect_only(host: str) -> None:
    async def go() -> None:
        async with tcp_server(hang, host) as port:  # even a hung server accepts
            assert await run_check(spec(port, host=host)) == (True, "connected")
    run(go())


@pytest.mark.parametrize("host", HOSTS)
def test_tcp_send_expect_prefix(host: str) -> None:
    async def go() -> None:
        async with tcp_server(echo, host) as port:
            ok, detail = await run_check(spec(port, host=host, send="ping\r\n", expect="echo: pi"))
            assert ok, detail
    run(go())


def test_tcp_expect_mismatch() -> None:
    async def go() -> None:
        async with tcp_server(banner(b"500 go away\r\n"), "127.0.0.1") as port:
            ok, detail, took = await timed(spec(port, expect="220", timeout_ms=2000))
            assert not ok and detail.startswith('reply does not match expect: "500 go away\\r\\n"')
            assert took < 1.0  # the first wrong byte decides: no waiting for the timeout
    run(go())


def test_tcp_expect_short_reply_then_close() -> None:
    async def go() -> None:
        async with tcp_server(banner(b"22", close=True)) as port:
            ok, detail = await run_check(spec(port, expect="220"))
            assert not ok and '"22"' in detail
    run(go())


def test_tcp_regex() -> None:
    async def go() -> None:
        async with tcp_server(banner(b"220 mail.example ESMTP\r\n")) as port:
            ok, detail, took = await timed(spec(port, expect=r"^2[0-9]{2} .*ESMTP",
                                                use_regex=True, timeout_ms=2000))
            assert ok, detail
            assert took < 1.0  # matched at once, not after 254 bytes or the timeout
            ok, detail = await run_check(spec(port, expect=r"^5", use_regex=True, timeout_ms=300))
            assert not ok and detail.startswith("timeout, reply so far does not match")
        async with tcp_server(banner(b"550 no\r\n", close=True)) as port:
            ok, detail = await run_check(spec(port, expect=r"^2", use_regex=True))
            assert not ok and detail.startswith("reply does not match expect")
    run(go())


def test_catastrophic_regex_checks_finish_at_once() -> None:
    """Issue 9, item 4: `^(a+)+$` against forty `a` and a `!` -- over a tcp
    reply (then close, or kept open), an http body, a program's stdout."""
    evil, reply = "^(a+)+$", b"a" * 40 + b"!"

    async def go() -> None:
        async with tcp_server(banner(reply, close=True)) as port:
            ok, detail, took = await timed(spec(port, expect=evil, use_regex=True, timeout_ms=3000))
            assert not ok and detail.startswith('reply does not match expect: "aaaa'), detail
            assert took < 1.0, took
        async with tcp_server(banner(reply)) as port:  # kept open: undecided until the timeout
            ok, detail, took = await timed(spec(port, expect=evil, use_regex=True, timeout_ms=300))
            assert not ok and detail.startswith("timeout, reply so far does not match"), detail
            assert took < 1.0, took
        async with tcp_server(banner(b"a" * 40, close=True)) as port:
            assert (await run_check(spec(port, expect=evil, use_regex=True)))[0]
        async with tcp_server(http_server(body=reply)) as port:
            ok, detail, took = await timed(spec(port, "http", expect=evil, use_regex=True, timeout_ms=3000))
            assert not ok and detail.startswith("status 200, body does not match expect"), detail
            assert took < 1.0, took
        ok, detail, took = await timed(spec(1, send_program="printf " + "a" * 40 + "!",
                                            expect=evil, use_regex=True, timeout_ms=3000))
        assert not ok and detail.startswith("program output does not match expect"), detail
        assert took < 1.0, took
    run(go())


def test_tcp_star_matches_any_reply() -> None:
    async def go() -> None:
        async with tcp_server(banner(b"anything at all")) as port:
            assert (await run_check(spec(port, expect="*")))[0]
        async with tcp_server(hang) as port:  # but a reply is needed
            assert await run_check(spec(port, expect="*", timeout_ms=200)) == (False, "timeout")
    run(go())


@pytest.mark.parametrize("host", HOSTS)
def test_tcp_hang_fails_after_timeout(host: str) -> None:
    async def go() -> None:
        async with tcp_server(hang, host) as port:
            ok, detail, took = await timed(spec(port, host=host, send="HELO\r\n", expect="250",
                                                timeout_ms=300))
            assert (ok, detail) == (False, "timeout")
            assert 0.25 < took < 1.0, took
    run(go())


@pytest.mark.parametrize("host", HOSTS)
def test_tcp_refused(host: str) -> None:
    ok, detail = run(run_check(spec(free_port(host), host=host)))
    assert (ok, detail) == (False, "connection refused")


def test_bad_address_is_a_failure_not_an_exception() -> None:
    ok, detail = run(run_check(spec(80, host="not an address", timeout_ms=2000)))
    assert not ok and detail


# ------------------------------------------------------------ udp


class Udp(asyncio.DatagramProtocol):
    """Answers 'pong: DATA', or nothing when silent."""

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.silent and self.transport is not None:
            self.transport.sendto(b"pong: " + data, addr)


@contextlib.asynccontextmanager
async def udp_server(host: str, silent: bool = False) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: Udp(silent), local_addr=(host, 0))
    try:
        yield transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


@pytest.mark.parametrize("host", HOSTS)
def test_udp_echo_expect(host: str) -> None:
    async def go() -> None:
        async with udp_server(host) as port:
            ok, detail = await run_check(spec(port, "udp", host, send="ping", expect="pong: ping"))
            assert ok, detail
            ok, detail = await run_check(spec(port, "udp", host, send="ping", expect="PONG"))
            assert not ok and detail.startswith("reply does not match expect")
            ok, detail = await run_check(spec(port, "udp", host, expect=r"^pong: $", use_regex=True))
            assert ok, detail  # an empty datagram when there is no send
    run(go())


@pytest.mark.parametrize("host", HOSTS)
def test_udp_icmp_unreachable_fails(host: str) -> None:
    async def go() -> None:
        port = free_port(host, socket.SOCK_DGRAM)
        for expect in (None, "pong"):
            ok, detail, took = await timed(spec(port, "udp", host, send="x", expect=expect,
                                                timeout_ms=2000))
            assert (ok, detail) == (False, "port unreachable")
            assert took < 1.0
    run(go())


def test_udp_silence() -> None:
    async def go() -> None:
        async with udp_server("127.0.0.1", silent=True) as port:
            # no expect: no ICMP error within (almost) the timeout is success
            ok, detail, took = await timed(spec(port, "udp", send="x", timeout_ms=400))
            assert (ok, detail) == (True, "no ICMP error")
            assert 0.3 <= took < 0.4 + 0.3, took
            # with expect: no reply is failure at the timeout
            ok, detail, took = await timed(spec(port, "udp", send="x", expect="pong", timeout_ms=300))
            assert (ok, detail) == (False, "timeout")
        async with udp_server("127.0.0.1") as port:  # a reply ends the wait at once
            ok, detail, took = await timed(spec(port, "udp", send="x", timeout_ms=2000))
            assert (ok, detail) == (True, "reply received") and took < 1.0
    run(go())


# ------------------------------------------------------------ http / https


def http_server(status: int = 200, body: bytes = b"OK healthy\n", chunked: bool = False,
                seen: list[bytes] | None = None) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(request)
        head = f"HTTP/1.1 {status} Whatever\r\nContent-Type: text/plain\r\n"
        if chunked:
            half = len(body) // 2
            payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]) if p)
            writer.write(head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + payload + b"0\r\n\r\n")
        else:
            writer.write(head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        await reader.read()  # keeps the connection open: the checker must not wait for EOF
    return handle


@pytest.mark.parametrize("host", HOSTS)
def test_http_status_match_and_request(host: str) -> None:
    async def go() -> None:
        seen: list[bytes] = []
        async with tcp_server(http_server(seen=seen), host) as port:
            ok, detail = await run_check(spec(port, "http", host, http_path="/health?x=1"))
            assert (ok, detail) == (True, "status 200")
        bracketed = f"[{host}]" if ":" in host else host
        assert seen[0].startswith(b"GET /health?x=1 HTTP/1.1\r\n")
        assert f"\r\nHost: {bracketed}:{port}\r\n".encode() in seen[0]
    run(go())


def test_http_status_mismatch() -> None:
    async def go() -> None:
        async with tcp_server(http_server(status=500)) as port:
            ok, detail = await run_check(spec(port, "http"))
            assert (ok, detail) == (False, "status 500 (expected 200)")
            assert (await run_check(spec(port, "http", http_status=500)))[0]
    run(go())


@pytest.mark.parametrize("chunked", [False, True])
def test_http_body_expect(chunked: bool) -> None:
    async def go() -> None:
        async with tcp_server(http_server(body=b"OK healthy, 3 workers\n", chunked=chunked)) as port:
            assert (await run_check(spec(port, "http", expect="OK heal")))[0]
            assert (await run_check(spec(port, "http", expect=r"\d+ workers", use_regex=True)))[0]
            ok, detail = await run_check(spec(port, "http", expect="FAIL"))
            assert not ok and detail.startswith("status 200, body does not match expect")
    run(go())


def test_http_hang_and_not_http() -> None:
    async def go() -> None:
        async with tcp_server(hang) as port:
            assert await run_check(spec(port, "http", timeout_ms=200)) == (False, "timeout")
        async with tcp_server(banner(b"SSH-2.0-OpenSSH\r\n\r\n")) as port:
            ok, detail = await run_check(spec(port, "http"))
            assert not ok and detail.startswith("not an HTTP response")
    run(go())


def self_signed(tmp: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate (cryptography
    if installed, else the openssl command)."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    try:
        import datetime

        from cryptography import x509  # type: ignore[import-not-found, unused-ignore]
        from cryptography.hazmat.primitives import hashes, serialization  # type: ignore[import-not-found, unused-ignore]
        from cryptography.hazmat.primitives.asymmetric import ec  # type: ignore[import-not-found, unused-ignore]
        from cryptography.x509.oid import NameOID  # type: ignore[import-not-found, unused-ignore]

        k = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal-test")])
        now = datetime.datetime.now(datetime.timezone.utc)
        c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now)
             .not_valid_after(now + datetime.timedelta(days=1)).sign(k, hashes.SHA256()))
        cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl command")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=shoal-test",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.mark.parametrize("host", HOSTS)
def test_https_self_signed(host: str, tmp_path: Path) -> None:
    tls = self_signed(tmp_path)

    async def go() -> None:
        async with tcp_server(http_server(body=b"ready"), host, tls=tls) as port:
            assert await run_check(spec(port, "https", host, timeout_ms=3000)) == (True, "status 200")
            ok, detail = await run_check(spec(port, "https", host, expect="ready", timeout_ms=3000))
            assert ok, detail
        async with tcp_server(http_server(), host) as port:  # plain HTTP on an https check
            ok, detail = await run_check(spec(port, "https", host, timeout_ms=300))
            assert (ok, detail) == (False, "timeout")  # the server waits for a request line
    run(go())


# ------------------------------------------------------------ send_program


def test_send_program_substitutes_and_matches_stdout() -> None:
    async def go() -> None:
        ok, detail = await run_check(spec(8080, send_program="echo %h:%p", expect="127.0.0.1:8080"))
        assert ok, detail
        ok, detail = await run_check(spec(8080, "udp", "::1", send_program="echo %h:%p",
                                          expect=r"^::1:8080$", use_regex=True))
        assert ok, detail
        ok, detail = await run_check(spec(1, send_program="echo DOWN", expect="UP"))
        assert (ok, detail) == (False, "program output does not match expect: \"DOWN\\n\"")
    run(go())


def test_send_program_exit_status_without_expect() -> None:
    async def go() -> None:
        assert await run_check(spec(1, send_program="true")) == (True, "program exited 0")
        ok, detail = await run_check(spec(1, send_program="echo broken >&2; exit 3"))
        assert (ok, detail) == (False, "program exited 3: \"broken\"")
    run(go())


def test_send_program_killed_at_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"

    async def go() -> None:
        # a grandchild in the background, holding stdout: the whole group must die
        program = f"sleep 30 & echo $! > {pidfile}; wait"
        ok, detail, took = await timed(spec(1, send_program=program, expect="x", timeout_ms=400))
        assert (ok, detail) == (False, "timeout")
        assert took < 1.5, took
    run(go())
    child = int(pidfile.read_text())
    time.sleep(0.1)
    state = process_state(child)
    assert state in ("gone", "Z"), state


def process_state(pid: int) -> str:
    """'gone', or a zombie's 'Z' (waiting for a (container) init to reap it), or another state."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


@pytest.mark.parametrize("program,stream", [("yes", "stdout"), ("yes FAIL >&2", "stderr"),
                                            ("echo UP; exec yes", "stdout")])
def test_flooding_program_fails_at_once_in_bounded_memory(program: str, stream: str) -> None:
    """Issue 9, item 5: a program that prints without end.  The check stops
    reading at the cap, kills the program and fails -- long before its
    timeout, holding no more than a few read buffers."""
    async def go() -> tuple[bool, str, float]:
        return await timed(spec(1, send_program=program, expect="UP" if "UP" in program else None,
                                timeout_ms=3000))
    tracemalloc.start()
    try:
        ok, detail, took = run(go())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (ok, detail) == (False, f"program output exceeded 64 KiB on {stream}: killed")
    assert took < 1.0, took
    assert peak < 8 * OUTPUT_CAP, peak  # the read buffers (256 KiB each), not the flood


def test_program_output_up_to_the_cap_is_fine() -> None:
    async def go() -> None:
        ok, detail = await run_check(spec(1, send_program=f"head -c {OUTPUT_CAP} /dev/zero"))
        assert (ok, detail) == (True, "program exited 0")
        ok, detail = await run_check(spec(1, send_program=f"head -c {OUTPUT_CAP + 1} /dev/zero"))
        assert (ok, detail) == (False, "program output exceeded 64 KiB on stdout: killed")
    run(go())


def test_program_whose_background_keeps_the_pipe_open(tmp_path: Path) -> None:
    """Something the program started holds its stdout: in its process group
    (killed at the timeout), or in a session of its own (out of reach: the
    check stops waiting on the pipe all the same), after the program exited
    or while it still runs.  Each check ends at its timeout."""
    pidfile = tmp_path / "pid"
    exited = "timeout: the program exited 0 but a process it started still holds its output open"
    escape = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 30' &"
    cases = [(f"sleep 30 & echo $! > {pidfile}; echo ok", exited),
             (f"{escape} echo ok", exited),
             (f"{escape} sleep 30", "timeout")]

    async def go(program: str) -> tuple[bool, str, float]:
        return await timed(spec(1, send_program=program, expect="ok", timeout_ms=400))
    for program, detail in cases:
        pidfile.unlink(missing_ok=True)
        assert run(go(program)) == (False, detail, pytest.approx(0.4, abs=0.5)), program
        left = int(pidfile.read_text())
        if program.startswith("setsid"):
            os.kill(left, 9)  # escaped the group: ours to clean up
        else:
            time.sleep(0.1)
            assert process_state(left) in ("gone", "Z"), program


# ------------------------------------------------------------ read_load


def test_read_load_command() -> None:
    async def go() -> None:
        assert await read_load(ReadLoad(1, "10.0.0.7", "command", "echo load %h: 0.75")) == 10.0
        assert await read_load(ReadLoad(1, "10.0.0.7", "command", "echo load: 0.75 [%p]")) == 0.75
        assert await read_load(ReadLoad(1, "::1", "command", "echo ' 2.5 1.0 0.5'")) == 2.5
        assert await read_load(ReadLoad(1, "::1", "command", "echo no number")) is None
        assert await read_load(ReadLoad(1, "::1", "command", "echo 1.0; exit 1")) is None
        assert await read_load(ReadLoad(1, "::1", "command", None)) is None
        t0 = time.monotonic()
        assert await read_load(ReadLoad(1, "::1", "command", "sleep 30; echo 1"), timeout_ms=300) is None
        assert time.monotonic() - t0 < 1.5
        t0 = time.monotonic()  # a flood: too much output gives None at once, not at the timeout
        assert await read_load(ReadLoad(1, "::1", "command", "yes 0.5"), timeout_ms=3000) is None
        assert time.monotonic() - t0 < 1.0
    run(go())


def test_read_load_uptime_local_only() -> None:
    async def go() -> None:
        if shutil.which("uptime") is None:
            pytest.skip("no uptime command")
        for method in ("uptime", "rup", "ruptime"):
            load = await read_load(ReadLoad(1, "127.0.0.1", method))
            assert isinstance(load, float) and load >= 0
        assert await read_load(ReadLoad(1, "10.0.0.7", "uptime")) is None  # no remote shell
    run(go())


# ------------------------------------------------------------ concurrency


def test_hung_check_does_not_delay_others() -> None:
    async def go() -> None:
        async with tcp_server(hang) as hung, tcp_server(echo) as good:
            slow = asyncio.ensure_future(timed(spec(hung, expect="x", timeout_ms=1500)))
            await asyncio.sleep(0.05)  # the hung check is in flight
            t0 = time.monotonic()
            results = await asyncio.gather(*(run_check(spec(good, send="hi\n", expect="echo: hi"))
                                              for _ in range(50)))
            took = time.monotonic() - t0
            assert all(ok for ok, _ in results)
            assert took < 0.75, took
            assert not slow.done()
            ok, detail, slow_took = await slow
            assert (ok, detail) == (False, "timeout") and slow_took >= 1.4
    run(go())


def test_500_concurrent_checks() -> None:
    async def go() -> None:
        async with contextlib.AsyncExitStack() as stack:
            ports = [await stack.enter_async_context(tcp_server(echo, host)) for host in HOSTS * 2]
            hung = await stack.enter_async_context(tcp_server(hang))
            specs = [spec(ports[i % 4], host=HOSTS[i % 2], send=f"n{i}\n", expect=f"echo: n{i}",
                          timeout_ms=3000) for i in range(490)]
            specs += [spec(hung, expect="x", timeout_ms=1000) for _ in range(10)]
            t0 = time.monotonic()
            results = await asyncio.gather(*(timed(s) for s in specs))
            took = time.monotonic() - t0
            one = (await timed(specs[0]))[2]
        assert [ok for ok, _, _ in results] == [True] * 490 + [False] * 10
        healthy = max(t for _, _, t in results[:490])
        print(f"\n500 concurrent checks: the 490 healthy done in {healthy * 1000:.0f} ms, "
              f"all (10 hung, 1 s timeout) in {took * 1000:.0f} ms; one check alone: {one * 1000:.1f} ms")
        assert healthy < 3.0 and took < 6.0  # loose: a loaded machine, or python -X dev
    run(go())
