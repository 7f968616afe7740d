"""Node floor of dmar_agent: everything that imports rclpy."""
