"""A real `colcon build` of a workspace whose src/ holds a copy of this repository.

SLOW (about a minute on 2 cores: CMake + rosidl for superglue_ros_msgs, setup.py for
superglue_ros). It checks what a robot team does first: colcon finds both packages (the
repository root is not one itself, see colcon.pkg), builds them, and after sourcing the
install space both import from there, with the launch file and config in share/.

colcon comes from scripts/setup.sh (PyPI, into .venv/colcon) or from a sourced ROS 2 install.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COPY_IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "install",
    "log",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    "demo_output",
    "runs",
    "out",
)


def _colcon_command() -> tuple[list[str], dict]:
    """(argv prefix, extra environment) that runs colcon here."""
    private = Path(sys.prefix) / "colcon"
    if (private / "colcon_core").is_dir():
        return [sys.executable, "-m", "colcon"], {"PYTHONPATH": str(private)}
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import colcon_core, os; print(os.path.dirname(os.path.dirname(colcon_core.__file__)))",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode == 0:  # importable from this environment (e.g. PYTHONPATH)
        return [sys.executable, "-m", "colcon"], {"PYTHONPATH": probe.stdout.strip()}
    if shutil.which("colcon"):
        return ["colcon"], {}
    pytest.fail(
        f"no colcon: run scripts/setup.sh (installs it into {private}) or source a "
        "ROS 2 install that has colcon"
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("colcon_ws")
    shutil.copytree(ROOT, ws / "src" / "superglue_ros", symlinks=True, ignore=COPY_IGNORED)
    return ws


def _env(extra: dict) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # nothing of a checkout may shadow what colcon installed
    env.update(extra)
    if not env.get("ROS_DISTRO"):  # PyPI wheels: ament_cmake and rosidl live in the venv
        env["AMENT_PREFIX_PATH"] = env["CMAKE_PREFIX_PATH"] = sys.prefix
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


def test_colcon_lists_both_packages(workspace):
    colcon, extra = _colcon_command()
    proc = subprocess.run(
        colcon + ["list"],
        cwd=workspace,
        env=_env(extra),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in proc.stdout.splitlines()}
    assert rows == {
        "superglue_ros": ["src/superglue_ros/colcon_package", "(ros.ament_python)"],
        "superglue_ros_msgs": ["src/superglue_ros/msg/superglue_ros_msgs", "(ros.ament_cmake)"],
    }, proc.stdout + proc.stderr


def test_colcon_build_installs_both_packages(workspace):
    colcon, extra = _colcon_command()
    env = _env(extra)
    build = subprocess.run(
        colcon
        + [
            "build",
            "--event-handlers",
            "console_direct-",
            "--cmake-args",
            "-DBUILD_TESTING=OFF",
            f"-DPython3_EXECUTABLE={sys.executable}",
        ],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-6000:] + build.stderr[-6000:]
    assert "Summary: 2 packages finished" in build.stdout, build.stdout

    install = workspace / "install"
    check = """
import sys
from pathlib import Path
import superglue_ros, superglue_ros_msgs
from superglue_ros_msgs.msg import Correspondences
from superglue_ros_msgs.srv import VerifyLoop
from rclpy.serialization import deserialize_message, serialize_message
from ament_index_python.packages import get_package_share_directory as share
msg = Correspondences(query_id=7)
assert deserialize_message(serialize_message(msg), Correspondences).query_id == 7
serialize_message(VerifyLoop.Request())
from superglue_ros.ros.parameters import all_parameters   # the node's modules import
print(superglue_ros.__file__)
print(superglue_ros_msgs.__file__)
print(share('superglue_ros'))
print(share('superglue_ros_msgs'))
"""
    env.pop("PYTHONPATH", None)
    run = subprocess.run(
        ["sh", "-c", f'. "{install}/setup.sh" && exec "{sys.executable}" -c "$0"', check],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    module, msgs_module, share_dir, msgs_share = (Path(p) for p in run.stdout.split())
    assert module.is_relative_to(install / "superglue_ros"), module
    assert msgs_module.is_relative_to(install / "superglue_ros_msgs"), msgs_module
    assert share_dir == install / "superglue_ros" / "share" / "superglue_ros"
    assert msgs_share == install / "superglue_ros_msgs" / "share" / "superglue_ros_msgs"
    for name in ("package.xml", "launch/superglue.launch.py", "config/superglue.yaml"):
        assert (share_dir / name).is_file(), name
    assert (install / "superglue_ros" / "lib" / "superglue_ros" / "superglue_node").is_file()
    weights = module.parent / "weights"
    assert {"superpoint.pth", "superglue.pth"} <= {p.name for p in weights.glob("*.pth")}
