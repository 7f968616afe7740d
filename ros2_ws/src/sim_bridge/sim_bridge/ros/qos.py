"""Named QoS profiles of the swarm's topics (node floor: uses rclpy).

Every publisher and subscription of the stack takes one of these names instead of a
profile built inline, so a topic's delivery rule is read and changed in one place. All are
``KEEP_LAST`` and ``VOLATILE`` unless said otherwise; a bare integer depth in
``create_publisher`` means the same as a reliable profile of that depth.

========================  =====  ===========  ===============  =====================================
name                      depth  reliability  durability       used for
========================  =====  ===========  ===============  =====================================
``STATE``                 1      reliable     volatile         latest value wins: pose, resources,
                                                               neighbours, consumers, view, tasks,
                                                               PS step, ``cmd_vel(_nominal)``
``STATE_BEST_EFFORT``     1      best effort  volatile         a subscriber that must match reliable
                                                               and best-effort publishers alike
                                                               (the CBF filter's inputs)
``QUEUE``                 10     reliable     volatile         every message counts: comm in/out,
                                                               ``dmar/move``, events, ``/clock``,
                                                               the bridges' topics
``DIAGNOSTICS``           10     reliable     volatile         ``/diagnostics``
``MARKERS``               1      reliable     volatile         ``/swarm/markers`` and policy markers
``LATCHED``               1      reliable     transient local  ``link_state``: late joiners get the
                                                               current value
``BACKLOG``               50     reliable     volatile         bursts a slow reader must not lose
                                                               (DMAR views and comm)
``MONITOR``               100    reliable     volatile         a run observer reading diagnostics
                                                               and events of many nodes; the MCAP
                                                               recorder (every topic)
========================  =====  ===========  ===============  =====================================

Profiles are immutable by convention: pass them as they are; build a new ``QoSProfile`` for a
genuinely new delivery rule and give it a name here.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

_RELIABLE = ReliabilityPolicy.RELIABLE

#: Latest value wins (depth 1, reliable): state topics and velocity commands.
STATE = QoSProfile(depth=1, reliability=_RELIABLE)
#: Depth 1, best effort: a subscription compatible with reliable and best-effort publishers.
STATE_BEST_EFFORT = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
#: Every message counts (depth 10, reliable): comm, moves, events, clock, bridge topics.
QUEUE = QoSProfile(depth=10, reliability=_RELIABLE)
#: ``/diagnostics`` (depth 10, reliable).
DIAGNOSTICS = QoSProfile(depth=10, reliability=_RELIABLE)
#: rviz markers (depth 1, reliable): only the latest frame matters.
MARKERS = QoSProfile(depth=1, reliability=_RELIABLE)
#: Latched state (depth 1, reliable, transient local): late joiners get the current value.
LATCHED = QoSProfile(depth=1, reliability=_RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: Deep queue (depth 50, reliable): bursts a slow reader must not lose.
BACKLOG = QoSProfile(depth=50, reliability=_RELIABLE)
#: Run observers (depth 100, reliable): diagnostics and events of every node of a run.
MONITOR = QoSProfile(depth=100, reliability=_RELIABLE)

#: Every named profile, by name (documentation and tests).
PROFILES: dict[str, QoSProfile] = {
    "STATE": STATE,
    "STATE_BEST_EFFORT": STATE_BEST_EFFORT,
    "QUEUE": QUEUE,
    "DIAGNOSTICS": DIAGNOSTICS,
    "MARKERS": MARKERS,
    "LATCHED": LATCHED,
    "BACKLOG": BACKLOG,
    "MONITOR": MONITOR,
}
