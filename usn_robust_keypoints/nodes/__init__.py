"""ROS 2 layer: camera_source, keypoint_detector and certifier nodes, image conversion, messages,
the loopback launcher (`usn-keypoints run`), demo and benchmark. The only package that imports rclpy."""
