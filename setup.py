"""Installs superglue_ros the ament_python way (works with colcon and with plain pip).

Besides the Python package, ROS 2 needs an ament index marker, package.xml, the
launch files and the config in share/superglue_ros, hence the data_files.
"""

from glob import glob

from setuptools import find_packages, setup

package_name = "superglue_ros"

setup(
    name=package_name,
    version="0.1.0",
    description="SuperPoint + SuperGlue feature correspondences for ROS 2 SLAM front-ends",
    license="Apache-2.0",
    maintainer="superglue_ros maintainers",
    maintainer_email="maintainers@superglue-ros.dev",
    python_requires=">=3.10",
    packages=find_packages(include=[package_name, package_name + ".*"]),
    package_data={package_name: ["weights/*.pth", "weights/*.md"]},
    include_package_data=False,
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    # Runtime dependencies come from requirements.txt and ROS 2 (scripts/setup.sh);
    # listing torch here would let pip pull an unpinned multi-GB build.
    install_requires=["setuptools"],
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "superglue-match = superglue_ros.cli.match:main",
            "superglue-eval = superglue_ros.evaluation.cli:main",
            "superglue-train-superpoint = superglue_ros.training.train_superpoint:main",
            "superglue-train-superglue = superglue_ros.training.train_superglue:main",
            "superglue-quantize-superpoint = superglue_ros.training.quantize_superpoint:main",
            "superglue-benchmark = superglue_ros.ros.node_benchmark:cli",
            "superglue-node = superglue_ros.ros.node:main",
            "superglue_node = superglue_ros.ros.node:main",
            "superglue-lifecycle-node = superglue_ros.ros.lifecycle_node:main",
            "superglue_lifecycle_node = superglue_ros.ros.lifecycle_node:main",
            "superglue-player = superglue_ros.ros.player:main",
            "superglue-demo = superglue_ros.ros.demo:main",
            "superglue-offline = superglue_ros.frontend.offline:main",
        ],
    },
)
