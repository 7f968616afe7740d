"""The CBF node's raw messages: the swarm's shared codec, :mod:`sim_bridge.ros.wire`.

Kept under this name for the node's import (``from cbf_filter.ros import wire``); the
layout, the fallback and the tests live with the codec.
"""

from sim_bridge.ros.wire import (
    RAW_PUBLISH_OK,
    decode_pose_array,
    decode_pose_stamped,
    decode_twist_stamped,
    encode_twist_stamped,
    yaw_of,
)

__all__ = [
    "RAW_PUBLISH_OK",
    "decode_pose_array",
    "decode_pose_stamped",
    "decode_twist_stamped",
    "encode_twist_stamped",
    "yaw_of",
]
