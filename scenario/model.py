"""Scenario files (SPEC.md, "Scenario files"): loaded and checked, pure.

Shared by `shoal sim` and `shoal lab`: both read a scenario with this code,
and both judge it with `scenario.checks`.  Every problem is a
`ScenarioError` that says `file:line: message`; an inline `lvs.cf` (the
`config` literal, or a `reload` literal) reports its errors at the line of
the scenario file they are on.

Everything a scenario names is checked here, before anything runs: routers,
real servers (`SERVER`, `VIRTUAL/SERVER`, `sorry`, `VIRTUAL/sorry`, in the
first config or any reloaded one), paths, admin actions.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import ConfigError, parse
from engine.model import Config
from scenario.devices import devices

FAULT_KEYS = ("crash", "restart", "kill", "server_down", "server_up", "server_hang", "server_wrong",
              "server_slow", "partition", "heal", "loss", "load", "reload", "admin", "link_down", "link_up")
EXPECT_KEYS = ("vip_owner", "role", "in_table", "not_in_table", "weight", "client_success", "always")
ALWAYS = ("single_owner", "table_matches_health")
ROUTERS = ("primary", "backup")
PATHS = ("public", "private", "all")
ROLES = ("active", "standby", "down")
TOP_KEYS = ("title", "seed", "duration", "config", "config_file", "network", "fault", "expect")
# What each fault may carry besides `at` and its own key.
FAULT_EXTRA = {"partition": {"from"}, "loss": {"path"}, "server_slow": {"delay"}, "load": {"value"},
               "link_down": {"device"}, "link_up": {"device"}}
REQUIRED_EXTRA = {"server_slow": "delay", "load": "value", "link_down": "device", "link_up": "device"}


class ScenarioError(Exception):
    """`file:line: message`; `more` holds further problems of the same kind (one line each)."""

    def __init__(self, file: str, line: int, message: str, more: tuple[tuple[int, str], ...] = ()) -> None:
        text = "\n".join(f"{file}:{n}: {m}" for n, m in ((line, message), *more))
        super().__init__(text)
        self.file, self.line, self.message, self.more = file, line, message, more


@dataclass(frozen=True, slots=True)
class Fault:
    at_ms: int
    kind: str
    value: Any  # a router, server, path, probability, admin action; a Config for `reload`
    extra: dict[str, Any] = field(default_factory=dict)  # from, path, delay, value
    line: int = 0

    def describe(self) -> str:
        """One line for the trace: `crash primary`, `partition all from=primary`..."""
        if self.kind == "reload":
            value = f"(serial_no {self.value.serial_no})"
        else:
            value = str(self.value)
        extra = "".join(f" {k}={v}" for k, v in sorted(self.extra.items()))
        return f"{self.kind} {value}{extra}"


@dataclass(frozen=True, slots=True)
class Expect:
    kind: str
    value: Any
    at_ms: int | None  # None: `always`
    line: int = 0
    window_ms: tuple[int, int] | None = None  # client_success: [from, to)

    def describe(self) -> str:
        if self.kind == "always":
            return f"always {self.value}"
        if self.kind == "client_success":
            assert self.window_ms is not None
            lo, hi = self.window_ms
            return f"client_success >= {self.value} from {lo / 1000:g} s to {hi / 1000:g} s"
        value = self.value
        if isinstance(value, dict):
            value = "{" + ", ".join(f"{k} = {v}" for k, v in value.items()) + "}"
        elif isinstance(value, list):
            value = "[" + ", ".join(value) + "]"
        assert self.at_ms is not None
        return f"{self.kind} {value} at {self.at_ms / 1000:g} s"


@dataclass(frozen=True, slots=True)
class Scenario:
    title: str
    seed: int
    duration_ms: int
    config: Config
    latency_ms: int
    loss: float
    faults: tuple[Fault, ...]
    expects: tuple[Expect, ...]
    file: str
    text: str = ""


def ms(seconds: Any) -> int:
    return round(float(seconds) * 1000)


def load(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ScenarioError(str(path), 1, f"cannot read: {e.strerror or e}") from None
    return loads(text, str(path), path.parent)


def loads(text: str, file: str = "scenario.toml", base: Path = Path(".")) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"at line (\d+)", str(e))
        raise ScenarioError(file, int(m.group(1)) if m else 1, f"not valid TOML: {e}") from None
    lines = text.splitlines()
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ScenarioError(file, _key_line(lines, unknown[0]), f"unknown scenario key {unknown[0]!r}")
    config = _config(data, lines, file, base)
    where = _Where(file, lines)
    duration_ms = ms(_number(data.get("duration", 60.0), file, _key_line(lines, "duration"), "duration"))
    network = data.get("network", {})
    if not isinstance(network, dict) or set(network) - {"latency", "loss"}:
        raise ScenarioError(file, where.header("[network]", 0), "[network] takes `latency` and `loss`")
    latency = _number(network.get("latency", 0.001), file, _key_line(lines, "latency"), "latency")
    loss = _number(network.get("loss", 0.0), file, _key_line(lines, "loss"), "loss")
    if not 0 <= loss <= 1:
        raise ScenarioError(file, _key_line(lines, "loss"), f"loss must be between 0 and 1, not {loss}")
    faults = [_fault(f, where.header("[[fault]]", i), where) for i, f in enumerate(data.get("fault", []))]
    configs = [config] + [f.value for f in faults if f.kind == "reload"]
    names = _names(configs)
    for fault in faults:
        _check_fault_names(fault, names, file)
    expects = [_expect(e, where.header("[[expect]]", i), file, duration_ms, names)
               for i, e in enumerate(data.get("expect", []))]
    seed = data.get("seed", 1)
    if not isinstance(seed, int):
        raise ScenarioError(file, _key_line(lines, "seed"), "seed must be an integer")
    return Scenario(
        title=str(data.get("title", Path(file).stem)), seed=seed, duration_ms=duration_ms, config=config,
        latency_ms=max(0, ms(latency)), loss=float(loss),
        faults=tuple(sorted(faults, key=lambda f: f.at_ms)),  # stable: same time keeps file order
        expects=tuple(expects), file=file, text=text,
    )


# ------------------------------------------------------------------ lines


def _key_line(lines: list[str], key: str, start: int = 0) -> int:
    pattern = re.compile(rf"\s*{re.escape(key)}\s*=")
    for i in range(start, len(lines)):
        if pattern.match(lines[i]):
            return i + 1
    return 1


class _Where:
    """Where things are in the scenario file (TOML forgets line numbers)."""

    def __init__(self, file: str, lines: list[str]) -> None:
        self.file, self.lines = file, lines

    def header(self, header: str, index: int) -> int:
        found = [i + 1 for i, line in enumerate(self.lines) if line.strip() == header]
        return found[index] if index < len(found) else 1

    def literal_offset(self, key: str, from_line: int) -> int:
        """The file line just before the first line of the string `key = '''...`."""
        start = _key_line(self.lines, key, max(0, from_line - 1))
        opened = re.search(r"=\s*('''|\"\"\")\s*$", self.lines[start - 1]) if start <= len(self.lines) else None
        return start if opened else start - 1


def _parse_config(body: str, file: str, offset: int, reported_as: str) -> Config:
    try:
        return parse(body, reported_as)
    except ConfigError as e:
        found = [(i.line + offset, f"{i.message} (config line {i.line}, column {i.col})") for i in e.issues]
        raise ScenarioError(file, *found[0], more=tuple(found[1:])) from None


def _config(data: dict[str, Any], lines: list[str], file: str, base: Path) -> Config:
    if "config" in data and "config_file" in data:
        raise ScenarioError(file, _key_line(lines, "config_file"), "give `config` or `config_file`, not both")
    if "config" in data:
        if not isinstance(data["config"], str):
            raise ScenarioError(file, _key_line(lines, "config"), "config must be a string (the lvs.cf)")
        offset = _Where(file, lines).literal_offset("config", 1)
        return _parse_config(data["config"], file, offset, file)
    if "config_file" in data:
        cf = base / str(data["config_file"])
        try:
            body = cf.read_text()
        except OSError as e:
            raise ScenarioError(file, _key_line(lines, "config_file"),
                                f"config_file {cf}: cannot read: {e.strerror or e}") from None
        return _parse_config(body, str(cf), 0, str(cf))
    raise ScenarioError(file, 1, "no config: give `config = '''...'''` or `config_file = \"name.cf\"`")


def _number(value: Any, file: str, line: int, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(file, line, f"{what} must be a number, not {value!r}")
    return float(value)


# ------------------------------------------------------------------ faults


def _fault(raw: dict[str, Any], line: int, where: _Where) -> Fault:
    file = where.file
    if "at" not in raw:
        raise ScenarioError(file, line, "a [[fault]] needs `at`")
    at = _number(raw["at"], file, line, "at")
    kinds = [k for k in raw if k in FAULT_KEYS]
    if len(kinds) != 1:
        others = [k for k in raw if k not in FAULT_KEYS and k != "at"]
        found = ", ".join(kinds) or (f"unknown {others[0]!r}" if others else "none")
        raise ScenarioError(file, line, f"a [[fault]] takes exactly one of {', '.join(FAULT_KEYS)}; found {found}")
    kind = kinds[0]
    extra = {k: v for k, v in raw.items() if k not in ("at", kind)}
    bad = sorted(set(extra) - FAULT_EXTRA.get(kind, set()))
    if bad:
        raise ScenarioError(file, line, f"{kind}: unexpected key {bad[0]!r}")
    if kind in REQUIRED_EXTRA and REQUIRED_EXTRA[kind] not in extra:
        raise ScenarioError(file, line, f"{kind}: needs `{REQUIRED_EXTRA[kind]}`")
    value = raw[kind]
    if kind == "reload":
        if not isinstance(value, str):
            raise ScenarioError(file, line, "reload must be a string (the new lvs.cf)")
        value = _parse_config(value, file, where.literal_offset("reload", line), file)
    elif kind == "loss":
        p = _number(value, file, line, "loss")
        if not 0 <= p <= 1:
            raise ScenarioError(file, line, f"loss must be between 0 and 1, not {p}")
        value = p
    elif kind in ("server_slow", "load"):
        key = REQUIRED_EXTRA[kind]
        extra[key] = _number(extra[key], file, line, key)
    elif not isinstance(value, str):
        raise ScenarioError(file, line, f"{kind} must be a string, not {value!r}")
    if kind in ("link_down", "link_up") and not isinstance(extra["device"], str):
        raise ScenarioError(file, line, f"{kind}: device must be a string (an interface name), not {extra['device']!r}")
    return Fault(ms(at), kind, value, extra, line)


@dataclass(frozen=True, slots=True)
class _Names:
    servers: frozenset[str]  # SERVER and VIRTUAL/SERVER (real servers)
    sorry: frozenset[str]  # sorry and VIRTUAL/sorry
    devices: tuple[str, ...]  # a router's interfaces (scenario.devices), by the first config


def _names(configs: list[Config]) -> _Names:
    servers: set[str] = set()
    sorry: set[str] = set()
    for config in configs:
        for v in config.virtuals:
            for s in v.servers:
                servers |= {s.name, f"{v.name}/{s.name}"}
            if v.sorry_server:
                sorry |= {"sorry", f"{v.name}/sorry"}
    return _Names(frozenset(servers), frozenset(sorry), devices(configs[0]).names)


def _check_fault_names(fault: Fault, names: _Names, file: str) -> None:
    kind, value = fault.kind, fault.value
    if kind in ("crash", "restart", "kill", "link_down", "link_up") and value not in ROUTERS:
        raise ScenarioError(file, fault.line, f"{kind}: no router {value!r} (routers: primary, backup)")
    if kind.startswith("server_") or kind == "load":
        if value not in names.servers:
            raise ScenarioError(file, fault.line, f"{kind}: no real server {value!r} in the config")
    if kind in ("partition", "heal") and value not in PATHS:
        raise ScenarioError(file, fault.line, f"{kind}: no path {value!r} (paths: public, private, all)")
    if kind == "partition" and fault.extra.get("from", "primary") not in ROUTERS:
        raise ScenarioError(file, fault.line, f"partition: from must be primary or backup, not {fault.extra['from']!r}")
    if kind == "loss" and fault.extra.get("path", "public") not in ("public", "private"):
        raise ScenarioError(file, fault.line, f"loss: path must be public or private, not {fault.extra['path']!r}")
    if kind in ("link_down", "link_up") and fault.extra["device"] not in names.devices:
        raise ScenarioError(file, fault.line, f"{kind}: no interface {fault.extra['device']!r} on the routers "
                                              f"(by the config: {', '.join(names.devices)})")
    if kind == "admin":
        words = value.split()
        if words == ["failover"]:
            return
        if len(words) != 2 or words[0] not in ("drain", "undrain"):
            raise ScenarioError(file, fault.line, f"admin: expected failover, drain SERVER or undrain SERVER, not {value!r}")
        if words[1] not in names.servers:
            raise ScenarioError(file, fault.line, f"admin: no real server {words[1]!r} in the config")


# ------------------------------------------------------------------ expectations


def _expect(raw: dict[str, Any], line: int, file: str, duration_ms: int, names: _Names) -> Expect:
    kinds = [k for k in raw if k in EXPECT_KEYS]
    if len(kinds) != 1:
        raise ScenarioError(file, line, f"an [[expect]] takes exactly one of {', '.join(EXPECT_KEYS)}; "
                                        f"found {', '.join(kinds) or 'none'}")
    kind = kinds[0]
    bad = sorted(set(raw) - {kind, "at"})
    if bad:
        raise ScenarioError(file, line, f"{kind}: unexpected key {bad[0]!r}")
    value = raw[kind]
    if kind == "always":
        if "at" in raw:
            raise ScenarioError(file, line, "always: takes no `at`")
        if value not in ALWAYS:
            raise ScenarioError(file, line, f"always: expected one of {', '.join(ALWAYS)}, found {value!r}")
        return Expect("always", value, None, line)
    if kind == "client_success":
        return _client_success(raw, value, line, file, duration_ms)
    if "at" not in raw:
        raise ScenarioError(file, line, f"{kind}: needs `at`")
    at = ms(_number(raw["at"], file, line, "at"))
    if kind == "vip_owner" and value not in (*ROUTERS, "none"):
        raise ScenarioError(file, line, f"vip_owner: expected primary, backup or none, not {value!r}")
    if kind == "role":
        if not isinstance(value, dict) or not value or set(value) - set(ROUTERS) \
                or any(v not in ROLES for v in value.values()):
            raise ScenarioError(file, line, "role: expected { primary = ROLE, backup = ROLE } "
                                            "with ROLE active, standby or down")
    if kind in ("in_table", "not_in_table"):
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise ScenarioError(file, line, f"{kind}: expected a list of server names")
        _known(value, names, file, line, kind)
    if kind == "weight":
        if not isinstance(value, dict) or not all(isinstance(w, int) and not isinstance(w, bool) for w in value.values()):
            raise ScenarioError(file, line, "weight: expected { SERVER = N, ... }")
        _known(list(value), names, file, line, kind)
    return Expect(kind, value, at, line)


def _known(servers: list[str], names: _Names, file: str, line: int, kind: str) -> None:
    for s in servers:
        if s not in names.servers and s not in names.sorry:
            raise ScenarioError(file, line, f"{kind}: no real server {s!r} in the config")


def _client_success(raw: dict[str, Any], value: Any, line: int, file: str, duration_ms: int) -> Expect:
    if not isinstance(value, dict) or "min" not in value or set(value) - {"min", "from", "to"}:
        raise ScenarioError(file, line, "client_success: expected { min = P, from = T1, to = T2 }")
    share = _number(value["min"], file, line, "client_success min")
    lo = ms(_number(value.get("from", 0.0), file, line, "from"))
    hi = ms(_number(value.get("to", duration_ms / 1000), file, line, "to"))
    if not lo < hi:
        raise ScenarioError(file, line, f"client_success: from ({lo / 1000:g}) must come before to ({hi / 1000:g})")
    at = ms(_number(raw["at"], file, line, "at")) if "at" in raw else hi
    return Expect("client_success", share, max(at, hi), line, (lo, hi))
