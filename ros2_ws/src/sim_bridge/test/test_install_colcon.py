"""The ROS 2 install path: ``colcon build`` of the workspace and the layout ROS 2 relies on.

A full ROS 2 install finds a package through the ament index
(``share/ament_index/resource_index/packages/<pkg>``), its manifest and data in
``share/<pkg>/`` and its executables in ``lib/<pkg>/`` (what ``ros2 run`` / ``launch_ros``
execute). This test builds the four packages with colcon (colcon-core + colcon-ros from
requirements-dev.txt, plain install, no ``--symlink-install``) into a temporary directory
and checks that layout, the shipped checkpoint, and that ``ament_index_python`` finds every
package. Nothing is written into the repository tree.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
SRC = REPO / "ros2_ws" / "src"
PACKAGES = ("sim_bridge", "cbf_filter", "lgtc_policy", "dmar_agent")


def console_scripts(pkg: str) -> dict[str, str]:
    """``{script: "module:function"}`` of the ``console_scripts`` in ``<pkg>/setup.py``."""
    tree = ast.parse((SRC / pkg / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = ast.literal_eval(value)
                    return {
                        name.strip(): target.strip()
                        for name, _, target in (e.partition("=") for e in entries)
                    }
    raise AssertionError(f"{pkg}/setup.py has no console_scripts")


def _colcon() -> str:
    local = Path(sys.executable).parent / "colcon"
    found = str(local) if local.exists() else shutil.which("colcon")
    assert found, "colcon is a dev requirement (requirements-dev.txt): run `make venv`"
    return found


def _repo_build_dirs() -> set[Path]:
    """Build products colcon or setuptools could leave in the repository tree."""
    found = {REPO / d for d in ("build", "install", "log") if (REPO / d).exists()}
    for pkg in PACKAGES:
        found |= {p for p in (SRC / pkg).iterdir() if p.name in ("build", "dist")}
    return found


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Path:
    """Install base of a fresh ``colcon build`` of ros2_ws/src (build time printed)."""
    tmp = tmp_path_factory.mktemp("colcon")
    before = _repo_build_dirs()
    env = dict(os.environ, COLCON_HOME=str(tmp / "colcon_home"), PYTHONDONTWRITEBYTECODE="1")
    env.pop("COLCON_DEFAULTS_FILE", None)
    cmd = [
        _colcon(),
        "--log-base",
        str(tmp / "log"),
        "build",
        "--build-base",
        str(tmp / "build"),
        "--install-base",
        str(tmp / "install"),
        "--base-paths",
        str(SRC),
        "--event-handlers",
        "console_direct-",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - t0
    assert proc.returncode == 0, f"colcon build failed:\n{proc.stdout[-4000:]}\n{proc.stderr}"
    print(f"colcon build of {len(PACKAGES)} packages: {took:.1f} s")
    for pkg in PACKAGES:
        assert f"Finished <<< {pkg}" in proc.stdout + proc.stderr, f"{pkg} not built"
    assert _repo_build_dirs() == before, "colcon wrote build products into the repository"
    return tmp / "install"


@pytest.mark.parametrize("pkg", PACKAGES)
def test_manifest_and_ament_index_marker(install, pkg):
    prefix = install / pkg
    assert (prefix / "share" / pkg / "package.xml").read_text() == (
        SRC / pkg / "package.xml"
    ).read_text()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / pkg).is_file()


@pytest.mark.parametrize("pkg", PACKAGES)
def test_launch_and_config_files_installed(install, pkg):
    share = install / pkg / "share" / pkg
    for sub, patterns in (("launch", ("*.launch.py",)), ("config", ("*.yaml", "*.rviz"))):
        for pattern in patterns:
            for src in (SRC / pkg / sub).glob(pattern):
                dst = share / sub / src.name
                assert dst.is_file(), f"{pkg}: {sub}/{src.name} not installed"
                assert dst.read_bytes() == src.read_bytes()


def test_expected_launch_and_config_files(install):
    # the files the READMEs and `ros2 launch` commands name
    for rel in (
        "lgtc_policy/share/lgtc_policy/launch/swarm.launch.py",
        "lgtc_policy/share/lgtc_policy/config/swarm.rviz",
        "cbf_filter/share/cbf_filter/launch/cbf_filter.launch.py",
        "cbf_filter/share/cbf_filter/config/cbf_filter.yaml",
    ):
        assert (install / rel).is_file(), rel


@pytest.mark.parametrize("pkg", PACKAGES)
def test_every_console_script_in_lib_pkg(install, pkg):
    scripts = console_scripts(pkg)
    assert scripts
    libdir = install / pkg / "lib" / pkg
    for name in scripts:
        exe = libdir / name
        assert exe.is_file(), f"{pkg}: executable {name} missing from lib/{pkg}/"
        assert os.access(exe, os.X_OK), f"{pkg}: lib/{pkg}/{name} is not executable"


def _site_packages(install: Path) -> list[str]:
    return [str(p) for p in sorted(install.glob("*/lib/python3*/site-packages"))]


def _installed_env(install: Path) -> dict[str, str]:
    """What ``source install/setup.bash`` sets for Python: the install's packages first."""
    env = dict(os.environ)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(str(install / p) for p in PACKAGES)
    env["PYTHONPATH"] = os.pathsep.join(_site_packages(install))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


_PROBE = """
import importlib, json, sys
from ament_index_python.packages import get_package_share_directory, get_packages_with_prefixes
from sim_bridge.config import load_config
scripts = json.loads(sys.argv[1])
out = {"share": {}, "module_files": {}, "entry_points": []}
for pkg in scripts:
    out["share"][pkg] = get_package_share_directory(pkg)
    out["module_files"][pkg] = importlib.import_module(pkg).__file__
    for name, target in scripts[pkg].items():
        module, _, func = target.partition(":")
        if not callable(getattr(importlib.import_module(module), func)):
            raise SystemExit(f"{name}: {target} is not callable")
        out["entry_points"].append(name)
out["packages"] = sorted(get_packages_with_prefixes())
out["checkpoint"] = str(load_config(sys.argv[2]).resolve_checkpoint())
print(json.dumps(out))
"""


def test_ament_index_python_finds_the_installed_packages(install):
    scripts = {pkg: console_scripts(pkg) for pkg in PACKAGES}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(scripts), str(REPO / "launch" / "demo.yaml")],
        env=_installed_env(install),
        cwd=install,  # `python -c` puts the cwd first on sys.path: never the checkout
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for pkg in PACKAGES:
        assert pkg in out["packages"]
        assert Path(out["share"][pkg]) == install / pkg / "share" / pkg
        # the installed copy is the one imported, not the editable checkout
        assert Path(out["module_files"][pkg]).is_relative_to(install / pkg)
    assert sorted(out["entry_points"]) == sorted(n for s in scripts.values() for n in s)
    # demo.yaml's "lgtc_policy:checkpoints/..." resolves to the installed checkpoint
    ckpt = Path(out["checkpoint"])
    assert ckpt.is_relative_to(install / "lgtc_policy") and ckpt.is_file()
    for src in (SRC / "lgtc_policy" / "lgtc_policy" / "checkpoints").glob("*.pt"):
        dst = next(
            install.glob(
                f"lgtc_policy/lib/python3*/site-packages/lgtc_policy/checkpoints/{src.name}"
            )
        )
        assert dst.read_bytes() == src.read_bytes()


def test_installed_executable_runs(install):
    # lib/<pkg>/<exe> is what `ros2 run` and launch_ros execute: it must start from the install
    exe = install / "sim_bridge" / "lib" / "sim_bridge" / "swarm"
    proc = subprocess.run(
        [str(exe), "--help"],
        env=_installed_env(install),
        cwd=install,  # as a user runs it: outside the checkout
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "usage" in proc.stdout.lower()
