"""lvs.cf text into the model, collecting every problem of the file.

The parser keeps a `Document`: every line with what it held, so that the
writer can render a changed model back keeping comments, blank lines, key
order and the spelling of unchanged values.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.config.keys import TABLES, Key, ValueProblem
from engine.config.lexer import LexError, Token, tokens
from engine.model import Config, Server, Virtual

Block = tuple[str, ...]  # () global, (virtual,), (virtual, server)


@dataclass(frozen=True, slots=True)
class Issue:
    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ConfigError(Exception):
    def __init__(self, issues: list[Issue]) -> None:
        self.issues = tuple(sorted(issues, key=lambda i: (i.line, i.col)))
        super().__init__("\n".join(str(i) for i in self.issues))


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    kind: Literal["blank", "comment", "key", "open", "close", "bad"]
    block: Block  # the block the line is in (for open: the block it opens)
    key: str | None = None
    canonical: tuple[str, ...] | None = None  # the value as the writer would write it


@dataclass
class Document:
    lines: list[Line]
    positions: dict[tuple[Block, str], tuple[int, int, int]] = field(default_factory=dict)  # (line, key col, value col)
    blocks: dict[Block, tuple[int, int]] = field(default_factory=dict)  # where each block opens (line, name col)


@dataclass
class _Open:
    kind: Literal["virtual", "server"]
    name: str
    line: int
    col: int
    fields: dict[str, Any] = field(default_factory=dict)
    servers: list[Server] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


class Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.file = filename
        self.issues: list[Issue] = []
        self.doc = Document([])
        self.globals: dict[str, Any] = {}
        self.seen_globals: set[str] = set()
        self.virtuals: list[Virtual] = []
        self.stack: list[_Open] = []

    def error(self, line: int, col: int, message: str) -> None:
        self.issues.append(Issue(self.file, line, col, message))

    @property
    def block(self) -> Block:
        return tuple(o.name for o in self.stack)

    def run(self) -> Config:
        for number, raw in enumerate(self.text.split("\n"), 1):
            self.line(number, raw.rstrip("\r"))
        for still in reversed(self.stack):
            self.error(still.line, still.col, f"missing '}}' for {still.kind} {still.name.split(chr(0))[0]} opened at line {still.line}")
        while self.stack:
            self.close(len(self.text.split("\n")))
        return Config(**self.globals, virtuals=tuple(self.virtuals), source=self.doc)

    def line(self, number: int, raw: str) -> None:
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            self.doc.lines.append(Line(raw, "blank" if not stripped else "comment", self.block))
            return
        try:
            toks = tokens(raw)
        except LexError as e:
            self.error(number, e.col, e.message)
            self.doc.lines.append(Line(raw, "bad", self.block))
            return
        first = toks[0]
        if first.text == "}":
            self.closing(number, raw, toks)
        elif first.text in ("virtual", "server") and (len(toks) < 2 or toks[1].text != "="):
            self.opening(number, raw, toks)
        else:
            self.key_line(number, raw, toks)

    def closing(self, number: int, raw: str, toks: list[Token]) -> None:
        if len(toks) > 1:
            self.error(number, toks[1].col, f"expected nothing after '}}', found {toks[1].text!r}")
        if not self.stack:
            self.error(number, toks[0].col, "'}' without an open virtual or server")
            self.doc.lines.append(Line(raw, "bad", ()))
            return
        block = self.block
        self.close(number)
        self.doc.lines.append(Line(raw, "close", block))

    def opening(self, number: int, raw: str, toks: list[Token]) -> None:
        kind = toks[0].text
        words = [t for t in toks[1:]]
        if words and words[-1].text.endswith("{") and words[-1].text != "{":
            last = words[-1]
            words[-1:] = [Token(last.text[:-1], last.col), Token("{", last.col + len(last.text) - 1)]
        if len(words) != 2 or words[1].text != "{":
            col = words[1].col if len(words) > 1 else (words[0].col + len(words[0].text) if words else toks[0].col)
            self.error(number, col, f"expected '{kind} NAME {{'")
            self.doc.lines.append(Line(raw, "bad", self.block))
            return
        name = words[0]
        if kind == "server" and len(self.stack) != 1:
            where = "inside a server (missing '}'?)" if self.stack else "outside a virtual"
            self.error(number, toks[0].col, f"server {name.text} {where}: servers belong in a virtual")
            if not self.stack:  # swallow its keys and its '}' so they cause no more errors
                self.stack.append(_Open("server", f"{name.text}\0orphan", number, name.col))
                self.doc.lines.append(Line(raw, "bad", self.block))
                return
        elif kind == "virtual" and self.stack:
            self.error(number, toks[0].col, f"virtual {name.text} inside {self.stack[-1].kind} "
                                            f"{self.stack[-1].name}: missing '}}' before it?")
        else:
            self.stack.append(_Open(kind, name.text, number, name.col))  # type: ignore[arg-type]
            block = self.block
            if block in self.doc.blocks:
                what = "virtual" if kind == "virtual" else f"server in virtual {block[0]}"
                self.error(number, name.col, f"duplicate {what} name {name.text!r} (first at line {self.doc.blocks[block][0]})")
                self.stack[-1].name = f"{name.text}\0dup{number}"
                block = self.block
            self.doc.blocks[block] = (number, name.col)
            self.doc.lines.append(Line(raw, "open", block))
            return
        self.doc.lines.append(Line(raw, "bad", self.block))

    def close(self, number: int) -> None:
        done = self.stack.pop()
        if "\0" in done.name:  # a duplicate or misplaced block: already reported
            return
        if done.kind == "server":
            self.stack[-1].servers.append(Server(name=done.name, **done.fields))
        else:
            self.virtuals.append(Virtual(name=done.name, servers=tuple(done.servers), **done.fields))

    def key_line(self, number: int, raw: str, toks: list[Token]) -> None:
        block_kind: str = self.stack[-1].kind if self.stack else "global"
        first = toks[0]
        self.doc.lines.append(Line(raw, "bad", self.block))
        if len(toks) < 2 or toks[1].text != "=":
            col = toks[1].col if len(toks) > 1 else first.col + len(first.text)
            self.error(number, col, f"expected '=' after {first.text!r}")
            return
        table = TABLES[block_kind]
        k = table.get(first.text)
        if k is None:
            self.error(number, first.col, self.unknown(first.text, block_kind))
            return
        values = toks[2:]
        if not self.count_ok(number, k, values, toks[1]):
            return
        seen = self.stack[-1].seen if self.stack else self.seen_globals
        if k.name in seen:
            line = self.doc.positions[(self.block, k.name)][0]
            self.error(number, first.col, f"duplicate key {k.name!r} (first at line {line})")
            return
        seen.add(k.name)
        self.doc.positions[(self.block, k.name)] = (number, first.col, values[0].col)
        try:
            parsed = k.parse(values)
        except ValueProblem as e:
            self.error(number, e.col or values[0].col, f"{k.name}: {e.message}")
            return
        (self.stack[-1].fields if self.stack else self.globals).update(parsed)
        canonical = k.render(parsed[k.fields[0]] if len(k.fields) == 1 else tuple(parsed[f] for f in k.fields))
        self.doc.lines[-1] = Line(raw, "key", self.block, k.name, tuple(canonical) if canonical else ())

    def count_ok(self, number: int, k: Key, values: list[Token], eq: Token) -> bool:
        n = len(values)
        want = k.counts[0]
        if (k.many and n >= want) or (not k.many and n == want):
            return True
        expected = f"at least {want} value" if k.many else f"{want} value"
        expected += "s" if want != 1 else ""
        if n < want:
            col = eq.col + 1 if not values else values[-1].col + len(values[-1].text)
            self.error(number, col, f"{k.name} takes {expected}, found {n}")
        else:
            self.error(number, values[want].col, f"{k.name} takes {expected}, found {n}")
        return False

    @staticmethod
    def unknown(name: str, block_kind: str) -> str:
        where = {"global": "global", "virtual": "virtual", "server": "server"}[block_kind]
        message = f"unknown {where} key {name!r}"
        near = difflib.get_close_matches(name, list(TABLES[block_kind]), n=1, cutoff=0.6)
        if near:
            return f"{message}; did you mean {near[0]!r}?"
        elsewhere = [b for b in TABLES if b != block_kind and name in TABLES[b]]
        if elsewhere:
            return f"{message}; {name!r} is a {elsewhere[0]} key"
        return message
