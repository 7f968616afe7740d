"""The CBF node's raw messages (:mod:`cbf_filter.ros.wire`) against rclpy's own serialization.

hypothesis: random poses, pose arrays (0-40 poses) and twists with frame ids of every length
(alignment padding of every size), any float64 (NaN, inf, -0.0 included): decoding the
middleware's bytes gives every field bit for bit, and the encoded command reads back as the
same message with the middleware's layout; any other encapsulation goes to
``deserialize_message``.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from cbf_filter.ros import wire
from geometry_msgs.msg import Pose, PoseArray, PoseStamped, TwistStamped
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message

pytestmark = pytest.mark.ros

F64 = st.floats(allow_nan=True, allow_infinity=True, width=64)
FRAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_/0123456789", max_size=19)
STAMP = st.tuples(st.integers(-(2**31), 2**31 - 1), st.integers(0, 2**32 - 1))


def _bits(values) -> bytes:
    return struct.pack(f"<{len(values)}d", *values)


def _pose(p: Pose, v) -> Pose:
    p.position.x, p.position.y, p.position.z = v[:3]
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = v[3:]
    return p


@settings(max_examples=200, deadline=None)
@given(FRAME, STAMP, st.lists(st.tuples(*[F64] * 7), max_size=40))
def test_pose_array_decodes_bit_for_bit(frame, stamp, poses):
    msg = PoseArray()
    msg.header.frame_id = frame
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.poses = [_pose(Pose(), v) for v in poses]
    rows = wire.decode_pose_array(serialize_message(msg))
    assert rows.shape == (len(poses), 7)
    assert rows.tobytes() == _bits([c for v in poses for c in v])


@settings(max_examples=200, deadline=None)
@given(FRAME, STAMP, st.tuples(*[F64] * 7))
def test_pose_stamped_decodes_bit_for_bit(frame, stamp, pose):
    msg = PoseStamped()
    msg.header.frame_id = frame
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    _pose(msg.pose, pose)
    assert _bits(wire.decode_pose_stamped(serialize_message(msg))) == _bits(pose)


@settings(max_examples=200, deadline=None)
@given(FRAME, STAMP, st.tuples(*[F64] * 6))
def test_twist_stamped_decodes_and_encodes_bit_for_bit(frame, stamp, twist):
    msg = TwistStamped()
    msg.header.frame_id = frame
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    lin, ang = msg.twist.linear, msg.twist.angular
    lin.x, lin.y, lin.z = twist[:3]
    ang.x, ang.y, ang.z = twist[3:]
    sec, nanosec, *v = wire.decode_twist_stamped(serialize_message(msg))
    assert (sec, nanosec) == stamp and _bits(v) == _bits(twist[:3])
    # encoding (angular zero): the middleware's layout, the same message read back
    ang.x = ang.y = ang.z = 0.0
    ours = wire.encode_twist_stamped(*stamp, frame, *twist[:3])
    theirs = serialize_message(msg)
    assert len(ours) == len(theirs)
    back = deserialize_message(ours, TwistStamped)
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == stamp
    assert back.header.frame_id == frame
    got = (back.twist.linear.x, back.twist.linear.y, back.twist.linear.z)
    assert _bits(got) == _bits(twist[:3])
    assert (back.twist.angular.x, back.twist.angular.y, back.twist.angular.z) == (0.0,) * 3


def test_raw_publishing_is_confirmed_here():
    assert wire.RAW_PUBLISH_OK


def test_other_encapsulations_go_to_deserialize_message(monkeypatch):
    msg = PoseArray()
    msg.poses = [_pose(Pose(), (1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0))]
    data = bytearray(serialize_message(msg))
    calls = []

    def spy(raw, kind):
        calls.append(kind)
        return msg

    monkeypatch.setattr(wire, "deserialize_message", spy)
    data[1] = 0x07  # not CDR little endian (e.g. XCDR2)
    rows = wire.decode_pose_array(bytes(data))
    assert calls == [PoseArray]
    np.testing.assert_array_equal(rows, [[1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0]])
    assert wire.decode_pose_array(serialize_message(msg)).shape == (1, 7)
    assert calls == [PoseArray]  # the CDR bytes themselves never reach it


def test_yaw_of_a_quaternion():
    c, s = np.cos(0.35), np.sin(0.35)
    assert wire.yaw_of(0.0, 0.0, s, c) == pytest.approx(0.7)
