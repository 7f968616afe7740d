"""The named QoS profiles (sim_bridge.ros.qos) keep the settings the topics had inline."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sim_bridge.ros import qos

REL, BE = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT
VOL, TL = DurabilityPolicy.VOLATILE, DurabilityPolicy.TRANSIENT_LOCAL

EXPECTED = {
    "STATE": (1, REL, VOL),
    "STATE_BEST_EFFORT": (1, BE, VOL),
    "QUEUE": (10, REL, VOL),
    "DIAGNOSTICS": (10, REL, VOL),
    "MARKERS": (1, REL, VOL),
    "LATCHED": (1, REL, TL),
    "BACKLOG": (50, REL, VOL),
    "MONITOR": (100, REL, VOL),
}


def test_profiles_settings():
    assert set(qos.PROFILES) == set(EXPECTED)
    for name, (depth, reliability, durability) in EXPECTED.items():
        profile = qos.PROFILES[name]
        assert profile is getattr(qos, name)
        assert profile.depth == depth, name
        assert profile.reliability == reliability, name
        assert profile.durability == durability, name
        assert profile.history == HistoryPolicy.KEEP_LAST, name


def test_reliable_profiles_equal_a_bare_depth():
    """``create_publisher(..., 10)`` means ``QoSProfile(depth=10)``: reliable, volatile."""
    assert qos.QUEUE == QoSProfile(depth=10) == qos.DIAGNOSTICS
    assert qos.STATE == QoSProfile(depth=1) == qos.MARKERS
