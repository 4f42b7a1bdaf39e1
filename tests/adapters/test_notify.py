"""adapters/notify.py: commands run in order, one at a time, killed with their
process group on timeout; the notify FIFO never blocks and never raises."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Awaitable

from adapters.notify import CommandRunner, NotifyWriter, notify_path_problem
from engine.events import Notify, RunCommand

Result = tuple[RunCommand, "int | None", str]


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def run_all(cmds: list[RunCommand], on_result: Any = None) -> list[Result]:
    results: list[Result] = []
    runner = CommandRunner(on_result=on_result or (lambda c, r, d: results.append((c, r, d))))
    await runner.start()
    try:
        for cmd in cmds:
            runner.submit(cmd)
        await asyncio.wait_for(runner.drain(), 10)
    finally:
        runner.close()
    return results


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_commands_run_in_order_one_at_a_time(tmp_path: Path) -> None:
    log = tmp_path / "log"
    cmds = [RunCommand(f"echo start {i} >> {log}; sleep 0.05; echo end {i} >> {log}; exit {i}", f"r{i}")
            for i in range(4)]
    results = run(run_all(cmds))
    assert log.read_text().split("\n")[:-1] == [f"{w} {i}" for i in range(4) for w in ("start", "end")]
    assert [(c.reason, r, d) for c, r, d in results] == [(f"r{i}", i, f"exit {i}") for i in range(4)]


def test_output_reason_and_signals_show_in_the_detail() -> None:
    results = run(run_all([RunCommand('echo "hello $SHOAL_REASON"; exit 3', "active"),
                           RunCommand("kill -TERM $$", "x"),
                           RunCommand("exec /nonexistent/prog", "y")]))
    assert [(r, d) for _, r, d in results][:2] == [(3, "exit 3: hello active"), (-15, "killed by SIGTERM")]
    assert results[2][1] == 127 and "nonexistent" in results[2][2]


def test_a_timeout_kills_the_whole_process_group_and_the_queue_goes_on(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    results = run(run_all([RunCommand(f"echo partial; sleep 30 & echo $! > {pidfile}; wait", "slow", 300),
                           RunCommand("echo next", "after")]))
    assert time.monotonic() - started < 3
    (_, code, detail), (_, code2, detail2) = results
    assert code is None and detail == "timed out after 300 ms, process group killed: partial"
    assert (code2, detail2) == (0, "exit 0: next")
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(grandchild)


def test_a_background_child_holding_the_output_does_not_hold_the_queue(tmp_path: Path) -> None:
    started = time.monotonic()
    results = run(run_all([RunCommand("sleep 20 & echo $$", "bg")]))
    assert time.monotonic() - started < 2
    _, code, detail = results[0]
    assert code == 0
    with contextlib.suppress(ProcessLookupError):
        os.killpg(int(detail.split(": ")[1]), signal.SIGKILL)


def test_a_failing_callback_does_not_stop_the_queue() -> None:
    seen: list[str] = []

    def flaky(cmd: RunCommand, code: int | None, detail: str) -> None:
        seen.append(cmd.reason)
        raise RuntimeError("bug")

    run(run_all([RunCommand("true", "1"), RunCommand("true", "2")], flaky))
    assert seen == ["1", "2"]


def test_close_kills_the_running_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> int:
        runner = CommandRunner(on_result=lambda *_: None)
        await runner.start()
        runner.submit(RunCommand(f"echo $$ > {pidfile}; exec sleep 30", "long"))
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.01)
        runner.close()
        await asyncio.sleep(0.05)
        return int(pidfile.read_text())

    pid = run(main())
    deadline = time.monotonic() + 2
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(pid)


EVENT = Notify("role", {"from": "standby", "to": "active", "reason": "partner dead"})


def test_notify_file_gets_one_json_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "notify.log"
    writer = NotifyWriter(str(path))
    writer.write(EVENT, 12.5)
    writer.write(Notify("health", {"service": "web", "server": "s1", "from": "up", "to": "down"}), 13.0)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0] == {"t": 12.5, "kind": "role", "from": "standby", "to": "active", "reason": "partner dead"}
    assert list(lines[0])[:2] == ["t", "kind"] and lines[1]["server"] == "s1"
    assert writer.errors == {}
    NotifyWriter(None).write(EVENT, 1.0)  # nowhere: nothing happens


def test_notify_fifo_never_blocks_and_counts_what_it_drops(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    writer = NotifyWriter(str(path))
    writer.write(EVENT, 1.0)  # no reader
    assert writer.errors == {"no-reader": 1} and writer.written == 0
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        writer.write(EVENT, 2.0)
        assert json.loads(os.read(reader, 65536))["t"] == 2.0
        started = time.monotonic()
        for i in range(2000):  # nobody reads: the pipe fills up
            writer.write(EVENT, float(i))
        assert time.monotonic() - started < 2
        assert writer.errors.get("full", 0) > 0
    finally:
        os.close(reader)
    writer.write(EVENT, 3.0)  # the reader went away
    assert writer.errors.get("EPIPE") == 1
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        writer.write(EVENT, 4.0)  # reopened for the new reader
        assert json.loads(os.read(reader, 65536))["t"] == 4.0
    finally:
        os.close(reader)
        writer.close()


def test_notify_io_errors_are_counted_not_raised(tmp_path: Path) -> None:
    writer = NotifyWriter(str(tmp_path / "missing-dir" / "notify.log"))
    writer.write(EVENT, 1.0)
    assert writer.errors == {"ENOENT": 1}


def test_a_symlink_is_never_followed_and_a_nul_never_spins(tmp_path: Path, caplog: Any) -> None:
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0\n")
    link = tmp_path / "notify"
    link.symlink_to(target)
    assert "is a symbolic link" in (notify_path_problem(str(link)) or "")
    assert "NUL" in (notify_path_problem("/run/shoal/no\0tify") or "")
    assert "neither a FIFO nor a regular file" in (notify_path_problem(str(tmp_path)) or "")
    assert notify_path_problem(str(tmp_path / "new")) is None
    writer = NotifyWriter(str(link))
    bad = NotifyWriter("/tmp/no\0tify")
    with caplog.at_level("WARNING", logger="shoal.notify"):
        for i in range(1000):
            writer.write(EVENT, float(i))
            bad.write(EVENT, float(i))
    assert target.read_text() == "root:x:0:0\n"
    assert writer.errors == {"symlink": 1000} and bad.errors == {"bad-path": 1000}
    assert len(caplog.records) == 2  # once each, then at most once a minute
    assert "symbolic link" in caplog.records[0].getMessage()


def test_a_new_file_is_private_and_a_reload_can_retarget(tmp_path: Path) -> None:
    writer = NotifyWriter(str(tmp_path / "a"))
    writer.write(EVENT, 1.0)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o600
    writer.retarget(str(tmp_path / "b"))
    writer.write(EVENT, 2.0)
    assert json.loads((tmp_path / "b").read_text())["t"] == 2.0
