"""Launch a DMAR swarm (a config with a ``routing`` section) on a full ROS 2 install.

    ros2 launch dmar_agent dmar.launch.py config:=/path/to/swarm.yaml \
        [takeoff:=true] [backend:=sim|cflib] [rviz:=true] [record:=bag_dir] [policy:=true] \
        [cbf:=true]

What starts comes from ``sim_bridge.bringup.launch_plan`` (its ``plan`` is the one
``swarm up`` and ``dmar demo`` use), so every face starts the same nodes: world, comm relay,
``/all`` services, radio bridges for cflib robots, a CBF filter and a DMAR agent node per
robot (``policy:=false`` leaves the agents out). ``record:=DIR`` runs ``ros2 bag record -s
mcap`` on the swarm's topics; rviz2 and ``ros2 bag`` are optional: when one is asked for but
not installed, the launch logs one warning and starts the swarm without it. A bad config or
argument stops the launch before any process starts.
"""

from __future__ import annotations

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from sim_bridge.bringup import LAUNCH_ARGUMENTS, BringupError, launch_plan
from sim_bridge.config import load_config
from sim_bridge.recording import swarm_topics
from sim_bridge.topics import MARKERS, POLICY_MARKERS

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
    if load_config(todo.config).routing is None:
        raise RuntimeError(f"{todo.config}: no routing section; DMAR needs a routing config")
    logger = get_logger("dmar.launch")
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
        actions.append(Node(package="rviz2", executable="rviz2", output="log"))
    if todo.record:
        names = [*swarm_topics(load_config(todo.config)), MARKERS, POLICY_MARKERS]
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
