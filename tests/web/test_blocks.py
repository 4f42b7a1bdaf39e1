"""adapters/web/blocks.py: a virtual or a server added or removed as text,
every other line (comments, blanks, order, endings) kept, names checked
by the parser's rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from adapters.web import configedit as ce
from adapters.web.blocks import BlockError, add_block, check_name, remove_block
from engine.config import parse
from engine.config.parser import Parser

EXAMPLE = (Path(__file__).parent.parent.parent / "examples" / "lvs.cf").read_text()
SERVERS = [(v.name, s.name) for v in parse(EXAMPLE).virtuals for s in v.servers]
VIRTUALS = [v.name for v in parse(EXAMPLE).virtuals]


def comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


def issues(text: str) -> list[str]:
    parser = Parser(text, "lvs.cf")
    parser.run()
    return [str(i) for i in parser.issues]


def test_a_server_goes_at_the_end_of_its_virtual_indented_as_its_siblings() -> None:
    out = add_block(EXAMPLE, "server", "web4", parent="HTTP")
    added = [line for line in out.splitlines() if line not in EXAMPLE.splitlines()]
    assert added == ["     server web4 {"]  # its '}' is like every other server's
    lines = out.splitlines()
    at = lines.index("     server web4 {")
    assert lines[at - 1] == "     }" and lines[at + 1] == "     }" and lines[at + 2] == "}"
    done = ce.set_value(out, ("HTTP", "web4"), "address", "10.11.12.14")
    assert "         address = 10.11.12.14" in done.splitlines()
    assert [s.name for s in parse(done).virtual("HTTP").servers] == ["web1", "web2", "web3", "web4"]


def test_a_virtual_goes_at_the_end_after_one_blank_line() -> None:
    out = add_block(EXAMPLE, "virtual", "ftp")
    assert out == EXAMPLE + "\nvirtual ftp {\n}\n"
    done = ce.set_value(out, ("ftp",), "address", "192.168.26.11 eth0:2")
    assert parse(done).virtual("ftp").address == "192.168.26.11"
    assert add_block("", "virtual", "a") == "virtual a {\n}\n"
    assert add_block("serial_no = 1", "virtual", "a") == "serial_no = 1\n\nvirtual a {\n}"  # no final newline kept


def test_crlf_and_tabs_are_followed() -> None:
    text = "primary = 10.0.0.1\r\n\tvirtual v {\r\n\t\taddress = 10.0.0.9 eth0\r\n\t}\r\n"
    out = add_block(text, "server", "s", parent="v")
    assert out == ("primary = 10.0.0.1\r\n\tvirtual v {\r\n\t\taddress = 10.0.0.9 eth0\r\n"
                   "\t\tserver s {\r\n\t\t}\r\n\t}\r\n")
    out = add_block(out, "virtual", "w")
    assert out.endswith("\t}\r\n\r\n\tvirtual w {\r\n\t}\r\n") and issues(out) == []
    assert remove_block(remove_block(out, ("w",)), ("v", "s")) == text


def test_bad_names_and_duplicates_are_refused_with_the_reason() -> None:
    for name, why in [("a b", "without blanks"), ('x"', "without blanks, quotes"), ("a/b", "# = { } /"),
                      ("", "needs a name"), ("x" * 256, "at most 255"), ("a\nb", "newline")]:
        with pytest.raises(BlockError, match=why):
            add_block(EXAMPLE, "virtual", name)
    with pytest.raises(BlockError, match="already has a virtual HTTP"):
        add_block(EXAMPLE, "virtual", "HTTP")
    with pytest.raises(BlockError, match="virtual HTTP already has a server web1"):
        add_block(EXAMPLE, "server", "web1", parent="HTTP")
    with pytest.raises(BlockError, match="no virtual nope"):
        add_block(EXAMPLE, "server", "s", parent="nope")
    with pytest.raises(BlockError, match="no server nope in virtual HTTP"):
        remove_block(EXAMPLE, ("HTTP", "nope"))
    with pytest.raises(BlockError):
        add_block(EXAMPLE, "listener", "x")
    check_name("server", "<b>$(reboot);`id`&amp;")  # HTML and shell characters are a valid name: shown escaped


def test_a_virtual_goes_with_its_servers_and_its_comment_but_not_a_comment_after_a_blank() -> None:
    out = remove_block(EXAMPLE, ("HTTPS",))
    assert "virtual HTTPS" not in out and "# HTTPS with persistence" not in "".join(comments(out))
    assert comments(out) == [c for c in comments(EXAMPLE) if "HTTPS with persistence" not in c]
    assert "\n\n\n" not in out and parse(out).virtuals
    text = "primary = 10.0.0.1\n# the globals end here\n\n# about v\nvirtual v {\n    # inside\n}\n"
    assert remove_block(text, ("v",)) == "primary = 10.0.0.1\n# the globals end here\n"


def test_a_server_goes_with_the_comment_right_above_it() -> None:
    text = EXAMPLE.replace("     server web2 {", "     # web2 is the spare\n     server web2 {", 1)
    out = remove_block(text, ("HTTP", "web2"))
    assert out == EXAMPLE.replace("     server web2 {\n         address = 10.11.12.12\n         active = 1\n"
                                  "         weight = 1\n     }\n", "", 1)
    assert [s.name for s in parse(out).virtual("HTTP").servers] == ["web1", "web3"]


# ---------------------------------------------------------------- properties

with_comments = st.lists(st.tuples(st.integers(0, 200), st.text(
    st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_categories=("Cs", "Cc")), max_size=30)), max_size=6)
names = st.text(st.characters(min_codepoint=1, max_codepoint=0x2FF) | st.sampled_from("<>&;$`|\"'#={}/ \t"),
                max_size=12) | st.sampled_from(["HTTP", "web1", "ftp", "a" * 255, "a" * 256])


def commented(inserts: list[tuple[int, str]]) -> str:
    """The example with comment lines put in at arbitrary places."""
    lines = EXAMPLE.splitlines()
    for at, body in inserts:
        lines.insert(at % (len(lines) + 1), f"  # {body}")
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None)
@given(with_comments, st.sampled_from([None, *VIRTUALS]), names)
def test_property_an_added_block_parses_and_every_line_is_kept(
        inserts: list[tuple[int, str]], parent: str | None, name: str) -> None:
    text = commented(inserts)
    kind = "virtual" if parent is None else "server"
    try:
        out = add_block(text, kind, name, parent=parent)
    except BlockError:
        try:
            check_name(kind, name)
        except BlockError:
            return  # a bad name
        path = (name,) if parent is None else (parent, name)
        assert path in _blocks(text)  # else: a duplicate
        return
    assert issues(out) == []
    path = (name,) if parent is None else (parent, name)
    assert path in _blocks(out)
    assert comments(out) == comments(text)
    new = out.splitlines()
    for line in text.splitlines():  # every old line, in order
        new = new[new.index(line) + 1:]


def _blocks(text: str) -> set[tuple[str, ...]]:
    parser = Parser(text, "lvs.cf")
    parser.run()
    return set(parser.doc.blocks)


@settings(max_examples=150, deadline=None)
@given(with_comments, st.sampled_from([*[(v,) for v in VIRTUALS], *SERVERS]))
def test_property_a_removed_block_leaves_a_valid_file_and_every_other_comment(
        inserts: list[tuple[int, str]], path: tuple[str, ...]) -> None:
    text = commented(inserts)
    parser = Parser(text, "lvs.cf")
    parser.run()
    lines = parser.doc.lines
    opening = next(n for n, line in enumerate(lines) if line.kind == "open" and line.block == path)
    above = opening
    while above > 0 and lines[above - 1].kind == "comment":
        above -= 1
    kept = [line.text for n, line in enumerate(lines) if line.kind == "comment"
            and line.block[:len(path)] != path and not above <= n < opening]
    out = remove_block(text, path)
    assert comments(out) == kept
    parse(out)  # valid: the example was
    assert path not in _blocks(out)
