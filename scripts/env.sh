# Source me: activates .venv and keeps ROS 2 / DDS traffic on loopback.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${USN_VENV:-$ROOT/.venv}
# shellcheck disable=SC1091
source "$VENV/bin/activate"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}
export ROS_LOG_DIR=${ROS_LOG_DIR:-$ROOT/.cache/ros_log}
export USN_CACHE=${USN_CACHE:-$ROOT/.cache}
