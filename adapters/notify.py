"""Operators' commands and the notify FIFO.

`CommandRunner` runs `RunCommand`s (active_cmd, inactive_cmd, notify_up,
notify_down) in submission order, ONE AT A TIME (keepalived's users asked
for ordered notifications), each as `/bin/sh -c COMMAND` in a session of
its own with the environment variable SHOAL_REASON = cmd.reason.  A command
that outlives `cmd.timeout_ms` is killed with its whole process group
(SIGKILL).  Each result goes to `on_result(cmd, returncode, detail)`:
returncode None when it timed out or could not be started; detail says
what happened and ends with the last bytes of its output.

`NotifyWriter` appends one JSON line per `Notify` event,
`{"t": now_s, "kind": ..., **data}`, to a FIFO or a regular file.  The path
is opened with O_NOFOLLOW|O_NONBLOCK: a symbolic link is refused (ELOOP,
counted as "symlink"), a FIFO with no reader or a full pipe drops the line
(counted); it never blocks the daemon.  A regular file (created, mode 0600,
if missing) is opened for each line, so log rotation works.  No error is
ever raised (a path the kernel cannot take, such as one holding a NUL, is
counted as "bad-path"): errors are counted in `errors` by name, and logged
the first time each happens, then at most once a minute, with the counts.
`notify_path_problem(path)` says at start or reload why a path cannot be
used (a symlink, neither a FIFO nor a regular file, a NUL).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import stat
import time
from collections.abc import Callable

from adapters.describe import quoted
from engine.events import Notify, RunCommand

log = logging.getLogger("shoal.notify")

OnResult = Callable[[RunCommand, "int | None", str], None]
OUTPUT_KEEP = 512  # bytes of a command's output kept for the detail
PIPE_BUF = 4096
LOG_EVERY_S = 60.0  # a failing notify_fifo is logged at most this often (after each new kind of error)


def _log_result(cmd: RunCommand, returncode: int | None, detail: str) -> None:
    log.info("command: %s (%s) finished: %s", quoted(cmd.command), cmd.reason, detail,
             extra={"fields": {"kind": "command", "command": cmd.command, "reason": cmd.reason,
                               "returncode": returncode, "detail": detail}})


class CommandRunner:
    """`await start()`, then `submit()` commands; `await drain()`; `close()`."""

    def __init__(self, on_result: OnResult = _log_result) -> None:
        self.on_result = on_result
        self.queue: asyncio.Queue[RunCommand] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._running: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._work())

    def submit(self, cmd: RunCommand) -> None:
        if self.queue is None:
            raise RuntimeError("CommandRunner.submit before start")
        self.queue.put_nowait(cmd)

    async def drain(self) -> None:
        """Wait until every submitted command has finished."""
        if self.queue is not None:
            await self.queue.join()

    def close(self) -> None:
        """Stop: the running command's process group is killed; queued ones are dropped."""
        if self._running is not None:
            _killpg(self._running.pid)
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None

    async def _work(self) -> None:
        assert self.queue is not None
        while True:
            cmd = await self.queue.get()
            try:
                returncode, detail = await self._run(cmd)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # never let one command stop the queue
                returncode, detail = None, f"failed: {e}"
            finally:
                self._running = None
            try:
                self.on_result(cmd, returncode, detail)
            except Exception:
                log.exception("command: on_result failed for %s", quoted(cmd.command),
                              extra={"fields": {"kind": "command", "command": cmd.command}})
            self.queue.task_done()

    async def _run(self, cmd: RunCommand) -> tuple[int | None, str]:
        # Output goes to a pipe of our own, read as it comes: asyncio's
        # `proc.wait()` on its own pipes would wait for a background
        # grandchild that keeps them open.
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        output = _Tail(read_fd)
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    "/bin/sh", "-c", cmd.command, stdin=asyncio.subprocess.DEVNULL,
                    stdout=write_fd, stderr=write_fd, start_new_session=True,
                    env={**os.environ, "SHOAL_REASON": cmd.reason})
            except OSError as e:
                return None, f"cannot start: {e.strerror}"
            finally:
                os.close(write_fd)
            self._running = proc
            try:
                await asyncio.wait_for(proc.wait(), cmd.timeout_ms / 1000)
            except asyncio.TimeoutError:
                _killpg(proc.pid)
                await proc.wait()
                output.read()
                return None, f"timed out after {cmd.timeout_ms} ms, process group killed{output.show()}"
            except asyncio.CancelledError:
                _killpg(proc.pid)
                raise
            output.read()
            code = proc.returncode
            assert code is not None
            what = f"exit {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
            return code, what + output.show()
        finally:
            output.close()


class _Tail:
    """The last OUTPUT_KEEP bytes written to a pipe, read on the loop."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd
        self.data = bytearray()
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self.read)

    def read(self) -> None:
        while self.fd is not None:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                return
            self.data += chunk
            del self.data[:-OUTPUT_KEEP]

    def show(self) -> str:
        text = self.data.decode(errors="replace").strip()
        return f": {text}" if text else ""

    def close(self) -> None:
        if self.fd is not None:
            asyncio.get_running_loop().remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None


def _killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def notify_path_problem(path: str) -> str | None:
    """Why `path` cannot be the notify FIFO (None: it can).  A missing
    path is fine: a regular file is created at the first line."""
    if "\0" in path:
        return f"notify_fifo {quoted(path)} holds a NUL byte"
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"notify_fifo {path}: {e.strerror}"
    if stat.S_ISLNK(mode):
        return f"notify_fifo {path} is a symbolic link: refusing to follow it (name the FIFO or file itself)"
    if not (stat.S_ISFIFO(mode) or stat.S_ISREG(mode)):
        return f"notify_fifo {path} is neither a FIFO nor a regular file"
    return None


class NotifyWriter:
    """JSON lines of `Notify` events to a FIFO or file (`path` None: nowhere)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.errors: dict[str, int] = {}
        self.written = 0
        self._fifo: int | None = None
        self._logged_at = -LOG_EVERY_S

    def _count(self, name: str) -> None:
        first = name not in self.errors
        self.errors[name] = self.errors.get(name, 0) + 1
        now = time.monotonic()
        if first or now - self._logged_at >= LOG_EVERY_S:
            total = sum(self.errors.values())
            counts = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items()))
            log.warning("notify_fifo %s: line dropped (%s); %d dropped in all (%s)",
                        self.path, _MEANING.get(name, name), total, counts,
                        extra={"fields": {"kind": "notify_fifo", "path": self.path, "error": name,
                                          "dropped": total}})
            self._logged_at = now

    def retarget(self, path: str | None) -> None:
        """A reload named another path."""
        if path != self.path:
            self.close()
            self.path = path

    def write(self, event: Notify, now_s: float) -> None:
        if self.path is None:
            return
        try:
            line = json.dumps({"t": now_s, "kind": event.kind, **event.data}, default=str) + "\n"
        except (TypeError, ValueError):
            self._count("encode")
            return
        data = line.encode()
        if self._fifo is not None:
            self._write_fifo(data)
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_CLOEXEC, 0o600)
        except OSError as e:
            self._count({errno.ENXIO: "no-reader", errno.ELOOP: "symlink"}.get(e.errno or 0, _name(e)))
            return
        except ValueError:  # a NUL in the path
            self._count("bad-path")
            return
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode):
            self._fifo = fd
            self._write_fifo(data)
        elif stat.S_ISREG(mode):
            self._write_file(fd, data)
        else:
            os.close(fd)
            self._count("not-fifo-or-file")

    def _write_fifo(self, data: bytes) -> None:
        assert self._fifo is not None
        if len(data) > PIPE_BUF:  # could be written in part: a torn line
            self._count("too-long")
            return
        try:
            os.write(self._fifo, data)
            self.written += 1
        except BlockingIOError:
            self._count("full")
        except OSError as e:  # EPIPE: the reader went away; reopen next time
            self._count(_name(e))
            self.close()

    def _write_file(self, fd: int, data: bytes) -> None:
        try:
            os.write(fd, data)
            self.written += 1
        except OSError as e:
            self._count(_name(e))
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._fifo is not None:
            with contextlib.suppress(OSError):
                os.close(self._fifo)
            self._fifo = None


_MEANING = {
    "no-reader": "no process reads the FIFO", "full": "the FIFO is full (its reader is slow)",
    "symlink": "it is a symbolic link: not followed", "bad-path": "the path holds a NUL byte",
    "too-long": "the line is longer than PIPE_BUF", "encode": "the event cannot be encoded",
    "not-fifo-or-file": "neither a FIFO nor a regular file",
}


def _name(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, type(e).__name__)
