"""Fuzzing the lvs.cf parser: whatever the bytes, `parse_bytes` answers
with a `ConfigError` whose every issue is a place in the file, or with a
valid `Config` that renders back byte for byte and round-trips; never
another exception, never slowly.

The budget of the test command is a few seconds (SHOAL_FUZZ_EXAMPLES
examples per test, default 300).  A longer run, and the coverage-guided
one with atheris (tests/config/fuzz_config.py), are in docs/FUZZING.md:

    SHOAL_FUZZ_EXAMPLES=100000 .venv/bin/pytest -q tests/config/test_fuzz.py
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from engine.config import ConfigError, parse, parse_bytes, render, warnings
from engine.config.limits import MAX_ISSUES
from engine.model import Config

HERE = Path(__file__).parent
EXAMPLE = (HERE.parent.parent / "examples" / "lvs.cf").read_text()
SEEDS = [EXAMPLE] + [p.read_bytes().decode("utf-8", "replace") for p in sorted((HERE / "invalid").glob("*.cf"))
                     if p.stat().st_size < 8192]
EXAMPLES = int(os.environ.get("SHOAL_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
SLOW_S = 1.0  # one parse of an input of at most a few KB: milliseconds; a second of CPU is a bug


def check(data: bytes) -> Config | None:
    """The contract, for any bytes."""
    try:
        config = _timed(data)
    except ConfigError as e:
        lines = data.decode("utf-8", "replace").split("\n")
        assert 1 <= len(e.issues) <= MAX_ISSUES + 1
        for issue in e.issues:
            assert issue.file == "f.cf" and issue.message and "\n" not in issue.message
            assert 1 <= issue.line <= len(lines) + 1, issue
            if issue.line <= len(lines):
                assert 1 <= issue.col <= len(lines[issue.line - 1].removesuffix("\r")) + 1, issue
            assert str(issue) == f"f.cf:{issue.line}:{issue.col}: {issue.message}"
        return None
    text = data.decode("utf-8")
    assert render(config) == text  # an unchanged parse renders back byte for byte
    canonical = render(replace(config, source=None))
    assert parse(canonical) == config  # and the model alone round-trips
    assert render(replace(config, serial_no=0)).count("\n") >= text.count("\n") - 1
    assert all(isinstance(w, str) and w for w in warnings(config))
    return config


def _timed(data: bytes) -> Config:
    """`parse_bytes`, in CPU time (a process descheduled on a loaded machine is not slow) and without the
    garbage collector (in a long run, a full collection of hypothesis's own objects once took 1.5 s)."""
    gc.disable()
    start = time.process_time()
    try:
        return parse_bytes(data, "f.cf")
    finally:
        took = time.process_time() - start
        gc.enable()
        assert took < SLOW_S, f"{took:.2f} s"


# -------------------------------------------------------------- inputs

WORDS = [
    "", " ", "\t", "\r", "\n", "\r\n", "=", "==", "{", "}", "#", "\"", "'", "\\", "\\\\", "\\n", "\\x", "\0",
    "\x1b", "\x7f", "\x85", "\u2028", "\ufeff", "é", "\udcff", "/", "%", ":", "[", "]", ".", "-", "0", "1", "00",
    "-1", "65535", "65536", "255", "256", "86400", "86400.001", "0.0005", ".", "1.", ".5", "1e309", "inf", "nan",
    "1e-400", "18446744073709551615", "18446744073709551616", "9" * 50, "9" * 4300, "4294967295", "4294967296",
    "10.0.0.1", "010.0.0.1", "2001:db8::1", "fe80::1%eth0", "::", "0.0.0.0", "255.255.255.0", "0.0.0.255",
    "eth0:1", "averyveryverylongname0", "virtual", "server", "primary", "backup", "backup_active", "serial_no",
    "keepalive", "deadtime", "heartbeat_format", "piranha", "shoal", "heartbeat_min_ttl", "heartbeat_key_file",
    "notify_fifo", "weight", "port", "http", "address", "fwmark", "persistent", "pmask", "send", "expect",
    "use_regex", "sched_flags", "sh-port", "scheduler", "sh", "sorry_server", "[2001:db8::9]:80", "x" * 300,
]
words = st.sampled_from(WORDS) | st.text(max_size=8)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed file (the example, an invalid file) with a few edits: a token
    replaced, a line dropped, duplicated, moved or made up, a cut, bytes
    spliced in, the line endings changed."""
    lines = draw(st.sampled_from(SEEDS)).split("\n")
    for _ in range(draw(st.integers(1, 6))):
        edit = draw(st.integers(0, 8))
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        if edit == 0 and lines:  # replace one token of a line
            tokens = lines[at].split(" ")
            tokens[draw(st.integers(0, len(tokens) - 1))] = draw(words)
            lines[at] = " ".join(tokens)
        elif edit == 1 and lines:
            del lines[at]
        elif edit == 2 and lines:
            lines.insert(draw(st.integers(0, len(lines))), lines[at])
        elif edit == 3:
            lines.insert(at, " ".join(draw(st.lists(words, max_size=6))))
        elif edit == 4 and lines:  # splice characters into a line
            line = lines[at]
            cut = draw(st.integers(0, len(line)))
            lines[at] = line[:cut] + draw(words) + line[cut:]
        elif edit == 5:
            lines = lines[: at + 1]
        elif edit == 6:
            lines = [line + "\r" for line in lines]
        elif edit == 7 and lines:
            lines.insert(draw(st.integers(0, len(lines))), lines.pop(at))
        else:
            lines[at:at] = [f"{draw(words)} = {draw(words)}"]
    text = "\n".join(lines)
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        return data
    cut = draw(st.integers(0, len(data)))  # and sometimes raw bytes
    return data[:cut] + draw(st.binary(max_size=8)) + data[cut:]


# -------------------------------------------------------------- properties


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.lists(words, max_size=60).map(lambda ws: " ".join(ws).encode("utf-8", "surrogatepass")))
def test_random_lvs_cf_words(data: bytes) -> None:
    check(data)


@FUZZ
@given(mutated())
def test_mutations_of_real_files(data: bytes) -> None:
    check(data)


def test_the_seeds_themselves() -> None:
    assert check(EXAMPLE.encode()) is not None
    for seed in SEEDS[1:]:
        check(seed.encode("utf-8", "surrogatepass"))
