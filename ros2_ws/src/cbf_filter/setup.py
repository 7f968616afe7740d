"""ament_python package that is also pip-installable (pip install -e ros2_ws/src/cbf_filter)."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

package_name = "cbf_filter"

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
            "cbf_node = cbf_filter.ros.node:main",
            "cbf_figures = cbf_filter.figures:main",
        ],
    },
)
