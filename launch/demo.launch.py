"""The LGTC demo (launch/demo.yaml: 10 Crazyflies, 4 consumers) on a full ROS 2 install.

    ros2 launch launch/demo.launch.py [config:=launch/demo.yaml] [takeoff:=true] \
        [backend:=sim|cflib] [rviz:=true] [record:=bag_dir] [policy:=true] [cbf:=true]

Includes lgtc_policy's swarm.launch.py with this scenario's defaults; every argument the
user passes is handed on (``backend``, ``rviz``, ``record``, ``policy`` and ``cbf`` are
declared by swarm.launch.py itself).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription

SCENARIO = "demo.yaml"


def generate_launch_description() -> LaunchDescription:
    swarm = os.path.join(get_package_share_directory("lgtc_policy"), "launch", "swarm.launch.py")
    here = os.path.dirname(os.path.abspath(__file__))
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "config",
                default_value=os.path.join(here, SCENARIO),
                description="swarm YAML file",
            ),
            DeclareLaunchArgument(
                "takeoff", default_value="true", description="take off the sim robots at start"
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(swarm),
                launch_arguments={
                    "config": LaunchConfiguration("config"),
                    "takeoff": LaunchConfiguration("takeoff"),
                }.items(),
            ),
        ]
    )
