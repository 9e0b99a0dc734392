"""ROS-free SLAM front-end: keyframe cache, keyframe policy, global descriptor, VO + loop-closure
pipeline (``FrontEnd``), offline runner and a synthetic test sequence. Imports nothing from ROS."""
