"""The CBF node's messages as bytes: no per-pose Python objects on its hot path.

A composed N = 50 swarm delivers about 1,000 ``neighbors`` PoseArrays a second to its filter
nodes (some 18,000 poses); rclpy turns every pose into three Python message objects before
the callback runs, and the node then reads them back field by field. Subscribed raw
(``raw=True``), the same messages are decoded here with one ``numpy.frombuffer`` per message,
and the filtered command is encoded with one ``struct.pack``.

The layout is the OMG CDR (XCDR1) that rmw_fastrtps puts on the wire for these types: a
4-byte encapsulation header (``00 01 00 00``: CDR, little endian), then the fields with
alignment relative to the end of that header (4 for ``uint32``/``int32``, 8 for ``float64``);
a string is its ``uint32`` length (with the NUL) and its bytes; a sequence its ``uint32``
count and its elements. Anything else (another encapsulation, a truncated buffer) is decoded
by :func:`rclpy.serialization.deserialize_message`, and :data:`RAW_PUBLISH_OK` checks at
import that :func:`encode_twist_stamped` gives the bytes the middleware itself gives, but for
the alignment padding, which it leaves undefined and this module writes as zeros (otherwise
the node publishes message objects). The tests compare both directions with
:mod:`rclpy.serialization` on random messages.
"""

from __future__ import annotations

import math
import struct

import numpy as np
from geometry_msgs.msg import PoseArray, PoseStamped, TwistStamped
from rclpy.serialization import deserialize_message, serialize_message

__all__ = [
    "RAW_PUBLISH_OK",
    "decode_pose_array",
    "decode_pose_stamped",
    "decode_twist_stamped",
    "encode_twist_stamped",
]

_CDR_LE = b"\x00\x01"
_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")
_POSE = struct.Struct("<7d")
_TWIST = struct.Struct("<3d")


def _header_end(data: bytes) -> tuple[int, int, int] | None:
    """``(sec, nanosec, offset after frame_id)`` of a CDR-LE header, or ``None``."""
    if len(data) < 16 or data[:2] != _CDR_LE:
        return None
    sec, nanosec = _STAMP.unpack_from(data, 4)
    (length,) = _U32.unpack_from(data, 12)
    end = 16 + length
    if end > len(data):
        return None
    return sec, nanosec, end


def _align8(offset: int) -> int:
    """``offset`` (in the buffer) rounded up to 8 relative to the end of the 4-byte header."""
    return 4 + ((offset - 4 + 7) & ~7)


def decode_pose_stamped(data: bytes) -> tuple[float, ...]:
    """``(x, y, z, qx, qy, qz, qw)`` of a serialized ``geometry_msgs/PoseStamped``."""
    head = _header_end(data)
    if head is not None:
        off = _align8(head[2])
        if off + _POSE.size <= len(data):
            return _POSE.unpack_from(data, off)
    msg = deserialize_message(data, PoseStamped)
    p, q = msg.pose.position, msg.pose.orientation
    return (p.x, p.y, p.z, q.x, q.y, q.z, q.w)


def decode_pose_array(data: bytes) -> np.ndarray:
    """``(k, 7)`` rows ``(x, y, z, qx, qy, qz, qw)`` of a serialized ``PoseArray``."""
    head = _header_end(data)
    if head is not None:
        off = (head[2] + 3) & ~3  # uint32: 4-aligned (the header is 4 bytes)
        if off + 4 <= len(data):
            (count,) = _U32.unpack_from(data, off)
            start = _align8(off + 4) if count else off + 4
            if start + 56 * count <= len(data):
                return np.frombuffer(data, "<f8", 7 * count, start).reshape(count, 7)
    msg = deserialize_message(data, PoseArray)
    return np.array(
        [
            (p.position.x, p.position.y, p.position.z)
            + (p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w)
            for p in msg.poses
        ],
        dtype=float,
    ).reshape(-1, 7)


def decode_twist_stamped(data: bytes) -> tuple[int, int, float, float, float]:
    """``(sec, nanosec, vx, vy, vz)`` (stamp and linear velocity) of a ``TwistStamped``."""
    head = _header_end(data)
    if head is not None:
        off = _align8(head[2])
        if off + 48 <= len(data):
            return (head[0], head[1], *_TWIST.unpack_from(data, off))
    msg = deserialize_message(data, TwistStamped)
    lin = msg.twist.linear
    return (msg.header.stamp.sec, msg.header.stamp.nanosec, lin.x, lin.y, lin.z)


def encode_twist_stamped(sec: int, nanosec: int, frame_id: str, vx, vy, vz) -> bytes:
    """A serialized ``TwistStamped`` (angular velocity zero), as the middleware writes it."""
    name = frame_id.encode() + b"\x00"
    off = 16 + len(name)
    pad = _align8(off) - off
    return b"".join(
        (
            _CDR_LE,
            b"\x00\x00",
            _STAMP.pack(sec, nanosec),
            _U32.pack(len(name)),
            name,
            b"\x00" * pad,
            struct.pack("<6d", vx, vy, vz, 0.0, 0.0, 0.0),
        )
    )


def yaw_of(qx: float, qy: float, qz: float, qw: float) -> float:
    """Heading [rad] of a unit quaternion (rotation about z)."""
    return math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))


def _raw_publish_ok() -> bool:
    """True when :func:`encode_twist_stamped` writes the middleware's own layout: the same
    length, the same bytes outside the alignment padding (whose content the middleware
    leaves undefined), and the same message read back."""
    msg = TwistStamped()
    msg.header.frame_id = "world"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = 0.1, -0.2, 0.3
    ours = encode_twist_stamped(12, 345, "world", 0.1, -0.2, 0.3)
    try:
        theirs = serialize_message(msg)
        back = deserialize_message(ours, TwistStamped)
    except Exception:  # a middleware that cannot serialize here: publish message objects
        return False
    pad_from, pad_to = 22, _align8(22)  # after "world\0", up to the first float64
    return (
        len(ours) == len(theirs)
        and ours[:pad_from] == theirs[:pad_from]
        and ours[pad_to:] == theirs[pad_to:]
        and back == msg
    )


#: Whether the node may publish :func:`encode_twist_stamped` bytes (checked at import).
RAW_PUBLISH_OK = _raw_publish_ok()
