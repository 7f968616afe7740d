"""lgtc_policy's node floor: the policy node (:mod:`~lgtc_policy.ros.node`, its loop timing in
:mod:`~lgtc_policy.ros.tick_stats`, which is plain Python) and the demo's ROS session
(:mod:`~lgtc_policy.ros.session`).
"""
