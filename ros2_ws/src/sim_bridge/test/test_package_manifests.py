"""package.xml of every package declares what its code and launch files import.

rosdep (``rosdep install --from-paths src``) and binary releases install a package's
``exec_depend``s and nothing else. For each package, every third-party module imported by
``<pkg>/**/*.py`` or ``launch/*.launch.py`` must be an ``exec_depend`` (ROS packages and the
rosdep keys of the Python libraries below) or, where rosdep has no key, be named in the
manifest's ``<!-- pip: ... -->`` comment and pinned in requirements.txt (installed with
``pip install -r requirements.txt``, as docker/Dockerfile and the READMEs say).
"""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
SRC = REPO / "ros2_ws" / "src"
PACKAGES = ("sim_bridge", "cbf_filter", "lgtc_policy", "dmar_agent")

#: Python import name -> rosdep key.
ROSDEP_KEYS = {
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "scipy": "python3-scipy",
    "matplotlib": "python3-matplotlib",
    "tqdm": "python3-tqdm",
}
#: ROS packages imported under their own name (message packages, client library, launch).
ROS_PACKAGES = {
    "rclpy",
    "launch",
    "launch_ros",
    "ament_index_python",
    "builtin_interfaces",
    "diagnostic_msgs",
    "geometry_msgs",
    "nav_msgs",
    "rcl_interfaces",
    "rosgraph_msgs",
    "std_msgs",
    "std_srvs",
    "visualization_msgs",
}
#: Python import name -> PyPI distribution, for libraries without a rosdep key.
PIP_DISTS = {
    "torch": "torch",
    "osqp": "osqp",
    "cflib": "cflib",
    "mcap": "mcap",
    "mcap_ros2": "mcap-ros2-support",
    "imageio": "imageio",
    "gymnasium": "gymnasium",
    "pettingzoo": "pettingzoo",
    "ortools": "ortools",
    "ray": "ray",
}
#: Imports that are no dependency: sim_bridge's ``swarm demo`` imports lgtc_policy lazily,
#: when installed (lgtc_policy depends on sim_bridge; the reverse would be a cycle).
OPTIONAL = {"sim_bridge": {"lgtc_policy"}}


def manifest(pkg: str) -> tuple[ET.Element, str]:
    text = (SRC / pkg / "package.xml").read_text()
    return ET.fromstring(text), text


def exec_depends(pkg: str) -> set[str]:
    root, _ = manifest(pkg)
    tags = ("exec_depend", "depend", "run_depend")
    return {e.text.strip() for tag in tags for e in root.iter(tag)}


def pip_declared(pkg: str) -> set[str]:
    _, text = manifest(pkg)
    return {d for line in re.findall(r"<!--\s*pip:([^>]*?)-->", text) for d in line.split()}


def third_party_imports(pkg: str) -> dict[str, set[str]]:
    """Top-level module -> files importing it (absolute imports, not stdlib, not ``pkg``)."""
    files = [*(SRC / pkg / pkg).rglob("*.py"), *(SRC / pkg / "launch").glob("*.launch.py")]
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top in sys.stdlib_module_names or top in ("__future__", pkg):
                    continue
                found.setdefault(top, set()).add(str(path.relative_to(SRC)))
    return found


def pinned_requirements() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


@pytest.mark.parametrize("pkg", PACKAGES)
def test_manifest_is_format_3_ament_python(pkg):
    root, _ = manifest(pkg)
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == pkg
    assert root.find("export").findtext("build_type") == "ament_python"


@pytest.mark.parametrize("pkg", PACKAGES)
def test_every_import_is_a_declared_dependency(pkg):
    declared = exec_depends(pkg)
    pip = pip_declared(pkg)
    missing = []
    for module, files in sorted(third_party_imports(pkg).items()):
        if module in OPTIONAL.get(pkg, set()):
            continue
        if module in ROSDEP_KEYS:
            ok, need = ROSDEP_KEYS[module] in declared, f"<exec_depend>{ROSDEP_KEYS[module]}"
        elif module in ROS_PACKAGES or module in PACKAGES:
            ok, need = module in declared, f"<exec_depend>{module}"
        elif module in PIP_DISTS:
            ok, need = PIP_DISTS[module] in pip, f"<!-- pip: {PIP_DISTS[module]} -->"
        else:
            ok, need = False, "an entry in this test's maps (rosdep key or pip)"
        if not ok:
            missing.append(f"{module} (imported by {sorted(files)[0]}): needs {need}")
    assert not missing, f"{pkg}/package.xml:\n  " + "\n  ".join(missing)


@pytest.mark.parametrize("pkg", PACKAGES)
def test_pip_dependencies_are_pinned_in_requirements(pkg):
    pins = pinned_requirements()
    pip = pip_declared(pkg)
    assert pip <= set(PIP_DISTS.values()), pip - set(PIP_DISTS.values())
    assert not [d for d in pip if d.lower() not in pins], pins
    if "torch" in pip:
        assert pins["torch"] == "2.13.0"


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_dependency_on_a_package_downstream(pkg):
    # the DAG of ARCHITECTURE.md: sim_bridge <- cbf_filter <- lgtc_policy | dmar_agent
    upstream = {
        "sim_bridge": set(),
        "cbf_filter": {"sim_bridge"},
        "lgtc_policy": {"sim_bridge", "cbf_filter"},
        "dmar_agent": {"sim_bridge", "cbf_filter"},
    }
    assert exec_depends(pkg) & set(PACKAGES) <= upstream[pkg]


def test_launch_dependencies_where_launch_files_ship():
    for pkg in PACKAGES:
        if list((SRC / pkg / "launch").glob("*.launch.py")):
            assert {"launch", "launch_ros"} <= exec_depends(pkg), pkg
