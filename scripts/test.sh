#!/usr/bin/env bash
# README test command: set up everything, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh
python -m pytest -q test "$@"
