"""`shoal lab SCENARIO.toml [--time-scale F] [--dataplane nft|ipvs] [--keep-going]` (SPEC.md, "The command line").

Runs the scenario for real on network namespaces (adapters/lab): prints
the timeline as it happens, then one verdict line per expectation.  By
default the run stops at the first failed expectation (a lab run costs
wall time); `--keep-going` runs to the end.  `--dataplane` is the daemons' (`shoal run
--dataplane`): `nft` by default (any kernel), `ipvs` where the kernel has
IPVS (the qemu guest of tests/kernel).

Exit 0: every expectation holds; 1: one failed; 2: a bad scenario or
config (`file:line: message`), or the lab cannot run here (not root, a
tool missing, a network the lab cannot build), with a clear message.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    from adapters.lab.plan import LabError
    from adapters.lab.runner import run
    from scenario.model import ScenarioError, load
    from scenario.verdicts import exit_code, summary_lines

    parser = argparse.ArgumentParser(prog="shoal lab", description="run a scenario on real namespaces (root)")
    parser.add_argument("scenario", help="scenario file")
    parser.add_argument("--time-scale", type=float, default=1.0, metavar="F",
                        help="multiply every time in the scenario and its config by F (e.g. 0.25)")
    parser.add_argument("--dataplane", choices=("nft", "ipvs"), default="nft",
                        help="the daemons' dataplane (default nft; ipvs needs the kernel's IPVS)")
    parser.add_argument("--keep-going", action="store_true", help="run to the end after a failed expectation")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    if not args.time_scale > 0:
        print("shoal lab: --time-scale must be above 0", file=sys.stderr)
        return 2
    try:
        scenario = load(args.scenario)
    except ScenarioError as e:
        print(e, file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _interrupt)
    print(f"# {scenario.title}")
    print(f"# lab, dataplane {args.dataplane}, time scale {args.time_scale:g}: {scenario.duration_ms / 1000:g} scenario seconds in "
          f"{scenario.duration_ms * args.time_scale / 1000:g} wall seconds; times below are scenario seconds",
          flush=True)
    try:
        result = run(scenario, args.time_scale, args.keep_going, echo=lambda s: print(s, flush=True),
                     dataplane=args.dataplane)
    except LabError as e:
        print(f"shoal lab: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("shoal lab: interrupted; everything the lab made is removed", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    print()
    for text in summary_lines(result.verdicts):
        print(text)
    print(f"# {result.wall_s:.1f} wall seconds")
    return exit_code(result.ok)
