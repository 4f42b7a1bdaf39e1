"""Editing lvs.cf for the web tool: check, change one key, prepare, apply,
history and revert.  The web server calls these; nothing here speaks HTTP.

    tag = etag(text)                                   # '"<sha256 of the bytes>"', strong
    errors = check(text)                               # [{"line", "col", "message"}], [] when valid
    text = set_value(text, ("web", "rs1"), "weight", "3")   # one key of one block, the rest kept
    p = prepare(current, text)                         # serial_no raised, diff, ipvsadm operations
    done = apply(path, text, if_match=tag, history_dir=hist)  # Conflict (412), Invalid (422)
    versions = history(hist); revert(path, versions[0].id, done.etag, hist)

The rules that keep it honest:

- The file is edited as text, line by line, with the parser's own reading
  of it (`engine.config.parser.Document`): a change rewrites only the
  values of its key's line (the key, the `=`, the indentation and a
  trailing comment stay); a new key goes after the last key of its block
  (before its first server, for a virtual), indented like its neighbours;
  a removed key takes only its own line (a trailing comment stays, alone
  on the line).  Every other byte of the file is kept.
- `serial_no` is raised above the current file's whenever the new text
  did not raise it, by editing that one line (or adding it).
- The table operations are the engine's: `engine.pool.desired_entry` of
  both configurations for an active router, every real server healthy
  unless told otherwise, and `engine.diff.diff` between them, said as
  `ipvsadm` arguments (`adapters.describe`).
- A write is atomic: a temporary file in the same directory, written,
  fsynced, given the old file's mode (and owner, when allowed), renamed
  over the file, the directory fsynced.  Any failure before the rename
  leaves the file as it was and removes the temporary file.  Applies are
  serialised by a lock in the history directory, and the file's ETag is
  checked under the lock and again just before the rename.
- The history directory holds every replaced version, one file each,
  named `<UTC time>-<serial_no>.cf`: append-only (nothing here deletes).
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from engine.config import ConfigError, parse
from engine.config.keys import TABLES, Key
from engine.config.lexer import LexError, quote, tokens
from engine.config.limits import U64
from engine.config.parser import Parser
from engine.diff import diff as table_diff
from engine.model import Config
from engine.pool import Member, dest_port, desired_entry, desired_table, quorum_state, service_key
from engine.table import ServiceEntry, Table

Block = tuple[str, ...]  # () global, (virtual,), (virtual, server)
Value = str | int | bool | Sequence[str] | None
Health = Mapping[tuple[str, str], bool | str]  # (virtual, server) -> healthy?, or a standing: up down drained

_KINDS = ("global", "virtual", "server")
_KEY_LINE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")
_VERSION = re.compile(r"[0-9]{8}T[0-9]{6}\.[0-9]{6}Z-[0-9]{1,20}(?:-[0-9]+)?")
_STANDINGS = ("up", "down", "drained", "unknown")


# ------------------------------------------------------------------ errors


class EditError(Exception):
    """An edit refused; `status` is the HTTP status the web tool answers with."""

    status = 400


class Conflict(EditError):
    """The file changed since the editor read it: its ETag is not `If-Match`."""

    status = 412

    def __init__(self, current_etag: str, if_match: str) -> None:
        super().__init__(f"the file changed since it was read (its ETag is {current_etag}, not {if_match})")
        self.etag = current_etag


class Invalid(EditError):
    """The new text has errors; the file is untouched."""

    status = 422

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        first = errors[0] if errors else {"line": 0, "col": 0, "message": "invalid"}
        super().__init__(f"{len(errors)} error(s), first at line {first['line']}, column {first['col']}: "
                         f"{first['message']}")
        self.errors = errors


# ------------------------------------------------------------------ reading


def etag(text: str) -> str:
    """A strong ETag of the file's bytes (UTF-8), quoted as HTTP wants it."""
    return _etag_bytes(text.encode("utf-8", "surrogateescape"))


def _etag_bytes(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest() + '"'


def check(text: str) -> list[dict[str, Any]]:
    """Every error of `text` as {"line", "col", "message"}, in file order; [] when valid."""
    try:
        parse(text, "lvs.cf")
    except ConfigError as e:
        return _errors(e)
    return []


def _errors(e: ConfigError) -> list[dict[str, Any]]:
    return [{"line": i.line, "col": i.col, "message": i.message} for i in e.issues]


# ------------------------------------------------------------------ one key


def set_value(text: str, block: Sequence[str], key: str, value: Value) -> str:
    """`text` with `key` of `block` set to `value` (None: the key removed).

    `block`: () for the globals, (VIRTUAL,) or (VIRTUAL, SERVER).  `value`:
    a string (one token for a key that takes one value, quoted as lvs.cf
    quotes when needed; blank-separated tokens for a key that takes
    several, such as `address = 10.0.0.100 eth0:1`), a sequence of tokens,
    an int, or a bool (written 1/0).  Raises KeyError for a block the file
    does not have and ValueError for a key lvs.cf does not know there or a
    file too broken to edit.
    """
    block = tuple(block)
    if len(block) > 2:
        raise ValueError(f"a block is (), (VIRTUAL,) or (VIRTUAL, SERVER), not {block!r}")
    kind = _KINDS[len(block)]
    k = TABLES[kind].get(key)
    if k is None:
        raise ValueError(f"lvs.cf has no {kind} key {key!r}")
    parser = Parser(text, "lvs.cf")
    parser.run()
    doc = parser.doc
    if parser.stopped or len(doc.lines) != len(_raw_lines(text)[0]):
        raise ValueError("the file cannot be read far enough to edit it (see its errors)")
    if block and block not in doc.blocks:
        what = f"virtual {block[0]}" if len(block) == 1 else f"server {block[1]} in virtual {block[0]}"
        raise KeyError(f"the file has no {what}")
    raws, final_newline = _raw_lines(text)
    crlf = doc.newline == "\r\n"
    lines = [raw[:-1] if raw.endswith("\r") else raw for raw in raws]
    ends = ["\r" if raw.endswith("\r") else "" for raw in raws]
    at = next((n for n, line in enumerate(doc.lines) if line.block == block and line.kind in ("key", "bad")
               and (m := _KEY_LINE.match(line.text)) and m.group(1) == key), None)
    if value is None:
        if at is not None:
            rest = _trailing_comment(lines[at])
            if rest:
                lines[at] = _indent(lines[at]) + rest
            else:
                del lines[at], ends[at]
    else:
        rendered = " ".join(_tokens_of(k, value))
        if at is not None:
            lines[at] = _with_values(lines[at], rendered)
        else:
            where, indent = _new_key_place(doc.lines, block)
            lines.insert(where, f"{indent}{key} = {rendered}")
            ends.insert(where, "\r" if crlf else "")
    out = "\n".join(line + end for line, end in zip(lines, ends))
    return out + "\n" if final_newline and lines else out


def _raw_lines(text: str) -> tuple[list[str], bool]:
    raws = text.split("\n")
    final_newline = raws[-1] == ""
    if final_newline:
        raws.pop()
    return raws, final_newline


def _tokens_of(k: Key, value: str | int | bool | Sequence[str]) -> list[str]:
    if isinstance(value, bool):
        return ["1" if value else "0"]
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, str):
        one = k.counts == (1,) and not k.many
        return [quote(value)] if one else [quote(word) for word in value.split()]
    return [quote(str(v)) for v in value]


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _values_span(line: str) -> tuple[int, int] | None:
    """Where the values of a key line are (0-based, end exclusive); None: a line the lexer refuses."""
    try:
        toks = tokens(line)
    except LexError:
        return None
    values = [t for t in toks[2:]] if len(toks) >= 2 and toks[1].text == "=" else []
    if not values:
        eq = line.index("=") + 1
        return eq, eq
    return values[0].col - 1, values[-1].end


def _trailing_comment(line: str) -> str:
    span = _values_span(line)
    if span is None:
        return ""
    rest = line[span[1]:].strip()
    return rest if rest.startswith("#") else ""


def _with_values(line: str, rendered: str) -> str:
    span = _values_span(line)
    if span is None:  # a value the lexer refuses (an unclosed quote): everything after the '='
        eq = line.index("=") + 1
        return f"{line[:eq]} {rendered}"
    start, end = span
    if start == end:  # `key =` with no value yet
        return f"{line[:start]} {rendered}{line[end:]}"
    return line[:start] + rendered + line[end:]


def _new_key_place(doc_lines: Sequence[Any], block: Block) -> tuple[int, str]:
    """Where a key the block lacks goes, and its indentation: after the block's
    last key before its first child block (else its last key; else just after
    its opening line; for the globals, before the first virtual and the
    comments and blank lines right above it)."""
    depth = len(block)
    mine = [n for n, line in enumerate(doc_lines) if line.block == block and line.kind in ("key", "bad")
            and _KEY_LINE.match(line.text)]
    child = next((n for n, line in enumerate(doc_lines) if line.kind == "open" and len(line.block) == depth + 1
                  and line.block[:depth] == block), None)
    before = [n for n in mine if child is None or n < child]
    indent = _key_indent(doc_lines, block)
    if before or mine:
        return (before or mine)[-1] + 1, indent
    if block:
        opening = next(n for n, line in enumerate(doc_lines) if line.kind == "open" and line.block == block)
        return opening + 1, indent
    at = child if child is not None else len(doc_lines)
    for kind in ("comment", "blank"):  # the comments right above the first virtual are its own
        while at > 0 and doc_lines[at - 1].kind == kind:
            at -= 1
    return at, indent


def _key_indent(doc_lines: Sequence[Any], block: Block) -> str:
    """The indentation of the block's keys, else of any block's of its depth, else one more than its opening."""
    depth = len(block)
    for same in (True, False):
        for line in doc_lines:
            if line.kind == "key" and len(line.block) == depth and (not same or line.block == block):
                return _indent(line.text)
    if not block:
        return ""
    opening = next(line for line in doc_lines if line.kind == "open" and line.block == block)
    return _indent(opening.text) + "    "


# ------------------------------------------------------------------ prepare


@dataclass(frozen=True, slots=True)
class Prepared:
    """What applying a new text would do; `errors` non-empty: it would be refused."""

    text: str  # the text to write: the new text, serial_no raised if it did not raise it
    serial_no: int | None  # None when invalid
    diff: str  # unified diff from the current file to `text`
    table_ops: tuple[str, ...]  # ipvsadm arguments, in the order the engine would carry them out
    errors: list[dict[str, Any]] = field(default_factory=list)
    current_serial_no: int = 0  # the file's now (0 when it cannot be read)

    @property
    def valid(self) -> bool:
        return not self.errors


def prepare(current: str, new: str, health: Health | None = None) -> Prepared:
    """The new text as it would be written, its diff, and the operations an
    active router's table would see (every real server healthy unless
    `health` says otherwise).  Each text is parsed once."""
    try:
        new_config = parse(new)
    except ConfigError as e:
        return Prepared(new, None, unified_diff(current, new), (), _errors(e))
    try:
        current_config = parse(current)
        old_table = active_table(current_config, health)
    except ConfigError:  # a file broken by hand: what can be read of it, and no table to start from
        current_config, old_table = Parser(current, "lvs.cf").run(), {}
    current_serial = current_config.serial_no
    text = new
    if new_config.serial_no <= current_serial:
        if current_serial >= U64:
            return Prepared(new, None, unified_diff(current, new), (), [
                {"line": _serial_line(new), "col": 1, "message": f"serial_no cannot be raised above {current_serial}"}],
                current_serial)
        text = set_value(new, (), "serial_no", str(current_serial + 1))  # that one line: the rest is as parsed
        new_config = replace(new_config, serial_no=current_serial + 1)
    ops = table_diff(old_table, active_table(new_config, health))
    return Prepared(text, new_config.serial_no, unified_diff(current, text), tuple(_said(op, new_config) for op in ops),
                    [], current_serial)


def _serial_line(text: str) -> int:
    for n, line in enumerate(text.split("\n"), 1):
        m = _KEY_LINE.match(line)
        if m and m.group(1) == "serial_no":
            return n
    return 1


def _said(op: Any, config: Config) -> str:
    from adapters.describe import describe

    text = describe(op, config).text
    return text.removeprefix("table: ")


def active_table(config: Config, health: Health | None = None) -> Table:
    """The table an active router wants for `config` (engine.pool), every real
    server healthy unless `health` says otherwise, no operator overrides."""
    health = health or {}
    entries: dict[str, ServiceEntry | None] = {}
    for virtual in config.virtuals:
        key = service_key(virtual)
        if key is None:
            entries[virtual.name] = None
            continue
        members = []
        for server in virtual.servers:
            if not server.active or server.address is None:
                continue
            said = health.get((virtual.name, server.name), True)
            standing = ("up" if said else "down") if isinstance(said, bool) else said
            if standing not in _STANDINGS:
                raise ValueError(f"health of {virtual.name}/{server.name}: {standing!r} is not one of {_STANDINGS}")
            members.append(Member(server.name, server.address, dest_port(virtual, server.port), standing,  # type: ignore[arg-type]
                                  server.weight, server.weight))
        entries[virtual.name] = desired_entry(config, virtual, members, quorum_state(virtual, members, True), key)
    return desired_table(entries)


def unified_diff(old: str, new: str, name: str = "lvs.cf") -> str:
    def lines(text: str) -> list[str]:
        out = text.splitlines(keepends=True)
        if out and not out[-1].endswith(("\n", "\r")):
            out[-1] += "\n\\ No newline at end of file\n"
        return out

    return "".join(difflib.unified_diff(lines(old), lines(new), f"{name} (current)", f"{name} (new)"))


# ------------------------------------------------------------------ apply


@dataclass(frozen=True, slots=True)
class Applied:
    serial_no: int
    etag: str  # the file's new ETag
    saved: str  # the history version holding what the file was before
    diff: str
    table_ops: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Version:
    id: str  # `<UTC time>-<serial_no>`: give it to `revert` or `version_text`
    serial_no: int
    saved_at: str  # ISO 8601, UTC: when it was replaced
    size: int  # bytes


_write = os.write  # a seam for the tests (a failure mid-write)


def apply(path: str | os.PathLike[str], new_text: str, if_match: str, history_dir: str | os.PathLike[str],
          health: Health | None = None) -> Applied:
    """Write `new_text` (serial_no raised if it did not raise it) over the file at
    `path`, atomically, if its ETag is still `if_match`; the version it replaces
    goes to `history_dir`.  Raises Conflict (412) or Invalid (422), the file untouched."""
    path = Path(os.path.realpath(path))  # a symlinked lvs.cf stays a symlink: its target is replaced
    hist = Path(history_dir)
    hist.mkdir(parents=True, exist_ok=True)
    with _locked(hist):
        data = path.read_bytes()
        current_tag = _etag_bytes(data)
        if current_tag != if_match:
            raise Conflict(current_tag, if_match)
        current = data.decode("utf-8", "surrogateescape")
        prepared = prepare(current, new_text, health)
        if prepared.errors:
            raise Invalid(prepared.errors)
        assert prepared.serial_no is not None
        saved = _save_version(hist, data, prepared.current_serial_no)
        try:
            _atomic_write(path, prepared.text.encode("utf-8"), expect=current_tag)
        except BaseException:
            (hist / f"{saved}.cf").unlink(missing_ok=True)  # nothing was replaced: nothing to keep
            raise
    return Applied(prepared.serial_no, etag(prepared.text), saved, prepared.diff, prepared.table_ops)


def history(history_dir: str | os.PathLike[str]) -> list[Version]:
    """The versions the file had before each apply, newest first."""
    hist = Path(history_dir)
    if not hist.is_dir():
        return []
    out = []
    for entry in hist.iterdir():
        if entry.suffix != ".cf" or not _VERSION.fullmatch(entry.stem):
            continue
        stamp, serial = entry.stem.split("-")[:2]
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc)
        out.append(Version(entry.stem, int(serial), when.isoformat(), entry.stat().st_size))
    return sorted(out, key=lambda v: v.id, reverse=True)


def version_text(history_dir: str | os.PathLike[str], version_id: str) -> str:
    """The text of one saved version.  Raises KeyError for an id history() does not list."""
    if not _VERSION.fullmatch(version_id):
        raise KeyError(f"no version {version_id!r}")
    try:
        return (Path(history_dir) / f"{version_id}.cf").read_bytes().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        raise KeyError(f"no version {version_id!r}") from None


def revert(path: str | os.PathLike[str], version_id: str, if_match: str, history_dir: str | os.PathLike[str],
           health: Health | None = None) -> Applied:
    """Make a saved version current again: a new version, its serial_no raised
    above the file's (so the partner and the daemon see a change)."""
    return apply(path, version_text(history_dir, version_id), if_match, history_dir, health)


class _locked:
    """An exclusive lock (flock) on `DIR/.lock`: one apply at a time, across processes."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / ".lock"
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)  # releases the lock


def _save_version(hist: Path, data: bytes, serial_no: int) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    version = f"{stamp}-{serial_no}"
    n = 1
    while (hist / f"{version}.cf").exists():
        n += 1
        version = f"{stamp}-{serial_no}-{n}"
    _atomic_write(hist / f"{version}.cf", data, mode=0o600, new=True)
    return version


def _atomic_write(path: Path, data: bytes, *, expect: str | None = None, mode: int | None = None,
                  new: bool = False) -> None:
    """`data` into `path` through a temporary file in its directory and a rename.
    The old file's mode (and owner, when allowed) is kept; `expect`: the ETag the
    file must still have just before the rename (else Conflict, nothing written)."""
    directory = path.parent
    old = None if new else os.stat(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        view = memoryview(data)
        while view:
            view = view[_write(fd, view):]
        os.fchmod(fd, (old.st_mode & 0o7777) if old is not None else (mode if mode is not None else 0o644))
        if old is not None:
            try:
                os.fchown(fd, old.st_uid, old.st_gid)
            except PermissionError:
                pass  # an unprivileged web tool keeps its own ownership; the mode is kept all the same
        os.fsync(fd)
        os.close(fd)
        fd = -1
        if expect is not None:
            now = _etag_bytes(path.read_bytes())
            if now != expect:
                raise Conflict(now, expect)
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
