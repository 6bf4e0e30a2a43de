#!/usr/bin/env bash
# README main command: set up everything, then run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh
usn-keypoints demo "$@"
