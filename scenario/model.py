"""Scenario files (SPEC.md, "Scenario files"): loaded and checked, pure.

Shared by `shoal sim` and (later) `shoal lab`: both read a scenario with
this code.  Errors are `ScenarioError`s that say `file:line: message`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import ConfigError, parse
from engine.model import Config

FAULT_KEYS = ("crash", "restart", "kill", "server_down", "server_up", "server_hang", "server_wrong",
              "server_slow", "partition", "heal", "loss", "load", "reload", "admin")
EXPECT_KEYS = ("vip_owner", "role", "in_table", "not_in_table", "weight", "client_success", "always")
ALWAYS = ("single_owner", "table_matches_health")


class ScenarioError(Exception):
    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")


@dataclass(frozen=True, slots=True)
class Fault:
    at_ms: int
    kind: str
    value: Any
    extra: dict[str, Any] = field(default_factory=dict)  # from, path, delay, value
    line: int = 0


@dataclass(frozen=True, slots=True)
class Expect:
    kind: str
    value: Any
    at_ms: int | None  # None: always
    line: int = 0


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


def _ms(seconds: Any) -> int:
    return round(float(seconds) * 1000)


def _table_lines(text: str, header: str) -> list[int]:
    return [i + 1 for i, line in enumerate(text.splitlines()) if line.strip() == header]


def load(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ScenarioError(str(path), 1, f"cannot read: {e}") from None
    return loads(text, str(path), path.parent)


def loads(text: str, file: str = "scenario.toml", base: Path = Path(".")) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"at line (\d+)", str(e))
        raise ScenarioError(file, int(m.group(1)) if m else 1, f"not valid TOML: {e}") from None
    config = _config(data, text, file, base)
    network = data.get("network", {})
    fault_lines = _table_lines(text, "[[fault]]")
    expect_lines = _table_lines(text, "[[expect]]")
    faults = tuple(_fault(f, fault_lines[i] if i < len(fault_lines) else 1, file)
                   for i, f in enumerate(data.get("fault", [])))
    expects = tuple(_expect(e, expect_lines[i] if i < len(expect_lines) else 1, file)
                    for i, e in enumerate(data.get("expect", [])))
    unknown = set(data) - {"title", "seed", "duration", "config", "config_file", "network", "fault", "expect"}
    if unknown:
        raise ScenarioError(file, 1, f"unknown scenario key(s): {', '.join(sorted(unknown))}")
    return Scenario(
        title=str(data.get("title", Path(file).stem)), seed=int(data.get("seed", 1)),
        duration_ms=_ms(data.get("duration", 60.0)), config=config,
        latency_ms=_ms(network.get("latency", 0.001)), loss=float(network.get("loss", 0.0)),
        faults=tuple(sorted(faults, key=lambda f: f.at_ms)), expects=expects, file=file,
    )


def _config(data: dict[str, Any], text: str, file: str, base: Path) -> Config:
    if "config" in data:
        body = str(data["config"])
        lines = text.splitlines()
        start = next((i + 1 for i, line in enumerate(lines) if re.match(r"\s*config\s*=", line)), 1)
        offset = start if re.search(r"=\s*('''|\"\"\")\s*$", lines[start - 1]) else start - 1
        where = file
    elif "config_file" in data:
        cf = base / str(data["config_file"])
        try:
            body = cf.read_text()
        except OSError as e:
            raise ScenarioError(file, 1, f"config_file {cf}: cannot read: {e}") from None
        offset, where = 0, str(cf)
    else:
        raise ScenarioError(file, 1, "no config: give `config = '''...'''` or `config_file = \"name.cf\"`")
    try:
        return parse(body, where)
    except ConfigError as e:
        first = e.issues[0]
        raise ScenarioError(where, first.line + offset, f"{first.message} (config line {first.line}, column {first.col})") from None


def _fault(raw: dict[str, Any], line: int, file: str) -> Fault:
    if "at" not in raw:
        raise ScenarioError(file, line, "a [[fault]] needs `at`")
    kinds = [k for k in raw if k in FAULT_KEYS]
    if len(kinds) != 1:
        raise ScenarioError(file, line, f"a [[fault]] takes exactly one of {', '.join(FAULT_KEYS)}; found {kinds or 'none'}")
    kind = kinds[0]
    extra = {k: v for k, v in raw.items() if k not in ("at", kind)}
    allowed = {"partition": {"from"}, "loss": {"path"}, "server_slow": {"delay"}, "load": {"value"}}.get(kind, set())
    if set(extra) - allowed:
        raise ScenarioError(file, line, f"{kind}: unexpected key(s) {', '.join(sorted(set(extra) - allowed))}")
    return Fault(_ms(raw["at"]), kind, raw[kind], extra, line)


def _expect(raw: dict[str, Any], line: int, file: str) -> Expect:
    kinds = [k for k in raw if k in EXPECT_KEYS]
    if len(kinds) != 1:
        raise ScenarioError(file, line, f"an [[expect]] takes exactly one of {', '.join(EXPECT_KEYS)}; found {kinds or 'none'}")
    kind = kinds[0]
    if kind == "always":
        if raw["always"] not in ALWAYS:
            raise ScenarioError(file, line, f"always: expected one of {', '.join(ALWAYS)}, found {raw['always']!r}")
        return Expect("always", raw["always"], None, line)
    if "at" not in raw and kind != "client_success":
        raise ScenarioError(file, line, f"{kind}: needs `at`")
    at = _ms(raw["at"]) if "at" in raw else None
    return Expect(kind, raw[kind], at, line)
