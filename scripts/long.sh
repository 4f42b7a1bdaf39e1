#!/usr/bin/env bash
# The test command's slower sibling (README, "Long runs"): what does not fit
# in scripts/test.sh's 20 minutes.  Installs what the tests need (through
# scripts/test.sh's set-up, running no test), then:
#   1. every scenario of scenarios/ in the simulator and three times in the
#      lab, side by side, written to docs/SIM-VS-LAB.md (scripts/sim_vs_lab.py);
#   2. the explorer on 2,000 random fault schedules.
# Exit non-zero when any scenario fails in either world or any schedule fails.
# Root (the lab).  About an hour on this 2-core machine.
set -uo pipefail
cd "$(dirname "$0")/.."
SHOAL_SETUP_ONLY=1 bash scripts/test.sh || exit $?
rc=0
echo "== every scenario, simulator and lab (3 runs), into docs/SIM-VS-LAB.md"
.venv/bin/python scripts/sim_vs_lab.py --runs "${SHOAL_LAB_RUNS:-3}" --out docs/SIM-VS-LAB.md || rc=1
echo "== explorer: 2000 schedules"
out=$(mktemp -d)
.venv/bin/shoal sim --explore "${SHOAL_EXPLORE:-2000}" --seed "${SHOAL_EXPLORE_SEED:-$RANDOM}" --out "$out" || rc=1
exit $rc
