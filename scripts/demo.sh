#!/usr/bin/env bash
# README main command: set up everything, then run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh
# 1) accuracy of the shipped default model on the real evaluation photos (opencv-doc left*.jpg)
usn-keypoints evaluate --set real-left
# 2) the live ROS 2 pipeline: camera_source -> keypoint_detector + certifier
usn-keypoints demo "$@"
