"""`shoal import KEEPALIVED.CONF [-o LVS.CF] [--primary ADDR] [--backup ADDR]
[--config-id ID] [--instance NAME] [--interface DEV]`: an lvs.cf from a
keepalived.conf (docs/IMPORT-KEEPALIVED.md).

The lvs.cf goes to LVS.CF (written whole, then renamed over it) or to
standard output; the report to standard error: one `file:line: what:
why` line for everything not carried over as it was, then the lines to
write where an address had to be a placeholder.  The written file is
parsed again before it is written: it always passes `shoal check-config`.

Exit 0: an lvs.cf was written (things not carried over or not); 1:
nothing usable (no virtual_server came over); 2: the file cannot be read
as keepalived.conf, or bad arguments.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from adapters.files import replace_file
from adapters.keepalived.convert import Options, Result, convert
from adapters.keepalived.syntax import KeepalivedError, Tree, load
from engine.config import ConfigError, parse, render
from shoal.check_config import summary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shoal import", description="write an lvs.cf from a keepalived.conf")
    parser.add_argument("file", help="keepalived.conf")
    parser.add_argument("-o", "--output", help="the lvs.cf to write (default: standard output)")
    parser.add_argument("--primary", type=_address, help="the primary router's address (else from the file)")
    parser.add_argument("--backup", type=_address, help="the backup router's address (else from the file)")
    parser.add_argument("--config-id", help="keepalived's -i: which @ID conditional lines apply (default: none)")
    parser.add_argument("--instance", help="the vrrp_instance to carry over (default: the first)")
    parser.add_argument("--interface", help="the VIPs' interface when the file does not say")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    try:
        tree = load(args.file, args.config_id)
    except KeepalivedError as e:
        for where, message in e.problems:
            print(f"{where}: {message}", file=sys.stderr)
        return 2
    if args.output and os.path.realpath(args.output) in {os.path.realpath(f) for f in tree.paths}:
        print(f"shoal import: -o {args.output} is a file of the keepalived.conf it reads: not overwritten",
              file=sys.stderr)
        return 2
    result = convert(tree, Options(args.primary, args.backup, args.instance, args.interface))
    text = lvs_cf(tree, result, args.file)
    for line in report(tree, result, args.config_id):
        print(line, file=sys.stderr)
    if text is None:
        print(f"shoal import: {args.file}: nothing usable: no virtual_server could be carried over; "
              f"no lvs.cf written", file=sys.stderr)
        return 1
    try:
        config = parse(text, args.output or "lvs.cf")
    except ConfigError as e:  # a defect of the import, never the operator's: say so and write nothing
        print(f"shoal import: the lvs.cf made from {args.file} does not pass check-config (a bug in shoal "
              f"import; nothing written):\n{e}", file=sys.stderr)
        return 1
    if args.output:
        try:
            replace_file(args.output, text, prefix=".lvs.cf.")
        except OSError as e:
            print(f"shoal import: cannot write {args.output}: {e.strerror or e}", file=sys.stderr)
            return 2
        print(f"shoal import: wrote {summary(args.output, config).replace(': valid:', ':', 1)}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _address(text: str) -> str:
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 or IPv6 address: {text!r}") from None


def lvs_cf(tree: Tree, result: Result, source: str) -> str | None:
    """The lvs.cf text, with comments saying where each part came from (None: nothing usable)."""
    if result.config is None:
        return None
    lines = render(result.config).splitlines()
    out = [f"# lvs.cf written by `shoal import` from {source}",
           "# (docs/IMPORT-KEEPALIVED.md; what did not come over was printed with it)"]
    todo = dict(result.placeholders)
    for line in lines:
        key = line.split(" = ", 1)[0]
        if key in todo and not line.startswith(" "):
            out.append(f"# TODO: a documentation address; write {todo[key]}")
        if line.startswith("virtual "):
            name = line[len("virtual "):].rstrip(" {").strip('"')
            where = result.origins.get(name)
            if where is not None:
                out.append(f"# from {where}")
        out.append(line)
    return "\n".join(out) + "\n"


def report(tree: Tree, result: Result, config_id: str | None) -> list[str]:
    lines = [str(n) for n in [*tree_notes(tree, config_id), *result.notes]]
    for key, what in result.placeholders:
        lines.append(f"shoal import: {key} is unknown: wrote a documentation address; "
                     f"write `{key} = ADDRESS` ({what}) or run again with --{key} ADDRESS")
    return lines


def tree_notes(tree: Tree, config_id: str | None) -> list[object]:
    from adapters.keepalived.values import Note
    from adapters.keepalived.syntax import Where

    notes: list[object] = [Note(w, "(read)", m) for w, m in tree.notes]
    if tree.conditions:
        ids = ", ".join(f"@{c}" for c in tree.conditions)
        said = f"config-id {config_id!s}" if config_id else "no config-id"
        notes.insert(0, Note(Where(tree.files[0], 1), "conditional lines",
                             f"the file has {ids}; read with {said} (--config-id ID reads it as keepalived -i ID)"))
    return notes
