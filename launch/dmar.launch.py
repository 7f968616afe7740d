"""The DMAR demo (launch/dmar.yaml: 9 x 9 cells, 7 Crazyflies, psi = 2) on a full ROS 2 install.

    ros2 launch launch/dmar.launch.py [config:=launch/dmar.yaml] [takeoff:=true] \
        [backend:=sim|cflib] [rviz:=true] [record:=bag_dir] [policy:=true] [cbf:=true] \
        [use_sim_time:=true]

Includes dmar_agent's dmar.launch.py with this scenario's defaults; every argument the user
passes is handed on (``backend``, ``rviz``, ``record``, ``policy``, ``cbf`` and
``use_sim_time`` are declared by dmar.launch.py itself). ``config:=launch/dmar_mixed.yaml``
runs the mixed drone + ground team.
"""

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.substitutions import LaunchConfiguration
from sim_bridge.ros.launch_actions import next_to, package_launch

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "config",
                default_value=next_to(__file__, "dmar.yaml"),
                description="swarm YAML file",
            ),
            DeclareLaunchArgument(
                "takeoff", default_value="true", description="take off the sim robots at start"
            ),
            IncludeLaunchDescription(
                package_launch("dmar_agent", "dmar.launch.py"),
                launch_arguments={
                    "config": LaunchConfiguration("config"),
                    "takeoff": LaunchConfiguration("takeoff"),
                }.items(),
            ),
        ]
    )
