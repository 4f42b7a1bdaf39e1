"""Start and stop a `shoal run` daemon: the one way the lab, the tests and
the benchmarks do it.

    d = daemons.start(ns, config_path, state_dir, log_path, dataplane="nft")
    d.wait_ready()            # its control socket answers a status: it serves
    ...
    d.stop()                  # SIGTERM (it gives its VIPs up), SIGKILL after a grace

The rules:

- A daemon runs as `python -m shoal run -c CONFIG --dataplane D
  --state-dir DIR` from this checkout (`ROOT`: the working directory and
  PYTHONPATH), inside network namespace `ns` when one is given (`ip netns
  exec`, which execs: the PID is the daemon's own), in a session of its
  own, standard input closed, standard output and error appended to its
  log, unbuffered, its bytecode compiled once into `PYCACHE` (as an
  installed package's is: PYTHONDONTWRITEBYTECODE dropped).
- Ready means its control socket answers `{"cmd": "status"}` with a role:
  never a sleep.  A daemon that exits first, or does not answer in time,
  is `DaemonFailed`, with the end of its log.
- Signals go to its PID only, never to a name: `kill` is SIGKILL at once
  (the lab's `crash` and `kill` faults: no goodbye to the partner),
  `stop` is SIGTERM, a wait, then SIGKILL.  Whoever starts a daemon stops
  it, on every exit path; its log stays where it was written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from adapters.control import ask

ROOT = str(Path(__file__).resolve().parents[2])  # the checkout: `python -m shoal` runs from here
PYCACHE = os.path.join(os.path.expanduser("~"), ".cache", "shoal", "pycache")  # `spawn`'s bytecode
# Generous bounds, reached only when something is wrong: under qemu's software emulation (the
# kernel suite) a daemon takes half a minute to start and an answer can take seconds.
START_TIMEOUT_S = 120.0
ASK_TIMEOUT_S = 5.0
STOP_GRACE_S = 10.0


class DaemonFailed(RuntimeError):
    """A daemon exited at start or did not answer in time (the message ends with its log)."""


class Daemon:
    """One `shoal run` process started by `start`."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], state_dir: Path, log_path: Path) -> None:
        self.name, self.proc = name, proc
        self.state_dir, self.log_path = state_dir, log_path
        self.stopped = False  # `kill` or `stop` was called: an exit is not the daemon's own doing

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def running(self) -> bool:
        return self.proc.poll() is None

    # ------------------------------------------------------------ asking

    def ask(self, request: dict[str, Any], timeout_s: float = ASK_TIMEOUT_S) -> dict[str, Any]:
        """One request on its control socket (OSError, ValueError when it does not answer)."""
        return ask(str(self.state_dir), request, timeout_s)

    def status(self, timeout_s: float = ASK_TIMEOUT_S) -> dict[str, Any]:
        return self.ask({"cmd": "status"}, timeout_s)

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S, deadline: float | None = None) -> float:
        """Until its status has a role; the seconds it took.  `deadline` (time.monotonic()) instead
        of `timeout_s` shares one bound between several daemons."""
        started = time.monotonic()
        end = started + timeout_s if deadline is None else deadline
        while True:
            if not self.running():
                raise DaemonFailed(f"the {self.name} daemon exited at start (exit {self.proc.returncode}):\n"
                                   f"{self.log_tail()}")
            try:
                if "role" in self.status(ASK_TIMEOUT_S):
                    return time.monotonic() - started
            except (OSError, ValueError):
                pass
            if time.monotonic() > end:
                raise DaemonFailed(f"the {self.name} daemon does not answer:\n{self.log_tail()}")
            time.sleep(0.05)

    # ------------------------------------------------------------ signals

    def signal(self, signum: int) -> None:
        """Send `signum` to the daemon's PID if it runs (SIGHUP: reload)."""
        if self.running():
            self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL now and reap it: the process dies without a word to its partner."""
        self.stopped = True
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, grace_s: float = STOP_GRACE_S) -> int:
        """SIGTERM (VIPs given up, the partner told), SIGKILL after `grace_s`; its exit status."""
        self.stopped = True
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait()

    # ------------------------------------------------------------ log

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 25) -> str:
        return log_tail(self.log_path, lines)


def log_tail(log_path: Path, lines: int = 25) -> str:
    """The last `lines` lines of a log, indented, or "(no log)"; a JSON line (`--log-format
    json`) as its text, after its level when that is not info."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + readable(line) for line in text.splitlines()[-lines:])


def readable(line: str) -> str:
    """A log line as a person reads it: a JSON one (docs/LOGS.md) as `LEVEL: msg` (info: `msg`)."""
    if not line.startswith("{"):
        return line
    try:
        record = json.loads(line)
        level, msg = str(record.get("level", "info")), str(record["msg"])
    except (ValueError, KeyError, AttributeError):
        return line
    return msg if level == "info" else f"{level}: {msg}"


def spawn(ns: str | None, argv: Sequence[str], log_path: Path, python: str = sys.executable) -> subprocess.Popen[bytes]:
    """`python ARGV...` from the checkout (inside `ns` if given), in a session of its own, its
    output appended to `log_path`: how the lab starts its daemons, servers and client."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    # Bytecode compiled once and kept, as an installed package has it, in a cache of this user's
    # own (~/.cache; not the checkout, not a shared /tmp path): with PYTHONDONTWRITEBYTECODE=1, modules
    # changed since their last compile, every start compiled them again, 0.25 s and more (a
    # second of scenario at time scale 0.25) that no installed daemon pays (bench/start.py).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", PYCACHE)
    prefix = ["ip", "netns", "exec", ns] if ns else []
    with open(log_path, "ab") as out:
        return subprocess.Popen([*prefix, python, *argv], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)


def start(ns: str | None, config_path: Path | str, state_dir: Path | str, log_path: Path | str,
          dataplane: str = "nft", name: str = "", python: str = sys.executable, args: Sequence[str] = ()) -> Daemon:
    """`shoal run -c CONFIG --dataplane DATAPLANE --state-dir STATE_DIR [ARGS...]` in `ns` (the
    daemon makes its state directory, mode 0700, if missing; `args`, e.g. `--log-format json`);
    not waited for (`Daemon.wait_ready`)."""
    state, log = Path(state_dir), Path(log_path)
    proc = spawn(ns, ["-m", "shoal", "run", "-c", str(config_path), "--dataplane", dataplane,
                      "--state-dir", str(state), *args], log, python)
    return Daemon(name or (ns or "local"), proc, state, log)


def wait_ready(daemons: Iterable[Daemon], timeout_s: float = START_TIMEOUT_S) -> None:
    """Until every daemon is ready, all within one `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    for d in daemons:
        d.wait_ready(deadline=deadline)


def stop_all(daemons: Iterable[Daemon], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every running daemon at once, then wait for each (SIGKILL after `grace_s`)."""
    listed = list(daemons)
    for d in listed:
        d.signal(signal.SIGTERM)
    for d in listed:
        d.stop(grace_s)
