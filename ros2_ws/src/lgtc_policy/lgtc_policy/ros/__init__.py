"""Node-layer helpers of lgtc_policy (these modules use rclpy)."""
