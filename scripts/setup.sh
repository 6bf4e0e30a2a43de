#!/usr/bin/env bash
# Idempotent set-up: .venv with torch (CPU wheel), ROS 2 wheels, the messages and this package.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${USN_VENV:-$ROOT/.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
PIP="$VENV/bin/pip"
stamp="$VENV/.usn_setup_stamp"
want=$(cat requirements-venv.txt setup.py scripts/setup.sh $(find msg -type f 2>/dev/null | sort) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing into $VENV"
  "$PIP" install -q -r requirements-venv.txt
  # ROS 2 messages (msg/): CMake + rosidl against the PyPI ROS wheels, build deps in msg/pyproject.toml
  "$PIP" install -q ./msg
  "$PIP" install -q -e ".[test]"
  echo "$want" > "$stamp"
fi
