"""Replaying a daemon's journal: each start's lvs.cf, node, key and
heartbeat sequence make a fresh engine, each step's input is fed to it at
its time, and what it answers is compared, command by command (and its
next wake-up), with what the daemon's engine answered (docs/JOURNAL.md).

    outcome = replay_paths(["/run/shoal/journal"], key=None)
    outcome.identical, outcome.steps, outcome.difference

The rules:

- The engine is deterministic (time is an input), so the same inputs from
  the same start give the same commands; a difference is a bug (or a
  journal edited by hand), named at its step: the file and line, the time,
  the input and the two commands in operator words (`adapters.describe`).
- The heartbeat key is never in the journal, only its fingerprint: it is
  read from the config's `heartbeat_key_file` (or given), and refused
  (`JournalError`) when its fingerprint differs from the journal's.
- Steps that cannot be compared are counted and said, never taken for
  identical in silence: before the first start (rotated away), and from a
  gap (records lost) to the next start.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.describe import describe as describe_command
from adapters.inputs import describe as describe_input
from adapters.journal import JournalError, Read, Record, read, wall_of
from adapters.journal_codec import CodecError, decode_command, decode_input, encode_command, key_fingerprint
from engine import wire
from engine.config import ConfigError, parse
from engine.engine import Engine
from engine.events import Command, ConfigLoaded, SendHeartbeat
from engine.model import Config


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a replay found: `identical` when every step compared gave the same
    commands; `difference` names the first that did not."""

    identical: bool
    starts: int  # daemon starts replayed
    steps: int  # steps compared
    commands: int  # commands compared
    difference: str | None = None
    notes: tuple[str, ...] = ()  # what was not compared, and why

    def summary(self) -> str:
        head = (f"identical: {self.starts} start(s), {self.steps} step(s), {self.commands} command(s) compared"
                if self.identical else f"different after {self.steps} identical step(s):\n{self.difference}")
        return "\n".join([head, *self.notes])


def replay_paths(paths: Sequence[str | Path], key: bytes | None = None) -> Outcome:
    """Replay the journal files (or directories) named; JournalError when one cannot be read."""
    return replay(read(paths), key)


@dataclass
class _Life:
    engine: Engine
    start: Record
    config: Config
    keys: dict[str, bytes]  # by fingerprint
    key: bytes | None
    steps: int = 0


def replay(journal: Read, key: bytes | None = None) -> Outcome:
    life: _Life | None = None
    starts = steps = commands = 0
    notes = list(journal.notes)
    skipped, skipped_from = 0, ""
    for record in journal.records:
        kind = record.kind
        if kind == "start":
            life = _start(record, key)
            starts += 1
            continue
        if kind == "gap":
            if life is not None:
                notes.append(f"{record.where}: {record.data['gap']} record(s) lost here (the disk failed or the "
                             f"writer fell behind): the rest of that start is not compared")
            life = None
            continue
        if life is None:
            skipped, skipped_from = skipped + 1, skipped_from or record.where
            continue
        difference = _step(life, record, key)
        if difference is not None:
            return Outcome(False, starts, steps, commands, difference, tuple(notes))
        steps += 1
        life.steps += 1
        commands += len(record.data.get("o", ()))
    if skipped:
        notes.append(f"{skipped} step(s) from {skipped_from} not compared: their daemon's start record was "
                     f"rotated away (or they follow a gap); a larger --journal-size keeps it")
    if not starts:
        first = journal.records[0].where if journal.records else "(empty)"
        raise JournalError(first.rsplit(":", 1)[0], 0, "no start record: nothing can be replayed (the daemon's start "
                                                       "was rotated away; a larger --journal-size keeps it)")
    return Outcome(True, starts, steps, commands, None, tuple(notes))


def _start(record: Record, given: bytes | None) -> _Life:
    data = record.data
    name = str(data.get("config_file") or "lvs.cf")
    try:
        config = parse(str(data["config"]), name)
    except ConfigError as e:
        raise JournalError(record.file, record.line, f"the start's lvs.cf does not parse: {e.issues[0]}") from None
    fingerprint = data["key"]
    key = None if fingerprint is None else _key(fingerprint, config, given, record)
    if data["node"] not in ("primary", "backup") or not isinstance(data["seq_start"], int):
        raise JournalError(record.file, record.line, "a start record needs node primary or backup and an integer "
                                                     "seq_start")
    engine = Engine(config, data["node"], heartbeat_key=key, seq_start=data["seq_start"])
    return _Life(engine, record, config, {fingerprint: key} if key is not None else {}, key)


def _key(fingerprint: str, config: Config, given: bytes | None, record: Record) -> bytes:
    """The heartbeat key of `fingerprint`: the one given, else the config's
    heartbeat_key_file; refused when its fingerprint differs."""
    if given is None:
        from adapters.reload import Refused, load_key

        try:
            found = load_key(config)
        except Refused as e:
            raise JournalError(record.file, record.line, f"the daemon signed its heartbeats with a key (fingerprint "
                                                         f"{fingerprint}) and it cannot be read here: {e}; give it "
                                                         f"with --key FILE") from None
        if found is None:
            raise JournalError(record.file, record.line, f"the daemon used a heartbeat key (fingerprint "
                                                         f"{fingerprint}) its lvs.cf does not name: give it with "
                                                         f"--key FILE")
        given, source = found, f"heartbeat_key_file {config.heartbeat_key_file}"
    else:
        source = "the key given"
    if key_fingerprint(given) != fingerprint:
        raise JournalError(record.file, record.line, f"{source} has fingerprint {key_fingerprint(given)}, the "
                                                     f"daemon's key had {fingerprint}: replaying needs the key the "
                                                     f"daemon used (--key FILE)")
    return given


def _step(life: _Life, record: Record, given: bytes | None) -> str | None:
    data = record.data
    encoded = data["i"]
    if encoded and encoded[0] == "ConfigLoaded" and encoded[2] is not None and encoded[2] not in life.keys:
        try:
            reloaded = parse(str(encoded[1]), str(life.start.data.get("config_file") or "lvs.cf"))
        except ConfigError as e:
            raise JournalError(record.file, record.line, f"the reloaded lvs.cf does not parse: {e.issues[0]}") \
                from None
        life.keys[encoded[2]] = _key(encoded[2], reloaded, given, record)
    try:
        event = decode_input(encoded, life.keys, str(life.start.data.get("config_file") or "lvs.cf"))
    except (CodecError, KeyError) as e:
        raise JournalError(record.file, record.line, f"not an input the journal writes: {e}") from None
    t = data["t"]
    raised = None
    try:
        ready = life.engine.step(t, event)
    except Exception as e:  # the daemon's engine may have raised on it too: compared below
        raised, ready = f"{type(e).__name__}: {e}", None
    expected_raise = data.get("raised")
    head = _head(life, record, event)
    if expected_raise is not None or raised is not None:
        if expected_raise == raised:
            return None
        return (f"{head}\n  the daemon's engine: {'raised ' + expected_raise if expected_raise else 'answered'}\n"
                f"  the replayed engine: {'raised ' + raised if raised else 'answered'}")
    assert ready is not None
    if isinstance(event, ConfigLoaded):
        life.config, life.key = event.config, event.heartbeat_key
    expected, got = data["o"], [encode_command(c) for c in ready.commands]
    for index in range(max(len(expected), len(got))):
        want = expected[index] if index < len(expected) else None
        have = got[index] if index < len(got) else None
        if want != have:
            return (f"{head}\n  command {index + 1} ({len(expected)} expected, {len(got)} replayed):\n"
                    f"    expected: {_said(want, life, record, have)}\n    replayed: {_said(have, life, record, want)}")
    if data.get("d") != ready.next_deadline_ms:
        return (f"{head}\n  the next wake-up: expected {_at(data.get('d'))}, replayed {_at(ready.next_deadline_ms)}")
    return None


def _head(life: _Life, record: Record, event: Any) -> str:
    t = record.data["t"]
    wall = datetime.datetime.fromtimestamp(wall_of(life.start.data, t), datetime.timezone.utc)
    return (f"{record.where}: the {life.start.data['node']}'s step {life.steps + 1} since its start at "
            f"{life.start.where}, t = {t / 1000:.3f} s ({wall.isoformat(timespec='milliseconds')}): "
            f"{describe_input(event)}")


def _at(ms: Any) -> str:
    return "none" if ms is None else f"t = {ms / 1000:.3f} s"


def _said(value: Any, life: _Life, record: Record, other: Any = None) -> str:
    """A command's encoding as the daemon's log says it; when both say the same words,
    what tells them apart (a heartbeat's fields, or the encoding)."""
    if value is None:
        return "(none)"
    try:
        command = decode_command(value)
    except CodecError as e:
        raise JournalError(record.file, record.line, f"not a command the journal writes: {e}") from None
    text = describe_command(command, life.config).text
    if other is not None:
        try:
            same_words = describe_command(decode_command(other), life.config).text == text
        except CodecError:
            same_words = False
        if same_words:
            text += f" [{_detail(command, life)}]"
    return text


def _detail(command: Command, life: _Life) -> str:
    if isinstance(command, SendHeartbeat):
        decoded = wire.decode(command.payload, life.key)
        if isinstance(decoded, wire.Heartbeat):
            return (f"{decoded.state}, seq {decoded.seq}, ack {decoded.ack}, serial_no {decoded.serial_no}"
                    + (", probe" if decoded.probe else "") + (", yielded" if decoded.yielded else ""))
    return json.dumps(encode_command(command), separators=(",", ":"))[:300]
