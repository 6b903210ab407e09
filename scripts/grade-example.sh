#!/usr/bin/env bash
# Install what grading needs, then grade the shipped example submission.
# Usage: bash scripts/grade-example.sh [extra grade.py arguments, e.g. --format json]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-torch.sh
python -m pip install -q -e .
python grade.py examples/student_submission.ipynb "$@"
