"""Start one robot's CBF filter.

    ros2 launch cbf_filter cbf_filter.launch.py robot:=cf1 config:=/path/swarm.yaml \
        [use_sim_time:=true]

The swarm bringup (``sim_bridge.bringup``) starts one of these per robot; this file is for
running a filter by hand, e.g. in front of a robot driven by another stack.
``use_sim_time:=true`` puts the filter's clock on ``/clock`` (a simulated robot on sim time).
``robot`` and ``config`` reach the node as strings whatever they look like (``launch_ros``
would otherwise read a bare substitution as YAML: a robot named ``on`` became ``True``, one
named ``null`` stopped the launch).
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description():
    robot = LaunchConfiguration("robot")
    return LaunchDescription(
        [
            DeclareLaunchArgument("robot", description="robot name = namespace"),
            DeclareLaunchArgument("config", default_value="", description="swarm YAML"),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                description="the filter's clock follows /clock (simulation only)",
            ),
            Node(
                package="cbf_filter",
                executable="cbf_node",
                name="cbf_filter",
                namespace=robot,
                parameters=[
                    {
                        "robot": ParameterValue(robot, value_type=str),
                        "config": ParameterValue(LaunchConfiguration("config"), value_type=str),
                        "use_sim_time": LaunchConfiguration("use_sim_time"),
                    }
                ],
                output="screen",
            ),
        ]
    )
