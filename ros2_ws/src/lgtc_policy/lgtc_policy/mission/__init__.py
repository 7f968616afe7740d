"""The LGTC mission room (core, no rclpy at import): what a swarm run is judged against.

* :mod:`~lgtc_policy.mission.scenario`: a swarm config in the core env (rollouts of the
  policy, the expert and the greedy rule; the ROS run replayed and scored by eq. 2);
* :mod:`~lgtc_policy.mission.report`: the demo's metrics and its Markdown report;
* :mod:`~lgtc_policy.mission.discharge`: how one battery-discharge run is judged (Fig. 5);
  :mod:`~lgtc_policy.mission.discharge_study`: the seeded study over ROS or the core env;
* :mod:`~lgtc_policy.mission.demo`: the demo (``lgtc demo``, ``make demo``);
* :mod:`~lgtc_policy.mission.figures`: the paper's figures and the study's plots.

The per-robot runtime is elsewhere: :mod:`lgtc_policy.agent` (core) and
:mod:`lgtc_policy.ros.node` (its node). The demo and the ROS study start the swarm through
:mod:`sim_bridge.ros.runner` and import it only when they fly.
"""
