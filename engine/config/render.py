"""The model back into lvs.cf text.

With the document a parse produced (`config.source`), comments, blank
lines, key order and the spelling of unchanged values are kept; a changed
value rewrites its own line only; keys, servers and virtuals the model
gained are appended at the end of their block; those it lost are dropped.
Without a document, a canonical file (keys that differ from the defaults).
"""

from __future__ import annotations

from typing import Any

from engine.config.keys import GLOBAL_KEYS, SERVER_KEYS, VIRTUAL_KEYS, Key, render_value
from engine.config.parser import Block, Document
from engine.model import Config, Server, Virtual

_KEYS = {"global": GLOBAL_KEYS, "virtual": VIRTUAL_KEYS, "server": SERVER_KEYS}
_DEFAULTS: dict[str, Any] = {"global": Config(), "virtual": Virtual(name="-"), "server": Server(name="-")}


def _kind(block: Block) -> str:
    return ("global", "virtual", "server")[len(block)]


def _key_lines(block: Block, model: Any, indent: str, skip: set[str] | None = None) -> list[str]:
    kind = _kind(block)
    lines = []
    for k in _KEYS[kind]:
        if skip and k.name in skip:
            continue
        tokens = render_value(k, model)
        if tokens is None or (tokens == render_value(k, _DEFAULTS[kind]) and k.name not in ("address", "active")):
            continue
        lines.append(f"{indent}{k.name} = {' '.join(tokens)}")
    return lines


def _server_block(server: Server, indent: str) -> list[str]:
    return [f"{indent}server {server.name} {{", *_key_lines(("-", server.name), server, indent + "    "), f"{indent}}}"]


def _virtual_block(virtual: Virtual) -> list[str]:
    lines = [f"virtual {virtual.name} {{", *_key_lines((virtual.name,), virtual, "    ")]
    for server in virtual.servers:
        lines += _server_block(server, "    ")
    return lines + ["}"]


def render(config: Config) -> str:
    doc = config.source
    if not isinstance(doc, Document):
        lines = _key_lines((), config, "")
        for virtual in config.virtuals:
            lines += _virtual_block(virtual)
        return "\n".join(lines) + "\n"
    return _render_into(config, doc)


def _models(config: Config) -> dict[Block, Any]:
    models: dict[Block, Any] = {(): config}
    for v in config.virtuals:
        models[(v.name,)] = v
        for s in v.servers:
            models[(v.name, s.name)] = s
    return models


def _render_into(config: Config, doc: Document) -> str:
    models = _models(config)
    written: dict[Block, set[str]] = {}
    indents: dict[Block, str] = {}
    out: list[str] = []
    globals_end: int | None = None
    for line in doc.lines:
        block = line.block
        if block and block not in models:
            if line.kind == "open":  # the comment just above a removed block goes with it
                while out and out[-1].lstrip().startswith("#"):
                    out.pop()
            continue
        if line.kind == "open" and len(block) == 1 and globals_end is None:
            globals_end = len(out)
        if line.kind == "key":
            assert line.key is not None
            k = _key(block, line.key)
            tokens = render_value(k, models[block])
            written.setdefault(block, set()).add(k.name)
            indent = line.text[: len(line.text) - len(line.text.lstrip())]
            indents[block] = indent
            if tokens is None:
                continue
            out.append(line.text if tuple(tokens) == line.canonical else f"{indent}{k.name} = {' '.join(tokens)}")
        elif line.kind == "close":
            indent = indents.get(block, "    " * len(block))
            out += _key_lines(block, models[block], indent, written.get(block, set()))
            if len(block) == 1:
                virtual = models[block]
                close_indent = line.text[: len(line.text) - len(line.text.lstrip())]
                for server in virtual.servers:
                    if (block[0], server.name) not in doc.blocks:
                        out += _server_block(server, close_indent + "    ")
            out.append(line.text)
        else:
            out.append(line.text)
    missing_globals = _key_lines((), config, "", written.get((), set()))
    at = globals_end if globals_end is not None else len(out)
    while at > 0 and out[at - 1].strip() == "" and globals_end is not None:
        at -= 1
    out[at:at] = missing_globals
    for virtual in config.virtuals:
        if (virtual.name,) not in doc.blocks:
            out += _virtual_block(virtual)
    text = "\n".join(out)
    return text if text.endswith("\n") else text + "\n"


def _key(block: Block, name: str) -> Key:
    for k in _KEYS[_kind(block)]:
        if k.name == name:
            return k
    raise KeyError(name)
