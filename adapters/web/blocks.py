"""Adding and removing whole blocks of lvs.cf as text, for the forms page
(Piranha's "add" and "delete" of a virtual server or a real server).

    text = add_block(text, "virtual", "ftp")                # `virtual ftp {` `}` at the end of the file
    text = add_block(text, "server", "web4", parent="HTTP")  # `server web4 {` `}` at the end of virtual HTTP
    text = remove_block(text, ("HTTP", "web2"))              # that server, and its comment lines
    text = remove_block(text, ("HTTP",))                     # that virtual with its servers

The rules that keep it honest (those of configedit.set_value):

- The file is edited as text with the parser's own reading of it
  (`engine.config.parser.Document`); every line that is not added or
  removed is kept byte for byte, in its order, with its line ending.
- A name follows the parser's rules (`engine.config.parser.NAME`: no
  blank, quote or any of `# = { } /`; at most MAX_NAME_CHARS characters;
  no control character): anything else is refused (BlockError) before the
  file is touched, and so is a name the file already has (a virtual of the
  file, a server of the same virtual).
- A new virtual goes at the end of the file, after one blank line (none
  when the file is empty or already ends with a blank line), indented as
  the file's first virtual.  A new server goes just before its virtual's
  `}`, indented as that virtual's servers, else as any server of the file,
  else as the virtual's keys (else the virtual's opening and four spaces).
  The block is empty (`NAME {` and `}`): its keys are added with
  configedit.set_value.
- A removed block takes its lines from its opening to its `}` (a
  virtual's servers with it) and the comment lines directly above its
  opening (no blank line between: they describe it).  A comment separated
  from it by a blank line is kept.  When the block (with its comments)
  sat between two blank lines, or between a blank line and the end of
  the file, the blank line above it goes too, so no double gap is left.
"""

from __future__ import annotations

from typing import Literal, Sequence

from engine.config.limits import FORBIDDEN, MAX_NAME_CHARS, character, shown
from engine.config.parser import NAME, Document, Parser

Kind = Literal["virtual", "server"]


class BlockError(ValueError):
    """The block cannot be added or removed: the message says why (for the operator)."""


def check_name(kind: str, name: str) -> None:
    """Raises BlockError unless `name` is one the parser reads as a `kind` name."""
    if not name:
        raise BlockError(f"a {kind} needs a name")
    bad = FORBIDDEN.search(name)
    if bad:
        raise BlockError(f"a {kind} name cannot hold {character(bad.group())}")
    if len(name) > MAX_NAME_CHARS:
        raise BlockError(f"a {kind} name has at most {MAX_NAME_CHARS} characters, found {len(name)}")
    if not NAME.fullmatch(name):
        raise BlockError(f"expected a {kind} name without blanks, quotes or any of # = {{ }} /, "
                         f"found {shown(name)}")


def _read(text: str) -> tuple[Document, list[str], list[str], bool]:
    """The document, the lines without their endings, the endings, and whether the file ends with one."""
    parser = Parser(text, "lvs.cf")
    parser.run()
    raws = text.split("\n")
    final_newline = raws[-1] == ""
    if final_newline:
        raws.pop()
    if parser.stopped or len(parser.doc.lines) != len(raws):
        raise BlockError("the file cannot be read far enough to edit it (see its errors)")
    lines = [raw[:-1] if raw.endswith("\r") else raw for raw in raws]
    ends = ["\r" if raw.endswith("\r") else "" for raw in raws]
    return parser.doc, lines, ends, final_newline


def _join(lines: Sequence[str], ends: Sequence[str], final_newline: bool) -> str:
    out = "\n".join(line + end for line, end in zip(lines, ends))
    return out + "\n" if final_newline and lines else out


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _opening(doc: Document, path: tuple[str, ...]) -> int | None:
    return next((n for n, line in enumerate(doc.lines) if line.kind == "open" and line.block == path), None)


def _closing(doc: Document, path: tuple[str, ...], start: int) -> int | None:
    return next((n for n in range(start, len(doc.lines)) if doc.lines[n].kind == "close"
                 and doc.lines[n].block == path), None)


def _what(path: Sequence[str]) -> str:
    return f"virtual {path[0]}" if len(path) == 1 else f"server {path[1]} in virtual {path[0]}"


def add_block(text: str, kind: str, name: str, parent: str | None = None) -> str:
    """`text` with an empty `kind NAME { }` added (a server: at the end of virtual `parent`)."""
    if kind not in ("virtual", "server"):
        raise BlockError(f"a block is a virtual or a server, not {shown(kind)}")
    check_name(kind, name)
    if kind == "server" and parent is None:
        raise BlockError("a server is added to a virtual: name it")
    if kind == "virtual" and parent is not None:
        raise BlockError("a virtual is added to the file, not to a virtual")
    doc, lines, ends, final_newline = _read(text)
    end = "\r" if doc.newline == "\r\n" else ""
    if kind == "virtual":
        if (name,) in doc.blocks:
            raise BlockError(f"the file already has a virtual {name}")
        indent = next((_indent(line.text) for line in doc.lines if line.kind == "open" and len(line.block) == 1), "")
        new = [f"{indent}virtual {name} {{", f"{indent}}}"]
        if lines and lines[-1].strip():
            new.insert(0, "")
        if lines and not final_newline:  # the last line gets the ending it lacked; the file still ends without one
            ends[-1] = end
        at = len(lines)
    else:
        assert parent is not None
        opening = _opening(doc, (parent,))
        if opening is None:
            raise BlockError(f"the file has no virtual {parent}")
        if (parent, name) in doc.blocks:
            raise BlockError(f"virtual {parent} already has a server {name}")
        close = _closing(doc, (parent,), opening + 1)
        if close is None:
            raise BlockError(f"virtual {parent} has no closing '}}'")
        indent = _server_indent(doc, parent, opening)
        new = [f"{indent}server {name} {{", f"{indent}}}"]
        at = close
    lines[at:at] = new
    ends[at:at] = [end] * len(new)
    return _join(lines, ends, final_newline)


def _server_indent(doc: Document, parent: str, opening: int) -> str:
    for mine in (True, False):
        for line in doc.lines:
            if line.kind == "open" and len(line.block) == 2 and (not mine or line.block[0] == parent):
                return _indent(line.text)
    for line in doc.lines:
        if line.kind == "key" and line.block == (parent,):
            return _indent(line.text)
    return _indent(doc.lines[opening].text) + "    "


def remove_block(text: str, path: Sequence[str]) -> str:
    """`text` without the block `path` ((VIRTUAL,) or (VIRTUAL, SERVER)) and its comment lines."""
    path = tuple(path)
    if len(path) not in (1, 2):
        raise BlockError("a block to remove is [VIRTUAL] or [VIRTUAL, SERVER]")
    doc, lines, ends, final_newline = _read(text)
    opening = _opening(doc, path)
    if opening is None:
        raise BlockError(f"the file has no {_what(path)}")
    close = _closing(doc, path, opening + 1)
    if close is None:
        raise BlockError(f"{_what(path)} has no closing '}}'")
    first = opening
    while first > 0 and doc.lines[first - 1].kind == "comment":
        first -= 1
    after = close + 1
    if first > 0 and doc.lines[first - 1].kind == "blank" and (after == len(lines) or doc.lines[after].kind == "blank"):
        first -= 1
    del lines[first:after], ends[first:after]
    if lines and after == len(doc.lines) and not final_newline:  # the file ended inside what went: it still ends
        ends[-1] = ""                                           # without a newline, and without a stray \r
    return _join(lines, ends, final_newline)
