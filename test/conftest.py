"""Test-session wide set-up: an isolated ROS 2 DDS domain on loopback.

Runs at import, i.e. before any test module can call rclpy.init(), so every
context of this pytest process and every subprocess it starts sees the same
environment.

- ROS_DOMAIN_ID: one per test run, so parallel runs (teammates, CI) don't
  exchange messages. Chosen in 1..100 (0 is everybody's default), starting
  from the pid, and held by an exclusive lock file for the run, so two
  concurrent runs on this machine never share a domain.
- Discovery and transport restricted to this machine's loopback.
- AMENT_PREFIX_PATH defaults to the venv, so ament_index finds our packages.
"""
import fcntl
import os
import sys
import tempfile

import pytest

_DOMAIN_LOCK = None  # the open lock file; kept for the whole session


def _reserve_domain_id() -> int:
    global _DOMAIN_LOCK
    lock_dir = os.path.join(tempfile.gettempdir(), 'superglue_ros_test_domains')
    os.makedirs(lock_dir, exist_ok=True)
    start = os.getpid() % 100
    for k in range(100):
        domain = 1 + (start + k) % 100
        f = open(os.path.join(lock_dir, f'{domain}.lock'), 'w')
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _DOMAIN_LOCK = f
        return domain
    raise RuntimeError(f'all ROS domain ids 1..100 are locked by other test runs ({lock_dir})')


os.environ['ROS_DOMAIN_ID'] = str(_reserve_domain_id())
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'UDPv4')
os.environ.setdefault('AMENT_PREFIX_PATH', sys.prefix)


@pytest.fixture
def ros_context():
    """A fresh, initialised rclpy Context (shut down after the test)."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)
