"""lvs.cf text into the model, collecting every problem of the file.

Reading is bounded (engine/config/limits.py): a file over the size or
line bound is refused before any line is read, a line too long or holding
a control character is reported and skipped, and after MAX_ISSUES errors
(or one virtual or server too many) the parser stops.

The parser keeps a `Document`: every line with what it held, so that the
writer can render a changed model back keeping comments, blank lines, key
order and the spelling of unchanged values.  It recovers from each error
by skipping the line (or, for a block opened before the previous one was
closed, by closing that one), so one mistake gives one error.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from engine.config.keys import TABLES, Key, ValueProblem
from engine.config.lexer import LexError, Token, tokens
from engine.config.limits import (
    FORBIDDEN, MAX_FILE_BYTES, MAX_ISSUES, MAX_LINE_CHARS, MAX_LINES, MAX_NAME_CHARS, MAX_SERVERS, MAX_VIRTUALS,
    character, shown,
)
from engine.model import Config, Server, Virtual

Block = tuple[str, ...]  # () global, (virtual,), (virtual, server)
BlockKind = Literal["virtual", "server"]
NAME = re.compile(r"[^\s\"'#={}/]+")
ANY_KEY = "*"  # in Document.failed: the block had a line whose key is unknown


@dataclass(frozen=True, slots=True)
class Issue:
    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ConfigError(Exception):
    """Every problem of one file, in file order."""

    def __init__(self, issues: list[Issue] | tuple[Issue, ...]) -> None:
        self.issues: tuple[Issue, ...] = tuple(sorted(issues, key=lambda i: (i.line, i.col, i.message)))
        super().__init__("\n".join(str(i) for i in self.issues))


class Line(NamedTuple):  # a tuple, not a frozen dataclass: one per line of the file, 3x cheaper
    text: str  # without its line ending
    kind: Literal["blank", "comment", "key", "open", "close", "bad"]
    block: Block  # the block the line is in (for open and close: that block)
    key: str | None = None
    canonical: tuple[str, ...] | None = None  # the value as the writer would write it
    span: tuple[int, int] = (0, 0)  # where the values are in `text` (0-based, end exclusive)
    ending: str = ""  # its line ending where it is not the document's `newline` (a file may mix them)


@dataclass
class Document:
    lines: list[Line]
    positions: dict[tuple[Block, str], tuple[int, int, int]] = field(default_factory=dict)  # (line, key col, value col)
    blocks: dict[Block, tuple[int, int]] = field(default_factory=dict)  # where each block opens (line, name col)
    failed: dict[Block, set[str]] = field(default_factory=dict)  # keys whose line had an error
    newline: str = "\n"
    final_newline: bool = True

    def fail(self, block: Block, key: str) -> None:
        self.failed.setdefault(block, set()).add(key)

    def ok(self, block: Block, *keys: str) -> bool:
        """None of `keys` (nor an unknown key) of `block` had an error."""
        failed = self.failed.get(block, set())
        return ANY_KEY not in failed and not failed.intersection(keys)


@dataclass
class _Open:
    kind: BlockKind
    name: str
    line: int
    col: int
    discard: bool = False  # duplicate or misplaced: already reported, its keys are checked but not kept

    @property
    def ident(self) -> str:
        """Its name in a `Block`; a discarded block never shares one with a kept block."""
        return f"{self.name}#{self.line}" if self.discard else self.name
    fields: dict[str, Any] = field(default_factory=dict)
    servers: list[Server] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


def too_big(file: str, head: bytes, size: int, unit: str = "bytes") -> Issue:
    """The one error of a file over MAX_FILE_BYTES, at its first byte past the bound (`head`: at least that much)."""
    text = head[:MAX_FILE_BYTES].decode("utf-8", "ignore")
    line, col = text.count("\n") + 1, len(text) - text.rfind("\n")
    return Issue(file, line, col, f"the file is larger than {MAX_FILE_BYTES} bytes "
                                  f"({MAX_FILE_BYTES // 1024 // 1024} MiB, the most shoal reads): {size} {unit}")


class _Stop(Exception):
    """The file is refused as a whole (too big) or has too many errors: no reading on."""


class Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.file = filename
        self.issues: list[Issue] = []
        self.stopped = False  # the issues are not all of the file's: validation would add noise
        self.doc = Document([])
        self.globals: dict[str, Any] = {}
        self.seen_globals: set[str] = set()
        self.virtuals: list[Virtual] = []
        self.stack: list[_Open] = []
        self.block: Block = ()  # the names of `stack`: the block the current line is in
        self.counts = {"virtual": 0, "server": 0}

    def error(self, line: int, col: int, message: str) -> None:
        self.issues.append(Issue(self.file, line, col, message))

    def stop(self, line: int, col: int, message: str) -> None:
        self.error(line, col, message)
        self.stopped = True
        raise _Stop

    def run(self) -> Config:
        try:
            self.read()
        except _Stop:
            pass
        return Config(**self.globals, virtuals=tuple(self.virtuals), source=self.doc)

    def read(self) -> None:
        self.bounds()
        raw_lines = self.text.split("\n")
        self.doc.final_newline = raw_lines[-1] == ""
        if self.doc.final_newline:
            raw_lines.pop()
        if raw_lines and raw_lines[0].endswith("\r"):
            self.doc.newline = "\r\n"
        last = len(raw_lines)
        for number, raw in enumerate(raw_lines, 1):
            # the \r of a \r\n; one at the very end of the file ends no line: a control character
            ending = "" if number == last and not self.doc.final_newline else "\r\n" if raw.endswith("\r") else "\n"
            self.line(number, raw[:-1] if ending == "\r\n" else raw)
            if ending and ending != self.doc.newline:
                self.doc.lines[-1] = self.doc.lines[-1]._replace(ending=ending)
            if len(self.issues) >= MAX_ISSUES:  # a line may have added more than one
                self.issues = sorted(self.issues, key=lambda i: (i.line, i.col, i.message))[:MAX_ISSUES]
                self.stop(number + 1, 1, f"too many errors: stopped reading after {MAX_ISSUES}")
        for still in reversed(self.stack):
            if still.name:  # a malformed opening line was reported already
                self.error(still.line, still.col, f"missing '}}' for {still.kind} {still.name} "
                                                  f"opened at line {still.line}")
        while self.stack:
            self.close()

    def bounds(self) -> None:
        """A file too big to read is refused as a whole, before any line is looked at."""
        text = self.text
        if len(text) > MAX_FILE_BYTES // 4:  # else it cannot be: a character is at most 4 bytes
            # the size in bytes, but for a text so big that encoding it would cost: its characters
            size = len(text.encode("utf-8", "surrogatepass")) if len(text) <= 4 * MAX_FILE_BYTES else len(text)
            if size > MAX_FILE_BYTES:
                head = text[:MAX_FILE_BYTES + 1].encode("utf-8", "surrogatepass")
                self.issues.append(too_big(self.file, head, size, "bytes" if len(text) <= 4 * MAX_FILE_BYTES
                                           else "characters"))
                self.stopped = True
                raise _Stop
        lines = text.count("\n") + (not text.endswith("\n"))
        if lines > MAX_LINES:
            self.stop(MAX_LINES + 1, 1, f"the file has more than {MAX_LINES} lines (the most shoal reads): {lines}")

    def line(self, number: int, raw: str) -> None:
        if len(raw) > MAX_LINE_CHARS or FORBIDDEN.search(raw):
            self.unreadable(number, raw)
            return
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            self.doc.lines.append(Line(raw, "blank" if not stripped else "comment", self.block))
            return
        try:
            toks = tokens(raw)
        except LexError as e:
            self.error(number, e.col, e.message)
            self.doc.lines.append(Line(raw, "bad", self.block))
            key = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", raw)
            self.doc.fail(self.block, key.group(1) if key else ANY_KEY)
            return
        first = toks[0]
        if first.text == "}" and not first.quoted:
            self.closing(number, raw, toks)
        elif first.text in ("virtual", "server") and (len(toks) < 2 or toks[1].text != "="):
            self.opening(number, raw, toks)
        else:
            self.key_line(number, raw, toks)

    def unreadable(self, number: int, raw: str) -> None:
        """A line too long, or with a character no lvs.cf holds: reported, not read."""
        bad = FORBIDDEN.search(raw, 0, MAX_LINE_CHARS + 1)
        if bad:
            self.error(number, bad.start() + 1, f"{character(bad.group())} is not allowed in lvs.cf "
                                                f"(no control characters but tab)")
        else:
            self.error(number, MAX_LINE_CHARS + 1, f"line longer than {MAX_LINE_CHARS} characters "
                                                   f"(the most shoal reads): {len(raw)}")
        self.doc.lines.append(Line(raw, "bad", self.block))
        key = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", raw[:100])
        self.doc.fail(self.block, key.group(1) if key else ANY_KEY)

    def closing(self, number: int, raw: str, toks: list[Token]) -> None:
        if len(toks) > 1:
            self.error(number, toks[1].col, f"expected nothing after '}}', found {shown(toks[1].text)}")
        if not self.stack:
            self.error(number, toks[0].col, "'}' without an open virtual or server")
            self.doc.lines.append(Line(raw, "bad", ()))
            return
        self.doc.lines.append(Line(raw, "close", self.block))
        self.close()

    def opening(self, number: int, raw: str, toks: list[Token]) -> None:
        kind: BlockKind = "virtual" if toks[0].text == "virtual" else "server"
        words = list(toks[1:])
        if words and words[-1].text.endswith("{") and words[-1].text != "{" and not words[-1].quoted:
            last = words[-1]
            words[-1:] = [Token(last.text[:-1], last.col, False, last.end - 1), Token("{", last.col + len(last.text) - 1)]
        opens = bool(words) and words[-1].text == "{" and not words[-1].quoted
        if len(words) != 2 or not opens or not NAME.fullmatch(words[0].text) or words[0].quoted:
            self.bad_opening(number, raw, kind, toks, words, opens)
            return
        name = words[0]
        discard = False
        if kind == "virtual":
            self.close_unclosed(number, toks[0].col, f"virtual {name.text}", keep=0)
        elif not self.stack or self.stack[0].kind != "virtual":
            self.close_unclosed(number, toks[0].col, f"server {name.text}", keep=0)
            self.error(number, toks[0].col, f"server {name.text} outside a virtual: servers belong in a virtual")
            discard = True
        else:
            self.close_unclosed(number, toks[0].col, f"server {name.text}", keep=1)
        block = (*self.block, name.text)
        if not discard and block in self.doc.blocks:
            what = "virtual" if kind == "virtual" else f"server in virtual {self.stack[0].name}"
            self.error(number, name.col, f"duplicate {what} name {shown(name.text)} (first at line {self.doc.blocks[block][0]})")
            discard = True
        if len(name.text) > MAX_NAME_CHARS:
            self.error(number, name.col, f"a {kind} name has at most {MAX_NAME_CHARS} characters, "
                                         f"found {len(name.text)}")
        if not discard:
            self.counts[kind] += 1
            most = MAX_VIRTUALS if kind == "virtual" else MAX_SERVERS
            if self.counts[kind] > most:
                self.stop(number, toks[0].col, f"more than {most} {kind}s in the file (the most shoal runs)")
        self.push(_Open(kind, name.text, number, name.col, discard))
        self.doc.blocks[self.block] = (number, name.col)
        self.doc.lines.append(Line(raw, "open", self.block))

    def bad_opening(self, number: int, raw: str, kind: str, toks: list[Token], words: list[Token], opens: bool) -> None:
        if words and (words[0].quoted or not NAME.fullmatch(words[0].text)) and words[0].text != "{":
            self.error(number, words[0].col, f"expected a {kind} name without blanks, quotes or any of # = {{ }} /, "
                                             f"found {shown(words[0].text)}")
        else:
            if not words:
                col = toks[0].end + 1
            elif words[0].text == "{" or len(words) > 1:
                col = words[0].col if words[0].text == "{" else words[1].col
            else:
                col = words[0].end + 1
            self.error(number, col, f"expected '{kind} NAME {{'")
        self.doc.lines.append(Line(raw, "bad", self.block))
        self.doc.fail(self.block, ANY_KEY)
        if opens:  # swallow its keys and its '}' so they cause no more errors
            self.push(_Open(kind, "", number, toks[0].col, discard=True))  # type: ignore[arg-type]

    def close_unclosed(self, number: int, col: int, opening: str, keep: int) -> None:
        """A block opens while deeper ones are open: each lacks its '}'."""
        while len(self.stack) > keep:
            still = self.stack[-1]
            if still.name:
                self.error(number, col, f"missing '}}' for {still.kind} {still.name} opened at line {still.line} "
                                        f"(before {opening})")
            self.close()

    def push(self, block: _Open) -> None:
        self.stack.append(block)
        self.block = (*self.block, block.ident)

    def close(self) -> None:
        done = self.stack.pop()
        self.block = self.block[:-1]
        if done.discard or any(o.discard for o in self.stack):
            return
        if done.kind == "server":
            self.stack[-1].servers.append(Server(name=done.name, **done.fields))
        else:
            self.virtuals.append(Virtual(name=done.name, servers=tuple(done.servers), **done.fields))

    def key_line(self, number: int, raw: str, toks: list[Token]) -> None:
        block_kind: str = self.stack[-1].kind if self.stack else "global"
        block = self.block
        first = toks[0]
        self.doc.lines.append(Line(raw, "bad", block))
        if len(toks) < 2 or toks[1].text != "=" or toks[1].quoted or first.quoted:
            col = toks[1].col if len(toks) > 1 else first.end + 1
            self.error(number, col, f"expected '=' after {shown(first.text)}")
            self.doc.fail(block, first.text)
            return
        k = TABLES[block_kind].get(first.text)
        if k is None:
            self.error(number, first.col, self.unknown(first.text, block_kind))
            for near in difflib.get_close_matches(first.text, list(TABLES[block_kind]), n=1, cutoff=0.6):
                self.doc.fail(block, near)  # what it may have meant is not checked further
            return
        values = toks[2:]
        seen = self.stack[-1].seen if self.stack else self.seen_globals
        if k.name in seen:
            line = self.doc.positions[(block, k.name)][0]
            self.error(number, first.col, f"duplicate key {k.name!r} (first at line {line})")
            return
        seen.add(k.name)
        self.doc.positions[(block, k.name)] = (number, first.col, values[0].col if values else toks[1].col)
        if not self.count_ok(number, k, values, toks[1]):
            self.doc.fail(block, k.name)
            return
        try:
            parsed = k.parse(values)
        except ValueProblem as e:
            self.error(number, e.col or values[0].col, f"{k.name}: {e.message}")
            self.doc.fail(block, k.name)
            return
        (self.stack[-1].fields if self.stack else self.globals).update(parsed)
        canonical = k.render(parsed[k.fields[0]] if len(k.fields) == 1 else tuple(parsed[f] for f in k.fields))
        span = (values[0].col - 1, values[-1].end)
        self.doc.lines[-1] = Line(raw, "key", block, k.name, tuple(canonical) if canonical else (), span)

    def count_ok(self, number: int, k: Key, values: list[Token], eq: Token) -> bool:
        n = len(values)
        want = k.counts[0]
        if (k.many and n >= want) or (not k.many and n == want):
            return True
        expected = f"at least {want} value" if k.many else f"{want} value"
        expected += "s" if want != 1 else ""
        if n < want:
            col = eq.end + 1 if not values else values[-1].end + 1
            self.error(number, col, f"{k.name} takes {expected}, found {n}")
        else:
            self.error(number, values[want].col, f"{k.name} takes {expected}, found {n}")
        return False

    @staticmethod
    def unknown(name: str, block_kind: str) -> str:
        message = f"unknown {block_kind} key {shown(name)}"
        near = difflib.get_close_matches(name, list(TABLES[block_kind]), n=1, cutoff=0.6)
        if near:
            return f"{message}; did you mean {near[0]!r}?"
        elsewhere = [b for b in TABLES if b != block_kind and name in TABLES[b]]
        if elsewhere:
            return f"{message}; {shown(name)} is a {elsewhere[0]} key"
        return message
