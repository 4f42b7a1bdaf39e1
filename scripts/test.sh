#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs them.
# Idempotent; works on a fresh clone of a fresh machine (as root for the
# Debian packages; without root they must already be there).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(python3-venv iproute2 nftables qemu-system-x86 linux-image-amd64 busybox-static kmod cpio ipvsadm chromium keepalived)
missing=()
for p in "${DEBS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages (run as root to install): ${missing[*]}" >&2
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q -e '.[test]'
[ -z "${SHOAL_SETUP_ONLY:-}" ] || exit 0  # scripts/long.sh: the set-up only

echo "== mypy --strict engine/ sim/ scenario/"
.venv/bin/mypy --strict engine sim scenario
echo "== pytest"
.venv/bin/pytest -q "$@"
