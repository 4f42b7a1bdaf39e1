"""`shoal run`: the engine driven by the real world, on one asyncio loop.

The loop is short (STYLE.md): take the next input (or wake at the engine's
deadline), step the engine, carry out its commands in order, feed results
back as inputs.  Commands that take time (checks, load reads, operator
commands) run as tasks and come back as inputs; the others are carried out
at once, in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from engine.config import ConfigError, parse
from engine.engine import Engine, EngineMisuse
from engine.events import (
    TABLE_OPS, AddVip, AdminRequested, CheckCompleted, Command, CommandFailed, ConfigLoaded, DelVip,
    HeartbeatReceived, Input, LoadRead, Notify, ReadLoad, ReadTable, RunCommand, SendGratuitousArp,
    SendHeartbeat, SetTimeouts, ShutdownRequested, StartCheck, StartSyncDaemon, StopSyncDaemon, TableOp,
    TableRead, Tick,
)
from engine.model import Config, Node

log = logging.getLogger("shoal")


class StartError(Exception):
    """The daemon cannot start: a clear message, exit non-zero."""


def _preload() -> None:
    """Import now what a takeover needs (scapy for gratuitous ARP, pyroute2
    for the VIPs): imported at the first takeover they cost 0.1-0.5 s of
    failover time (bench/failover.py)."""
    from adapters.arp import preload

    preload()
    import pyroute2  # noqa: F401

    from pyroute2 import IPRoute  # noqa: F401


def load_config(path: str) -> Config:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise StartError(f"{path}: cannot read: {e}") from None
    try:
        return parse(text, path)
    except ConfigError as e:
        raise StartError(str(e)) from None


def load_key(config: Config) -> bytes | None:
    if not config.heartbeat_key_file:
        return None
    try:
        key = Path(config.heartbeat_key_file).read_bytes().strip()
    except OSError as e:
        raise StartError(f"heartbeat_key_file {config.heartbeat_key_file}: cannot read: {e}") from None
    if not key:
        raise StartError(f"heartbeat_key_file {config.heartbeat_key_file} is empty")
    return key


def is_local(address: str) -> bool:
    """Whether `address` is configured on this host (binding to it works)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0))
            return True
        except OSError:
            return False


def find_node(config: Config) -> Node:
    """Our role, from which configured address is local."""
    mine = [node for node, addresses in (
        ("primary", (config.primary, config.primary_private)),
        ("backup", (config.backup, config.backup_private)),
    ) if any(a and is_local(a) for a in addresses)]
    if len(mine) != 1:
        found = "both the primary's and the backup's" if mine else "neither the primary's nor the backup's"
        raise StartError(f"this host holds {found} addresses ({config.primary}, {config.backup}): "
                         "cannot tell which router it is")
    return mine[0]  # type: ignore[return-value]


class Daemon:
    def __init__(self, config_path: str, dataplane: str, state_dir: str, netns: str | None = None) -> None:
        self.config_path = config_path
        self.dataplane_name = dataplane
        self.state_dir = state_dir
        self.netns = netns
        self.inputs: asyncio.Queue[Input] = asyncio.Queue()
        self.started = time.monotonic()
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()

    def now_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    # ------------------------------------------------------------ start

    async def start(self) -> None:
        from adapters.checks import read_load, run_check
        from adapters.control import ControlServer
        from adapters.dataplane import make
        from adapters.heartbeat import HeartbeatSockets
        from adapters.notify import CommandRunner, NotifyWriter
        from adapters.vips import Vips

        self.run_check, self.read_load = run_check, read_load
        self.config = load_config(self.config_path)
        key = load_key(self.config)
        self.node = find_node(self.config)
        self.dataplane = make(self.dataplane_name, self.netns)
        self.vips = Vips(self.netns)
        self.runner = CommandRunner(on_result=self._command_done)
        await self.runner.start()
        self.notify = NotifyWriter(self.config.notify_fifo)
        self.sockets = HeartbeatSockets()
        try:
            await self.sockets.open(self.config, self.node, self._datagram)
        except OSError as e:  # HeartbeatError: the port is taken, the address is gone...
            raise StartError(str(e)) from None

        await asyncio.get_running_loop().run_in_executor(None, _preload)  # imports: not at takeover
        self.control = ControlServer(self.state_dir, self._request)
        await self.control.start()
        self.engine = Engine(self.config, self.node, heartbeat_key=key, seq_start=time.time_ns() // 1000)
        kernel = self.dataplane.read()
        log.info("starting as %s, dataplane %s, %d service(s) in the kernel adopted",
                 self.node, self.dataplane_name, len(kernel))
        self.inputs.put_nowait(TableRead(kernel))

    def _datagram(self, path: Any, source: str, payload: bytes) -> None:
        self.inputs.put_nowait(HeartbeatReceived(path, source, payload))

    def _command_done(self, cmd: RunCommand, returncode: int | None, detail: str) -> None:
        level = logging.INFO if returncode == 0 else logging.WARNING
        log.log(level, "command %r (%s) finished: %s", cmd.command, cmd.reason, detail)

    # ------------------------------------------------------------ loop

    async def run(self) -> int:
        try:
            await self.start()
        except StartError as e:
            log.error("%s", e)
            return 1
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        loop.add_signal_handler(signal.SIGTERM, lambda: self.inputs.put_nowait(ShutdownRequested()))
        loop.add_signal_handler(signal.SIGINT, lambda: self.inputs.put_nowait(ShutdownRequested()))
        deadline: int | None = None
        while True:
            timeout = None if deadline is None else max(0.0, (deadline - self.now_ms()) / 1000)
            try:
                event: Input = await asyncio.wait_for(self.inputs.get(), timeout)
            except asyncio.TimeoutError:
                event = Tick()
            ready = self.engine.step(self.now_ms(), event)
            await self.carry_out(ready.commands)
            deadline = ready.next_deadline_ms
            if isinstance(event, ShutdownRequested):
                break
        await self.runner.drain()
        self.close()
        log.info("stopped")
        return 0

    def feed(self, event: Input) -> None:
        self.inputs.put_nowait(event)

    async def carry_out(self, commands: tuple[Command, ...]) -> None:
        loop = asyncio.get_running_loop()
        batch: list[TableOp] = []
        for cmd in commands:
            if isinstance(cmd, TABLE_OPS):
                batch.append(cmd)
                continue
            self._apply_table(batch)
            batch = []
            try:
                await self._one(cmd, loop)
            except Exception as e:  # an adapter failed: the engine hears of it
                log.warning("%s failed: %s", type(cmd).__name__, e)
                self.feed(CommandFailed(cmd, str(e)))
        self._apply_table(batch)

    def _apply_table(self, batch: list[TableOp]) -> None:
        if not batch:
            return
        from adapters.dataplane import DataplaneError

        try:
            self.dataplane.apply(batch)
        except DataplaneError as e:
            op = getattr(e, "op", batch[0])
            log.warning("table operation failed: %s", e)
            self.feed(CommandFailed(op, str(e)))
        for op in batch:
            log.info("table %s", _describe(op))

    async def _one(self, cmd: Command, loop: asyncio.AbstractEventLoop) -> None:
        match cmd:
            case SendHeartbeat():
                self.sockets.send(cmd)
            case AddVip():
                await loop.run_in_executor(None, self.vips.add, cmd)
                log.info("VIP %s/%d added on %s", cmd.address, cmd.prefix, cmd.label or cmd.device)
            case DelVip():
                await loop.run_in_executor(None, self.vips.delete, cmd)
                log.info("VIP %s/%d removed from %s", cmd.address, cmd.prefix, cmd.label or cmd.device)
            case SendGratuitousArp(address, device):
                from adapters.arp import send_gratuitous

                await loop.run_in_executor(None, send_gratuitous, address, device)
            case SetTimeouts():
                self.dataplane.set_timeouts(cmd)
            case StartSyncDaemon() | StopSyncDaemon():
                self.dataplane.sync_daemon(cmd)
            case ReadTable():
                self.feed(TableRead(self.dataplane.read()))
            case StartCheck(check_id, spec):
                self._task(self._check(check_id, spec))
            case ReadLoad():
                self._task(self._load(cmd))
            case RunCommand():
                self.runner.submit(cmd)
            case Notify(kind, data):
                level = logging.WARNING if kind in ("drift", "error") else logging.INFO
                log.log(level, "%s %s", kind, " ".join(f"{k}={v}" for k, v in data.items()))
                self.notify.write(cmd, time.time())
            case _:
                raise EngineMisuse(f"no adapter carries out {cmd!r}")

    def _task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _check(self, check_id: int, spec: Any) -> None:
        ok, detail = await self.run_check(spec)
        self.feed(CheckCompleted(check_id, ok, detail))

    async def _load(self, cmd: ReadLoad) -> None:
        self.feed(LoadRead(cmd.load_id, await self.read_load(cmd)))

    # ------------------------------------------------------------ control

    def _reload(self) -> None:
        try:
            config = load_config(self.config_path)
            key = load_key(config)
            if find_node(config) != self.node:
                raise StartError("the new config gives this host another node: restart the daemon instead")
        except StartError as e:
            log.error("reload rejected, keeping the running config:\n%s", e)
            return
        log.info("reloading %s (serial_no %d)", self.config_path, config.serial_no)
        self.feed(ConfigLoaded(config, key))

    async def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        from adapters.control import status_json, table_of

        cmd = request.get("cmd")
        if cmd == "status":
            return status_json(self.engine.status)
        if cmd == "table":
            table = self.dataplane.read()
            return {"table": table_of(table), "text": _ipvsadm_text(table)}
        if cmd == "admin":
            action = request.get("action")
            if action not in ("failover", "drain", "undrain", "force_down", "force_up", "auto"):
                raise ValueError(f"unknown admin action {action!r}")
            server = str(request.get("server", ""))
            if action != "failover":
                self.engine._find_members(server, "")  # raises EngineMisuse -> answered, not fatal
            self.feed(AdminRequested(action, server))
            return {"ok": True}
        raise ValueError(f"unknown command {cmd!r}")

    def close(self) -> None:
        for closer in (self.sockets.close, self.control.close, self.dataplane.close, self.vips.close,
                       self.notify.close, self.runner.close):
            try:
                closer()
            except Exception as e:  # closing must not stop the others
                log.warning("closing: %s", e)


def _ipvsadm_text(table: Any) -> str:
    try:
        from adapters.dataplane import ipvsadm

        fmt = getattr(ipvsadm, "format_ln", None) or getattr(ipvsadm, "list_text", None)
        if fmt is not None:
            return str(fmt(table))
    except ImportError:
        pass
    return json.dumps(table_of_safe(table), indent=1)


def table_of_safe(table: Any) -> Any:
    from adapters.control import table_of

    return table_of(table)


def _describe(op: TableOp) -> str:
    return f"{type(op).__name__} {op}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"t": round(record.created, 3), "level": record.levelname.lower(),
                           "msg": record.getMessage()})


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="shoal run")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--dataplane", choices=("ipvs", "nft", "dry-run"), default="ipvs")
    parser.add_argument("--state-dir", default="/run/shoal")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if args.log_format == "json"
                         else logging.Formatter("shoal[%(process)d]: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    os.makedirs(args.state_dir, exist_ok=True)
    return asyncio.run(Daemon(args.config, args.dataplane, args.state_dir).run())
