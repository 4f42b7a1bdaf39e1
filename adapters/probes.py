"""The common checks, carried out in callbacks: one socket each, no task, no stream.

`adapters.checks` states the semantics (PIRANHA.md's nanny); this module
carries out the cases a pool of thousands of real servers checked every
second is made of, on the loop's selector instead of in a coroutine over
asyncio's streams, at a fraction of the CPU (docs/PERFORMANCE.md, issue 13):

- tcp: connect; `send`, if set, written; `expect`, if set, read and judged
  as `checks.reply_verdict` judges it (a reply read so far shown in a timeout's
  detail);
- http without `expect`: connect, the request `checks._http_check` sends,
  the status line judged; a head longer than `checks.HTTP_HEADER_LIMIT`
  fails ("response headers too long") as soon as that many bytes came
  without its end.

Everything else (udp, https, programs, http with a body to match, an
address that is not an IP literal) stays with `checks.run_check`'s
coroutine: `fast(spec)` says which.  The verdicts and details are the
coroutine's (tests/adapters/test_checks.py runs every case through
`run_check`, which uses this module when it can), except that an error
without a word of its own is named by its errno's text ("No route to
host"), not by asyncio's "Connect call failed (address)".

A probe never raises: `done(ok, detail)` is called once, unless `abort()`
came first (the daemon shutting down, a cancelled `run_check`); however it
ends, its socket is closed and its timer cancelled.

The probes of one loop share a `_Poller`: an epoll set of their sockets
(itself one reader of the loop: the loop's selector and its handles are
not involved per socket) and the hard timeouts, a queue per timeout length
(checks of one length time out in the order they started: one loop timer
for all of them, not one each).  A closed socket leaves the epoll set by
itself; an event is delivered by file descriptor, only to the probe that
holds it (a descriptor closed and reused within one batch of events can
only be reused by a probe started after its owner's event was handled).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import os
import select
import socket
import time
import weakref
from collections import deque
from collections.abc import Callable

from adapters.checks import HTTP_HEADER_LIMIT, http_request, matches, mismatch, parse_head, reply_verdict, shown
from engine.events import CheckSpec

__all__ = ["Probe", "fast"]

READ_BYTES = 4096
_CONNECTING, _WRITING, _READING, _OVER = range(4)


@functools.lru_cache(maxsize=65536)
def _family(address: str) -> int | None:
    """AF_INET / AF_INET6 for an IP literal; None for anything else (a name, a scoped address)."""
    if "%" in address:
        return None
    try:
        return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    except ValueError:
        return None


def fast(spec: CheckSpec) -> bool:
    """Can a `Probe` carry out this check (see the module doc)?"""
    if spec.send_program is not None or _family(spec.address) is None:
        return False
    return spec.kind == "tcp" or (spec.kind == "http" and spec.expect is None)


def _error(code: int) -> str:
    if code == errno.ECONNREFUSED:
        return "connection refused"
    if code == errno.ECONNRESET:
        return "connection reset"
    return os.strerror(code)


class Probe:
    """One check of `fast(spec)`, from `start()` to `done(ok, detail)`."""

    __slots__ = ("poller", "spec", "done", "sock", "fd", "state", "reply", "pending")

    def __init__(self, spec: CheckSpec, done: Callable[[bool, str], None],
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.poller = _poller(loop or asyncio.get_running_loop())
        self.spec, self.done = spec, done
        self.sock: socket.socket | None = None
        self.fd = -1
        self.state = _CONNECTING
        self.reply = b""  # what the server said so far
        self.pending = b""  # what is still to be written

    def start(self) -> None:
        spec = self.spec
        family = _family(spec.address)
        assert family is not None, "not a fast check: see fast()"
        try:
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        except OSError as e:  # EMFILE and the like
            self._end(False, e.strerror or str(e))
            return
        self.sock, self.fd = sock, sock.fileno()
        self.poller.deadline(self, max(spec.timeout_ms, 1) / 1000)
        try:
            code = sock.connect_ex((spec.address, spec.port))
        except OSError as e:  # an address the kernel refuses outright
            self._end(False, e.strerror or str(e))
            return
        if code not in (0, errno.EINPROGRESS):
            self._end(False, _error(code))
            return
        self.poller.watch(self, select.EPOLLOUT)

    def abort(self) -> None:
        """Stop now, without a verdict (`done` is not called)."""
        self._close()

    # ------------------------------------------------------------ the steps

    def event(self, mask: int) -> None:
        """The poller's news of this probe's socket."""
        if self.state == _READING:
            self._readable()
        elif self.state != _OVER:
            self._writable()

    def _writable(self) -> None:
        assert self.sock is not None
        if self.state == _CONNECTING:
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._end(False, _error(code))
                return
            self.state = _WRITING
            spec = self.spec
            self.pending = (spec.send or "").encode() if spec.kind == "tcp" else http_request(spec)
        if self.pending:
            try:
                sent = self.sock.send(self.pending)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._end(False, _error(e.errno) if e.errno else str(e))
                return
            self.pending = self.pending[sent:]
            if self.pending:
                return  # the rest when the socket can take it
        if self.spec.kind == "tcp" and self.spec.expect is None:
            self._end(True, "connected")
            return
        self.state = _READING
        self.poller.watch(self, select.EPOLLIN, again=True)

    def _readable(self) -> None:
        assert self.sock is not None
        try:
            chunk = self.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._end(False, _error(e.errno) if e.errno else str(e))
            return
        self.reply += chunk
        if self.spec.kind == "tcp":
            self._judge_reply(chunk)
        else:
            self._judge_head(chunk)

    def _judge_reply(self, chunk: bytes) -> None:
        expect = self.spec.expect
        assert expect is not None
        verdict = reply_verdict(expect, self.spec.use_regex, self.reply)
        if verdict is None and not chunk:  # end of stream: judge what came
            verdict = matches(expect, self.spec.use_regex, self.reply)
        if verdict is not None:
            self._end(True, "reply matches expect") if verdict else self._end(False, mismatch(self.reply))

    def _judge_head(self, chunk: bytes) -> None:
        end = self.reply.find(b"\r\n\r\n")
        if end < 0:
            if not chunk:
                self._end(False, f"connection closed mid-response after {len(self.reply)} bytes")
            elif len(self.reply) > HTTP_HEADER_LIMIT:
                self._end(False, "response headers too long")
            return
        head = self.reply[:end + 4]
        if len(head) > HTTP_HEADER_LIMIT:
            self._end(False, "response headers too long")
            return
        status, _ = parse_head(head)
        if status is None:
            self._end(False, f"not an HTTP response: {shown(head)}")
        elif status != self.spec.http_status:
            self._end(False, f"status {status} (expected {self.spec.http_status})")
        else:
            self._end(True, f"status {status}")

    def timeout(self) -> None:
        """The poller's: the hard timeout struck."""
        if self.state == _OVER:
            return
        if self.spec.kind == "tcp" and self.reply:
            self._end(False, f"timeout, reply so far does not match expect: {shown(self.reply)}")
        else:
            self._end(False, "timeout")

    # ------------------------------------------------------------ the end

    def failed(self, e: Exception) -> None:
        """A bug of this module struck while carrying out the check: it fails, saying so."""
        self._end(False, f"check error: {type(e).__name__}: {e}")

    def _end(self, ok: bool, detail: str) -> None:
        if self.state == _OVER:
            return
        self._close()
        self.done(ok, detail)

    def _close(self) -> None:
        if self.state == _OVER:
            return
        self.state = _OVER  # its entry in the timeout queue is now ignored
        if self.sock is not None:
            self.poller.forget(self)
            self.sock.close()  # no lingering close (the verdict is in); the epoll set lets it go with it
            self.sock = None


class _Poller:
    """The sockets and timeouts of one loop's probes (see the module doc)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # not a strong one: the loop is the key of _POLLERS
        self.epoll = select.epoll()
        self.probes: dict[int, Probe] = {}
        self.queues: dict[float, deque[tuple[float, Probe]]] = {}  # timeout length -> (deadline, probe)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = float("inf")
        loop.add_reader(self.epoll.fileno(), self._events)
        weakref.finalize(loop, self.epoll.close)

    def watch(self, probe: Probe, mask: int, again: bool = False) -> None:
        if again:
            self.epoll.modify(probe.fd, mask)
        else:
            self.epoll.register(probe.fd, mask)
            self.probes[probe.fd] = probe

    def forget(self, probe: Probe) -> None:
        if self.probes.get(probe.fd) is probe:
            del self.probes[probe.fd]
        if not self.probes and self.timer is not None:  # idle: no timer (nor loop) held
            self.timer.cancel()
            self.timer, self.timer_at = None, float("inf")
            self.queues.clear()

    def _events(self) -> None:
        probes = self.probes
        for fd, mask in self.epoll.poll(0, 1024):
            probe = probes.get(fd)
            if probe is not None:
                try:
                    probe.event(mask)
                except Exception as e:  # a bug here costs one failed check, never the loop
                    probe.failed(e)

    def deadline(self, probe: Probe, timeout_s: float) -> None:
        at = time.monotonic() + timeout_s
        queue = self.queues.get(timeout_s)
        if queue is None:
            queue = self.queues[timeout_s] = deque()
        queue.append((at, probe))
        if at < self.timer_at:
            self._arm(at)

    def _arm(self, at: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = at
        loop = self._loop()
        if loop is not None:
            self.timer = loop.call_at(loop.time() + max(0.0, at - time.monotonic()), self._expire)

    def _expire(self) -> None:
        self.timer, self.timer_at = None, float("inf")
        now = time.monotonic()
        earliest = float("inf")
        for timeout_s, queue in list(self.queues.items()):
            while queue and (queue[0][1].state == _OVER or queue[0][0] <= now):
                _, probe = queue.popleft()
                try:
                    probe.timeout()  # nothing when it is over
                except Exception as e:
                    probe.failed(e)
            if queue:
                earliest = min(earliest, queue[0][0])
            else:
                del self.queues[timeout_s]
        if earliest < float("inf"):
            self._arm(earliest)


_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Poller] = weakref.WeakKeyDictionary()


def _poller(loop: asyncio.AbstractEventLoop) -> _Poller:
    poller = _POLLERS.get(loop)
    if poller is None:
        poller = _POLLERS[loop] = _Poller(loop)
    return poller
