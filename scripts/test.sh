#!/usr/bin/env bash
# Install everything the test suite needs, then run the whole suite.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages some tests drive for real: Chromium (class report), bubblewrap (kernel sandbox).
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium chromium-driver)
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# A CPU build of torch first (an unpinned torch would pull a CUDA build of several GB).
bash scripts/install-torch.sh
python -m pip install -q -e ".[test]"

status=0
python -m pytest -q --durations=30 "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$status"
