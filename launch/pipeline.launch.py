"""keypoint_detector + certifier on an existing camera topic.

ros2 launch usn_robust_keypoints pipeline.launch.py image:=/camera/image_raw [params_file:=...]
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "usn_robust_keypoints"


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "pipeline.yaml")
    image = LaunchConfiguration("image")
    params_file = LaunchConfiguration("params_file")
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="camera image topic (bgr8, rgb8 or mono8)"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="ROS params YAML with keypoint_detector and certifier sections"),
        Node(package=PACKAGE, executable="keypoint_detector", name="keypoint_detector",
             parameters=[params_file], remappings=[("image", image)], output="screen"),
        Node(package=PACKAGE, executable="certifier", name="certifier",
             parameters=[params_file], remappings=[("image", image)], output="screen"),
    ])
