"""`shoal replay`: a daemon's journal decided again in a fresh engine, or the
journals of both routers turned into a scenario (docs/JOURNAL.md).

    shoal replay JOURNAL... [--key FILE]
    shoal replay --scenario JOURNAL_A JOURNAL_B [-o OUT.toml]

JOURNAL: a state directory, its `journal/` directory, or journal files.
Exit: 0 identical (or the scenario written), 1 a difference (named), 2 a
journal that cannot be read or replayed (`file:line: message`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="shoal replay", description="re-decide a daemon's journal in a fresh engine and compare; "
                                         "--scenario: write a scenario file from the journals of both routers")
    parser.add_argument("journals", nargs="+", metavar="JOURNAL",
                        help="a state directory, its journal/ directory, or journal files")
    parser.add_argument("--key", metavar="FILE", help="the heartbeat key the daemon used (default: the "
                                                      "config's heartbeat_key_file)")
    parser.add_argument("--scenario", action="store_true",
                        help="write a scenario for `shoal sim` from the journals of the two routers")
    parser.add_argument("-o", "--output", metavar="OUT.toml", help="with --scenario: the file to write "
                                                                   "(default: standard output)")
    args = parser.parse_args(argv)
    from adapters.journal import JournalError

    try:
        key = _key(args.key) if args.key else None
        if args.scenario:
            return _scenario(args.journals, args.output)
        from adapters.replay import replay_paths

        outcome = replay_paths(args.journals, key)
    except JournalError as e:
        print(f"shoal replay: {e}", file=sys.stderr)
        return 2
    print(outcome.summary())
    return 0 if outcome.identical else 1


def _key(path: str) -> bytes:
    from adapters.journal import JournalError

    try:
        key = Path(path).read_bytes().strip()
    except OSError as e:
        raise JournalError(path, 0, f"cannot read the key: {e.strerror or e}") from None
    if not key:
        raise JournalError(path, 0, "the key file is empty")
    return key


def _scenario(journals: list[str], output: str | None) -> int:
    from adapters.incident import scenario_text

    if len(journals) != 2:
        print("shoal replay --scenario: give the journals of both routers (two JOURNAL arguments)", file=sys.stderr)
        return 2
    text = scenario_text(journals[0], journals[1])
    if output is None:
        sys.stdout.write(text)
    else:
        Path(output).write_text(text)
        print(f"shoal replay: wrote {output} (run it with: shoal sim {output})")
    return 0
