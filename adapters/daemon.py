"""`shoal run`: the engine driven by the real world, on one asyncio loop.

The loop is short (STYLE.md): take the next input (or wake at the engine's
deadline), step the engine, carry out its commands in order, feed results
back as inputs.  Commands that take time (checks, load reads, operator
commands) run as tasks and come back as inputs; the others are carried out
in order.  No step waits for its commands (`adapters.offloop`): the
heartbeats leading them are sent in the step, the rest carried out behind
the steps, in order, table writes and reads in the dataplane's own thread;
so a slow `nft` run or a thread hop under load never holds back the next
heartbeat.  The rules that keep it alive:

- The first input is the kernel's table (`TableRead`), before any
  heartbeat: a restarted daemon adopts what its previous life left.
- Inputs wait in two bounded queues (`Inputs`): the partner's heartbeats
  in their own, served first; beyond a bound an input is dropped and
  counted.  How late the loop wakes for the engine's deadlines is measured
  (`Lateness`) and shown in `shoal status` with the queues and the drops.
- An input the engine raises on is logged, in operator terms, and dropped:
  never fatal.  A command an adapter fails on is fed back as
  `CommandFailed`; a task's failure (a check, a load read) comes back as a
  failed result, and is logged.
- Reloads (SIGHUP, `{"cmd": "reload"}`) are coalesced (`Reloads`), read and
  parsed in a forked child with a size and a time bound (`read_config`),
  and carried out all or nothing: new heartbeat sockets are bound before
  the old ones close, the engine is stepped with the new config in the
  loop, and anything that fails refuses the reload, with its reason, and
  keeps the running configuration.
- The operator's overrides (drain, weight, force_*) are the engine's;
  the daemon keeps them in `STATE_DIR/overrides.json` (`adapters.overrides`)
  after every change, puts them back after the first step, and says which
  a reload or a restart drops (a server the config no longer has).
- Everything the daemon says, and every operator request and reload, goes
  to the event streams of the control socket (`adapters.control`'s docstring).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
import gc
import ipaddress
import json
import logging
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from adapters.arp import send_gratuitous
from adapters.describe import Said, describe as describe_command, failed, quoted
from adapters.inputs import Inputs, Lateness, PendingReload, Throttle, describe
from adapters.journal import DEFAULT_MB, Journal, open_journal
from adapters.lateness import CallbackProfile, LoopTiming, profiling_requested, step_kind
from adapters.links import LinkWatch
from adapters.offloop import DataplaneWorker, Effects
from adapters.logs import JsonFormatter, fields_of, log, log_level, warn
from adapters.reload import Refused, Reloads, changes, config_warnings, read_config
from adapters.startup import StartError, find_node, prepare_state_dir
from engine.engine import ADMIN_ACTIONS, Engine, EngineMisuse, Ready
from engine.events import (
    TABLE_OPS, AddVip, AdminRequested, AdvertReceived, CheckCompleted, Command, CommandFailed, ConfigLoaded, DelVip,
    HeartbeatReceived, Input, LoadRead, Notify, ReadLoad, ReadTable, RunCommand, SendAdvert, SendGratuitousArp,
    SendHeartbeat, SetTimeouts, ShutdownRequested, StartCheck, StartSyncDaemon, StopSyncDaemon, TableOp,
    TableRead, Tick,
)
from engine.model import Config, Node

if TYPE_CHECKING:
    from adapters.vrrp_net import VrrpSocket


ADMIN_ANSWER_S = 10.0  # an operator's request is answered once stepped, or "accepted" after this
START_TIMEOUT_S = 60.0  # reading and parsing the config at start (a slow guest may need it)


# ---------------------------------------------------------------- the daemon


class Daemon:
    def __init__(self, config_path: str, dataplane: str, state_dir: str, netns: str | None = None,
                 journal_bytes: int = 0) -> None:
        self.config_path = config_path
        self.journal_bytes = journal_bytes  # adapters.journal: every step, for `shoal replay`; 0: off
        self.journal: Journal | None = None
        self.vrrp: VrrpSocket | None = None  # heartbeat_protocol = vrrp (adapters.vrrp_net)
        self.dataplane_name = dataplane
        self.state_dir = state_dir
        self.netns = netns
        self.inputs = Inputs()
        self.lateness = Lateness()
        self.timing = LoopTiming()  # since the start, for benchmarks: adapters/lateness.py
        self.worker = DataplaneWorker()  # table writes and reads, off the loop, in order
        self.effects = Effects(self.timing.effects.note)  # a step's commands, carried out behind it, in order
        self.reloads = Reloads(self._reload_once)
        self.step_errors = Throttle()
        self.started = time.monotonic()
        self.deadline: int | None = None
        self.serving = False
        self.stopping = False
        self.hup_while_starting = False
        self.key: bytes | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.links = LinkWatch(self.feed, lambda why: log.error("links: %s (monitor_links cannot act on link "
                                                               "changes until the daemon restarts)", why,
                                                               extra=fields_of(kind="links", error=why)))
        from adapters.control import EventBus

        self.events = EventBus()
        from adapters.overrides import Keeper

        self.overrides = Keeper(state_dir)
        self.admin_waiters: list[tuple[AdminRequested, asyncio.Future[str | None]]] = []
        self.admin_answer_s = ADMIN_ANSWER_S
        from adapters.checker import Checker

        self.checker = Checker(self._check_done)  # StartCheck: paced, bounded, never a lost result
        from adapters.connections import ConnectionReader

        self.connections = ConnectionReader(lambda: getattr(self.dataplane, "connections", lambda: None)())

    def now_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    # ------------------------------------------------------------ start

    async def start(self) -> TableRead:
        """Everything opened, the engine made; returns the first input (the kernel table)."""
        from adapters.checks import read_load
        from adapters.control import ControlServer
        from adapters.dataplane import make
        from adapters.heartbeat import HeartbeatSockets
        from adapters.notify import CommandRunner, NotifyWriter
        from adapters.vips import Vips

        self.read_load = read_load
        prepare_state_dir(self.state_dir)
        try:
            self.config, self.key = await read_config(self.config_path, START_TIMEOUT_S)
        except Refused as e:
            raise StartError("\n".join([str(e), *e.errors])) from None
        self.node = find_node(self.config)
        self.checker.configure(self.config)
        log_level(self.config)
        problem = _unrunnable(self.config)
        if problem:
            raise StartError(problem)
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
        if self.config.heartbeat_protocol == "vrrp":
            self.vrrp = self._open_vrrp(self.config)
        seq_start = time.time_ns() // 1000
        self.engine = Engine(self.config, self.node, heartbeat_key=self.key, seq_start=seq_start)
        self._journal_start(seq_start)
        self.control = ControlServer(self.state_dir, self._request, events=self.events)
        try:
            await self.control.start()
        except OSError as e:
            raise StartError(f"control socket {self.control.path}: {e.strerror or e}") from None
        try:
            kernel = self.dataplane.read()
        except Exception as e:
            raise StartError(f"cannot read the kernel table ({self.dataplane_name} dataplane): {e}") from None
        # Which of the VIPs are here: with the table, they say whether the previous life was active
        # (a standby keeps the table, not the VIPs).  Unreadable: taken as held, so a kept table is
        # adopted as before the standby kept one (claiming nothing until the partner is heard: the
        # VIPs are then kept or removed by what it says, engine.rejoin).
        wanted = [vip.address for vip in self.engine.holding.wanted(self.config)]
        try:
            held = frozenset(self.vips.held(wanted))
        except Exception as e:
            held = frozenset(wanted)
            log.warning("vip: cannot list this router's addresses at start (%s): taken as held", e,
                        extra=fields_of(kind="start"))
        log.info("starting as %s, dataplane %s, %d service(s) in the kernel adopted%s",
                 self.node, self.dataplane_name, len(kernel),
                 f", VIPs held: {' '.join(sorted(held))}" if held else "",
                 extra=fields_of(kind="start", node=self.node, dataplane=self.dataplane_name,
                               serial_no=self.config.serial_no, adopted=len(kernel), vips=" ".join(sorted(held))))
        warn(config_warnings(self.config))
        return TableRead(kernel, held)

    def _datagram(self, path: Any, source: str, payload: bytes) -> None:
        self.inputs.heartbeat(HeartbeatReceived(path, source, payload))

    def _command_done(self, cmd: RunCommand, returncode: int | None, detail: str) -> None:
        level = logging.INFO if returncode == 0 else logging.WARNING
        log.log(level, "command: %s (%s) finished: %s", quoted(cmd.command), cmd.reason, detail,
                extra=fields_of(kind="command", command=cmd.command, reason=cmd.reason, returncode=returncode,
                              detail=detail))

    def _say(self, said: Said) -> None:
        """One line of `adapters.describe`: its text, and its fields in the JSON log and the event streams."""
        log.log(logging.WARNING if said.loud else logging.INFO, "%s", said.text, extra={"fields": said.fields})
        self._publish(said.fields, said.text)

    def _publish(self, fields: dict[str, Any], text: str) -> None:
        if self.events.subscribers:
            from adapters.control import event_of

            self.events.publish(event_of(fields, text, self.now_ms() / 1000, getattr(self, "node", "?"),
                                         time.time()))

    # ------------------------------------------------------------ loop

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._hup)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: self.inputs.put(ShutdownRequested(), always=True))
        try:
            first = await self.start()
        except StartError as e:
            log.error("%s", e, extra=fields_of(kind="start", ok=False, error=str(e)))
            self.close()
            return 1
        except Exception:
            log.exception("cannot start", extra=fields_of(kind="start", ok=False))
            self.close()
            return 1
        # The kernel table, before any heartbeat.  Nothing is preloaded before it (a fast start:
        # bench/start.py), and nothing a takeover needs costs an import: the VIPs go over
        # rtnetlink and the gratuitous ARPs over a raw socket, in bytes of our own
        # (adapters/rtnl.py, adapters/arp.py).
        await self._step(first)
        await self._restore_overrides()
        self.links.configure(self.config, self.node)  # monitor_links: LinksChanged from here on
        self._steady()
        self.serving = True
        if self.hup_while_starting:
            self.reloads.request()
        while not self.stopping:
            event = await self.inputs.get(self._timeout_s())
            await self._step(Tick() if event is None else event)
        await self.effects.idle()
        await self.worker.idle()
        await self.runner.drain()
        self.close()
        log.info("stopped", extra=fields_of(kind="stop"))
        return 0

    def _steady(self) -> None:
        """Start-up done: what it allocated is moved out of the collector's sight (`gc.freeze`:
        a full collection no longer walks it, its pause stays short), collections are timed,
        and callbacks too when SHOAL_LOOP_PROFILE=1 (adapters/lateness.py)."""
        gc.freeze()
        self.timing.watch_gc()
        if profiling_requested():
            self.timing.profile = CallbackProfile()
            self.timing.profile.install()

    def _timeout_s(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline / 1000 - (time.monotonic() - self.started))

    async def _step(self, event: Input | PendingReload) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        ready = None
        try:
            ready = self._decide(event)
            if ready is not None:
                self._carry_out_soon(ready.commands)
        finally:  # the step itself; its queued commands are timed apart (timing.effects)
            self.timing.stepped((time.perf_counter() - started) * 1000, (time.thread_time() - cpu) * 1000,
                                lambda: step_kind(event, ready))

    def _decide(self, event: Input | PendingReload) -> Ready | None:
        if isinstance(event, PendingReload):
            ready = self._commit_reload(event)
            if ready is not None:
                self._keep_overrides(after_reload=True)
        else:
            ready = self._engine_step(event)
            self.stopping = isinstance(event, ShutdownRequested)
            if isinstance(event, AdminRequested):
                self._admin_done(event, ready)
            elif ready is not None and any(isinstance(c, Notify) and c.kind == "overrides" for c in ready.commands):
                self._keep_overrides()  # the partner's set, taken (engine.sync)
        return ready

    # ------------------------------------------------------------ overrides

    def _admin_done(self, request: AdminRequested, ready: Ready | None) -> None:
        """An operator's request stepped (`ready` None: the engine failed on it):
        said on the event streams, the overrides kept, the control socket answered."""
        reason = "the engine failed on it (see the daemon's log)" if ready is None else next(
            (c.data.get("reason") for c in ready.commands if isinstance(c, Notify) and c.kind == "admin_refused"),
            None)
        refusal = None if reason is None else str(reason)
        self._admin_event(request, refusal)
        if refusal is None:
            self._keep_overrides()
        for i, (waiting, answer) in enumerate(self.admin_waiters):
            if waiting is request:  # this very request, from the control socket
                del self.admin_waiters[i]
                if not answer.done():
                    answer.set_result(refusal)
                break

    def _admin_event(self, request: AdminRequested, refusal: str | None) -> None:
        target = f" {request.server}" if request.server else ""
        value = f" {request.weight}" if request.action == "weight" else ""
        fields: dict[str, Any] = {"kind": "admin", "action": request.action, "server": request.server,
                                  "weight": request.weight, "ok": refusal is None}
        if refusal is not None:
            fields["reason"] = refusal
        self._publish(fields, f"admin: {request.action}{target}{value}"
                      + (f" refused: {refusal}" if refusal else " carried out"))

    async def _restore_overrides(self) -> None:
        """The overrides a previous life kept, put back after the first step;
        one naming a server the config no longer has is dropped, said, and
        the file rewritten without it."""
        restored = 0
        for override in self.overrides.read():
            request = replace(override.request(), replayed=True)  # not a new change: engine.sync
            refusal = self.engine.admin_refusal(request)
            if refusal is not None:
                self.overrides.dropped(override, refusal)
                continue
            ready = self._engine_step(request)
            if ready is not None:
                restored += 1
                self._carry_out_soon(ready.commands)
        self.overrides.restored(restored)
        self._keep_overrides()

    def _keep_overrides(self, after_reload: bool = False) -> None:
        self.overrides.keep(self.engine.overrides, self.config.serial_no, after_reload)

    def _engine_step(self, event: Input) -> Ready | None:
        """One step; an input the engine raises on is logged and dropped."""
        now_ms = (time.monotonic() - self.started) * 1000
        if self.deadline is not None and now_ms >= self.deadline:  # this step serves a deadline: how late?
            self.lateness.note(now_ms - self.deadline)
        self.timing.wake(now_ms, self.deadline)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("input: %s", describe(event), extra=fields_of(kind="input", input=describe(event)))
        now = self.now_ms()
        try:
            ready = self.engine.step(now, event)
        except Exception as e:
            if self.journal is not None:
                self.journal.raised(now, event, e)
            self.inputs.drops["engine-error"] += 1
            if self.step_errors.allow():
                log.error("dropped %s: the engine failed on it: %s: %s (%d such failure(s) so far)",
                          describe(event), type(e).__name__, e, self.step_errors.count,
                          exc_info=self.step_errors.said <= self.step_errors.first,
                          extra=fields_of(kind="engine_error", input=describe(event), error=type(e).__name__,
                                        count=self.step_errors.count))
            return None
        if self.journal is not None:
            self.journal.step(now, event, ready)
        self.deadline = ready.next_deadline_ms
        return ready

    def _journal_start(self, seq_start: int) -> None:
        """The journal's start record: what a fresh engine needs to decide the same (adapters.journal)."""
        if self.journal_bytes > 0:
            try:
                self.journal = open_journal(self.state_dir, self.journal_bytes)
            except OSError as e:  # a router runs without its journal rather than not at all
                log.error("journal: cannot open it in %s/journal: %s (running without a journal)", self.state_dir,
                          e.strerror or e, extra=fields_of(kind="journal", error=str(e.strerror or e)))
                return
            self.journal.start(config=self.config, node=self.node, dataplane=self.dataplane_name,
                               config_file=self.config_path, key=self.key, seq_start=seq_start,
                               origin=self.started)

    def feed(self, event: Input) -> None:
        self.inputs.put(event)

    def _carry_out_soon(self, commands: tuple[Command, ...]) -> None:
        """A step's commands, without holding the loop's next step (adapters/offloop.py, `Effects`):
        the heartbeats leading them are sent now, unless an earlier step's heartbeat still waits
        (heartbeats never overtake one another); the rest is carried out in order once every
        earlier step's commands are."""
        lead = 0
        if not self.effects.heartbeats_waiting:
            while lead < len(commands) and isinstance(commands[lead], (SendHeartbeat, SendAdvert)):
                self._heartbeat(commands[lead])  # type: ignore[arg-type]
                lead += 1
        rest = commands[lead:]
        if rest:
            self.effects.queue(rest, self.carry_out, any(isinstance(c, (SendHeartbeat, SendAdvert)) for c in rest))

    def _heartbeat(self, cmd: SendHeartbeat | SendAdvert) -> None:
        """A heartbeat, or a VRRP advert (`heartbeat_protocol = vrrp`)."""
        if isinstance(cmd, SendAdvert):
            if self.vrrp is not None:
                self.vrrp.send(cmd.payload)  # never raises: errors counted
        else:
            self.sockets.send(cmd)  # never raises on the network's behalf: errors counted
        self.timing.sent((time.monotonic() - self.started) * 1000)

    async def carry_out(self, commands: tuple[Command, ...]) -> None:
        loop = asyncio.get_running_loop()
        batch: list[TableOp] = []
        announced: list[Command] = []  # VIPs added and ARPs sent, said once the run of them is over
        for cmd in commands:
            if isinstance(cmd, TABLE_OPS):
                batch.append(cmd)
                continue
            if type(cmd) is StartCheck:  # thousands in one step at scale: straight to the checker (never raises)
                self.checker.start(cmd.check_id, cmd.spec)
                continue
            self._apply_table(batch)
            batch = []
            if not isinstance(cmd, (SendHeartbeat, SendAdvert, ReadTable)):  # the engine's order (offloop.py):
                await self.worker.idle()  # a heartbeat may overtake the dataplane's work; a read queues behind it
            if isinstance(cmd, (AddVip, SendGratuitousArp)):
                # A takeover's clients wait on these: carried out here, in the loop's thread (a
                # netlink request, a frame on a raw socket), their log lines after the last of them.
                try:
                    self._announce(cmd)
                    announced.append(cmd)
                except Exception as e:
                    self._say(failed(cmd, str(e), getattr(self, "config", None)))
                    self.feed(CommandFailed(cmd, str(e)))
                continue
            self._said(announced)
            try:
                await self._one(cmd, loop)
            except Exception as e:  # an adapter failed: the engine hears of it
                self._say(failed(cmd, str(e), getattr(self, "config", None)))
                if not isinstance(cmd, Notify):  # its failure would only make another Notify
                    self.feed(CommandFailed(cmd, str(e)))
        self._apply_table(batch)
        self._said(announced)

    def _announce(self, cmd: AddVip | SendGratuitousArp) -> None:
        if isinstance(cmd, AddVip):
            self.vips.add(cmd)
        else:
            send_gratuitous(cmd.address, cmd.device)

    def _said(self, announced: list[Command]) -> None:
        for cmd in announced:
            self._say(describe_command(cmd))
        announced.clear()

    def _apply_table(self, batch: list[TableOp]) -> None:
        """The batch written in the dataplane's thread (adapters/offloop.py), said when done."""
        if batch:
            self.worker.submit(self.dataplane.apply, batch).add_done_callback(
                lambda done: self._table_done(batch, done.exception()))

    def _table_done(self, batch: list[TableOp], e: BaseException | None) -> None:
        from adapters.dataplane import DataplaneError

        config = getattr(self, "config", None)
        if e is not None:  # DataplaneError, or a bug: the engine reconciles either way
            op = getattr(e, "op", None)
            at = batch.index(op) if op in batch else 0
            for done in batch[:at]:
                self._say(describe_command(done, config))
            self._say(failed(batch[at], str(e), config))
            if len(batch) > at + 1:
                log.warning("table: %d later operation(s) of the batch not known to be carried out; "
                            "the kernel's table is read back", len(batch) - at - 1,
                            extra=fields_of(kind="table", op="unknown", ops=len(batch) - at - 1))
            if not isinstance(e, DataplaneError):
                log.error("the %s dataplane raised", self.dataplane_name, exc_info=e,
                          extra=fields_of(kind="table", op="bug", dataplane=self.dataplane_name))
            self.feed(CommandFailed(batch[at], str(e)))
            return
        for op in batch:
            self._say(describe_command(op, config))

    def _open_vrrp(self, config: Config) -> VrrpSocket:
        """The raw socket of protocol 112 on the interface that holds this router's address (adapters.vrrp_net)."""
        from adapters.vrrp_net import VrrpSocket, VrrpSocketError

        own = config.primary if self.node == "primary" else config.backup
        partner = config.backup if self.node == "primary" else config.primary
        assert own is not None
        device = self.vips.device_of(own)
        if device is None:
            raise StartError(f"VRRP: no interface of this host holds {own} (this router's address in lvs.cf)")
        sock = VrrpSocket(device, ipaddress.ip_address(own).version, own, partner if config.vrrp_unicast else None)
        try:
            sock.open()
        except VrrpSocketError as e:
            raise StartError(str(e)) from None
        sock.attach(asyncio.get_running_loop(), self._advert)
        log.info("vrrp: virtual router %s on %s, %s to %s", config.virtual_router_id, sock.device,
                 "unicast" if config.vrrp_unicast else "multicast", sock.destination,
                 extra=fields_of(kind="vrrp", vrid=config.virtual_router_id, device=sock.device,
                               destination=sock.destination))
        return sock

    def _advert(self, source: str, destination: str, ttl: int, payload: bytes) -> None:
        self.inputs.heartbeat(AdvertReceived(source, destination, ttl, payload))

    async def _one(self, cmd: Command, loop: asyncio.AbstractEventLoop) -> None:
        match cmd:
            case SendHeartbeat():
                self._heartbeat(cmd)
            case SendAdvert():
                self._heartbeat(cmd)
            case DelVip():
                if self.vips.delete(cmd):  # said only when it was there
                    self._say(describe_command(cmd))
            case SetTimeouts():
                self.dataplane.set_timeouts(cmd)
                self._say(describe_command(cmd))
            case StartSyncDaemon() | StopSyncDaemon():
                self.dataplane.sync_daemon(cmd)
                self._say(describe_command(cmd))
            case ReadTable():
                self.worker.submit(self.dataplane.read).add_done_callback(lambda done: self._table_read(cmd, done))
            case StartCheck(check_id, spec):
                self.checker.start(check_id, spec)
            case ReadLoad():
                self._task(self._load(cmd))
            case RunCommand():
                self.runner.submit(cmd)
                self._say(describe_command(cmd))
            case Notify("vip_cleanup", data):
                await self._vip_cleanup(str(data.get("addresses", "")).split(), loop)
                self.notify.write(cmd, time.time())
            case Notify():
                self._say(describe_command(cmd, self.config))
                self.notify.write(cmd, time.time())  # never raises: a failing FIFO is counted
            case _:
                raise EngineMisuse(f"no adapter carries out a {type(cmd).__name__}")

    def _table_read(self, cmd: ReadTable, done: asyncio.Future[Any]) -> None:
        """A `ReadTable` carried out in the dataplane's thread: its table, or its failure, fed back."""
        e = done.exception()
        if e is None:
            self.feed(TableRead(done.result()))
        else:
            self._say(failed(cmd, str(e), getattr(self, "config", None)))
            self.feed(CommandFailed(cmd, str(e)))

    async def _vip_cleanup(self, addresses: list[str], loop: asyncio.AbstractEventLoop) -> None:
        """The engine starts without a table to adopt and removes the configured
        VIPs (the `DelVip`s after this notice): loud when a previous run left any."""
        try:
            left = await loop.run_in_executor(None, self.vips.held, addresses)
        except Exception as e:  # the DelVips that follow remove them anyway
            left = set()
            log.warning("vip: cannot list this router's addresses: %s", e, extra=fields_of(kind="vip_cleanup"))
        if left:
            log.warning("WARNING: VIPs left on this router's interfaces by a previous run, now removed "
                        "(this router starts without a table to adopt): %s", " ".join(sorted(left)),
                        extra=fields_of(kind="vip_cleanup", addresses=" ".join(sorted(left))))
        else:
            log.info("vip: none left on this router's interfaces by a previous run",
                     extra=fields_of(kind="vip_cleanup", addresses=""))

    def _task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a task failed: %s", task.exception(), exc_info=task.exception(),
                      extra=fields_of(kind="task_error", error=type(task.exception()).__name__))

    def _check_done(self, check_id: int, ok: bool, detail: str) -> None:
        # never dropped: one result per check at most waits here, and a lost one would stop its check for good
        self.inputs.put(CheckCompleted(check_id, ok, detail), always=True)

    async def _load(self, cmd: ReadLoad) -> None:
        try:
            load = await self.read_load(cmd)
        except Exception:
            log.exception("load: reading the load of %s raised", cmd.address,
                          extra=fields_of(kind="load", address=cmd.address))
            load = None
        self.feed(LoadRead(cmd.load_id, load))

    # ------------------------------------------------------------ reload

    def _hup(self) -> None:
        if self.serving:
            self.reloads.request()
        else:
            self.hup_while_starting = True

    async def _reload_once(self) -> dict[str, Any]:
        """Read, parse and check the file off the loop, bind what it needs;
        then the loop carries it out (`_commit_reload`)."""
        try:
            config, key = await read_config(self.config_path)
            try:
                node = find_node(config)
            except StartError as e:
                raise Refused(str(e)) from None
            if node != self.node:
                raise Refused(f"the new config makes this host the {node}, not the {self.node}: "
                              "restart the daemon instead")
            vrrp_keys = ("heartbeat_protocol", "vrrp_unicast", "primary", "backup")
            changed = [k for k in vrrp_keys if getattr(config, k) != getattr(self.config, k)]
            if changed and "vrrp" in (config.heartbeat_protocol, self.config.heartbeat_protocol):
                raise Refused(f"{', '.join(changed)} changed on a VRRP router: restart the daemon instead "
                              "(its VRRP socket is opened at start)")
            problem = _unrunnable(config)
            if problem:
                raise Refused(problem)
            sockets = await self._rebind(config)
        except Refused as e:
            self._publish({"kind": "reload", "ok": False, "serial_no": self.config.serial_no, "error": str(e),
                           "errors": list(e.errors)}, f"reload refused: {e}")
            log.error("reload of %s refused, the running configuration (serial_no %d) kept: %s%s",
                      self.config_path, self.config.serial_no, e,
                      "".join(f"\n  {line}" for line in e.errors[:20])
                      + (f"\n  ... and {len(e.errors) - 20} more" if len(e.errors) > 20 else ""),
                      extra=fields_of(kind="reload", ok=False, serial_no=self.config.serial_no, error=str(e),
                                    errors=len(e.errors)))
            return {"ok": False, "error": str(e), "errors": list(e.errors)}
        pending = PendingReload(config, key, sockets, asyncio.get_running_loop().create_future())
        self.inputs.put(pending, always=True)
        return await pending.done

    async def _rebind(self, config: Config) -> Any:
        """The heartbeat sockets `config` needs (a new port, address, partner,
        TTL or rate), bound beside the running ones: `commit()` or `abort()`."""
        try:
            return self.sockets.prepare(config, self.node)
        except OSError as e:
            raise Refused(f"the new heartbeat sockets cannot be opened: {e}") from None

    def _commit_reload(self, pending: PendingReload) -> Ready | None:
        """In the loop: step the engine with the new config, then commit the
        new heartbeat sockets; if the engine failed, abort them."""
        ready = self._engine_step(ConfigLoaded(pending.config, pending.key))
        if ready is None:
            pending.sockets.abort()
            log.error("reload of %s refused: the engine failed on it (above); the running configuration kept",
                      self.config_path, extra=fields_of(kind="reload", ok=False, serial_no=self.config.serial_no))
            pending.done.set_result({"ok": False, "error": "the engine failed on the new configuration "
                                     "(see the daemon's log); the running configuration is kept"})
            return None
        pending.sockets.commit()
        previous, self.config, self.key = self.config, pending.config, pending.key
        self.links.configure(self.config, self.node)
        self.checker.configure(self.config)
        log_level(self.config)
        if self.config.heartbeat_port != previous.heartbeat_port:
            log.info("heartbeat: sockets now on port %d", self.config.heartbeat_port,
                     extra=fields_of(kind="reload", ok=True, heartbeat_port=self.config.heartbeat_port))
        self.notify.retarget(self.config.notify_fifo)
        detail = changes(previous, self.config)
        log.info("reloaded %s (serial_no %d): %s", self.config_path, self.config.serial_no, detail,
                 extra=fields_of(kind="reload", ok=True, serial_no=self.config.serial_no, changes=detail))
        warn(config_warnings(self.config))
        self._publish({"kind": "reload", "ok": True, "serial_no": self.config.serial_no, "detail": detail},
                      f"reloaded (serial_no {self.config.serial_no}): {detail}")
        pending.done.set_result({"ok": True, "detail": detail})
        return ready

    # ------------------------------------------------------------ control

    async def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        from adapters.control import table_of

        cmd = request.get("cmd")
        if not self.serving:
            return {"error": "starting: ask again in a moment"}
        if cmd == "status":
            await self.connections.fresh(self.now_ms())  # in a thread, at most every 2 s
            return self.status()
        if cmd == "table":
            table = await self.worker.run(self.dataplane.read)
            return {"table": table_of(table), "text": _ipvsadm_text(table)}
        if cmd == "reload":
            answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self.reloads.request(answer)
            return await answer
        if cmd == "admin":
            action, server = request.get("action"), request.get("server", "")
            if action not in ADMIN_ACTIONS:
                raise ValueError(f"unknown admin action {quoted(str(action), 100)}: one of {', '.join(ADMIN_ACTIONS)}")
            if not isinstance(server, str):
                raise ValueError("server must be a string: VIRTUAL/SERVER or SERVER")
            weight = request.get("weight") if action == "weight" else None
            if weight is not None and (not isinstance(weight, int) or isinstance(weight, bool)):
                raise ValueError("weight must be an integer 0 to 65535")
            admin = AdminRequested(action, server, weight=weight)
            refusal = self.engine.admin_refusal(admin)
            if refusal is not None:  # said as the engine's own refusal would be
                data = {"action": action, "server": server, **({"weight": weight} if action == "weight" else {})}
                self._say(describe_command(Notify("admin_refused", {**data, "reason": refusal}), self.config))
                self._admin_event(admin, refusal)
                return {"ok": False, "error": refusal}
            return await self._admin_stepped(admin)
        raise ValueError(f"unknown command {quoted(str(cmd), 100)}: status, table, reload, admin or events")

    async def _admin_stepped(self, admin: AdminRequested) -> dict[str, Any]:
        """Feed an operator's request and answer once the engine stepped it
        (it may still refuse it: the state can move between the two)."""
        answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.admin_waiters.append((admin, answer))
        self.inputs.put(admin, always=True)  # bounded by the control socket's clients
        try:
            refusal = await asyncio.wait_for(asyncio.shield(answer), self.admin_answer_s)
        except asyncio.TimeoutError:
            return {"ok": True, "detail": "accepted; not yet carried out"}
        finally:
            self.admin_waiters = [(r, f) for r, f in self.admin_waiters if f is not answer]
        return {"ok": True} if refusal is None else {"ok": False, "error": refusal}

    def status(self) -> dict[str, Any]:
        from adapters.control import status_json

        status = self.engine.status
        data = status_json(status, self.connections.last)
        data["connections_read"] = {"ago": self.connections.ago_s(self.now_ms()), "error": self.connections.error}
        data["warnings"] = config_warnings(self.config)
        drops = dict(self.inputs.drops)
        drops.update({f"heartbeat-{k}": v for k, v in self.sockets.drops.items()})
        if self.vrrp is not None:
            drops.update({f"vrrp-{k}": v for k, v in self.vrrp.drops.items()})
        data["loop"] = {
            "lateness_ms": self.lateness.summary(),
            "timing": self.timing.summary(),
            "queues": {"heartbeats": len(self.inputs.heartbeats), "inputs": len(self.inputs.others)},
            "drops": drops,
            "heartbeat_errors": dict(self.sockets.errors),
            "control_errors": dict(self.control.errors),
            "notify_errors": dict(self.notify.errors),
            "reloads": {**self.reloads.counts, "in_flight": self.reloads.task is not None},
            "events": self.events.summary(),
        }
        data["checker"] = self.checker.summary()
        return data

    def close(self) -> None:
        self.timing.unwatch_gc()
        if self.timing.profile is not None:
            self.timing.profile.uninstall()
        if self.reloads.task is not None:
            self.reloads.task.cancel()
        for name in ("checker", "links", "sockets", "vrrp", "control", "worker", "dataplane", "vips", "notify",
                     "runner", "journal"):
            part = getattr(self, name, None)
            try:
                if part is not None:
                    part.close()
            except Exception as e:  # closing must not stop the others
                log.warning("closing the %s: %s", name, e, extra=fields_of(kind="stop", part=name, error=str(e)))


def _unrunnable(config: Config) -> str | None:
    """What in a valid config this host cannot run (checked at start and on reload)."""
    from adapters.notify import notify_path_problem

    return notify_path_problem(config.notify_fifo) if config.notify_fifo else None


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


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="shoal run")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--dataplane", choices=("ipvs", "nft", "dry-run"), default="ipvs")
    parser.add_argument("--state-dir", default="/run/shoal")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--journal-size", type=float, default=DEFAULT_MB, metavar="MB",
                        help=f"the journal's bound in MB, over its rotated files (default {DEFAULT_MB:g}; 0: off)")
    args = parser.parse_args(argv)
    if args.journal_size < 0:
        parser.error("--journal-size must be 0 (off) or more")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if args.log_format == "json"
                         else logging.Formatter("shoal[%(process)d]: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return asyncio.run(Daemon(args.config, args.dataplane, args.state_dir,
                              journal_bytes=int(args.journal_size * 1_000_000)).run())
