"""Coverage-guided fuzzing of the lvs.cf parser with atheris (libFuzzer).

Not a pytest test (the test command runs tests/config/test_fuzz.py with
hypothesis, a few seconds): this is the long run of docs/FUZZING.md.  The
contract is `test_fuzz.check`: whatever the bytes, a ConfigError whose
every issue is a place in the file, or a valid Config that renders back
byte for byte and round-trips; never another exception, never slowly.

    python3 -m venv /tmp/fuzz && /tmp/fuzz/bin/pip install atheris hypothesis
    /tmp/fuzz/bin/python tests/config/fuzz_config.py /tmp/lvs-corpus -max_total_time=900 -max_len=8192

The corpus directory is seeded, when empty, with examples/lvs.cf and the
invalid files of tests/config/invalid/.  A failing input is written to
crash-HASH in the current directory; replay it with the same command and
the file name instead of the corpus directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris  # type: ignore[import-not-found]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(ROOT), str(HERE)]

with atheris.instrument_imports(include=["engine"]):
    import engine.config  # noqa: F401

from test_fuzz import check  # noqa: E402


def seed(corpus: Path) -> None:
    if corpus.is_dir() and not any(corpus.iterdir()):
        for n, path in enumerate([ROOT / "examples" / "lvs.cf", *sorted((HERE / "invalid").glob("*.cf"))]):
            (corpus / f"seed-{n:03d}").write_bytes(path.read_bytes())


def one_input(data: bytes) -> None:
    check(data)


def main() -> None:
    for arg in sys.argv[1:]:
        if not arg.startswith("-"):
            seed(Path(arg))
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
