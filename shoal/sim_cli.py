"""`shoal sim [SCENARIO.toml] [--seed N] [--json] [--until T]` and
`shoal sim --explore N [--seed S]` (SPEC.md, "The command line").

Exit 0: every expectation holds and no invariant broke; 1: something
failed; 2: a bad scenario or config (`file:line: message` on stderr).
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources

from scenario.model import ScenarioError, load, loads
from scenario.verdicts import exit_code, summary_lines
from sim.runner import Result, run
from sim.timeline import json_lines, line, timeline

DEFAULT_NAME = "<default scenario>"


def default_scenario_text() -> str:
    return resources.files("sim").joinpath("default.toml").read_text()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shoal sim", description="run a scenario in the simulator")
    parser.add_argument("scenario", nargs="?", help="scenario file (default: the embedded default scenario)")
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument("--json", action="store_true", help="JSON lines (SPEC.md, Trace)")
    parser.add_argument("--until", type=float, metavar="T", help="stop at T simulated seconds")
    parser.add_argument("--explore", type=int, metavar="N", help="run N random fault schedules")
    parser.add_argument("--out", default=".", help="with --explore: where failing scenarios are written")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    if args.explore is not None:
        from sim.explore import explore_cli

        return explore_cli(args.explore, args.seed if args.seed is not None else 1, args.out)
    try:
        if args.scenario:
            scenario = load(args.scenario)
        else:
            scenario = loads(default_scenario_text(), DEFAULT_NAME)
        until = round(args.until * 1000) if args.until is not None else None
        result = run(scenario, args.seed, until)
    except ScenarioError as e:
        print(e, file=sys.stderr)
        return 2
    if args.json:
        print(json_lines(result.records))
    else:
        print(f"# {scenario.title}")
        print(f"# seed {args.seed if args.seed is not None else scenario.seed}, "
              f"{scenario.duration_ms / 1000:g} simulated seconds")
        print(timeline(result.records))
        print()
        print_verdicts(result, sys.stdout)  # with --json, the `expect` records are the verdicts
    return exit_code(result.ok)


def print_verdicts(result: Result, out: object) -> None:
    for text in summary_lines(result.verdicts):
        print(text, file=out)  # type: ignore[call-overload]
    for violation in result.violations:
        print(f"FAIL invariant {violation.name}: {violation.message}", file=out)  # type: ignore[call-overload]
        print("     what led there:", file=out)  # type: ignore[call-overload]
        for record in violation.context:
            print("     " + line(record), file=out)  # type: ignore[call-overload]
