# The two commands of the README:
#   make demo   set up (when needed), then run the demo on the embedded default input
#   make test   set up (when needed), then run the test suite
# `make setup` alone runs the idempotent set-up (scripts/setup.sh; seconds when done).

VENV   := $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python

# Let ament_index find the packages installed into the venv (our messages and the
# share/ links of superglue_ros). With a sourced ROS 2 the venv's C libraries must be
# found too (the PyPI wheels find them by themselves).
export AMENT_PREFIX_PATH := $(VENV)$(if $(AMENT_PREFIX_PATH),:$(AMENT_PREFIX_PATH))
ifneq ($(ROS_DISTRO),)
export LD_LIBRARY_PATH := $(VENV)/lib$(if $(LD_LIBRARY_PATH),:$(LD_LIBRARY_PATH))
endif

PYTEST_ARGS ?= -q

.PHONY: setup test demo

setup:
	@bash scripts/setup.sh

test: setup
	$(PYTHON) -m pytest test $(PYTEST_ARGS)

demo: setup
	@if $(PYTHON) -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("superglue_ros.ros.demo") is None)' 2>/dev/null; then \
		$(VENV)/bin/superglue-demo $(DEMO_ARGS); \
	else \
		echo "make demo: superglue_ros/ros/demo.py does not exist yet (the node, issue 5, provides it)." >&2; \
		echo "The set-up above is complete: rclpy and superglue_ros_msgs are importable from $(PYTHON)." >&2; \
		exit 1; \
	fi
