"""Launch a DMAR swarm (a config with a ``routing`` section) on a full ROS 2 install.

    ros2 launch dmar_agent dmar.launch.py config:=/path/to/swarm.yaml \
        [takeoff:=true] [backend:=sim|cflib] [rviz:=true] [record:=bag_dir] [policy:=true] \
        [cbf:=true] [use_sim_time:=true]

What starts comes from ``sim_bridge.bringup.launch_plan`` (its ``plan`` is the one
``swarm up`` and ``dmar demo`` use), so every face starts the same nodes: world, comm relay,
``/all`` services, radio bridges for cflib robots, a CBF filter and a DMAR agent node per
robot (``policy:=false`` leaves the agents out). ``rviz:=true`` opens rviz2 with this
package's ``config/dmar.rviz`` (world, grid, obstacles, tasks and the agents' clusters);
``record:=DIR`` runs ``ros2 bag record -s mcap`` on the swarm's topics; rviz2 and ``ros2
bag`` are optional: when one is asked for but not installed, the launch logs one warning and
starts the swarm without it. A bad config or argument, or a config without ``routing``,
stops the launch before any process starts (:func:`sim_bridge.ros.launch_actions.swarm_actions`).
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from sim_bridge.bringup import LAUNCH_ARGUMENTS
from sim_bridge.ros.launch_actions import swarm_actions
from sim_bridge.topics import MARKERS, POLICY_MARKERS

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
                    "dmar.launch",
                    rviz_config=("dmar_agent", "config/dmar.rviz"),
                    markers=(MARKERS, POLICY_MARKERS),
                    needs_routing=True,
                )
            ),
        ]
    )
