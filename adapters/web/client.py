"""The web tool's side of the daemon's control socket (adapters/control.py).

`Daemon.ask(request)` sends one JSON line and reads one answer line on a
fresh connection (asyncio, never blocking the web tool's loop).
`EventHub` keeps one `{"cmd": "events"}` connection to the daemon, however
many browsers watch, and hands every event (one JSON object a line, with
the trace's fields: t, node, kind, ...) to each subscriber's queue; it
reconnects with a growing pause when the daemon goes away (or refuses the
stream: its first line is `{"ok": true}` or an error) and tells the
subscribers (an event of kind `stream`, `state` `up` or `down`), so a page
can show its data as stale.  A subscriber too slow to keep up loses its
oldest events, never stalls the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from typing import Any

log = logging.getLogger("shoal.web")

ASK_TIMEOUT_S = 10.0
MAX_ANSWER = 16 * 1024 * 1024  # a status of 4096 virtuals fits
SUBSCRIBER_QUEUE = 256


class DaemonUnavailable(Exception):
    """No daemon answers on the control socket (or its answer is not JSON)."""


class Daemon:
    def __init__(self, state_dir: str, timeout_s: float = ASK_TIMEOUT_S) -> None:
        self.path = os.path.join(state_dir, "control.sock")
        self.timeout_s = timeout_s

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self._ask(request), self.timeout_s)
        except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            raise DaemonUnavailable(f"no answer from the daemon at {self.path}: {e or type(e).__name__}") from e

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        reader, writer = await asyncio.open_unix_connection(self.path, limit=MAX_ANSWER)
        try:
            writer.write((json.dumps(request) + "\n").encode())
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        answer = json.loads(line)
        if not isinstance(answer, dict):
            raise ValueError("the answer is not a JSON object")
        return answer


class EventHub:
    def __init__(self, daemon: Daemon, *, retry_s: float = 0.5, max_retry_s: float = 5.0) -> None:
        self.daemon = daemon
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.connected = False
        self.counts: dict[str, int] = {}  # events seen, by kind (for /metrics)
        self.failovers = 0  # role changes to active seen since this web tool started
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    def close_subscribers(self) -> None:
        """The web tool stops: every open stream ends (its page reconnects to the next one)."""
        for queue in list(self.subscribers):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait({"kind": "stream", "state": "closing"})

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.subscribers.discard(queue)

    def _publish(self, event: dict[str, Any]) -> None:
        kind = str(event.get("kind"))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "role" and event.get("to") == "active" and event.get("from") not in (None, "active"):
            self.failovers += 1
        for queue in list(self.subscribers):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    def _state(self, up: bool, detail: str = "") -> None:
        if up != self.connected:
            self.connected = up
            self._publish({"kind": "stream", "state": "up" if up else "down", "detail": detail})

    async def _run(self) -> None:
        pause = self.retry_s
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.daemon.path, limit=1024 * 1024)
                try:
                    writer.write(b'{"cmd": "events"}\n')
                    await writer.drain()
                    # the daemon answers {"ok": true} first, then one event a line
                    first = json.loads(await asyncio.wait_for(reader.readline(), self.max_retry_s))
                    if not isinstance(first, dict) or not (first.get("ok") is True or "kind" in first):
                        raise ValueError(str(first.get("error") if isinstance(first, dict) else first)[:200])
                    self._state(True)
                    pause = self.retry_s
                    if "kind" in first:
                        self._publish(first)
                    while line := await reader.readline():
                        self._publish(_event(line))
                    self._state(False, "the daemon closed the event stream")
                finally:
                    writer.close()
            except asyncio.CancelledError:
                raise
            except (OSError, ValueError, asyncio.TimeoutError) as e:
                self._state(False, f"no event stream from the daemon: {e}")
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.max_retry_s)


def _event(line: bytes) -> dict[str, Any]:
    """One line of the daemon's event stream; ValueError for a refusal or garbage."""
    event = json.loads(line)
    if not isinstance(event, dict) or "kind" not in event:
        # the daemon refused the request ({"error"}) or sent something else
        raise ValueError(str(event.get("error") if isinstance(event, dict) else event)[:200])
    return event
