"""The DMAR demo (launch/dmar.yaml: 9 x 9 cells, 7 Crazyflies, psi = 2) on a full ROS 2 install.

    ros2 launch launch/dmar.launch.py [config:=launch/dmar.yaml] [takeoff:=true] \
        [backend:=sim|cflib] [rviz:=true] [record:=bag_dir] [policy:=true] [cbf:=true]

Includes dmar_agent's dmar.launch.py with this scenario's defaults; every argument the user
passes is handed on (``backend``, ``rviz``, ``record``, ``policy`` and ``cbf`` are declared by
dmar.launch.py itself). ``config:=launch/dmar_mixed.yaml`` runs the mixed drone + ground team.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription

SCENARIO = "dmar.yaml"


def generate_launch_description() -> LaunchDescription:
    dmar = os.path.join(get_package_share_directory("dmar_agent"), "launch", "dmar.launch.py")
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
                PythonLaunchDescriptionSource(dmar),
                launch_arguments={
                    "config": LaunchConfiguration("config"),
                    "takeoff": LaunchConfiguration("takeoff"),
                }.items(),
            ),
        ]
    )
