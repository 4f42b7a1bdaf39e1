"""Reloading the configuration: read and parsed off the loop, coalesced.

- `read_config(path, timeout_s)` reads and parses `path` (and its
  `heartbeat_key_file`) in a forked child: the file is refused above
  `MAX_CONFIG_BYTES`, the child is killed after `timeout_s` and may map at
  most `CHILD_MEMORY_BYTES` more than the daemon.  A huge or pathological
  file costs the child, never the daemon's loop.  Every refusal raises
  `Refused` with its reason (and every error of the file).
- `Reloads` coalesces requests (SIGHUP, `{"cmd": "reload"}`): one reload in
  flight; any number of requests meanwhile make exactly one more after it,
  which reads the file as it is then.  Each waiter gets the answer of a
  reload that started after its request.
- `changes(old, new)` says what a reload changed, in lvs.cf terms;
  `config_warnings(config)` what an operator must hear about a config that
  runs (heartbeats without a key...).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import resource
import signal
import stat
from dataclasses import fields
from typing import Any, Awaitable, Callable, NoReturn

import engine.config as config_package
from engine.config import ConfigError
from engine.model import Config

log = logging.getLogger("shoal")

RELOAD_TIMEOUT_S = 5.0  # reading and parsing a config, in the child
MAX_CONFIG_BYTES = config_package.MAX_FILE_BYTES
MAX_KEY_BYTES = 64 * 1024
CHILD_MEMORY_BYTES = 1 << 30  # the parsing child may map this much more than the daemon
Answer = dict[str, Any]


class Refused(Exception):
    """A reload refused: its reason (and every error of the file); the running config is kept."""

    def __init__(self, reason: str, errors: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.errors = errors


def load_config(path: str) -> tuple[Config, bytes | None]:
    """Read and parse `path` and its heartbeat key, here (raises Refused)."""
    data = _read_bounded(path, MAX_CONFIG_BYTES, "the configuration")
    try:
        config = config_package.parse_bytes(data, path)  # a non-UTF-8 byte is an error at its place
    except ConfigError as e:
        errors = tuple(str(i) for i in e.issues)
        raise Refused(f"{path}: {len(errors)} error(s)", errors) from None
    return config, load_key(config)


def _read_bounded(path: str, limit: int, what: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as e:
        raise Refused(f"{path}: cannot read {what}: {getattr(e, 'strerror', None) or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{path}: {what} must be a regular file")
        if st.st_size > limit:
            raise Refused(f"{path}: {st.st_size} bytes, more than the {limit} {what} may have")
        data = b""
        while len(data) <= limit and (chunk := os.read(fd, 1 << 20)):
            data += chunk
        if len(data) > limit:
            raise Refused(f"{path}: more than the {limit} bytes {what} may have")
        return data
    except OSError as e:
        raise Refused(f"{path}: cannot read {what}: {e.strerror}") from None
    finally:
        os.close(fd)


def load_key(config: Config) -> bytes | None:
    if not config.heartbeat_key_file:
        return None
    key = _read_bounded(config.heartbeat_key_file, MAX_KEY_BYTES, "heartbeat_key_file").strip()
    if not key:
        raise Refused(f"heartbeat_key_file {config.heartbeat_key_file} is empty")
    return key


async def read_config(path: str, timeout_s: float = RELOAD_TIMEOUT_S) -> tuple[Config, bytes | None]:
    """`load_config` in a forked child, killed after `timeout_s`: a huge or
    pathological file costs the child, never the loop.  Raises Refused."""
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        _child(path, write_fd)
    os.close(write_fd)
    chunks: list[bytes] = []
    eof: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        chunk = os.read(read_fd, 1 << 20)
        if chunk:
            chunks.append(chunk)
        elif not eof.done():
            eof.set_result(None)

    os.set_blocking(read_fd, False)
    loop.add_reader(read_fd, readable)
    try:
        await asyncio.wait_for(eof, timeout_s)
    except asyncio.TimeoutError:
        raise Refused(f"{path}: reading and parsing took longer than {timeout_s:g} s") from None
    finally:
        loop.remove_reader(read_fd)
        os.close(read_fd)
        _reap(pid)
    try:
        outcome = pickle.loads(b"".join(chunks))
    except Exception:
        raise Refused(f"{path}: the parsing process died (out of memory?)") from None
    if outcome[0] == "refused":
        raise Refused(outcome[1], outcome[2])
    return outcome[1], outcome[2]


def _child(path: str, write_fd: int) -> NoReturn:
    """The parsing child: its answer pickled into `write_fd`, then out."""
    try:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (mapped + CHILD_MEMORY_BYTES, mapped + CHILD_MEMORY_BYTES))
        try:
            config, key = load_config(path)
            outcome: tuple[Any, ...] = ("ok", config, key)
        except Refused as e:
            outcome = ("refused", str(e), e.errors)
        except MemoryError:
            outcome = ("refused", f"{path}: parsing needs more than {CHILD_MEMORY_BYTES >> 20} MiB", ())
        data = memoryview(pickle.dumps(outcome))
        while data:
            data = data[os.write(write_fd, data):]
    finally:
        os._exit(0)


def _reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)  # done already, or over its time: either way
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def config_warnings(config: Config) -> list[str]:
    """What an operator must hear about a config that runs (no heartbeat key...)."""
    return list(config_package.warnings(config))


def _cf(name: str, value: object) -> str:
    """A model value as lvs.cf writes it: seconds for `*_ms`, 0/1 for booleans, `none` when unset."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "1" if value else "0"
    if name.endswith("_ms") and isinstance(value, int):
        return f"{value / 1000:g}"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def _keys(old: Any, new: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """`key old -> new` for each field of two model values that differs, named as lvs.cf names it."""
    return [f"{f.name.removesuffix('_ms').removesuffix('_s')} {_cf(f.name, getattr(old, f.name))} -> "
            f"{_cf(f.name, getattr(new, f.name))}"
            for f in fields(old) if f.name not in skip and getattr(old, f.name) != getattr(new, f.name)]


def changes(old: Config, new: Config) -> str:
    """What a reload changed, in lvs.cf terms (`keepalive 2 -> 1`, `virtual web: server rs1 weight 3 -> 4`)."""
    said = _keys(old, new, ("virtuals", "source"))
    before, after = {v.name: v for v in old.virtuals}, {v.name: v for v in new.virtuals}
    said += [f"virtual {n} added" for n in after if n not in before]
    said += [f"virtual {n} removed" for n in before if n not in after]
    for name in (n for n in after if n in before and after[n] != before[n]):
        was, now = {s.name: s for s in before[name].servers}, {s.name: s for s in after[name].servers}
        what = _keys(before[name], after[name], ("name", "servers"))
        what += [f"server {s} added" for s in now if s not in was]
        what += [f"server {s} removed" for s in was if s not in now]
        what += [f"server {s} {', '.join(_keys(was[s], now[s]))}" for s in now if s in was and now[s] != was[s]]
        said.append(f"virtual {name}: {', '.join(what)}")
    return "; ".join(said) or "nothing changed"


class Reloads:
    """Reloads coalesced: one in flight; any number of requests meanwhile
    make exactly one more after it (which reads the file as it is then)."""

    def __init__(self, run_once: Callable[[], Awaitable[Answer]]) -> None:
        self.run_once = run_once
        self.wanted = False
        self.waiters: list[asyncio.Future[dict[str, Any]]] = []
        self.task: asyncio.Task[None] | None = None
        self.counts = {"done": 0, "refused": 0}

    def request(self, waiter: asyncio.Future[dict[str, Any]] | None = None) -> None:
        self.wanted = True
        if waiter is not None:
            self.waiters.append(waiter)
        if self.task is None:
            self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while self.wanted:
                self.wanted = False
                waiters, self.waiters = self.waiters, []
                try:
                    answer = await self.run_once()
                except Exception as e:  # a bug: said, never fatal
                    log.exception("reload failed", extra={"fields": {"kind": "reload", "ok": False}})
                    answer = {"ok": False, "error": f"internal error: {e}"}
                self.counts["done" if answer.get("ok") else "refused"] += 1
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(answer)
        finally:
            self.task = None
