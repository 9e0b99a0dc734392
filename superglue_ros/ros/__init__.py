"""ROS 2 adapter of the front-end: message conversion, the node, the player and the demo.

The only part of superglue_ros that imports ROS; everything it calls is ROS-free.
"""
