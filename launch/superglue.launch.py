"""Launch the superglue_ros node with a parameters file and topic remappings.

    ros2 launch superglue_ros superglue.launch.py \
        image:=/camera/image_raw camera_info:=/camera/camera_info \
        params_file:=/path/to/superglue.yaml namespace:=front use_sim_time:=true
    # compressed input: subscribes to <image>/compressed unless compressed_image is given
    ros2 launch superglue_ros superglue.launch.py image:=/camera/image_raw use_compressed:=true
    # the managed (lifecycle) node: starts unconfigured, then
    #   ros2 lifecycle set /superglue_node configure; ros2 lifecycle set /superglue_node activate
    ros2 launch superglue_ros superglue.launch.py lifecycle:=true

The remappings apply to the default camera (parameter cameras: ['']); with several camera
namespaces, remap '<camera>/image' etc. in your own launch file.

Fast DDS loads the package's shared-memory profile (config/fastdds_shm.xml: a segment large
enough for VGA/720p frames) unless fastdds_profile names another file; the camera driver must
load the same profile for its frames to travel in shared memory (README, Transport note).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _as_bool(name: str, text: str) -> bool:
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise ValueError(f"launch argument {name}:={text!r} must be true or false")


def _node(context):
    """The node, built once the launch arguments are known (so that use_compressed:='' can
    leave the params file's value alone and the compressed topic can follow the image topic)."""
    image = LaunchConfiguration("image").perform(context)
    compressed_image = (
        LaunchConfiguration("compressed_image").perform(context) or f"{image}/compressed"
    )
    overrides = {
        "use_sim_time": _as_bool(
            "use_sim_time", LaunchConfiguration("use_sim_time").perform(context)
        )
    }
    use_compressed = LaunchConfiguration("use_compressed").perform(context)
    if use_compressed != "":
        overrides["use_compressed"] = _as_bool("use_compressed", use_compressed)
    lifecycle = _as_bool("lifecycle", LaunchConfiguration("lifecycle").perform(context))
    return [
        Node(
            package="superglue_ros",
            executable="superglue_lifecycle_node" if lifecycle else "superglue_node",
            namespace=LaunchConfiguration("namespace").perform(context),
            parameters=[LaunchConfiguration("params_file").perform(context), overrides],
            remappings=[
                ("image", image),
                ("image/compressed", compressed_image),
                ("camera_info", LaunchConfiguration("camera_info").perform(context)),
            ],
            arguments=[
                "--ros-args",
                "--log-level",
                LaunchConfiguration("log_level").perform(context),
            ],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    default_params = os.path.join(
        get_package_share_directory("superglue_ros"), "config", "superglue.yaml"
    )
    default_fastdds_profile = os.path.join(
        get_package_share_directory("superglue_ros"), "config", "fastdds_shm.xml"
    )
    fastdds_profile = LaunchConfiguration("fastdds_profile")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=default_params,
                description="YAML file with the parameters of superglue_node",
            ),
            DeclareLaunchArgument(
                "namespace",
                default_value="",
                description="Namespace of the node and of its relative topics",
            ),
            DeclareLaunchArgument(
                "image",
                default_value="image",
                description='Input image topic (sensor_msgs/Image), remapped from "image"',
            ),
            DeclareLaunchArgument(
                "compressed_image",
                default_value="",
                description="Compressed input topic (sensor_msgs/CompressedImage), remapped from "
                '"image/compressed"; empty = <image>/compressed',
            ),
            DeclareLaunchArgument(
                "use_compressed",
                default_value="",
                description="true: subscribe to the compressed topic instead of the raw one; "
                "empty = as in params_file",
            ),
            DeclareLaunchArgument(
                "camera_info",
                default_value="camera_info",
                description='Camera calibration topic (sensor_msgs/CameraInfo), remapped from "camera_info"',
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                description="Use the /clock topic (simulation, rosbag play --clock) as the node clock",
            ),
            DeclareLaunchArgument(
                "lifecycle",
                default_value="false",
                description="true: run the managed node (superglue_lifecycle_node), which loads the "
                "models on configure and subscribes on activate; false: the plain node",
            ),
            DeclareLaunchArgument(
                "log_level",
                default_value="info",
                description="Logging level of the node (debug, info, warn, error)",
            ),
            DeclareLaunchArgument(
                "fastdds_profile",
                default_value=default_fastdds_profile,
                description="Fast DDS XML profile of the node (default: shared memory with a 16 MiB segment)",
            ),
            # Fast DDS 3 reads the first name, rmw_fastrtps and Fast DDS 2 the second
            SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", fastdds_profile),
            SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", fastdds_profile),
            OpaqueFunction(function=_node),
        ]
    )
