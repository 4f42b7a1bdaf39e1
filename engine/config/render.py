"""The model back into lvs.cf text.

With the document a parse produced (`config.source`), comments, blank
lines, key order and the spelling of unchanged values are kept; a changed
value rewrites only its value on its own line (the key, the `=` and a
trailing comment stay); keys the model gained go after the last key of
their block, servers after the last server of their virtual, virtuals
after the last virtual; removed ones are dropped with the comment lines
right above them.  Virtuals and servers are written in the model's order:
the model's blocks that the file already has fill the file's places for
them, in turn.  Without a document, a canonical file: the essentials and
every key that differs from its default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from engine.config.keys import GLOBAL_KEYS, SERVER_KEYS, VIRTUAL_KEYS, VRRP_KEYS, Key, render_value
from engine.config.lexer import quote
from engine.config.parser import Block, Document, Line
from engine.model import Config, Server, Virtual, default_min_ttl

_KEYS = {"global": GLOBAL_KEYS, "virtual": VIRTUAL_KEYS, "server": SERVER_KEYS}
_DEFAULTS: dict[str, Any] = {"global": Config(), "virtual": Virtual(name="-"), "server": Server(name="-")}
# written even at their default: what a reader of an lvs.cf looks for first
_ESSENTIAL = {
    "global": ("serial_no", "primary", "backup_active", "backup", "network"),
    "virtual": ("active", "address", "protocol", "port", "scheduler"),
    "server": ("address", "active", "weight"),
}


def _kind(block: Block) -> str:
    return ("global", "virtual", "server")[len(block)]


@dataclass
class _Style:
    virtual_indent: str = "    "  # keys of a virtual
    server_open_indent: str = "    "
    server_indent: str = "        "  # keys of a server
    newline: str = "\n"


def _default(kind: str, k: Key, model: Any) -> list[str] | None:
    """What an absent key `k` means for `model` (`heartbeat_min_ttl`'s depends on the format)."""
    if k.name == "heartbeat_min_ttl":
        return [str(default_min_ttl(model.heartbeat_format))]
    return render_value(k, _DEFAULTS[kind])


def _key_lines(kind: str, model: Any, indent: str, skip: set[str], essentials: bool) -> list[str]:
    lines = []
    for k in _KEYS[kind]:
        if k.name in skip:
            continue
        tokens = render_value(k, model)
        if tokens is None:
            continue
        if tokens == _default(kind, k, model) and not (essentials and k.name in _ESSENTIAL[kind]):
            continue
        lines.append(f"{indent}{k.name} = {' '.join(tokens)}")
    return lines


def _server_block(server: Server, style: _Style) -> list[str]:
    return [f"{style.server_open_indent}server {quote(server.name)} {{",
            *_key_lines("server", server, style.server_indent, set(), True),
            f"{style.server_open_indent}}}"]


def _virtual_block(virtual: Virtual, style: _Style) -> list[str]:
    lines = [f"virtual {quote(virtual.name)} {{", *_key_lines("virtual", virtual, style.virtual_indent, set(), True)]
    for server in virtual.servers:
        lines += _server_block(server, style)
    return lines + ["}"]


def render(config: Config) -> str:
    doc = config.source
    if isinstance(doc, Document):
        return _render_into(config, doc)
    style = _Style()
    lines = _key_lines("global", config, "", set(), True)
    for virtual in config.virtuals:
        lines += ["", *_virtual_block(virtual, style)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------ into a document


@dataclass
class _Node:
    """A virtual or server block of the document, with the comments right above it."""

    block: Block
    lead: list[Line]
    open: Line
    body: list[_Item] = field(default_factory=list)
    close: Line | None = None


_Item = Line | _Node


def _tree(lines: Sequence[Line]) -> list[_Item]:
    """The document's lines as nested blocks (a parsed document is well formed)."""
    top: list[_Item] = []
    stack: list[_Node] = []
    for line in lines:
        items = stack[-1].body if stack else top
        if line.kind == "open":
            lead: list[Line] = []
            while items and isinstance(items[-1], Line) and items[-1].kind == "comment":
                last = items.pop()
                assert isinstance(last, Line)
                lead.insert(0, last)
            node = _Node(line.block, lead, line)
            items.append(node)
            stack.append(node)
        elif line.kind == "close" and stack:
            stack.pop().close = line
        else:
            items.append(line)
    return top


def _indent(text: str) -> str:
    return text[: len(text) - len(text.lstrip())]


def _style(doc: Document) -> _Style:
    style = _Style(newline=doc.newline)
    for line in doc.lines:
        depth = len(line.block)
        if line.kind == "key" and depth == 1:
            style.virtual_indent = _indent(line.text)
            break
    style.server_open_indent = style.virtual_indent
    for line in doc.lines:
        if line.kind == "open" and len(line.block) == 2:
            style.server_open_indent = _indent(line.text)
            break
    style.server_indent = style.server_open_indent + style.virtual_indent
    for line in doc.lines:
        if line.kind == "key" and len(line.block) == 2:
            style.server_indent = _indent(line.text)
            break
    return style


def _render_into(config: Config, doc: Document) -> str:
    style = _style(doc)
    out = _Writer(style)
    out.items(_tree(doc.lines), (), config)
    parts: list[str] = []
    for n, line in enumerate(out.lines):
        parts.append(line)
        if n < len(out.lines) - 1 or doc.final_newline:
            parts.append(out.endings.get(n) or style.newline)
    text = "".join(parts)
    return text


def _children(model: Any) -> tuple[Any, ...]:
    if isinstance(model, Config):
        return model.virtuals
    if isinstance(model, Virtual):
        return model.servers
    return ()


class _Writer:
    def __init__(self, style: _Style) -> None:
        self.style = style
        self.lines: list[str] = []
        self.endings: dict[int, str] = {}  # the lines of the document that end otherwise than the style says

    def keep(self, line: Line, text: str | None = None) -> None:
        """A line of the document (or its text, changed), with its own line ending."""
        if line.ending:
            self.endings[len(self.lines)] = line.ending
        self.lines.append(line.text if text is None else text)

    def items(self, items: list[_Item], block: Block, model: Any) -> None:
        """One block's body: its lines and child blocks, in the model's order."""
        children = {c.name: c for c in _children(model)}
        present = [i for i in items if isinstance(i, _Node) and i.block[-1] in children]
        present_blocks = {n.block for n in present}
        kept = [c for c in _children(model) if (*block, c.name) in present_blocks]
        kept_names = {c.name for c in kept}
        # a new child goes just before the kept child that follows it in the model, the rest after the last block
        before: dict[str, list[Any]] = {}
        new: list[Any] = []
        for child in _children(model):
            if child.name in kept_names:
                before[child.name], new = new, []
            else:
                new.append(child)
        nodes = {node.block[-1]: node for node in present}
        slots = {id(node): child for node, child in zip(present, kept)}  # the file's places, the model's order
        last_slot = max((n for n, i in enumerate(items) if isinstance(i, _Node)), default=None)
        keys_at = self._new_keys_at(items, block)
        written = {i.key for i in items if isinstance(i, Line) and i.kind == "key" and i.key}
        skip_blank = False
        for n, item in enumerate(items):
            if n == keys_at:
                self.new_keys(block, model, written)
            if isinstance(item, _Node):
                if id(item) in slots:
                    child = slots[id(item)]
                    self.new_blocks(block, before[child.name], gap_after=True)
                    self.node(nodes[child.name], (*block, child.name), child)
                else:
                    skip_blank = not self.lines or self.lines[-1].strip() == ""
            elif skip_blank and item.kind == "blank":
                skip_blank = False
            else:
                skip_blank = False
                self.line(item, model)
            if n == last_slot:
                self.new_blocks(block, new)
        if keys_at == len(items):
            self.new_keys(block, model, written)
        if last_slot is None:
            self.new_blocks(block, new)

    def node(self, node: _Node, block: Block, model: Any) -> None:
        """A kept block (`block`: its name in the model, which may sit in another place of the file)."""
        for lead in node.lead:
            self.keep(lead)
        self.keep(node.open)
        self.items(node.body, block, model)
        if node.close is not None:
            self.keep(node.close)

    def line(self, line: Line, model: Any) -> None:
        if line.kind != "key" or line.key is None:
            self.keep(line)
            return
        k = _key(_kind(line.block), line.key)
        tokens = render_value(k, model)
        if tokens is None:
            return  # the model dropped it
        if isinstance(model, Config) and _unread(k.name, model) and tokens == _default("global", k, model):
            return  # a key the other heartbeat protocol reads, back at its default: the check would refuse it
        if tuple(tokens) == line.canonical:
            self.keep(line)
        else:
            start, end = line.span
            self.keep(line, line.text[:start] + " ".join(tokens) + line.text[end:])

    def _new_keys_at(self, items: list[_Item], block: Block) -> int:
        """Where keys the block gains go: after its last key before any child block."""
        first_child = next((n for n, i in enumerate(items) if isinstance(i, _Node)), len(items))
        keys = [n for n, i in enumerate(items) if isinstance(i, Line) and i.kind == "key"]
        before = [n for n in keys if n < first_child]
        if before:
            return before[-1] + 1
        if keys:
            return keys[-1] + 1
        if not block:  # globals: before the first virtual and the blank lines above it
            at = first_child
            while at > 0 and isinstance(items[at - 1], Line) and items[at - 1].kind == "blank":  # type: ignore[union-attr]
                at -= 1
            return at
        return 0

    def new_keys(self, block: Block, model: Any, written: set[str]) -> None:
        kind = _kind(block)
        indent = {"global": "", "virtual": self.style.virtual_indent, "server": self.style.server_indent}[kind]
        self.lines += _key_lines(kind, model, indent, written, False)

    def new_blocks(self, block: Block, new: list[Any], gap_after: bool = False) -> None:
        for child in new:
            if isinstance(child, Virtual):
                if self.lines and self.lines[-1].strip():
                    self.lines.append("")
                self.lines += _virtual_block(child, self.style)
                if gap_after:
                    self.lines.append("")
            else:
                self.lines += _server_block(child, self.style)


def _unread(name: str, config: Config) -> bool:
    """A global key that `config`'s heartbeat_protocol does not read (validate refuses it given)."""
    if config.heartbeat_protocol == "vrrp":
        return name == "heartbeat_format"
    return name in VRRP_KEYS


def _key(kind: str, name: str) -> Key:
    for k in _KEYS[kind]:
        if k.name == name:
            return k
    raise KeyError(name)
