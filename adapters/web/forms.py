"""The configuration as forms: every block of lvs.cf (the globals, each
virtual, each real server) with the keys the file has, edited one key at
a time through configedit.set_value (the rest of the file kept byte for
byte), and every error of the result put back at its field.

    blocks(text) -> [Block(path, title, fields)]      # what the forms page shows
    addable(block) -> [KeyChoice(key, default, meaning)]  # the keys its table has that it lacks
    edit(text, edits) -> Edited(text, errors)          # errors carry block and key when one is at fault

An edit is one of (made in order, each to the text the previous left):

    {"block": [..], "key", "value"}      # set a key (added when missing); value null or "": removed
    {"op": "add_block", "kind": "virtual" | "server", "name", "parent"}   # adapters/web/blocks.py
    {"op": "remove_block", "block": [VIRTUAL] or [VIRTUAL, SERVER]}

An add_block or remove_block that cannot be made (a bad or taken name, no
such block) is an error with its "op" (and "name", "block") and leaves the
text as it was.

A field is named by its block path (() the globals, (VIRTUAL,), or
(VIRTUAL, SERVER)) and its key.  An error of the edited text is put at the
field whose line it is on (the parser's own positions); one on no key's
line (a missing key, a duplicate address) is the form's, not a field's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from adapters.web import configedit
from adapters.web.blocks import BlockError, add_block, remove_block
from adapters.web.keyhelp import KeyChoice, addable
from engine.config.keys import TABLES
from engine.config.lexer import ESCAPES, UNESCAPES, LexError, tokens
from engine.config.parser import Parser

_KINDS = ("global", "virtual", "server")
__all__ = ["Block", "Edited", "Field", "KeyChoice", "addable", "blocks", "edit", "shown", "value_of"]


def shown(raw: str) -> str:
    """A key's values as a form shows them: the tokens without their quotes,
    blank separated, an escape (\\r \\n \\t \\" \\' \\\\) written as in lvs.cf."""
    try:
        words = tokens(raw)
    except LexError:
        return raw
    return " ".join("".join(UNESCAPES.get(c, c) for c in w.text) for w in words)


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ESCAPES:
            out.append(ESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def value_of(path: tuple[str, ...], key: str, text: str) -> str | list[str] | None:
    """What a form field holds, as configedit.set_value takes it (None: the key removed)."""
    if text.strip() == "":
        return None
    k = TABLES[_KINDS[min(len(path), 2)]].get(key)
    if k is not None and k.counts == (1,) and not k.many:
        return _unescape(text.strip())
    return [_unescape(word) for word in text.split()]


@dataclass(frozen=True, slots=True)
class Field:
    key: str
    value: str
    line: int


@dataclass(frozen=True, slots=True)
class Block:
    path: tuple[str, ...]
    title: str
    fields: tuple[Field, ...]

    @property
    def ident(self) -> str:
        return "/".join(self.path)

    @property
    def active(self) -> bool:
        """Its `active` key as written (a missing key is 1, the default)."""
        return next((f.value for f in self.fields if f.key == "active"), "1") != "0"

    @property
    def addable(self) -> list[KeyChoice]:
        """The keys its table has that it does not (keyhelp.addable)."""
        return addable(self.path, {f.key for f in self.fields})


def _title(path: tuple[str, ...]) -> str:
    if not path:
        return "global settings"
    return f"virtual {path[0]}" if len(path) == 1 else f"server {path[1]} (virtual {path[0]})"


def blocks(text: str) -> list[Block]:
    """The file's blocks in file order, each with its keys and their values as written."""
    parser = Parser(text, "lvs.cf")
    parser.run()
    order: list[tuple[str, ...]] = [()]
    fields: dict[tuple[str, ...], list[Field]] = {(): []}
    for number, line in enumerate(parser.doc.lines, 1):
        path = tuple(line.block)
        if path not in fields:
            order.append(path)
            fields[path] = []
        if line.kind == "key" and line.key:
            fields[path].append(Field(line.key, shown(line.text[line.span[0]:line.span[1]]), number))
    return [Block(path, _title(path), tuple(fields[path])) for path in order]


@dataclass(frozen=True, slots=True)
class Edited:
    text: str
    errors: list[dict[str, Any]]  # {"line", "col", "message"} and, at a field, "block" and "key"


def edit(text: str, edits: Sequence[dict[str, Any]]) -> Edited:
    """`text` with every edit made (the module's docstring), and its errors."""
    errors: list[dict[str, Any]] = []
    for e in edits:
        op = e.get("op", "set")
        try:
            if op == "add_block":
                text = add_block(text, e["kind"], e["name"], e.get("parent"))
            elif op == "remove_block":
                text = remove_block(text, e["block"])
            else:
                path, key, value = tuple(e["block"]), e["key"], e["value"]
                text = configedit.set_value(text, path, key, None if value is None else value_of(path, key, value))
        except BlockError as problem:
            block = e["block"] if op == "remove_block" else [e["parent"]] if e.get("parent") else []
            errors.append({"line": 0, "col": 0, "message": str(problem), "op": op, "block": list(block),
                           **({"name": e["name"]} if op == "add_block" else {})})
        except (KeyError, ValueError) as problem:
            errors.append({"line": 0, "col": 0, "message": str(problem).strip("'\""), "block": list(e["block"]),
                           "key": e["key"]})
    if errors:
        return Edited(text, errors)
    found = configedit.check(text)
    if found:
        parser = Parser(text, "lvs.cf")
        parser.run()
        at = {line: (list(block), key) for (block, key), (line, _, _) in parser.doc.positions.items()}
        for error in found:
            place = at.get(error["line"])
            errors.append({**error, "block": place[0], "key": place[1]} if place else error)
    return Edited(text, errors)
