"""Real-robot bridges: Crazyflie radio links (cflib) and ground robots (driver cmd topic).

Core modules (``crazyflie_link``, ``ground``, ``neighbors``) are plain Python; the ROS
adapters are ``sim_bridge.ros.crazyflie_node`` and ``sim_bridge.ros.ground_node``.
"""
