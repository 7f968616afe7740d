"""Node floor of cbf_filter: the per-robot filter node (uses rclpy)."""
