"""ament_python package that is also pip-installable (pip install -e ros2_ws/src/sim_bridge)."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

package_name = "sim_bridge"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={package_name: ["data/*", "checkpoints/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="Swarm stack developers",
    maintainer_email="dev@swarm.invalid",
    description=Path("package.xml")
    .read_text()
    .split("<description>")[1]
    .split("</description>")[0],
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "swarm = sim_bridge.cli:main",
            "world_node = sim_bridge.ros.world_node:main",
            "comm_relay = sim_bridge.ros.relay_node:main",
            "swarm_services = sim_bridge.ros.services_node:main",
            "cmd_passthrough = sim_bridge.ros.passthrough_node:main",
            "swarm_goto = sim_bridge.ros.goto_node:main",
            "crazyflie_bridge = sim_bridge.ros.crazyflie_node:main",
            "ground_bridge = sim_bridge.ros.ground_node:main",
        ],
    },
)
