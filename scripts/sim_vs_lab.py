"""Every scenario in both worlds, side by side: `shoal sim` and `shoal lab`.

    .venv/bin/python scripts/sim_vs_lab.py [SCENARIO.toml ...] [--runs N] [--time-scale F]
                                           [--dataplane nft|ipvs] [--out docs/SIM-VS-LAB.md]

Without scenario files: every file of `scenarios/`.  Each scenario runs
once in the simulator and `--runs` times in the lab (`--keep-going`, so
every expectation is judged; adapters/lab/compare.py); a scenario the lab
refuses (exit 2) is shown with the lab's reason, and one it refuses for want
of IPVS (direct routing, tunnelling) runs in the kernel guest instead
(tests/kernel/harness.py, `--dataplane ipvs`, `--guest-scale`, default 0.5).  The table (markdown) says,
per scenario, pass or fail in each world and the first expectation whose
verdicts differ, and goes to `--out` (and stdout).  Exit 0 when every
scenario passes in both worlds in every run, 1 otherwise.

Run as root (the lab).  Long: each lab run takes the scenario's duration
times the time scale, plus a few seconds to build and remove the network.
`scripts/long.sh` runs it with three lab runs each into docs/SIM-VS-LAB.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.lab import compare  # noqa: E402


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="every scenario in the simulator and the lab, side by side")
    p.add_argument("scenarios", nargs="*", help="scenario files (default: scenarios/*.toml)")
    p.add_argument("--runs", type=int, default=1, help="lab runs per scenario (default 1)")
    p.add_argument("--time-scale", type=float, default=0.25)
    p.add_argument("--dataplane", choices=("nft", "ipvs"), default="nft")
    p.add_argument("--out", default=None, help="write the table here too (markdown)")
    p.add_argument("--no-guest", dest="guest", action="store_false",
                   help="do not run in the kernel guest (ipvs) what the host's lab refuses for want of IPVS")
    p.add_argument("--guest-scale", type=float, default=0.5, help="time scale in the kernel guest (default 0.5)")
    args = p.parse_args(argv)
    files = [Path(s) for s in args.scenarios] or sorted((ROOT / "scenarios").glob("*.toml"))
    started, load = time.time(), os.getloadavg()
    rows: list[str] = []
    both = 0
    for f in files:
        sim = compare.sim(f)
        labs = [compare.lab(f, args.time_scale, args.dataplane) for _ in range(args.runs)]
        where = ""
        if args.guest and labs[0].code == 2 and "--dataplane ipvs" in labs[0].reason:
            where = f" (kernel guest, ipvs, time scale {args.guest_scale:g})"
            labs = [compare.lab_in_guest(f, args.guest_scale) for _ in range(args.runs)]
        diffs = [d for d in (compare.first_difference(sim, lab) for lab in labs) if d]
        refused = next((lab.reason for lab in labs if lab.code not in (0, 1)), "")
        ok = sim.code == 0 and all(lab.code == 0 for lab in labs)
        both += ok
        note = refused or (diffs[0] if diffs else sim.reason)
        row = (f"| {f.stem} | {sim.word} | {', '.join(lab.word for lab in labs)}{where} | {_cell(note)} | "
               f"{max((lab.wall_s for lab in labs), default=0):.0f} |")
        rows.append(row)
        print(row, flush=True)
    end_load = os.getloadavg()
    text = "\n".join([
        "# Simulator and lab, side by side",
        "",
        f"`scripts/sim_vs_lab.py {' '.join(argv)}` on {platform.node()} ({os.cpu_count()} cores), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, load average {load[0]:.2f} at the start "
        f"and {end_load[0]:.2f} at the end; lab: dataplane {args.dataplane}, time scale {args.time_scale:g}, "
        f"{args.runs} run(s) of each scenario.",
        "",
        "Each scenario runs once in the simulator (`shoal sim`) and in the lab (`shoal lab --keep-going`). "
        "'refused' is the lab's exit 2 (a network it cannot build), with its reason; 'first difference' is "
        "the first expectation the two worlds judged differently, as the failing world says it.",
        "",
        "| scenario | sim | lab | first difference / reason | lab wall s (longest run) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"{both} of {len(rows)} scenarios pass in both worlds in every run.",
        "",
    ])
    if args.out:
        Path(args.out).write_text(text)
    print(f"{both} of {len(rows)} scenarios pass in both worlds in every run.")
    return 0 if both == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
