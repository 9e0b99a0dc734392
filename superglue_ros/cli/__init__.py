"""Command-line entry points of the core (no ROS)."""
