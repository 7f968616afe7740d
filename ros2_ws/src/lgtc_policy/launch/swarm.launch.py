"""Launch a swarm from its config on a full ROS 2 install.

    ros2 launch lgtc_policy swarm.launch.py config:=/path/to/swarm.yaml \
        [backend:=sim|cflib] [rviz:=true] [record:=bag_dir] [policy:=true] [cbf:=true] \
        [takeoff:=false]

What starts comes from ``sim_bridge.bringup.launch_plan`` (its ``plan`` is the one
``swarm up`` uses), so both faces start exactly the same nodes: world, comm relay, ``/all``
services, radio bridges for cflib robots, a CBF filter per robot and, when the config names
a checkpoint, an LGTC policy per robot. ``backend:=sim`` simulates every robot of a
real-robot config; ``record:=DIR`` runs ``ros2 bag record -s mcap`` on the swarm's topics.
rviz2 and ``ros2 bag`` are optional: when one is asked for but not installed, the launch
logs one warning and starts the swarm without it. A bad config or argument stops the launch
before any process starts.
"""

from __future__ import annotations

import os

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from sim_bridge.bringup import LAUNCH_ARGUMENTS, BringupError, launch_plan
from sim_bridge.config import load_config
from sim_bridge.recording import swarm_topics
from sim_bridge.topics import MARKERS

from launch import LaunchDescription


def _has_package(name: str) -> bool:
    try:
        get_package_share_directory(name)
    except PackageNotFoundError:
        return False
    return True


def _actions(context):
    args = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_ARGUMENTS}
    try:
        todo = launch_plan(args, has_package=_has_package)
    except BringupError as exc:
        raise RuntimeError(str(exc)) from None
    logger = get_logger("swarm.launch")
    for warning in todo.warnings:
        logger.warning(warning)
    actions = [
        Node(
            package=spec.package,
            executable=spec.executable,
            name=spec.name,
            namespace=spec.namespace or "",
            parameters=[spec.parameters],
            output="screen",
            emulate_tty=True,
        )
        for spec in todo.specs
    ]
    if todo.rviz:
        rviz_cfg = os.path.join(get_package_share_directory("lgtc_policy"), "config", "swarm.rviz")
        actions.append(
            Node(package="rviz2", executable="rviz2", arguments=["-d", rviz_cfg], output="log")
        )
    if todo.record:
        names = [*swarm_topics(load_config(todo.config)), MARKERS]
        actions.append(
            ExecuteProcess(
                cmd=["ros2", "bag", "record", "-s", "mcap", "-o", todo.record, *names],
                output="screen",
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(name, default_value=default, description=description)
                for name, (default, description) in LAUNCH_ARGUMENTS.items()
            ),
            OpaqueFunction(function=_actions),
        ]
    )
