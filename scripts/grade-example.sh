#!/usr/bin/env bash
# Install what grading needs, then grade the shipped example submission.
# Usage: bash scripts/grade-example.sh [extra grade.py arguments, e.g. --format json]
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -e .
python grade.py examples/student_submission.ipynb "$@"
