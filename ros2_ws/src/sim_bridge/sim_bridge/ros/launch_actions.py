"""What the stack's launch files share (node floor; ``launch`` / ``launch_ros`` imported lazily).

The launch files stay a few lines each: they declare their arguments (so a reader and
``ros2 launch --show-args`` see them) and hand the work to these helpers:

* :func:`swarm_actions`: the ``OpaqueFunction`` body of ``lgtc_policy/launch/swarm.launch.py``
  and ``dmar_agent/launch/dmar.launch.py``. Everything it starts comes from
  :func:`sim_bridge.bringup.launch_plan` (the plan ``swarm up`` runs too): one
  ``launch_ros.actions.Node`` per :class:`~sim_bridge.bringup.NodeSpec`, rviz2 and
  ``ros2 bag record -s mcap`` when asked for and installed (else one warning each). A bad
  config or argument raises before any process starts;
* :func:`package_launch` and :func:`next_to`: the include of a package's launch file and the
  default scenario YAML beside a stack-level launch file (``launch/*.launch.py``).

``launch``, ``launch_ros`` and ``ament_index_python`` exist only on a full ROS 2 install, so
they are imported inside the functions: importing this module needs neither.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from sim_bridge.bringup import LAUNCH_ARGUMENTS, BringupError, launch_plan
from sim_bridge.topics import MARKERS


def has_package(name: str) -> bool:
    """Whether the ament index knows package ``name`` (rviz2, ros2bag, ...)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory(name)
    except PackageNotFoundError:
        return False
    return True


def swarm_actions(
    logger_name: str,
    rviz_config: tuple[str, str] | None = None,
    markers: Sequence[str] = (MARKERS,),
    needs_routing: bool = False,
) -> Callable[[object], list]:
    """The function an ``OpaqueFunction`` runs to start the planned swarm.

    Args:
        logger_name: name of the launch logger the plan's warnings go to.
        rviz_config: ``(package, path in its share directory)`` of the rviz2 config, or
            ``None`` to start rviz2 without one.
        markers: marker topics recorded beside the swarm's topics (``record:=DIR``).
        needs_routing: refuse a config without a ``routing`` section (DMAR).

    Returns:
        ``actions(context)`` -> the list of launch actions; raises ``RuntimeError`` with the
        plan's one-line message on a bad config or argument.
    """

    def actions(context) -> list:
        from launch.logging import get_logger
        from launch.substitutions import LaunchConfiguration

        args = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_ARGUMENTS}
        try:
            todo = launch_plan(args, has_package=has_package)
        except BringupError as exc:
            raise RuntimeError(str(exc)) from None
        if needs_routing:
            from sim_bridge.config import load_config

            if load_config(todo.config).routing is None:
                raise RuntimeError(
                    f"{todo.config}: no routing section; DMAR needs a routing config"
                )
        logger = get_logger(logger_name)
        for warning in todo.warnings:
            logger.warning(warning)
        out = [_node(spec) for spec in todo.specs]
        if todo.rviz:
            out.append(_rviz(rviz_config))
        if todo.record:
            out.append(_record(todo.config, todo.record, markers))
        return out

    return actions


def _node(spec):
    """One ``launch_ros`` ``Node`` action of a :class:`~sim_bridge.bringup.NodeSpec`."""
    from launch_ros.actions import Node

    return Node(
        package=spec.package,
        executable=spec.executable,
        name=spec.name,
        namespace=spec.namespace or "",
        parameters=[spec.parameters],
        output="screen",
        emulate_tty=True,
    )


def _rviz(config: tuple[str, str] | None):
    from launch_ros.actions import Node

    if config is None:
        return Node(package="rviz2", executable="rviz2", output="log")
    from ament_index_python.packages import get_package_share_directory

    path = os.path.join(get_package_share_directory(config[0]), config[1])
    return Node(package="rviz2", executable="rviz2", arguments=["-d", path], output="log")


def _record(config: str, out_dir: str, markers: Sequence[str]):
    """``ros2 bag record -s mcap`` of the swarm's topics and ``markers``."""
    from launch.actions import ExecuteProcess

    from sim_bridge.config import load_config
    from sim_bridge.recording import swarm_topics

    names = [*swarm_topics(load_config(config)), *markers]
    return ExecuteProcess(
        cmd=["ros2", "bag", "record", "-s", "mcap", "-o", out_dir, *names], output="screen"
    )


def package_launch(package: str, launch_file: str):
    """The ``PythonLaunchDescriptionSource`` of ``<package share>/launch/<launch_file>``."""
    from ament_index_python.packages import get_package_share_directory
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    share = get_package_share_directory(package)
    return PythonLaunchDescriptionSource(os.path.join(share, "launch", launch_file))


def next_to(launch_file: str, name: str) -> str:
    """Absolute path of ``name`` in the directory of ``launch_file`` (pass ``__file__``)."""
    return os.path.join(os.path.dirname(os.path.abspath(launch_file)), name)
