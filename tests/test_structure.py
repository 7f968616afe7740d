"""The house rules of ARCHITECTURE.md, checked from the import graph of the four packages.

Every ``import`` and ``from ... import`` is read with :mod:`ast`, at module level and inside
functions (a lazy import is a dependency all the same); relative imports are resolved.

* Packages depend one way: ``sim_bridge`` <- ``cbf_filter`` <- ``lgtc_policy`` / ``dmar_agent``;
  the two missions never import each other; ``sim_bridge`` imports no other package.
* Two floors per package: ``rclpy``, ROS message packages and ``launch`` are imported only on the
  node floor ``<pkg>/ros/``; the core never imports a node floor (its own or another's).
* Nothing imports ``benchmarks`` (launch files live outside the module tree).

Doors (``DOORS``: the console commands and the mission demos, which start ROS runs) may reach the
node floor, but only inside functions, so that ``--help``, validation and the core-only commands
never load rclpy.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "ros2_ws" / "src"
PACKAGES = ("sim_bridge", "cbf_filter", "lgtc_policy", "dmar_agent")
#: package -> the other packages it may import
ALLOWED = {
    "sim_bridge": set(),
    "cbf_filter": {"sim_bridge"},
    "lgtc_policy": {"sim_bridge", "cbf_filter"},
    "dmar_agent": {"sim_bridge", "cbf_filter"},
}
#: top-level modules that only the node floor may import
ROS_ONLY = {
    "rclpy",
    "launch",
    "launch_ros",
    "builtin_interfaces",
    "diagnostic_msgs",
    "geometry_msgs",
    "nav_msgs",
    "rcl_interfaces",
    "rosgraph_msgs",
    "sensor_msgs",
    "std_msgs",
    "std_srvs",
    "visualization_msgs",
    "composition_interfaces",
    "rosbag2_py",
}


#: modules that start ROS runs for a user: node floor imports allowed inside functions only
DOORS = {
    "sim_bridge.cli",
    "lgtc_policy.cli",
    "dmar_agent.cli",
    "lgtc_policy.mission.demo",
    "lgtc_policy.mission.discharge_study",
    "dmar_agent.mission.demo",
}


def _modules() -> list[tuple[str, str, Path]]:
    """(package, dotted module name, path) of every source module of the four packages."""
    out = []
    for pkg in PACKAGES:
        base = SRC / pkg / pkg
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(SRC / pkg).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append((pkg, ".".join(parts), path))
    return out


def _imports(name: str, path: Path, top_level: bool = False) -> list[tuple[str, int]]:
    """(imported dotted name, line) of every import in the module, relative ones resolved;
    ``top_level``: only those outside functions (what importing the module loads)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found = []
    nodes = ast.walk(tree)
    if top_level:
        nodes = []
        stack = list(tree.body)
        while stack:
            n = stack.pop()
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            nodes.append(n)
            stack.extend(ast.iter_child_nodes(n))
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.append((mod, node.lineno))
            # ``from pkg import submodule``: the submodule is imported too
            found += [(f"{mod}.{a.name}", node.lineno) for a in node.names if a.name != "*"]
    return found


def _node_floor(name: str) -> bool:
    parts = name.split(".")
    return len(parts) > 1 and parts[1] == "ros"


MODULES = _modules()


def test_the_packages_are_found():
    names = {m for _, m, _ in MODULES}
    assert {"sim_bridge.topics", "cbf_filter", "lgtc_policy", "dmar_agent.protocols"} <= names


@pytest.mark.parametrize("pkg", PACKAGES)
def test_packages_import_only_to_their_left(pkg):
    bad = []
    for p, name, path in MODULES:
        if p != pkg:
            continue
        for mod, line in _imports(name, path):
            top = mod.split(".")[0]
            if top in PACKAGES and top != pkg and top not in ALLOWED[pkg]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, f"{pkg} may import only {sorted(ALLOWED[pkg]) or 'no other package'}:\n" + (
        "\n".join(bad)
    )


def test_ros_only_on_the_node_floor():
    bad = []
    for _, name, path in MODULES:
        if _node_floor(name):
            continue
        for mod, line in _imports(name, path, top_level=name in DOORS):
            if mod.split(".")[0] in ROS_ONLY:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "rclpy / messages / launch outside <pkg>/ros/:\n" + "\n".join(bad)


def test_the_core_never_imports_a_node_floor():
    bad = []
    for _, name, path in MODULES:
        if _node_floor(name):
            continue
        for mod, line in _imports(name, path, top_level=name in DOORS):
            if mod.split(".")[0] in PACKAGES and _node_floor(mod):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "core modules importing a node floor:\n" + "\n".join(bad)


def test_nothing_imports_benchmarks():
    bad = []
    for _, name, path in MODULES:
        for mod, line in _imports(name, path):
            if mod.split(".")[0] in ("benchmarks", "conftest"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The graph includes imports inside functions and resolves relative ones."""
    pkg = tmp_path / "pkg" / "sub"
    pkg.mkdir(parents=True)
    mod = pkg / "mod.py"
    mod.write_text("from .. import other\n\ndef f():\n    import rclpy\n    from .x import y\n")
    got = {m for m, _ in _imports("pkg.sub.mod", mod)}
    assert {"pkg.other", "rclpy", "pkg.sub.x", "pkg.sub.x.y"} <= got
    top = {m for m, _ in _imports("pkg.sub.mod", mod, top_level=True)}
    assert "pkg.other" in top and "rclpy" not in top and "pkg.sub.x" not in top


def test_doors_exist():
    names = {m for _, m, _ in MODULES}
    missing = {d for d in DOORS if d not in names}
    assert not missing, f"DOORS names modules that are gone: {sorted(missing)}"


#: a function longer than this (``def`` to its last line, docstring included) says why
MAX_FUNCTION_LINES = 80


def _long_functions(path: Path) -> list[tuple[int, str, int, str]]:
    """(line, name, length, docstring) of every function or method over MAX_FUNCTION_LINES."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append((node.lineno, node.name, length, ast.get_docstring(node) or ""))
    return found


def test_long_functions_say_why_they_are_kept_whole():
    """A function over MAX_FUNCTION_LINES lines states in its docstring, after "Kept whole:",
    why it is not split (issue #18)."""
    bad = []
    for _, _, path in MODULES:
        for line, name, length, doc in _long_functions(path):
            if "Kept whole:" not in doc:
                bad.append(f"{path.relative_to(ROOT)}:{line} {name} ({length} lines)")
    assert not bad, (
        f"functions over {MAX_FUNCTION_LINES} lines: split them into well-named helpers, or say "
        'why they stay whole in a docstring sentence starting with "Kept whole:":\n'
        + "\n".join(bad)
    )


def test_the_length_check_counts_def_to_end_and_finds_methods(tmp_path):
    """Lines count from ``def`` to the function's last line; methods and nested functions count."""
    mod = tmp_path / "mod.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 2))
    mod.write_text(
        f'@staticmethod\ndef short():\n    """Doc."""\n{body}\n\n\n'
        f'class C:\n    def long(self):\n        """Kept whole: why."""\n'
        + "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))
        + "\n"
    )
    got = [(name, length, "Kept whole:" in doc) for _, name, length, doc in _long_functions(mod)]
    assert got == [("long", MAX_FUNCTION_LINES + 1, True)]


#: package -> its exception root (one per package, issue #18)
ROOTS = {
    "sim_bridge": "SwarmError",
    "cbf_filter": "CBFError",
    "lgtc_policy": "LgtcError",
    "dmar_agent": "DmarError",
}


def _exception_classes(pkg: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (where, base names) of every class of ``pkg`` whose name ends in Error."""
    out = {}
    for p, _, path in MODULES:
        if p != pkg:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                bases = [
                    b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "")
                    for b in node.bases
                ]
                out[node.name] = (f"{path.relative_to(ROOT)}:{node.lineno}", bases)
    return out


@pytest.mark.parametrize("pkg", PACKAGES)
def test_one_exception_root_per_package(pkg):
    """Every ``...Error`` class of a package derives from the package's root, directly or
    through another of its classes, so ``except <Root>`` catches all of them."""
    classes = _exception_classes(pkg)
    root = ROOTS[pkg]
    assert root in classes, f"{pkg} defines no {root}"

    def rooted(name: str, seen: frozenset = frozenset()) -> bool:
        if name == root:
            return True
        if name not in classes or name in seen:
            return False
        return any(rooted(b, seen | {name}) for b in classes[name][1])

    bad = [
        f"{where} {name}{tuple(bases)}"
        for name, (where, bases) in classes.items()
        if not rooted(name)
    ]
    assert not bad, f"{pkg}: exceptions not derived from {root}:\n" + "\n".join(bad)


def _console_targets() -> set[str]:
    """Modules named by a ``console_scripts`` entry point of the four packages' setup.py."""
    import re

    found = set()
    for pkg in PACKAGES:
        text = (SRC / pkg / "setup.py").read_text()
        found |= set(re.findall(r'"[\w-]+\s*=\s*([\w.]+):\w+"', text))
    return found


def test_python_m_only_where_a_console_script_exists():
    """``if __name__ == "__main__"`` only in modules that a console script also runs (one door
    per job, issue #18)."""
    targets = _console_targets()
    bad = []
    for _, name, path in MODULES:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            test = getattr(node, "test", None)
            if isinstance(node, ast.If) and "__main__" in ast.unparse(test) and name not in targets:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} ({name})")
    assert "sim_bridge.cli" in targets and "dmar_agent.ros.node" in targets
    assert not bad, "python -m entry points without a console script:\n" + "\n".join(bad)
