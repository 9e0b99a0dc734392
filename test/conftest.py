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

It also marks the ROS-dependent tests `ros` (registered in setup.cfg): every test module that
imports a ROS module, the node tests' helpers or superglue_ros.ros (anywhere in the file), the
colcon workspace build and the interface package checks. `pytest test -m "not ros"` runs the rest; where rclpy is not
installed those modules are not even collected (they could not be imported).
"""

import ast
import fcntl
import importlib.util
import os
import pathlib
import sys
import tempfile

import pytest

_DOMAIN_LOCK = None  # the open lock file; kept for the whole session


def _reserve_domain_id() -> int:
    global _DOMAIN_LOCK
    lock_dir = os.path.join(tempfile.gettempdir(), "superglue_ros_test_domains")
    os.makedirs(lock_dir, exist_ok=True)
    start = os.getpid() % 100
    for k in range(100):
        domain = 1 + (start + k) % 100
        f = open(os.path.join(lock_dir, f"{domain}.lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _DOMAIN_LOCK = f
        return domain
    raise RuntimeError(f"all ROS domain ids 1..100 are locked by other test runs ({lock_dir})")


os.environ["ROS_DOMAIN_ID"] = str(_reserve_domain_id())
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "UDPv4")
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)


ROS_MODULES = {
    "rclpy",
    "superglue_ros_msgs",
    "sensor_msgs",
    "std_msgs",
    "geometry_msgs",
    "builtin_interfaces",
    "rcl_interfaces",
    "diagnostic_msgs",
    "launch",
    "launch_ros",
    "ament_index_python",
    "ros_helpers",
}
# ROS-dependent without a visible import: a colcon build imported in a child process; the
# generated messages imported by name (importlib) and the ament index
ROS_OTHERWISE = {"test_colcon_workspace.py", "test_interfaces_package.py"}
_NEEDS_ROS: dict[pathlib.Path, bool] = {}


def needs_ros(path: pathlib.Path) -> bool:
    """Whether the test module at `path` imports ROS (or superglue_ros.ros) anywhere."""
    if path not in _NEEDS_ROS:
        names = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        _NEEDS_ROS[path] = path.name in ROS_OTHERWISE or any(
            name.split(".")[0] in ROS_MODULES or name.startswith("superglue_ros.ros")
            for name in names
        )
    return _NEEDS_ROS[path]


def _rclpy_installed() -> bool:
    try:
        return importlib.util.find_spec("rclpy") is not None
    except ImportError:
        return False


def pytest_ignore_collect(collection_path, config):
    path = pathlib.Path(collection_path)
    if (
        path.suffix == ".py"
        and path.name.startswith("test_")
        and needs_ros(path)
        and not _rclpy_installed()
    ):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if needs_ros(pathlib.Path(str(item.path))):
            item.add_marker(pytest.mark.ros)


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
