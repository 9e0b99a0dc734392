"""Package plumbing: set-up idempotence, manifests, launch file, installed share/ layout.

`ros2 launch` cannot run here (launch / launch_ros are not on PyPI), so the launch
file is checked statically: it parses, declares the documented arguments, and
starts the installed executable of this package with the params file and remaps.
"""

import ast
import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)


def _run_setup():
    env = dict(os.environ)
    env.pop("FORCE", None)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def test_setup_second_run_is_a_no_op():
    """After one set-up run (CI's from empty, or one here when an input just changed),
    another run must skip every step."""
    _run_setup()
    out = _run_setup()
    lines = [ln for ln in out.splitlines() if ln.startswith("[setup] ")]
    steps = ("venv:", "torch:", "requirements:", "ros:", "colcon:", "msgs:", "package:", "share:")
    for step in steps:
        step_lines = [ln for ln in lines if ln.startswith(f"[setup] {step}")]
        assert step_lines, f"setup printed nothing for step {step}:\n{out}"
        assert all("(skipped)" in ln for ln in step_lines), f"step {step} was not skipped:\n{out}"
    assert "pip install" not in out.replace("[setup]", ""), out
    assert lines[-1].startswith("[setup] ready:"), out


def test_setup_stamps_track_their_inputs(tmp_path):
    """A stamp is keyed by a hash of the inputs: change an input and the step is no longer done."""
    stamps = VENV / ".setup-stamps"
    if not stamps.is_dir():
        pytest.skip(f"{VENV} was not set up by scripts/setup.sh")
    for name in ("torch", "requirements", "msgs", "package"):
        value = (stamps / name).read_text().strip()
        assert re.fullmatch(r"[0-9a-f]{64}", value), f"{name}: {value!r}"
    # The requirements stamp is the digest of requirements.txt and the torch version:
    # reproduce it with the script's own digest function, then with a modified copy.
    script = (ROOT / "scripts" / "setup.sh").read_text()
    digest_fn = script[script.index("digest() {") : script.index("is_done()")]
    from importlib.metadata import version

    changed = tmp_path / "requirements.txt"
    changed.write_text((ROOT / "requirements.txt").read_text() + "extra-package\n")

    def digest(*args):
        return subprocess.run(
            ["bash", "-c", digest_fn + '\ndigest "$@"', "digest", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    torch_version = version("torch")
    assert (
        digest(str(ROOT / "requirements.txt"), torch_version)
        == (stamps / "requirements").read_text().strip()
    )
    assert digest(str(changed), torch_version) != (stamps / "requirements").read_text().strip()


@pytest.mark.parametrize("manifest", ["package.xml", "msg/superglue_ros_msgs/package.xml"])
def test_package_manifests_are_valid_format_3(manifest):
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(ROOT / manifest))  # validates names, e-mails, versions
    assert pkg.package_format == 3
    assert pkg.get_build_type() == ("ament_python" if manifest == "package.xml" else "ament_cmake")
    if manifest == "package.xml":
        deps = {d.name for d in pkg.exec_depends}
        assert {
            "rclpy",
            "sensor_msgs",
            "std_msgs",
            "diagnostic_msgs",
            "superglue_ros_msgs",
            "builtin_interfaces",
        } <= deps
    else:
        assert "rosidl_interface_packages" in {g.name for g in pkg.member_of_groups}


def test_every_python_dependency_has_a_rosdep_key():
    """rosdep must install what requirements.txt (and TORCH_SPEC) installs: each requirement is
    declared in package.xml by its rosdep key, and each python3-*-pip key that rosdep's default
    sources lack is defined in rosdep.yaml with that PyPI package."""
    import yaml
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(ROOT / "package.xml"))
    keys = {d.name for d in pkg.exec_depends + pkg.test_depends}
    requirements = ["torch"] + [
        re.split(r"[<>=\s#]", line, maxsplit=1)[0].lower()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # rosdep's own names for packages whose PyPI name differs from their module
    system_keys = {
        "opencv-python-headless": "python3-opencv",
        "pyyaml": "python3-yaml",
        "scikit-image": "python3-skimage",
    }
    local = yaml.safe_load((ROOT / "rosdep.yaml").read_text())
    for name in requirements:
        candidates = {system_keys.get(name, f"python3-{name}"), f"python3-{name}-pip"}
        declared = candidates & keys
        assert declared, f"requirement {name!r} has no rosdep key in package.xml ({candidates})"
        for key in declared & set(local):
            for distro in ("debian", "ubuntu"):
                assert local[key][distro]["pip"]["packages"] == [name], (key, distro)
    for key in keys:
        if key.endswith("-pip") and key != "python3-onnxruntime-pip":  # that one is upstream
            assert key in local, f"{key} is used in package.xml but not defined in rosdep.yaml"


def test_every_interface_file_is_generated_and_documented():
    """Each .msg/.srv is listed in CMakeLists.txt, importable, and every field line has a comment."""
    pkg = ROOT / "msg" / "superglue_ros_msgs"
    cmake = (pkg / "CMakeLists.txt").read_text()
    files = sorted(pkg.glob("msg/*.msg")) + sorted(pkg.glob("srv/*.srv"))
    assert {f.name for f in files} >= {
        "Correspondences.msg",
        "KeyframeFeatures.msg",
        "LoopCandidates.msg",
        "LoopResult.msg",
        "VerifyLoop.srv",
    }
    import importlib

    for f in files:
        assert f'"{f.parent.name}/{f.name}"' in cmake, f"{f.name} missing from CMakeLists.txt"
        module = importlib.import_module(f"superglue_ros_msgs.{f.parent.name}")
        assert hasattr(module, f.stem), f"superglue_ros_msgs.{f.parent.name}.{f.stem} not generated"
        for n, line in enumerate(f.read_text().splitlines(), 1):
            code = line.strip()
            if code and not code.startswith("#") and code != "---":
                assert "#" in code, f"{f.name}:{n} has no comment: {code}"


def _launch_tree():
    return ast.parse((ROOT / "launch" / "superglue.launch.py").read_text())


def _calls(tree, name):
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == name
    ]


def test_launch_file_declares_arguments_and_runs_the_node():
    tree = _launch_tree()
    assert any(
        isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
        for n in tree.body
    )
    declared = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    assert {
        "params_file",
        "namespace",
        "image",
        "compressed_image",
        "use_compressed",
        "camera_info",
        "use_sim_time",
        "log_level",
    } <= declared
    used = {c.args[0].value for c in _calls(tree, "LaunchConfiguration")}
    assert declared == used, f"declared {declared} but used {used}"
    (node,) = _calls(tree, "Node")
    kw = {k.arg: k.value for k in node.keywords}
    assert kw["package"].value == "superglue_ros"
    assert (
        ast.unparse(kw["executable"])
        == "'superglue_lifecycle_node' if lifecycle else 'superglue_node'"
    )
    remapped = {e.elts[0].value for e in kw["remappings"].elts}
    assert remapped == {"image", "image/compressed", "camera_info"}
    # the default params file is the installed config/superglue.yaml
    src = ast.unparse(tree)
    assert "get_package_share_directory('superglue_ros'), 'config', 'superglue.yaml'" in src


class _FakeLaunch:
    """Just enough of launch / launch_ros (not on PyPI) to run the launch file's own code:
    each action records its arguments, LaunchConfiguration reads a dict of argument values."""

    def __init__(self, share):
        import types

        self.nodes = []
        fake = self

        class Recorded:
            def __init__(self, *args, **kwargs):
                self.args, self.kwargs = args, kwargs

        class LaunchConfiguration:
            def __init__(self, name):
                self.name = name

            def perform(self, context):
                return context[self.name]

        class Node(Recorded):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                fake.nodes.append(self)

        self.modules = {
            "launch": types.SimpleNamespace(LaunchDescription=lambda actions: actions),
            "launch.actions": types.SimpleNamespace(
                DeclareLaunchArgument=Recorded,
                OpaqueFunction=Recorded,
                SetEnvironmentVariable=Recorded,
            ),
            "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=LaunchConfiguration),
            "launch_ros.actions": types.SimpleNamespace(Node=Node),
            "ament_index_python.packages": types.SimpleNamespace(
                get_package_share_directory=lambda name: share
            ),
        }

    def run(self, **arguments):
        """Evaluate the launch file with `arguments` (as on the command line) -> Node kwargs."""
        import importlib.util
        from unittest import mock

        with mock.patch.dict(sys.modules, self.modules):
            spec = importlib.util.spec_from_file_location(
                "superglue_launch", ROOT / "launch" / "superglue.launch.py"
            )
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            actions = module.generate_launch_description()
        context = {
            a.args[0]: a.kwargs["default_value"] for a in actions if "default_value" in a.kwargs
        }
        context.update(arguments)
        (opaque,) = [a for a in actions if "function" in a.kwargs]
        (node,) = opaque.kwargs["function"](context)
        return node.kwargs


def test_launch_arguments_reach_the_node_parameters_and_remappings():
    launch = _FakeLaunch("/opt/share/superglue_ros")
    kw = launch.run()
    assert kw["parameters"] == [
        "/opt/share/superglue_ros/config/superglue.yaml",
        {"use_sim_time": False},
    ]
    assert kw["remappings"] == [
        ("image", "image"),
        ("image/compressed", "image/compressed"),
        ("camera_info", "camera_info"),
    ]
    kw = launch.run(
        image="/cam/image_raw",
        use_sim_time="true",
        use_compressed="True",
        params_file="/my.yaml",
        namespace="front",
    )
    assert kw["parameters"] == ["/my.yaml", {"use_sim_time": True, "use_compressed": True}]
    assert ("image/compressed", "/cam/image_raw/compressed") in kw["remappings"]
    assert kw["namespace"] == "front"
    kw = launch.run(image="/cam/image_raw", compressed_image="/cam/jpeg", use_compressed="false")
    assert ("image/compressed", "/cam/jpeg") in kw["remappings"]
    assert kw["parameters"][1] == {"use_sim_time": False, "use_compressed": False}
    with pytest.raises(ValueError, match="use_sim_time"):
        launch.run(use_sim_time="maybe")
    assert launch.run()["executable"] == "superglue_node"
    assert launch.run(lifecycle="true")["executable"] == "superglue_lifecycle_node"


def test_launch_sets_the_shipped_fastdds_profile():
    """Both Fast DDS profile variables are set from one launch argument whose default is the
    installed config/fastdds_shm.xml; the profile parses, enables SHM with a segment that holds
    several 720p bgr8 frames, keeps UDPv4 and is the default participant profile."""
    import xml.etree.ElementTree as ET

    tree = _launch_tree()
    env = {c.args[0].value: ast.unparse(c.args[1]) for c in _calls(tree, "SetEnvironmentVariable")}
    assert env == {
        "FASTDDS_DEFAULT_PROFILES_FILE": "fastdds_profile",
        "FASTRTPS_DEFAULT_PROFILES_FILE": "fastdds_profile",
    }
    src = ast.unparse(tree)
    assert "get_package_share_directory('superglue_ros'), 'config', 'fastdds_shm.xml'" in src
    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(ROOT / "config" / "fastdds_shm.xml").getroot()
    transports = {
        t.find("d:transport_id", ns).text: t for t in root.iterfind(".//d:transport_descriptor", ns)
    }
    shm = next(t for t in transports.values() if t.find("d:type", ns).text == "SHM")
    segment = int(shm.find("d:segment_size", ns).text)
    assert segment >= 4 * 1280 * 720 * 3 and int(shm.find("d:maxMessageSize", ns).text) <= segment
    assert {t.find("d:type", ns).text for t in transports.values()} == {"SHM", "UDPv4"}
    (participant,) = root.iterfind(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    used = [e.text for e in participant.iterfind(".//d:userTransports/d:transport_id", ns)]
    assert sorted(used) == sorted(transports)
    assert participant.find(".//d:useBuiltinTransports", ns).text == "false"
    assert (ROOT / "config" / "fastdds_shm.xml").is_file()


def test_launch_executable_is_a_console_script():
    """`ros2 run/launch superglue_ros superglue_node` needs that entry point in setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    (setup_call,) = _calls(tree, "setup")
    kw = {k.arg: k.value for k in setup_call.keywords}
    scripts = ast.literal_eval(kw["entry_points"])["console_scripts"]
    entries = dict(re.fullmatch(r"\s*(\S+)\s*=\s*(\S+)\s*", s).groups() for s in scripts)
    assert entries["superglue_node"] == "superglue_ros.ros.node:main"
    assert (
        entries["superglue_lifecycle_node"]
        == entries["superglue-lifecycle-node"]
        == "superglue_ros.ros.lifecycle_node:main"
    )
    assert entries["superglue-demo"] == "superglue_ros.ros.demo:main"
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["install"]["install_scripts"] == "$base/lib/superglue_ros"


def test_installed_share_layout_for_ament_index():
    """What ament_index / get_package_share_directory see after set-up."""
    from ament_index_python.packages import get_package_share_directory

    os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    share = Path(get_package_share_directory("superglue_ros"))
    assert (share / "package.xml").resolve() == (ROOT / "package.xml").resolve()
    assert (share / "launch" / "superglue.launch.py").is_file()
    assert (share / "config").resolve() == (ROOT / "config").resolve()
    msgs_share = Path(get_package_share_directory("superglue_ros_msgs"))
    assert (msgs_share / "msg" / "Correspondences.msg").is_file()
    assert (msgs_share / "srv" / "VerifyLoop.srv").is_file()
