"""The swarm's hot messages as bytes: no per-pose Python message objects on the 20 Hz path.

A composed N = 50 swarm moves some 5,000 messages a second through one Python process (each
robot's pose, neighbours, resources, nominal and filtered command, LGTC message and bundle).
rclpy turns every received message into Python message objects (three per pose) and every
published one back, field by field. Subscribed raw (``raw=True``) and published as bytes
(``Publisher.publish`` takes ``bytes``), the same messages are decoded here with one
``numpy.frombuffer`` / ``struct.unpack_from`` and encoded with one ``bytes.join``; the world,
the relay, the policy and the CBF nodes share this codec.

The layout is the OMG CDR (XCDR1) that rmw_fastrtps puts on the wire for these types: a
4-byte encapsulation header (``00 01 00 00``: CDR, little endian), then the fields with
alignment relative to the end of that header (4 for ``uint32``/``int32``, 8 for ``float64``);
a string is its ``uint32`` length (with the NUL) and its bytes; a sequence its ``uint32``
count and its elements (a ``float64[]`` is aligned to 8 even when empty, a sequence of
structs only at its first element). The alignment padding is left undefined by the
middleware; this module writes zeros there. Anything else (another encapsulation, a
truncated buffer) is decoded by :func:`rclpy.serialization.deserialize_message`, and
:data:`RAW_PUBLISH_OK` checks at import that every encoder here gives the bytes the
middleware itself gives (but the padding) and reads back as the same message; where it does
not, the nodes publish message objects. The tests compare both directions with
:mod:`rclpy.serialization` on random messages.
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import Pose, PoseArray, PoseStamped, TwistStamped
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

__all__ = [
    "RAW_PUBLISH_OK",
    "decode_float64_multi_array",
    "decode_pose_array",
    "decode_pose_stamped",
    "decode_stamped_pose",
    "decode_twist_stamped",
    "encode_float64_multi_array",
    "encode_pose_array",
    "encode_pose_stamped",
    "encode_twist_stamped",
    "float64_aligned",
    "float64_multi_array_prefix",
    "header_prefix",
    "pose_array_bytes",
    "yaw_of",
]

_CDR_LE = b"\x00\x01"
_U32 = struct.Struct("<I")
_DIM = struct.Struct("<II")
_STAMP = struct.Struct("<iI")
_POSE = struct.Struct("<7d")
_TWIST = struct.Struct("<3d")
_ZEROS = bytes(8)
_LITTLE = np.little_endian


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


def _align4(offset: int) -> int:
    """``offset`` rounded up to 4 (the header is 4 bytes: relative and absolute agree)."""
    return (offset + 3) & ~3


# ----------------------------------------------------------------------------- decoding


def decode_stamped_pose(data: bytes) -> tuple:
    """``(sec, nanosec, x, y, z, qx, qy, qz, qw)`` of a serialized ``PoseStamped``."""
    head = _header_end(data)
    if head is not None:
        off = _align8(head[2])
        if off + _POSE.size <= len(data):
            return (head[0], head[1], *_POSE.unpack_from(data, off))
    msg = deserialize_message(data, PoseStamped)
    p, q = msg.pose.position, msg.pose.orientation
    st = msg.header.stamp
    return (st.sec, st.nanosec, p.x, p.y, p.z, q.x, q.y, q.z, q.w)


def decode_pose_stamped(data: bytes) -> tuple[float, ...]:
    """``(x, y, z, qx, qy, qz, qw)`` of a serialized ``geometry_msgs/PoseStamped``."""
    return decode_stamped_pose(data)[2:]


def decode_pose_array(data: bytes) -> np.ndarray:
    """``(k, 7)`` rows ``(x, y, z, qx, qy, qz, qw)`` of a serialized ``PoseArray``."""
    head = _header_end(data)
    if head is not None:
        off = _align4(head[2])
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


def _decode_f64ma(data: bytes):
    """The raw path of :func:`decode_float64_multi_array`, or ``None`` (not CDR-LE, cut)."""
    n = len(data)
    if n < 16 or data[:2] != _CDR_LE:
        return None
    (ndim,) = _U32.unpack_from(data, 4)
    off, dims = 8, []
    for _ in range(ndim):
        if off + 4 > n:
            return None
        (length,) = _U32.unpack_from(data, off)
        end = off + 4 + length
        if length == 0 or end > n:
            return None
        label = data[off + 4 : end - 1].decode()
        off = _align4(end)
        if off + 8 > n:
            return None
        dims.append((label, *_DIM.unpack_from(data, off)))
        off += 8
    if off + 8 > n:
        return None
    data_offset, count = _DIM.unpack_from(data, off)
    start = _align8(off + 8)
    if start + 8 * count > n:
        return None
    return dims, data_offset, np.frombuffer(data, "<f8", count, start)


def decode_float64_multi_array(data: bytes) -> tuple[list[tuple[str, int, int]], int, np.ndarray]:
    """``(dims, data_offset, values)`` of a serialized ``std_msgs/Float64MultiArray``:
    ``dims`` the layout's ``(label, size, stride)``, ``values`` a read-only ``float64`` array
    (a view of ``data`` on the raw path)."""
    try:
        got = _decode_f64ma(data)
    except UnicodeDecodeError:
        got = None
    if got is not None:
        return got
    msg = deserialize_message(data, Float64MultiArray)
    dims = [(d.label, d.size, d.stride) for d in msg.layout.dim]
    values = np.asarray(msg.data, dtype=np.float64)
    values.flags.writeable = False
    return dims, msg.layout.data_offset, values


# ----------------------------------------------------------------------------- encoding


def header_prefix(sec: int, nanosec: int, frame_id: str) -> bytes:
    """The encapsulation and ``std_msgs/Header`` of a message (no trailing padding)."""
    name = frame_id.encode() + b"\x00"
    return b"".join((_CDR_LE, b"\x00\x00", _STAMP.pack(sec, nanosec), _U32.pack(len(name)), name))


def _pad8(prefix_len: int) -> bytes:
    """Zero padding that brings a buffer of ``prefix_len`` bytes to a ``float64`` boundary."""
    return _ZEROS[: _align8(prefix_len) - prefix_len]


def float64_aligned(head: bytes) -> bytes:
    """``head`` (e.g. a :func:`header_prefix`) padded to a ``float64`` boundary: followed by
    the 56 bytes of a pose, it is a ``PoseStamped`` (:func:`encode_pose_stamped`)."""
    return head + _pad8(len(head))


def encode_twist_stamped(sec: int, nanosec: int, frame_id: str, vx, vy, vz) -> bytes:
    """A serialized ``TwistStamped`` (angular velocity zero), as the middleware writes it."""
    head = header_prefix(sec, nanosec, frame_id)
    return b"".join((head, _pad8(len(head)), struct.pack("<6d", vx, vy, vz, 0.0, 0.0, 0.0)))


def encode_pose_stamped(sec: int, nanosec: int, frame_id: str, pose: Sequence[float]) -> bytes:
    """A serialized ``PoseStamped``; ``pose`` = ``(x, y, z, qx, qy, qz, qw)``."""
    return float64_aligned(header_prefix(sec, nanosec, frame_id)) + _POSE.pack(*pose)


def pose_array_bytes(head: bytes, rows: bytes, count: int) -> bytes:
    """A serialized ``PoseArray`` from its :func:`header_prefix` ``head`` and ``count`` poses
    given as ``rows``: their ``(x, y, z, qx, qy, qz, qw)`` little-endian ``float64`` bytes."""
    off = _align4(len(head))
    parts = [head, _ZEROS[: off - len(head)], _U32.pack(count)]
    if count:  # a sequence of structs aligns at its first element only
        parts.append(_pad8(off + 4))
        parts.append(rows)
    return b"".join(parts)


def _f64_bytes(rows) -> bytes:
    """Little-endian ``float64`` bytes of an array-like (``array('d')`` or numpy)."""
    if isinstance(rows, array) and rows.typecode == "d" and _LITTLE:
        return rows.tobytes()
    return np.ascontiguousarray(rows, dtype="<f8").tobytes()


def encode_pose_array(sec: int, nanosec: int, frame_id: str, rows) -> bytes:
    """A serialized ``PoseArray``; ``rows`` ``(k, 7)`` ``(x, y, z, qx, qy, qz, qw)``."""
    arr = np.ascontiguousarray(rows, dtype="<f8").reshape(-1, 7)
    return pose_array_bytes(header_prefix(sec, nanosec, frame_id), arr.tobytes(), len(arr))


def float64_multi_array_prefix(dims: Sequence[tuple[str, int, int]], data_offset: int = 0) -> bytes:
    """The encapsulation and ``layout`` of a ``Float64MultiArray`` (``dims``: ``(label, size,
    stride)``), to be completed by :func:`encode_float64_multi_array` (``prefix=``)."""
    parts = [_CDR_LE, b"\x00\x00", _U32.pack(len(dims))]
    off = 8
    for label, size, stride in dims:
        name = label.encode() + b"\x00"
        parts += (_U32.pack(len(name)), name)
        off += 4 + len(name)
        parts.append(_ZEROS[: _align4(off) - off])
        off = _align4(off)
        parts.append(_DIM.pack(size, stride))
        off += 8
    parts.append(_U32.pack(data_offset))
    return b"".join(parts)


def encode_float64_multi_array(
    values, dims: Sequence[tuple[str, int, int]] = (), data_offset: int = 0, prefix=None
) -> bytes:
    """A serialized ``Float64MultiArray`` of ``values`` (a ``float64`` sequence, array or
    ``array('d')``) with the layout ``dims`` / ``data_offset``, or the ready ``prefix`` of
    :func:`float64_multi_array_prefix` (reused for every message of one layout)."""
    if prefix is None:
        prefix = float64_multi_array_prefix(dims, data_offset)
    if isinstance(values, (bytes, bytearray, memoryview)):
        raw = bytes(values)
    else:
        raw = _f64_bytes(values if not isinstance(values, list) else array("d", values))
    # the count ends 4-aligned after a 4-aligned prefix; the float64 data aligns to 8 always
    return b"".join((prefix, _U32.pack(len(raw) // 8), _pad8(len(prefix) + 4), raw))


def yaw_of(qx: float, qy: float, qz: float, qw: float) -> float:
    """Heading [rad] of a unit quaternion (rotation about z)."""
    return math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))


# ----------------------------------------------------------------------------- checks


def same_but_padding(ours: bytes, theirs: bytes, pads: Sequence[tuple[int, int]]) -> bool:
    """``ours`` and ``theirs`` have one length and equal bytes outside the ``[from, to)``
    ranges ``pads`` (the alignment padding)."""
    if len(ours) != len(theirs):
        return False
    keep = np.ones(len(ours), bool)
    for a, b in pads:
        keep[a:b] = False
    o = np.frombuffer(ours, np.uint8)
    t = np.frombuffer(theirs, np.uint8)
    return bool(np.array_equal(o[keep], t[keep]))


def _raw_publish_ok() -> bool:
    """True when every encoder here writes the middleware's own layout: the same length,
    the same bytes outside the alignment padding (whose content the middleware leaves
    undefined), and the same message read back."""
    try:
        twist = TwistStamped()
        twist.header.frame_id = "world"
        twist.header.stamp.sec, twist.header.stamp.nanosec = 12, 345
        twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = 0.1, -0.2, 0.3
        pose = PoseStamped()
        pose.header = twist.header
        vals = (0.5, -1.25, 0.75, 0.0, 0.0, 0.6, 0.8)
        p, q = pose.pose.position, pose.pose.orientation
        p.x, p.y, p.z, q.x, q.y, q.z, q.w = vals
        arr = PoseArray(header=twist.header, poses=[Pose(), pose.pose])
        f64 = Float64MultiArray()
        f64.layout.dim = [
            MultiArrayDimension(label="messages", size=2, stride=6),
            MultiArrayDimension(label="message", size=3, stride=3),
        ]
        f64.data = [1.5, -2.0, 3.25, 0.0, 7.0, -8.5]
        # "world\0" ends at 22: the float64 fields start at 28, the pose count at 24;
        # "messages\0" ends at 21, its size at 24
        cases = (
            (twist, encode_twist_stamped(12, 345, "world", 0.1, -0.2, 0.3), [(22, 28)]),
            (pose, encode_pose_stamped(12, 345, "world", vals), [(22, 28)]),
            (
                arr,
                encode_pose_array(12, 345, "world", [(0.0,) * 6 + (1.0,), vals]),
                [(22, 24)],
            ),
            (
                f64,
                encode_float64_multi_array(f64.data, [("messages", 2, 6), ("message", 3, 3)]),
                [(21, 24)],
            ),
        )
        for msg, ours, pads in cases:
            theirs = serialize_message(msg)
            if (
                not same_but_padding(ours, theirs, pads)
                or deserialize_message(ours, type(msg)) != msg
            ):
                return False
    except Exception:  # a middleware that cannot serialize here: publish message objects
        return False
    return True


#: Whether the nodes may publish the encoders' bytes (checked at import).
RAW_PUBLISH_OK = _raw_publish_ok()
