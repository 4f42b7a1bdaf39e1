"""The bounds of an lvs.cf (engine/config/limits.py): what check-config
accepts is what the daemon, the kernel and the heartbeat can carry, and no
input costs more than one bounded pass.

The per-key bounds have their invalid files (tests/config/invalid/); here
are the bounds on the file as a whole, which would make files too big to
keep in the repository, the values at the edge that must stay valid, the
new key `heartbeat_min_ttl`, the warnings, and `shoal check-config` itself.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from engine.config import MAX_FILE_BYTES, ConfigError, parse, parse_bytes, render, warnings
from engine.config.limits import MAX_ISSUES, MAX_LINE_CHARS, MAX_LINES, MAX_SERVERS, MAX_VIRTUALS
from engine.model import Config

ROOT = Path(__file__).parent.parent.parent
INVALID = Path(__file__).parent / "invalid"
HEAD = "primary = 10.0.0.1\n"
PAIR = "primary = 10.0.0.1\nbackup = 10.0.0.2\nbackup_active = 1\n"
MB10 = 10 * 1024 * 1024


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, "t.cf")
    return [str(i) for i in info.value.issues]


# ------------------------------------------------------------ numbers at the edge


@pytest.mark.parametrize(("line", "field", "value"), [
    ("serial_no = 18446744073709551615", "serial_no", 2**64 - 1),  # the heartbeat's u64, the largest
    ("serial_no = 000000000000000000000000000000042", "serial_no", 42),  # leading zeros are not digits that count
    ("keepalive = 86400", "keepalive_ms", 86_400_000),  # a day
    ("keepalive = 86400.000", "keepalive_ms", 86_400_000),
    ("deadtime = 0086400", "deadtime_ms", 86_400_000),
    ("tcp_timeout = 2678400", "tcp_timeout_s", 2_678_400),  # ipvsadm's 31 days
    ("syncd_id = 255", "syncd_id", 255),
    ("heartbeat_port = 65535", "heartbeat_port", 65535),
    ("heartbeat_min_ttl = 1", "heartbeat_min_ttl", 1),
    ("heartbeat_min_ttl = 255", "heartbeat_min_ttl", 255),
])
def test_the_largest_values_stay_valid(line: str, field: str, value: int) -> None:
    text = HEAD + line + "\n"
    if field == "keepalive_ms":
        text = text.replace("keepalive", "deadtime")  # deadtime must exceed keepalive: test the bound on one
        field = "deadtime_ms"
    assert getattr(parse(text), field) == value


def test_a_day_and_31_days_in_a_virtual_and_weight_65535() -> None:
    c = parse(HEAD + "virtual v {\n address = 10.0.0.100 eth0\n timeout = 86400\n reentry = 86400\n"
                     " persistent = 2678400\n server s {\n  address = 10.1.0.1\n  weight = 65535\n }\n}\n")
    v = c.virtuals[0]
    assert (v.timeout_ms, v.reentry_ms, v.persistent_s, v.servers[0].weight) == (86_400_000, 86_400_000, 2_678_400,
                                                                                   65535)


def test_a_5000_digit_number_is_an_error_not_a_traceback() -> None:
    """Python refuses int() of more than 4300 digits; the line bound and the digit count come first."""
    long = "9" * 5000
    assert errors(HEAD + f"serial_no = {long}\n") == [
        f"t.cf:2:{MAX_LINE_CHARS + 1}: line longer than {MAX_LINE_CHARS} characters (the most shoal reads): 5012"]
    assert errors(HEAD + "serial_no = " + "9" * 4000 + "\n") == [
        "t.cf:2:13: serial_no: expected a number between 0 and 18446744073709551615, found a number of 4000 digits"]


@pytest.mark.parametrize("value", ["1e309", "inf", "nan", "-inf", "1e-400", "Infinity", "1_000", "0x10", "١"])
def test_times_are_digits_only(value: str) -> None:
    assert errors(HEAD + f"keepalive = {value}\n") == [
        f"t.cf:2:13: keepalive: expected a time in seconds (fractions allowed), found {value!r}"]


# ------------------------------------------------------------ characters


@pytest.mark.parametrize("code", [c for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
                                  if c not in (0x09, 0x0A)])
def test_no_control_character_anywhere(code: int) -> None:
    ch = chr(code)
    for text, col in ((HEAD + f"# a comment {ch} here\n", 13), (HEAD + f"debug_level = x{ch}y\n", 16)):
        (message,) = errors(text)
        assert message.startswith(f"t.cf:2:{col}: U+{code:04X} ")
        assert message.endswith(" is not allowed in lvs.cf (no control characters but tab)")


def test_tab_and_crlf_are_fine_and_escapes_only_where_they_belong() -> None:
    c = parse(HEAD.replace("\n", "\r\n") + "active_cmd = \"/bin/a\\tb\"\r\n\tdebug_level\t=\tx\r\n")
    assert (c.active_cmd, c.debug_level) == ("/bin/a\tb", "x")
    text = HEAD + "virtual v {\n address = 10.0.0.100 eth0\n send = \"GET /\\r\\n\"\n expect = \"a\\nb\"\n}\n"
    assert parse(text).virtuals[0].send == "GET /\r\n"
    assert errors(HEAD + "heartbeat_key_file = \"/etc/k\\n\"\n") == [
        "t.cf:2:22: heartbeat_key_file: U+000A (newline) is not allowed here (only send and expect may hold "
        "\\r and \\n)"]


def test_a_carriage_return_ends_a_line_only_before_a_newline() -> None:
    """Found by fuzzing: a \\r at the very end of a file was taken for a line ending, and lost by `render`."""
    assert errors(HEAD + "keepalive = 1\r") == [
        "t.cf:2:14: U+000D (carriage return) is not allowed in lvs.cf (no control characters but tab)"]
    assert errors(HEAD + "keepalive = 1\r\r\n") == [
        "t.cf:2:14: U+000D (carriage return) is not allowed in lvs.cf (no control characters but tab)"]
    assert parse(HEAD + "keepalive = 1\r\n").keepalive_ms == 1000


def test_a_nul_in_notify_fifo_is_refused() -> None:
    assert errors(HEAD + "notify_fifo = /run/a\0b\n") == [
        "t.cf:2:21: U+0000 (NUL) is not allowed in lvs.cf (no control characters but tab)"]


def test_bytes_that_are_not_utf8_are_an_error_at_their_place() -> None:
    with pytest.raises(ConfigError) as info:
        parse_bytes(b"primary = 10.0.0.1\n# caf\xc3\xa9 cr\xe8me\n", "t.cf")
    assert [str(i) for i in info.value.issues] == ["t.cf:2:10: byte 0xe8 is not UTF-8 (lvs.cf is UTF-8 text)"]
    assert parse_bytes(HEAD.encode(), "t.cf") == parse(HEAD)


# ------------------------------------------------------------ the file as a whole


def test_a_file_over_4_mib_is_one_error() -> None:
    text = HEAD + ("# " + "x" * 1000 + "\n") * 4200
    assert len(text) > MAX_FILE_BYTES
    (message,) = errors(text)
    # the first byte past the bound: 4194304 - 19 (HEAD) = 4181 lines of 1003 bytes and 742 bytes more
    assert message == f"t.cf:4183:743: the file is larger than {MAX_FILE_BYTES} bytes (4 MiB, the most shoal " \
                      f"reads): {len(text)} bytes"
    with pytest.raises(ConfigError) as info:  # from bytes, the same error, whether the rest was read or not
        parse_bytes(text.encode()[:MAX_FILE_BYTES + 1], "t.cf", size=len(text))
    assert [str(i) for i in info.value.issues] == [message]
    multibyte = "# " + "é" * (MAX_FILE_BYTES // 2)  # fewer characters than the bound, more bytes
    assert errors(multibyte) == [f"t.cf:1:2097154: the file is larger than {MAX_FILE_BYTES} bytes (4 MiB, the most "
                                 f"shoal reads): 4194306 bytes"]  # the last é starts at byte 4194304


def test_more_than_max_lines_is_one_error() -> None:
    assert errors("\n" * MAX_LINES + HEAD) == [
        f"t.cf:{MAX_LINES + 1}:1: the file has more than {MAX_LINES} lines (the most shoal reads): {MAX_LINES + 1}"]
    assert parse("\n" * (MAX_LINES - 1) + HEAD).primary == "10.0.0.1"


def test_more_virtuals_or_servers_than_shoal_runs_stops_the_reading() -> None:
    virtuals = "".join(f"virtual v{i} {{\n active = 0\n}}\n" for i in range(MAX_VIRTUALS + 1))
    assert errors(HEAD + virtuals) == [
        f"t.cf:{2 + 3 * MAX_VIRTUALS}:1: more than {MAX_VIRTUALS} virtuals in the file (the most shoal runs)"]
    servers = "".join(f"server s{i} {{\n}}\n" for i in range(MAX_SERVERS + 1))
    assert errors(HEAD + "virtual v {\nactive = 0\n" + servers + "}\n") == [
        f"t.cf:{4 + 2 * MAX_SERVERS}:1: more than {MAX_SERVERS} servers in the file (the most shoal runs)"]


def test_errors_stop_at_exactly_max_issues_when_a_line_has_two() -> None:
    """Found by fuzzing: the 100th line with two errors made 102."""
    text = HEAD + "bogus\n" + "} x\n" * (MAX_ISSUES // 2 + 5)  # one error, then two a line: 99, then 101
    found = errors(text)
    assert len(found) == MAX_ISSUES + 1
    assert found[-2] == f"t.cf:{2 + MAX_ISSUES // 2}:1: '}}' without an open virtual or server"
    assert found[-1] == f"t.cf:{3 + MAX_ISSUES // 2}:1: too many errors: stopped reading after {MAX_ISSUES}"


def test_a_duplicate_server_in_a_duplicate_virtual_names_the_virtual() -> None:
    """Found by fuzzing: the message showed the parser's inner name of the discarded block ('v#5')."""
    text = HEAD + "virtual v {\n active = 0\n}\nvirtual v {\n server s {\n }\n server s {\n }\n}\n"
    assert errors(text) == ["t.cf:5:9: duplicate virtual name 'v' (first at line 2)",
                            "t.cf:8:9: duplicate server in virtual v name 's' (first at line 6)"]


def test_errors_stop_at_max_issues_also_from_validation() -> None:
    same = "".join(f"virtual v{i} {{\n address = 10.0.0.100 eth0\n}}\n" for i in range(MAX_ISSUES + 20))
    found = errors(HEAD + same)
    assert len(found) == MAX_ISSUES + 1
    assert found[-1] == f"t.cf:{2 + 3 * (MAX_ISSUES + 1) + 1}:2: too many errors: 19 more not shown"


PATHOLOGICAL = {
    "one huge line": HEAD + "debug_level = " + "a" * MB10 + "\n",
    "one huge quoted line": HEAD + 'debug_level = "' + "\\n" * (MB10 // 2) + '"\n',
    "millions of tokens": HEAD + "sched_flags = " + "x " * (MB10 // 2) + "\n",
    "deep braces": HEAD + "virtual v {\n" * (MB10 // 12),
    "millions of closing braces": HEAD + "}\n" * (MB10 // 2),
    "100k virtuals": HEAD + "".join(f"virtual v{i} {{\n address = 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255} "
                                    f"eth0\n}}\n" for i in range(100_000)),
    "millions of errors": HEAD + "bogus\n" * (MB10 // 6),
    "millions of lines": "\n" * MB10 + HEAD,
    "a number of 10 million digits": HEAD + "serial_no = " + "9" * MB10 + "\n",
    "NULs": HEAD + "\0" * MB10,
    # within the bounds: the most lines, each an error or a key
    "99,000 blank lines and 99 errors": HEAD + "bogus\n" * 99 + "\n" * 99_000,
    "4 MiB of 4096-character lines": HEAD + ("#" + "x" * 4094 + "\n") * 1000,
    "4,096 virtuals with the same service": HEAD + "".join(f"virtual v{i} {{\n address = 10.0.0.100 eth0\n}}\n"
                                                           for i in range(MAX_VIRTUALS)),
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_inputs_are_refused_fast(name: str) -> None:
    text = PATHOLOGICAL[name]
    start = time.process_time()
    try:
        parse(text, "t.cf")
    except ConfigError as e:
        assert 1 <= len(e.issues) <= MAX_ISSUES + 1
    took = time.process_time() - start
    assert took < 1.0, f"{name}: {took:.2f} s of CPU"  # measured: 0.002-0.15 s (docs/FUZZING.md)


def test_the_biggest_valid_file_parses_in_about_a_second() -> None:
    """33,000 real servers in 99,000 lines: the most lines a valid file can have, each one a key or a block."""
    servers = "".join(f"server s{i} {{\naddress = 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n}}\n"
                      for i in range(min(33_000, MAX_SERVERS)))
    text = PAIR + "heartbeat_key_file = /k\nvirtual v {\naddress = 192.168.0.1 eth0:1\n" + servers + "}\n"
    start = time.process_time()
    config = parse(text)
    took = time.process_time() - start
    assert len(config.virtuals[0].servers) == min(33_000, MAX_SERVERS)
    assert took < 5.0, f"{took:.2f} s"  # measured: 0.7 s on the loaded 2-core development machine
    assert render(config) == text


# ------------------------------------------------------------ heartbeat_min_ttl


def test_heartbeat_min_ttl_defaults_by_format() -> None:
    assert parse(HEAD).heartbeat_min_ttl == 255
    assert parse(HEAD + "heartbeat_format = piranha\n").heartbeat_min_ttl == 1
    assert parse(HEAD + "heartbeat_format = piranha\nheartbeat_min_ttl = 64\n").heartbeat_min_ttl == 64
    assert parse(HEAD + "heartbeat_min_ttl = 200\n").heartbeat_min_ttl == 200
    assert Config(heartbeat_format="piranha") == Config(heartbeat_format="piranha", heartbeat_min_ttl=1)
    assert Config().heartbeat_min_ttl == 255


def test_heartbeat_min_ttl_is_written_only_when_it_is_not_the_format_s_default() -> None:
    piranha = HEAD + "heartbeat_format = piranha\n"
    assert render(parse(piranha)) == piranha  # byte for byte: no key added
    c = parse(piranha)
    assert render(replace(c, heartbeat_min_ttl=64)) == piranha + "heartbeat_min_ttl = 64\n"
    shoal = replace(c, heartbeat_format="shoal")  # the model keeps 1: written, since shoal's default is 255
    assert parse(render(shoal)) == shoal
    assert "heartbeat_min_ttl = 1" in render(replace(Config(primary="10.0.0.1"), heartbeat_min_ttl=1))


# ------------------------------------------------------------ warnings


def test_a_pair_without_a_key_is_warned_about() -> None:
    (warning,) = warnings(parse(PAIR))
    assert warning.startswith("heartbeats are not authenticated: ")
    assert "any host on the LAN can send heartbeats in either router's name" in warning
    assert "shoal keygen" in warning and "heartbeat_key_file = " in warning and "on both" in warning
    assert warnings(parse(PAIR + "heartbeat_key_file = /etc/shoal/heartbeat.key\n")) == []
    assert warnings(parse(HEAD)) == []  # one router: no heartbeat to forge
    assert warnings(parse(PAIR.replace("backup_active = 1", "backup_active = 0"))) == []
    (piranha,) = warnings(parse(PAIR + "heartbeat_format = piranha\n"))
    assert piranha.startswith("heartbeats cannot be authenticated: heartbeat_format = piranha")


# ------------------------------------------------------------ shoal check-config, as a process


def check_config(*args: str, cwd: Path = INVALID) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shoal.cli", "check-config", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("name", ["serial_no_beyond_u64", "number_of_thousands_of_digits", "nul_in_value",
                                  "time_not_finite"])
def test_check_config_exits_2_with_every_error(name: str) -> None:
    done = check_config(f"{name}.cf")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (INVALID / f"{name}.expected").read_text()


def test_check_config_refuses_a_10_mb_file_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.cf"
    big.write_text(HEAD + "debug_level = " + "a" * MB10 + "\n")
    done = check_config(str(big), cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"{big}:2:{MAX_FILE_BYTES - len(HEAD) + 1}: the file is larger than {MAX_FILE_BYTES} " \
                          f"bytes (4 MiB, the most shoal reads): {big.stat().st_size} bytes\n"


def test_check_config_warns_and_still_exits_0(tmp_path: Path) -> None:
    (tmp_path / "pair.cf").write_text(PAIR)
    done = check_config("pair.cf", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("pair.cf: valid: ")
    assert done.stderr.startswith("pair.cf: warning: heartbeats are not authenticated: ")
    (tmp_path / "keyed.cf").write_text(PAIR + "heartbeat_key_file = /etc/shoal/heartbeat.key\n")
    done = check_config("keyed.cf", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
