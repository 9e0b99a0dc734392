"""superglue_ros: learned feature correspondences (SuperPoint + SuperGlue) for ROS 2 SLAM front-ends.

The core (models, features, geometry, keyframes, evaluation) is plain Python + torch and
imports nothing from ROS; only ``superglue_ros.ros`` talks to rclpy.
"""

__version__ = "0.1.0"
