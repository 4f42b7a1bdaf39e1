"""`shoal sim [SCENARIO.toml] [--seed N] [--json] [--until T]`."""

from __future__ import annotations

import argparse
import sys
from importlib import resources

from scenario.model import ScenarioError, load, loads
from sim.runner import json_lines, run, timeline


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shoal sim")
    parser.add_argument("scenario", nargs="?")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--until", type=float)
    args = parser.parse_args(argv)
    try:
        if args.scenario:
            scenario = load(args.scenario)
        else:
            text = resources.files("sim").joinpath("default.toml").read_text()
            scenario = loads(text, "<default scenario>")
        result = run(scenario, args.seed, round(args.until * 1000) if args.until is not None else None)
    except ScenarioError as e:
        print(e, file=sys.stderr)
        return 2
    print(json_lines(result.records) if args.json else f"# {scenario.title}\n" + timeline(result.records))
    if not args.json:
        for ok, what in result.verdicts:
            print(f"{'ok  ' if ok else 'FAIL'} {what}")
    return 0 if result.ok else 1
