#!/usr/bin/env bash
# Install torch 2.13.0 as a CPU build, before anything that depends on torch: on Linux, PyPI's torch is a CUDA
# build of several GB. PyTorch's own CPU index (TORCH_CPU_INDEX) is used when it answers; where it does not (no
# internet, a mirror, a machine whose pip configuration points at a local CPU wheel), pip's configuration decides.
# A torch 2.13.0 already installed is kept.
set -euo pipefail
CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
if python -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  exit 0
fi
if python - "$CPU_INDEX" 2>/dev/null <<'PROBE'
import sys
import urllib.request

urllib.request.urlopen(urllib.request.Request(sys.argv[1].rstrip("/") + "/torch/", method="HEAD"), timeout=10)
PROBE
then
  python -m pip install -q torch==2.13.0 --index-url "$CPU_INDEX"
else
  echo "install-torch: $CPU_INDEX does not answer; installing torch==2.13.0 as pip is configured" >&2
  python -m pip install -q torch==2.13.0
fi
