"""The daemon's journal: every input it feeds the engine, with its time, and
what the engine answered, so that `shoal replay` can decide it all again
in a fresh engine and compare (docs/JOURNAL.md).

    journal = open_journal(state_dir, max_bytes)   # None when max_bytes is 0 (off)
    journal.start(config=..., node=..., ...)       # a header: one per daemon start
    journal.step(now_ms, event, ready)             # after each Engine.step
    journal.raised(now_ms, event, error)           # a step the engine raised on
    journal.close()                                # everything written, the writer stopped

Format: JSON lines in `STATE_DIR/journal/journal.jsonl`, one record a line,
of three kinds:

- a start: `{"start": 1, "wall", "monotonic", "origin", "node",
  "dataplane", "config_file", "config", "key", "seq_start", "pid"}`: the
  lvs.cf text as read, the Engine's other constructor arguments, the heartbeat
  key only as a fingerprint (`journal_codec.key_fingerprint`), the wall
  clock (`time.time()`) and the monotonic clock read together, and the
  monotonic origin of the engine's milliseconds (`origin`), so that a step
  at `t` happened at wall time `wall + origin + t / 1000 - monotonic`;
- a step: `{"t": now_ms, "i": INPUT, "o": [COMMAND, ...], "d": next_deadline_ms}`
  (`journal_codec`'s encodings), or `{"t", "i", "raised": "Name: message"}`
  when the engine raised on the input;
- a gap: `{"gap": N}`: N records lost here (the disk failed, or the writer
  fell `BACKLOG_BYTES` behind): a replay cannot go on past it.

The rules that keep it cheap and safe:

- The loop only encodes a record and appends it to a list; a writer thread
  writes what is pending every `FLUSH_S` (a SIGKILL loses at most that
  much), so a slow disk never blocks the loop.  Pending bytes beyond
  `BACKLOG_BYTES` are dropped and counted, and a gap record marks the place.
- Rotation: past `max_bytes / FILES` the file is renamed `journal.jsonl.1`
  (`.1` to `.2`...) and a new one begun; `FILES` files at most.  A replay
  needs a start record and every record after it: the files from the one
  holding the latest start to `journal.jsonl` (docs/JOURNAL.md).
- Never raises on the loop's behalf: an input it cannot encode, or a write
  that fails, is a gap, counted and said once in the log.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.journal_codec import config_text, encode_command, encode_input, key_fingerprint
from engine.events import Input
from engine.model import Config

if TYPE_CHECKING:
    from adapters.replay import Outcome
    from engine.ready import Ready

log = logging.getLogger("shoal")

VERSION = 1
DIRECTORY = "journal"  # under the state directory
NAME = "journal.jsonl"
FILES = 4  # the current file and three rotated ones
DEFAULT_MB = 8.0  # `shoal run --journal-size MB`
FLUSH_S = 0.05  # the writer writes what is pending this often
BACKLOG_BYTES = 8 << 20  # records waiting for the writer beyond this are lost (a gap): a stuck disk costs no more


def _encoder() -> Callable[[Any], str]:
    """Compact JSON, by the C encoder made once (JSONEncoder.encode makes one a call: half a step's cost)."""
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
    c = make(None, None, encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
    return lambda value: "".join(c(value, 0))


_encode = _encoder()


class Journal:
    """Records encoded in the loop, written by a thread of its own (see the module's docstring)."""

    def __init__(self, directory: str | Path, max_bytes: int, files: int = FILES, flush_s: float = FLUSH_S) -> None:
        if max_bytes <= 0 or files < 1:
            raise ValueError("a journal needs max_bytes > 0 and at least one file")
        self.directory = Path(directory)
        self.path = self.directory / NAME
        self.file_bytes = max(4096, max_bytes // files)
        self.files, self.flush_s = files, flush_s
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        self._cond = threading.Condition()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._gap = 0
        self._closing = False
        self.counters = {"records": 0, "bytes": 0, "lost": 0, "rotations": 0, "write_errors": 0}
        self._said: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="shoal-journal", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the loop's side

    def start(self, *, config: Config, node: str, dataplane: str, config_file: str, key: bytes | None,
              seq_start: int, origin: float) -> None:
        """A daemon start: everything a fresh engine needs to decide the same."""
        self._append({"start": VERSION, "wall": time.time(), "monotonic": time.monotonic(), "origin": origin,
                      "node": node, "dataplane": dataplane, "config_file": config_file,
                      "config": config_text(config), "key": key_fingerprint(key), "seq_start": seq_start,
                      "pid": os.getpid()})

    def step(self, now_ms: int, event: Input, ready: Ready) -> None:
        try:
            record = {"t": now_ms, "i": encode_input(event), "o": [encode_command(c) for c in ready.commands],
                      "d": ready.next_deadline_ms}
        except Exception as e:  # a type without an encoding: a gap, said once
            self._lost(1, f"cannot encode a step: {type(e).__name__}: {e}")
            return
        self._append(record)

    def raised(self, now_ms: int, event: Input, error: BaseException) -> None:
        try:
            record = {"t": now_ms, "i": encode_input(event), "raised": f"{type(error).__name__}: {error}"}
        except Exception as e:
            self._lost(1, f"cannot encode a step: {type(e).__name__}: {e}")
            return
        self._append(record)

    def _append(self, record: dict[str, Any]) -> None:
        line = (_encode(record) + "\n").encode()
        with self._cond:
            if self._pending and self._pending_bytes + len(line) > BACKLOG_BYTES:  # the writer is stuck
                self._gap += 1
                self.counters["lost"] += 1
                return
            if self._gap:
                self._pending.append(_gap_line(self._gap))
                self._gap = 0
            if not self._pending:
                self._cond.notify()
            self._pending.append(line)
            self._pending_bytes += len(line)
            self.counters["records"] += 1

    def _lost(self, n: int, why: str) -> None:
        with self._cond:
            self._gap += n
            self.counters["lost"] += n
        self._say_once(why)

    def close(self) -> None:
        """Write everything pending (a gap record last if records were lost) and stop the writer."""
        with self._cond:
            if self._closing:
                return
            if self._gap:
                self._pending.append(_gap_line(self._gap))
                self._gap = 0
            self._closing = True
            self._cond.notify()
        self._thread.join()
        os.close(self._fd)

    # ------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._closing:
                    self._cond.wait(self.flush_s)  # gather a batch (close wakes it)
                lines, self._pending, self._pending_bytes = self._pending, [], 0
                closing = self._closing
            if lines:
                self._write(lines)
            if closing:
                return

    def _write(self, lines: list[bytes]) -> None:
        batch: list[bytes] = []
        size = 0
        for line in lines:
            if self._size + size + len(line) > self.file_bytes and (self._size or size):
                self._write_out(batch)
                batch, size = [], 0
                self._rotate()
            batch.append(line)
            size += len(line)
        self._write_out(batch)

    def _write_out(self, batch: list[bytes]) -> None:
        data = memoryview(b"".join(batch))
        try:
            while data:
                n = os.write(self._fd, data)
                self._size += n
                self.counters["bytes"] += n
                data = data[n:]
        except OSError as e:
            self.counters["write_errors"] += 1
            self._lost(len(batch), f"cannot write {self.path}: {e.strerror or e}")

    def _rotate(self) -> None:
        os.close(self._fd)
        try:
            for i in range(self.files - 1, 0, -1):
                older = self.path.with_name(f"{NAME}.{i - 1}" if i > 1 else NAME)
                if older.exists():
                    os.replace(older, self.path.with_name(f"{NAME}.{i}"))
            if self.files == 1:
                self.path.unlink(missing_ok=True)
        except OSError as e:
            self._say_once(f"cannot rotate {self.path}: {e.strerror or e}")
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        self.counters["rotations"] += 1

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)

    def _say_once(self, why: str) -> None:
        kind = why.split(":", 1)[0]
        if kind not in self._said:
            self._said.add(kind)
            log.error("journal: %s (records lost; a replay stops at the gap)", why,
                      extra={"fields": {"kind": "journal", "error": why}})


def _gap_line(n: int) -> bytes:
    return (_encode({"gap": n}) + "\n").encode()


def open_journal(state_dir: str | Path, max_bytes: int) -> Journal | None:
    """The journal of the daemon whose state directory is `state_dir`; None when off (0)."""
    return Journal(Path(state_dir) / DIRECTORY, max_bytes) if max_bytes > 0 else None


# ---------------------------------------------------------------- reading


class JournalError(Exception):
    """A journal that cannot be read: `file:line: message`."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


@dataclass(frozen=True, slots=True)
class Record:
    file: str
    line: int
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return "start" if "start" in self.data else "gap" if "gap" in self.data else "step"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Read:
    records: tuple[Record, ...]
    notes: tuple[str, ...]  # what was read but cannot be used, said


_ROTATED = re.compile(rf"^{re.escape(NAME)}(?:\.(\d+))?$")


def journal_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files to read, oldest first: a directory's `journal.jsonl.N` (highest
    N first) then `journal.jsonl`; files as given, but rotated ones of one
    name put in the order they were written."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inner = p / DIRECTORY if (p / DIRECTORY).is_dir() and not (p / NAME).exists() else p
            found = [f for f in inner.iterdir() if _ROTATED.match(f.name)]
            if not found:
                raise JournalError(str(p), 0, f"no {NAME} in this directory")
            out.extend(sorted(found, key=_age))
        else:
            out.append(p)
    if all(_ROTATED.match(p.name) for p in out) and len({p.parent for p in out}) == 1:
        out.sort(key=_age)
    return out


def _age(p: Path) -> int:
    m = _ROTATED.match(p.name)
    return -int(m.group(1)) if m and m.group(1) else 0


def read(paths: Sequence[str | Path]) -> Read:
    """Every record of the journal files named (a directory: its files, oldest first).
    A last line cut short (the daemon died while writing it) is left out and
    said; anything else that is not a record is a JournalError."""
    files = journal_files(paths)
    records: list[Record] = []
    notes: list[str] = []
    for index, path in enumerate(files):
        try:
            data = path.read_bytes()
        except OSError as e:
            raise JournalError(str(path), 0, f"cannot read: {e.strerror or e}") from None
        lines = data.split(b"\n")
        torn = lines.pop()  # after the last newline: empty unless cut short
        if torn:
            if index == len(files) - 1:
                notes.append(f"{path}:{len(lines) + 1}: the last line is cut short (the daemon died while "
                             f"writing it): left out")
            else:
                raise JournalError(str(path), len(lines) + 1, "a line cut short in the middle of the journal")
        for number, line in enumerate(lines, 1):
            records.append(Record(str(path), number, _record(line, str(path), number)))
    return Read(tuple(records), tuple(notes))


def _record(line: bytes, file: str, number: int) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise JournalError(file, number, f"not a JSON line: {e}") from None
    if not isinstance(data, dict):
        raise JournalError(file, number, "not a journal record (a JSON object)")
    if "start" in data:
        if data["start"] != VERSION:
            raise JournalError(file, number, f"journal format {data['start']!r}: this shoal reads {VERSION}")
        missing = [k for k in ("wall", "monotonic", "origin", "node", "config", "key", "seq_start") if k not in data]
        if missing:
            raise JournalError(file, number, f"a start record without {', '.join(missing)}")
    elif "gap" in data:
        if not isinstance(data["gap"], int):
            raise JournalError(file, number, "a gap record's count must be an integer")
    elif not isinstance(data.get("t"), int) or not isinstance(data.get("i"), list) or \
            not (isinstance(data.get("o"), list) or isinstance(data.get("raised"), str)):
        raise JournalError(file, number, "not a start, step or gap record")
    return data


def wall_of(start: dict[str, Any], t_ms: int) -> float:
    """The wall time (time.time()) of a step at engine time `t_ms` of the life `start` began."""
    return float(start["wall"]) + float(start["origin"]) + t_ms / 1000 - float(start["monotonic"])


def replay_dir(path: str | Path | Iterable[str | Path], key: bytes | None = None) -> Outcome:
    """Replay a daemon's journal (its state directory, its journal directory,
    or journal files) in a fresh engine: an `adapters.replay.Outcome`
    (`identical`, `steps`, `difference`).  For the lab runner's check that
    every run's journals replay identically."""
    from adapters.replay import replay_paths

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return replay_paths(paths, key)
