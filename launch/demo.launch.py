"""The LGTC demo (launch/demo.yaml: 10 Crazyflies, 4 consumers) on a full ROS 2 install.

    ros2 launch launch/demo.launch.py [config:=launch/demo.yaml] [takeoff:=true] \
        [backend:=sim|cflib] [rviz:=true] [record:=bag_dir] [policy:=true] [cbf:=true] \
        [use_sim_time:=true]

Includes lgtc_policy's swarm.launch.py with this scenario's defaults; every argument the
user passes is handed on (``backend``, ``rviz``, ``record``, ``policy``, ``cbf`` and
``use_sim_time`` are declared by swarm.launch.py itself).
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
                default_value=next_to(__file__, "demo.yaml"),
                description="swarm YAML file",
            ),
            DeclareLaunchArgument(
                "takeoff", default_value="true", description="take off the sim robots at start"
            ),
            IncludeLaunchDescription(
                package_launch("lgtc_policy", "swarm.launch.py"),
                launch_arguments={
                    "config": LaunchConfiguration("config"),
                    "takeoff": LaunchConfiguration("takeoff"),
                }.items(),
            ),
        ]
    )
