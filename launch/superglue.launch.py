"""Launch the superglue_ros node with a parameters file and topic remappings.

    ros2 launch superglue_ros superglue.launch.py \
        image:=/camera/image_raw camera_info:=/camera/camera_info \
        params_file:=/path/to/superglue.yaml namespace:=front

Fast DDS loads the package's shared-memory profile (config/fastdds_shm.xml: a segment large
enough for VGA/720p frames) unless fastdds_profile names another file; the camera driver must
load the same profile for its frames to travel in shared memory (README, Transport note).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_params = os.path.join(
        get_package_share_directory('superglue_ros'), 'config', 'superglue.yaml')
    default_fastdds_profile = os.path.join(
        get_package_share_directory('superglue_ros'), 'config', 'fastdds_shm.xml')
    params_file = LaunchConfiguration('params_file')
    fastdds_profile = LaunchConfiguration('fastdds_profile')
    namespace = LaunchConfiguration('namespace')
    image = LaunchConfiguration('image')
    camera_info = LaunchConfiguration('camera_info')
    log_level = LaunchConfiguration('log_level')

    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file', default_value=default_params,
            description='YAML file with the parameters of superglue_node'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the node and of its relative topics'),
        DeclareLaunchArgument(
            'image', default_value='image',
            description='Input image topic (sensor_msgs/Image), remapped from "image"'),
        DeclareLaunchArgument(
            'camera_info', default_value='camera_info',
            description='Camera calibration topic (sensor_msgs/CameraInfo), remapped from "camera_info"'),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            description='Logging level of the node (debug, info, warn, error)'),
        DeclareLaunchArgument(
            'fastdds_profile', default_value=default_fastdds_profile,
            description='Fast DDS XML profile of the node (default: shared memory with a 16 MiB segment)'),
        # Fast DDS 3 reads the first name, rmw_fastrtps and Fast DDS 2 the second
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', fastdds_profile),
        SetEnvironmentVariable('FASTRTPS_DEFAULT_PROFILES_FILE', fastdds_profile),
        Node(
            package='superglue_ros',
            executable='superglue_node',
            namespace=namespace,
            parameters=[params_file],
            remappings=[('image', image), ('camera_info', camera_info)],
            arguments=['--ros-args', '--log-level', log_level],
            output='screen',
            emulate_tty=True,
        ),
    ])
