"""Full demo: camera_source -> keypoint_detector + certifier.

ros2 launch usn_robust_keypoints demo.launch.py [source:=0] [params_file:=...]
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "usn_robust_keypoints"


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "demo.yaml")
    image = LaunchConfiguration("image")
    params_file = LaunchConfiguration("params_file")
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="image topic between the camera and the two nodes"),
        DeclareLaunchArgument("source", default_value="opencv-doc:left[0-9]*.jpg",
                              description="synthetic | opencv-doc:<glob> | camera index | video | folder"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="ROS params YAML with the three nodes' sections"),
        Node(package=PACKAGE, executable="camera_source", name="camera_source",
             parameters=[params_file, {"source": LaunchConfiguration("source")}],
             remappings=[("image", image), ("camera_info", "/camera/camera_info")], output="screen"),
        Node(package=PACKAGE, executable="keypoint_detector", name="keypoint_detector",
             parameters=[params_file], remappings=[("image", image)], output="screen"),
        Node(package=PACKAGE, executable="certifier", name="certifier",
             parameters=[params_file], remappings=[("image", image)], output="screen"),
    ])
