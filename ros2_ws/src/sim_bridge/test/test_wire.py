"""The swarm's raw messages (:mod:`sim_bridge.ros.wire`) against rclpy's own serialization.

hypothesis: random poses, pose arrays (0-40 poses), twists and float64 multi-arrays (0-3
dimensions with labels of every length, 0-60 values) with frame ids of every length
(alignment padding of every size), any float64 (NaN, inf, -0.0 included): decoding the
middleware's bytes gives every field bit for bit, and every encoder gives the middleware's
bytes but the alignment padding (zeros here, undefined there) and reads back as the same
message bit for bit; any other encapsulation, or a cut buffer, goes to
``deserialize_message``. The CBF node's name for the codec (:mod:`cbf_filter.ros.wire`) is
this module.
"""

from __future__ import annotations

import struct
from array import array

import numpy as np
import pytest
from geometry_msgs.msg import Pose, PoseArray, PoseStamped, TwistStamped
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message
from sim_bridge.ros import wire
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

pytestmark = pytest.mark.ros

F64 = st.floats(allow_nan=True, allow_infinity=True, width=64)
FRAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_/0123456789", max_size=19)
STAMP = st.tuples(st.integers(-(2**31), 2**31 - 1), st.integers(0, 2**32 - 1))
U32 = st.integers(0, 2**32 - 1)
DIMS = st.lists(st.tuples(FRAME, U32, U32), max_size=3)


def _bits(values) -> bytes:
    return struct.pack(f"<{len(values)}d", *values)


def _pose(p: Pose, v) -> Pose:
    p.position.x, p.position.y, p.position.z = v[:3]
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = v[3:]
    return p


def _pose_bits(p: Pose) -> bytes:
    q = p.orientation
    return _bits((p.position.x, p.position.y, p.position.z, q.x, q.y, q.z, q.w))


def _same_but_zero_padding(ours: bytes, theirs: bytes) -> None:
    """One length; where the bytes differ, ours is a zero in a short run of padding (< 8)."""
    assert len(ours) == len(theirs)
    diff = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    assert all(ours[i] == 0 for i in diff)
    runs = np.split(np.asarray(diff), np.nonzero(np.diff(diff) != 1)[0] + 1) if diff else []
    assert all(len(r) < 8 for r in runs)


@settings(max_examples=200, deadline=None)
@given(FRAME, STAMP, st.lists(st.tuples(*[F64] * 7), max_size=40))
def test_pose_array_both_ways_bit_for_bit(frame, stamp, poses):
    msg = PoseArray()
    msg.header.frame_id = frame
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.poses = [_pose(Pose(), v) for v in poses]
    theirs = serialize_message(msg)
    rows = wire.decode_pose_array(theirs)
    assert rows.shape == (len(poses), 7)
    assert rows.tobytes() == _bits([c for v in poses for c in v])
    ours = wire.encode_pose_array(*stamp, frame, np.array(poses, float).reshape(-1, 7))
    _same_but_zero_padding(ours, theirs)
    back = deserialize_message(ours, PoseArray)
    assert back.header == msg.header
    assert [_pose_bits(p) for p in back.poses] == [_bits(v) for v in poses]
    head = wire.header_prefix(*stamp, frame)
    assert wire.pose_array_bytes(head, rows.tobytes(), len(poses)) == ours


@settings(max_examples=200, deadline=None)
@given(FRAME, STAMP, st.tuples(*[F64] * 7))
def test_pose_stamped_both_ways_bit_for_bit(frame, stamp, pose):
    msg = PoseStamped()
    msg.header.frame_id = frame
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    _pose(msg.pose, pose)
    theirs = serialize_message(msg)
    assert _bits(wire.decode_pose_stamped(theirs)) == _bits(pose)
    sec, nanosec, *rest = wire.decode_stamped_pose(theirs)
    assert (sec, nanosec) == stamp and _bits(rest) == _bits(pose)
    ours = wire.encode_pose_stamped(*stamp, frame, pose)
    _same_but_zero_padding(ours, theirs)
    back = deserialize_message(ours, PoseStamped)
    assert back.header == msg.header and _pose_bits(back.pose) == _bits(pose)


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
    _same_but_zero_padding(ours, serialize_message(msg))
    back = deserialize_message(ours, TwistStamped)
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == stamp
    assert back.header.frame_id == frame
    got = (back.twist.linear.x, back.twist.linear.y, back.twist.linear.z)
    assert _bits(got) == _bits(twist[:3])
    assert (back.twist.angular.x, back.twist.angular.y, back.twist.angular.z) == (0.0,) * 3


@settings(max_examples=300, deadline=None)
@given(DIMS, U32, st.lists(F64, max_size=60), st.sampled_from(["list", "numpy", "array"]))
def test_float64_multi_array_both_ways_bit_for_bit(dims, data_offset, values, kind):
    msg = Float64MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=a, size=b, stride=c) for a, b, c in dims]
    msg.layout.data_offset = data_offset
    msg.data = values
    theirs = serialize_message(msg)
    got_dims, got_offset, got = wire.decode_float64_multi_array(theirs)
    assert got_dims == dims and got_offset == data_offset
    assert got.dtype == np.float64 and got.tobytes() == _bits(values)
    given_values = {"list": values, "numpy": np.array(values, float), "array": array("d", values)}
    ours = wire.encode_float64_multi_array(given_values[kind], dims, data_offset)
    _same_but_zero_padding(ours, theirs)
    prefix = wire.float64_multi_array_prefix(dims, data_offset)
    assert wire.encode_float64_multi_array(values, prefix=prefix) == ours
    back = deserialize_message(ours, Float64MultiArray)
    assert back.layout == msg.layout and back.data.tobytes() == _bits(values)


def test_raw_publishing_is_confirmed_here():
    assert wire.RAW_PUBLISH_OK


def test_the_cbf_node_uses_this_codec():
    from cbf_filter.ros import wire as cbf_wire

    for name in cbf_wire.__all__:
        assert getattr(cbf_wire, name) is getattr(wire, name)


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


@pytest.mark.parametrize("cut", [0, 3, 8, 13, 20, 27])
def test_a_cut_multi_array_goes_to_deserialize_message(monkeypatch, cut):
    msg = Float64MultiArray(data=[1.0, 2.0])
    msg.layout.dim = [MultiArrayDimension(label="messages", size=1, stride=2)]
    full = serialize_message(msg)
    calls = []

    def spy(raw, kind):
        calls.append((len(raw), kind))
        return msg

    monkeypatch.setattr(wire, "deserialize_message", spy)
    dims, _, values = wire.decode_float64_multi_array(full[: len(full) - 1 - cut])
    assert calls == [(len(full) - 1 - cut, Float64MultiArray)]
    assert dims == [("messages", 1, 2)] and values.tolist() == [1.0, 2.0]
    assert not values.flags.writeable  # as on the raw path: a view of the bytes
    wire.decode_float64_multi_array(full)
    assert len(calls) == 1


def test_yaw_of_a_quaternion():
    c, s = np.cos(0.35), np.sin(0.35)
    assert wire.yaw_of(0.0, 0.0, s, c) == pytest.approx(0.7)
