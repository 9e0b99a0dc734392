"""The layering the README promises: every core module (all of superglue_ros outside ros/)
imports with ROS blocked, nothing outside ros/ imports ros/, and no module imports itself back
through others (function-level imports count)."""

import ast
import pathlib
import subprocess
import sys

import superglue_ros

PACKAGE = pathlib.Path(superglue_ros.__file__).parent
BLOCKED = (
    "rclpy",
    "superglue_ros_msgs",
    "sensor_msgs",
    "std_msgs",
    "geometry_msgs",
    "builtin_interfaces",
    "rcl_interfaces",
    "diagnostic_msgs",
    "cv_bridge",
    "rosidl_runtime_py",
    "rosidl_parser",
    "rpyutils",
    "launch",
    "launch_ros",
    "ament_index_python",
)


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
CORE = sorted(m for m in MODULES if not m.startswith("superglue_ros.ros"))


def imports_of(name: str) -> set[str]:
    """superglue_ros modules imported anywhere in module `name` (top level or in functions)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # a name inside a module -> the module
                target = target.rpartition(".")[0]
            if target.startswith("superglue_ros") and target != name:
                found.add(target)
    return found


def test_core_modules_import_with_ros_blocked():
    script = f"""
import importlib, importlib.abc, sys
BLOCKED = {BLOCKED!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(f'{{name}} is blocked: the core must not import ROS')
        return None

sys.meta_path.insert(0, Block())
for name in {CORE!r}:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED or m.startswith('superglue_ros.ros'))
assert not leaked, leaked
print('imported', len({CORE!r}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=PACKAGE.parent,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"imported {len(CORE)}" in out.stdout
    assert {
        "superglue_ros.images",
        "superglue_ros.benchmark",
        "superglue_ros.frontend.offline",
    } <= set(CORE)


def test_the_blocker_does_block():
    """The same finder makes a ROS module's import fail (so the test above can fail)."""
    script = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('rclpy', 'superglue_ros_msgs'):
            raise ImportError(f'{name} is blocked')
sys.meta_path.insert(0, Block())
import superglue_ros.ros.node
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=PACKAGE.parent,
        timeout=300,
    )
    assert out.returncode != 0 and "is blocked" in out.stderr


def test_nothing_outside_ros_imports_ros():
    offenders = {
        name: sorted(t for t in imports_of(name) if t.startswith("superglue_ros.ros"))
        for name in CORE
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_cycles():
    graph = {name: imports_of(name) for name in MODULES}
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert cycles == []
    # the checker sees what it must: top-level and function-level imports, relative and absolute
    assert "superglue_ros.feature_types" in graph["superglue_ros.baselines"]
    assert "superglue_ros.features" in graph["superglue_ros.frontend.pipeline"]  # in from_config
    assert "superglue_ros.images" in graph["superglue_ros.frontend.offline"]  # in bag_frames
