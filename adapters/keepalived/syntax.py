"""keepalived.conf read into a tree of statements, as keepalived reads it
(keepalived.conf(5): "DESCRIPTION", "Quoted strings", "ADVANCED
CONFIGURATION"), for `shoal import`.

    tree = load("/etc/keepalived/keepalived.conf", config_id="lb1")
    for stmt in tree.statements: stmt.word, stmt.args, stmt.where, stmt.block

The order of the steps is keepalived's: on each line a comment (`#` or `!`
outside quotes, anywhere in the line) is cut first; an `include` line
(and its variants) is followed before anything else (so an include cannot
be conditional nor use a parameter); then a conditional line (`@ID ...`
kept only when ID is the config id, `@^ID ...` only when it is not); then
a parameter definition (`$NAME=VALUE`, several lines when each but the
last ends with `\\`); then `${NAME}` and `$NAME` (followed by a blank or
the end of the line) are replaced, again and again, and a multi-line
value becomes several lines that go through the same steps.  A parameter
that is not defined stays as written.  `~SEQ` lines are not expanded (a
note says so).  Then the line is cut into words (quotes removed, blanks
inside them kept, `\\` escapes) and `{` `}` make blocks; a `{` alone on a
line opens the block of the statement above it.

Rules that keep hostile input harmless: every file is at most
MAX_FILE_BYTES and all of them together MAX_TOTAL_BYTES; includes nest at
most MAX_INCLUDE_DEPTH deep, MAX_FILES files in all, and a file that
includes itself (directly or not) is an error; a line expanded from
parameters is at most MAX_EXPANDED_CHARS long, at most MAX_EXPANSIONS
replacements deep, and one source line yields at most MAX_EXPANDED_LINES
lines, and all of it at most MAX_STEPS lines; blocks nest at most
MAX_DEPTH deep.  Each refusal is a
`file:line: message`, never a traceback.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
from dataclasses import dataclass, field

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_TOTAL_BYTES = 16 * 1024 * 1024
MAX_INCLUDE_DEPTH = 16
MAX_FILES = 1000
MAX_EXPANDED_CHARS = 65_536
MAX_EXPANSIONS = 64
MAX_EXPANDED_LINES = 100_000
MAX_DEPTH = 32
MAX_ERRORS = 50
MAX_STEPS = 1_000_000

INCLUDES = ("include", "includer", "includem", "includew", "includeb", "includea")
_DEFINE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)=(.*)")
_PARAM = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)(?=\s|$)")
_ESCAPES = {"a": "\a", "b": "\b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


@dataclass(frozen=True, slots=True)
class Where:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(slots=True)
class Stmt:
    """One statement: its first word, the others, and its block (None: it has none)."""

    word: str
    args: tuple[str, ...]
    where: Where
    block: list[Stmt] | None = None

    def text(self) -> str:
        return " ".join((self.word, *self.args))


@dataclass
class Tree:
    statements: list[Stmt]
    files: list[str] = field(default_factory=list)  # every file read, in order, as shown in notes
    paths: list[str] = field(default_factory=list)  # and where each is
    notes: list[tuple[Where, str]] = field(default_factory=list)  # read, but worth saying (skipped lines...)
    conditions: list[str] = field(default_factory=list)  # the @IDs met, in order of first use


class KeepalivedError(Exception):
    """The file cannot be read as keepalived.conf: every problem found, `file:line: message`."""

    def __init__(self, problems: list[tuple[Where, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{w}: {m}" for w, m in problems))


class _Stop(Exception):
    pass


class _Reader:
    def __init__(self, config_id: str | None) -> None:
        self.config_id = config_id
        self.params: dict[str, list[str]] = {}
        self.errors: list[tuple[Where, str]] = []
        self.tree = Tree([])
        self.total = 0
        self.steps = 0  # lines read, expansions included: the whole reading is bounded
        self.stack: list[str] = []  # real paths of the files being read (include loops)
        self.lines: list[tuple[Where, list[str]]] = []  # every logical line, as words

    def error(self, where: Where, message: str, stop: bool = False) -> None:
        self.errors.append((where, message))
        if stop or len(self.errors) >= MAX_ERRORS:
            raise _Stop

    # ------------------------------------------------------------ files

    def file(self, path: str, shown: str, included_at: Where | None) -> None:
        where = included_at or Where(shown, 1)
        real = os.path.realpath(path)
        if real in self.stack:
            chain = " -> ".join(os.path.basename(p) for p in (*self.stack[self.stack.index(real):], real))
            self.error(where, f"include loop: {shown} is already being read ({chain})", stop=True)
        if len(self.stack) >= MAX_INCLUDE_DEPTH:
            self.error(where, f"includes nest more than {MAX_INCLUDE_DEPTH} deep", stop=True)
        if len(self.tree.files) >= MAX_FILES:
            self.error(where, f"more than {MAX_FILES} files included", stop=True)
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            self.error(where, f"cannot read {shown}: {e.strerror or e}", stop=included_at is None)
            return
        if len(data) > MAX_FILE_BYTES:
            self.error(where, f"{shown} is larger than {MAX_FILE_BYTES} bytes (the most shoal import reads)",
                       stop=True)
        self.total += len(data)
        if self.total > MAX_TOTAL_BYTES:
            self.error(where, f"the files included come to more than {MAX_TOTAL_BYTES} bytes", stop=True)
        text = data.decode("utf-8", "replace")  # keepalived reads bytes; a stray byte is not worth a refusal
        self.tree.files.append(shown)
        self.tree.paths.append(path)
        self.stack.append(real)
        raw = text.split("\n")
        n = 0
        while n < len(raw):
            where = Where(shown, n + 1)
            line = _uncomment(raw[n].rstrip("\r"))
            n += 1
            words = line.split()
            if words and words[0] in INCLUDES and not line.lstrip().startswith("$"):
                self.include(words[1:], path, shown, where)
                continue
            block = [line]
            defined = _DEFINE.match(line.strip())
            if defined and line.rstrip().endswith("\\"):  # a multi-line definition runs on
                while block[-1].rstrip().endswith("\\") and n < len(raw):
                    block.append(_uncomment(raw[n].rstrip("\r")))
                    n += 1
            self.logical(where, block, 0, os.path.dirname(os.path.abspath(path)))
        self.stack.pop()

    def include(self, args: list[str], path: str, shown: str, where: Where) -> None:
        if not args:
            self.error(where, "include needs a file name")
            return
        pattern = args[0]
        base = os.path.dirname(path)
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        found: set[str] = set()
        for each in braces(full):  # lazily: a pattern that matches half the disk stops at MAX_FILES + 1
            found.update(itertools.islice(glob.iglob(each, recursive=False), MAX_FILES + 1 - len(found)))
            if len(found) > MAX_FILES:
                self.error(where, f"include {pattern} matches more than {MAX_FILES} files", stop=True)
        matches = sorted(found)
        if not matches:
            self.tree.notes.append((where, f"include {pattern}: no file matches (keepalived goes on without it)"))
        for match in matches:
            if os.path.isdir(match):
                continue
            rel = match if os.path.isabs(pattern) else os.path.join(os.path.dirname(shown), os.path.relpath(match, base))
            self.file(match, os.path.normpath(rel), where)

    # ------------------------------------------------------------ lines

    def logical(self, where: Where, block: list[str], depth: int, pwd: str) -> None:
        """One line, or a multi-line definition, through conditionals, definitions and parameters."""
        self.steps += 1
        if self.steps > MAX_STEPS:
            self.error(where, f"more than {MAX_STEPS} lines to read once parameters are expanded", stop=True)
        line = block[0].strip()
        if not line:
            return
        if line.startswith("@"):
            kept = self.condition(where, line)
            if kept is None:
                return
            line = kept
        defined = _DEFINE.fullmatch(line) if len(block) == 1 else _DEFINE.match(line)
        if defined:
            name, value = defined.group(1), defined.group(2)
            if len(block) > 1:
                values = [value.rstrip().removesuffix("\\").strip(), *(b.rstrip().removesuffix("\\") for b in block[1:])]
                self.params[name] = [v for v in values if v.strip()]
            else:
                self.params[name] = [value.strip()]
            return
        if line.startswith("~SEQ"):
            self.tree.notes.append((where, "~SEQ lines are not expanded by shoal import: this line was skipped"))
            return
        if "$" in line:
            expanded = self.expand(where, line, pwd)
            if expanded is None:
                return
            if len(expanded) > 1 or expanded[0] != line:
                if depth >= MAX_EXPANSIONS:
                    self.error(where, f"parameters expand more than {MAX_EXPANSIONS} times over (a definition "
                                      f"that uses itself?)", stop=True)
                for part in expanded:
                    self.logical(where, [_uncomment(part)], depth + 1, pwd)
                return
        self.words(where, line)

    def condition(self, where: Where, line: str) -> str | None:
        head = line.split(None, 1)[0]
        rest = line[len(head):].strip()
        negative = head.startswith("@^")
        ident = head[2:] if negative else head[1:]
        if ident and ident not in self.tree.conditions:
            self.tree.conditions.append(ident)
        matched = ident == (self.config_id or "")
        return rest if matched != negative else None

    def expand(self, where: Where, line: str, pwd: str) -> list[str] | None:
        builtins = {"_PWD": [pwd], "_INSTANCE": [self.config_id or ""], "_HASH": ["#"], "_BANG": ["!"]}
        out = line
        for _ in range(MAX_EXPANSIONS):
            m = None
            for candidate in _PARAM.finditer(out):
                name = candidate.group(1) or candidate.group(2)
                if name in self.params or name in builtins:
                    m = candidate
                    break
            if m is None:
                return out.split("\n")
            name = m.group(1) or m.group(2)
            value = "\n".join(self.params.get(name) or builtins.get(name) or [""])
            out = out[:m.start()] + value + out[m.end():]
            if len(out) > MAX_EXPANDED_CHARS or out.count("\n") > MAX_EXPANDED_LINES:
                self.error(where, f"parameters expand this line to more than {MAX_EXPANDED_CHARS} characters",
                           stop=True)
            if "\n" in value:  # a multi-line value: its lines go through every step in turn (a definition
                return out.split("\n")  # in it applies to the lines after it, as keepalived reads them)
        self.error(where, f"parameters expand more than {MAX_EXPANSIONS} times over (a definition that uses itself?)",
                   stop=True)
        return None

    def words(self, where: Where, line: str) -> None:
        words, problem = split_words(line)
        if problem:
            self.error(where, problem)
            return
        if words:
            self.lines.append((where, words))
            if len(self.lines) > MAX_EXPANDED_LINES * 4:
                self.error(where, "too many lines (more than 400000 after expansion)", stop=True)


def braces(pattern: str, limit: int = 1000) -> list[str]:
    """csh-style brace expansion, as glob(3) with GLOB_BRACE: "a{b,c{d,e}}" -> ["ab", "acd", "ace"].
    At most `limit` patterns; a pattern with more than 64 braces is taken as written."""
    if pattern.count("{") > 64:
        return [pattern]
    depth, start = 0, -1
    for i, ch in enumerate(pattern):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                inner, parts, level, last = pattern[start + 1:i], [], 0, 0
                for j, c in enumerate(inner):
                    level += (c == "{") - (c == "}")
                    if c == "," and level == 0:
                        parts.append(inner[last:j])
                        last = j + 1
                parts.append(inner[last:])
                if len(parts) == 1:
                    continue  # "{x}" is not an alternative: kept as written
                out: list[str] = []
                for part in parts:
                    out += braces(pattern[:start] + part + pattern[i + 1:], limit)
                    if len(out) >= limit:
                        return out[:limit]
                return out
    return [pattern]


def _uncomment(line: str) -> str:
    """The line without its comment: `#` or `!` outside quotes, anywhere."""
    quote = None
    escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quote:
            escaped = True
        elif quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "#!":
            return line[:i]
    return line


def split_words(line: str) -> tuple[list[str], str | None]:
    """Words as keepalived cuts them: blanks separate, quotes group (and are removed), `{` `}` stand alone."""
    words: list[str] = []
    current: list[str] = []
    started = False
    quote: str | None = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\" and i + 1 < len(line):
                nxt = line[i + 1]
                current.append(_ESCAPES.get(nxt, nxt))
                i += 2
                continue
            if ch == quote:
                quote = None
            else:
                current.append(ch)
        elif ch in "\"'":
            quote, started = ch, True
        elif ch.isspace() or ch in "{}":
            if started:
                words.append("".join(current))
                current, started = [], False
            if ch in "{}":
                words.append(ch)
        else:
            current.append(ch)
            started = True
        i += 1
    if quote:
        return [], f"a quote ({quote}) is not closed on this line"
    if started:
        words.append("".join(current))
    return words, None


def _build(lines: list[tuple[Where, list[str]]], errors: list[tuple[Where, str]]) -> list[Stmt]:
    """Statements and blocks from the words of every line."""
    top: list[Stmt] = []
    stack: list[tuple[Stmt, list[Stmt]]] = []  # open blocks: their statement and the list that holds it
    for where, words in lines:
        current = stack[-1][0].block if stack else top
        assert current is not None
        pending: list[str] = []

        def flush(into: list[Stmt]) -> None:
            if pending:
                into.append(Stmt(pending[0], tuple(pending[1:]), where))
                pending.clear()

        for word in words:
            if word == "{":
                if pending:
                    stmt = Stmt(pending[0], tuple(pending[1:]), where, [])
                    current.append(stmt)
                    pending.clear()
                elif current and current[-1].block is None and current[-1].where.file == where.file:
                    stmt = current[-1]  # `{` alone on a line: the block of the statement above
                    stmt.block = []
                else:
                    errors.append((where, "'{' without a statement before it"))
                    stmt = Stmt("{", (), where, [])
                    current.append(stmt)
                if len(stack) >= MAX_DEPTH:
                    errors.append((where, f"blocks nest more than {MAX_DEPTH} deep"))
                    return top
                stack.append((stmt, current))
                current = stmt.block
                assert current is not None
            elif word == "}":
                flush(current)
                if not stack:
                    errors.append((where, "'}' without a matching '{'"))
                    continue
                stack.pop()
                current = stack[-1][0].block if stack else top
                assert current is not None
            else:
                pending.append(word)
        flush(current)
    for stmt, _ in reversed(stack):
        errors.append((stmt.where, f"missing '}}' for {stmt.word} {' '.join(stmt.args)}".rstrip()
                       + f" opened at line {stmt.where.line}"))
    return top


def load(path: str, config_id: str | None = None, shown: str | None = None) -> Tree:
    """The statements of the keepalived.conf at `path` (includes followed).

    Raises KeepalivedError with every problem when the file cannot be read
    as keepalived.conf (unreadable, too big, an include loop, unbalanced
    braces, an unclosed quote...)."""
    reader = _Reader(config_id)
    try:
        reader.file(path, shown or path, None)
    except _Stop:
        raise KeepalivedError(reader.errors) from None
    except RecursionError:
        raise KeepalivedError([*reader.errors, (Where(shown or path, 1), "the file nests too deeply to read")]) from None
    statements = _build(reader.lines, reader.errors)
    if reader.errors:
        raise KeepalivedError(reader.errors)
    reader.tree.statements = statements
    return reader.tree
