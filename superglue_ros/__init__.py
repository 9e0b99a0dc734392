"""superglue_ros: learned feature correspondences (SuperPoint + SuperGlue) for ROS 2 SLAM front-ends.

The core (models, features, geometry, keyframes, evaluation) is plain Python + torch and
imports nothing from ROS; only ``superglue_ros.ros`` talks to rclpy.
"""

__version__ = "0.1.0"

import os as _os

# OpenMP threads (torch) that spin after each op steal the CPU from OpenVINO's own threads on
# the next network call. Measured on 2 cores with the fast runtime: image conversion 13 ms ->
# 1.4 ms and SuperPoint backbone 150 ms -> 125 ms with passive waiting. Read by the OpenMP
# runtime when torch loads, so it only applies when this package is imported first (the node
# and the command-line tools are); an explicit setting is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
