"""Launch a swarm from its config on a full ROS 2 install.

    ros2 launch lgtc_policy swarm.launch.py config:=/path/to/swarm.yaml \
        [backend:=sim|cflib] [rviz:=true] [record:=bag_dir] [policy:=true] [cbf:=true] \
        [takeoff:=false] [group:=I/K] [use_sim_time:=true]

What starts comes from ``sim_bridge.bringup.launch_plan`` (its ``plan`` is the one
``swarm up`` uses), so both faces start exactly the same nodes: world, comm relay, ``/all``
services, radio bridges for cflib robots, a CBF filter per robot and, when the config names
a checkpoint, an LGTC policy per robot. ``backend:=sim`` simulates every robot of a
real-robot config; ``record:=DIR`` runs ``ros2 bag record -s mcap`` on the swarm's topics;
``use_sim_time:=true`` puts every node's clock on the world's ``/clock`` (simulation only: a
config with real robots refuses it unless ``backend:=sim``).
rviz2 and ``ros2 bag`` are optional: when one is asked for but not installed, the launch
logs one warning and starts the swarm without it. A bad config or argument stops the launch
before any process starts (:func:`sim_bridge.ros.launch_actions.swarm_actions`).
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from sim_bridge.bringup import LAUNCH_ARGUMENTS
from sim_bridge.ros.launch_actions import swarm_actions

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(name, default_value=default, description=description)
                for name, (default, description) in LAUNCH_ARGUMENTS.items()
            ),
            OpaqueFunction(
                function=swarm_actions(
                    "swarm.launch", rviz_config=("lgtc_policy", "config/swarm.rviz")
                )
            ),
        ]
    )
