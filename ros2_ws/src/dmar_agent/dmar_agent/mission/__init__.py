"""DMAR mission code over ROS: the core instance of a routing config, the demo and its report."""
