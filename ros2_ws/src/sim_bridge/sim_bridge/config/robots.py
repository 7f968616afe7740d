"""The ``robot_types`` and ``robots`` sections: the defaults layer, each robot's kind,
backend, body, links, resources and battery, and its start pose."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sim_bridge.config.checks import (
    MISSING,
    Checker,
    describe,
    fill,
    first_missing,
    is_num,
    join,
    read,
    rules_of,
)
from sim_bridge.config.limits import (
    BACKENDS,
    KIND_DEFAULTS,
    RESERVED_NAMES,
    TOPIC_RE,
    URI_RE,
)
from sim_bridge.config.schema import Arena, BatteryConfig, ResourceSpec, RobotConfig

#: Keys a robot and a ``robot_types`` entry may set (a robot also has ``name``, ``type``,
#: ``pose``).
ROBOT_FIELDS = (
    "kind",
    "backend",
    "uri",
    "radius",
    "max_speed",
    "max_yaw_rate",
    "takeoff_height",
    "resources",
    "battery",
    "cmd_topic",
    "odom_topic",
    "mocap_topic",
)
_TOPIC_KEYS = ("cmd_topic", "odom_topic", "mocap_topic")


def robot_types(c: Checker, value: Any) -> dict[str, dict[str, Any]]:
    """``robot_types``: type name -> its robot keys (checked when a robot uses them)."""
    if value is None:
        return {}
    m = c.free_mapping(value, "robot_types")
    if m is None:
        return {}
    out = {}
    for tname, body in m.items():
        path = join("robot_types", tname)
        if c.name(tname, path) is None:
            continue
        fields = c.mapping(body, path, ROBOT_FIELDS)
        if fields is not None:
            out[tname] = fields
    return out


def resources(
    c: Checker, value: Any, path: str, origin: dict[str, str] | None = None
) -> dict[str, ResourceSpec] | None:
    """Resource specs; ``origin`` maps a type to the path it came from (robot or its type)."""
    if value is None:
        return {}
    m = c.free_mapping(value, path)
    if m is None:
        return None
    rules = rules_of(ResourceSpec)
    out = {}
    for rname, spec in m.items():
        rpath = join((origin or {}).get(rname, path), rname)
        if c.name(rname, rpath) is None:
            continue
        if is_num(spec):
            c.err(
                rpath,
                "a bare number does not say how the resource depletes",
                f"write `{rname}: {{amount: {spec}, depletion: persistent|instantaneous}}`",
            )
            continue
        if isinstance(spec, Mapping) and "rate" in spec:
            c.err(
                f"{rpath}.rate",
                "resources are not drained at a rate: a persistent supply covers the demand "
                "while the robot stays inside R_m and is never consumed (LGTC Sec. II)",
                "remove `rate`; model a battery running out with a `discharge` event",
            )
            spec = {k: v for k, v in spec.items() if k != "rate"}
        fields = c.mapping(spec, rpath, tuple(rules))
        if fields is None or not first_missing(c, fields, rpath, rules):
            continue
        values, ok = read(c, fields, rpath, rules)
        if ok:
            out[rname] = ResourceSpec(**values)
    return out


def robots(c: Checker, value: Any, types: dict, arena: Arena | None) -> list[RobotConfig]:
    """The ``robots`` list; a robot with a problem is left out (its problems reported)."""
    if value is MISSING:
        c.err("robots", "missing", "add a `robots:` list")
        return []
    items = c.seq(value, "robots")
    if items is None:
        return []
    if not items:
        c.err("robots", "the list is empty", "add at least one robot")
    out = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        path = f"robots[{i}]"
        m = c.mapping(item, path, ("name", "type", "pose", *ROBOT_FIELDS))
        if m is None:
            continue
        c.declared["robots"].append(m.get("name"))
        raw = m.get("name")
        if isinstance(raw, str) and raw in seen:
            c.err(
                f"{path}.name",
                f"duplicate name {raw!r} (also robots[{seen[raw]}])",
                "give every robot a unique name",
            )
            continue
        if isinstance(raw, str):
            seen[raw] = i
        robot = _robot(c, m, path, types, arena)
        if robot is None:
            continue
        c.robot_paths[robot.name] = path
        out.append(robot)
    return out


def _robot(c: Checker, m: dict, path: str, types: dict, arena: Arena | None) -> RobotConfig | None:
    """One robot: its own keys over its type's; ``None`` after reporting its problems."""
    n_before = len(c.problems)
    rules = rules_of(RobotConfig)
    if "name" not in m:
        c.err(f"{path}.name", "missing", rules["name"].missing)
        return None
    name = c.name(m["name"], f"{path}.name")
    if name is not None and name in RESERVED_NAMES:
        c.err(f"{path}.name", f"{name!r} is reserved", f"pick a name other than {RESERVED_NAMES}")
    layered = _layered(c, m, path, types)
    if layered is None:
        return None
    base, merged, src = layered
    if "kind" not in merged:
        c.err(f"{path}.kind", "missing", rules["kind"].missing)
        return None
    kind = c.value(merged["kind"], src["kind"], rules["kind"])
    if kind is None:
        return None
    backend = "sim"
    if "backend" in merged:
        backend = c.string(merged["backend"], src["backend"], BACKENDS[kind])
    body = _body(c, merged, src, path, kind, arena)
    pose = None
    if "pose" not in m:
        c.err(f"{path}.pose", "missing", rules["pose"].missing)
    else:
        pose = _pose(c, m["pose"], f"{path}.pose", arena)
    uri, topics = _links(c, merged, src, path, backend)
    supplies = _robot_resources(c, m, base, merged, src, path)
    battery = _battery(c, m, merged, src, path, backend)
    if len(c.problems) > n_before or name is None or backend is None or supplies is None:
        return None
    if pose is None or any(v is None for v in body.values()):
        return None
    return RobotConfig(
        name=name,
        kind=kind,
        backend=backend,
        uri=uri,
        pose=pose,
        **body,
        resources=supplies,
        battery=battery,
        **topics,
    )


def _layered(
    c: Checker, m: dict, path: str, types: dict
) -> tuple[dict, dict[str, Any], dict[str, str]] | None:
    """``(type keys, merged keys, key -> path it came from)``; ``None`` for an unknown type.
    A robot's own keys win over its type's; ``resources`` merge per resource type."""
    base: dict[str, Any] = {}
    if "type" in m:
        tname = m["type"]
        if not isinstance(tname, str) or tname not in types:
            known = sorted(types) or ["(none defined)"]
            c.err(f"{path}.type", f"unknown robot type {describe(tname)}", f"use one of {known}")
            return None
        base = dict(types[tname])
    merged = {**base, **{k: v for k, v in m.items() if k in ROBOT_FIELDS}}
    if isinstance(base.get("resources"), Mapping) and isinstance(m.get("resources"), Mapping):
        merged["resources"] = {**base["resources"], **m["resources"]}
    src = {k: (f"{path}.{k}" if k in m else f"robot_types.{m.get('type')}.{k}") for k in merged}
    return base, merged, src


def _body(
    c: Checker, merged: dict, src: dict, path: str, kind: str, arena: Arena | None
) -> dict[str, float | None]:
    """Radius, speed and yaw-rate limits and take-off height, the kind's defaults filling in."""
    rules = rules_of(RobotConfig)
    defaults = KIND_DEFAULTS[kind]
    body: dict[str, float | None] = {}
    for key in ("radius", "max_speed", "max_yaw_rate"):
        body[key] = c.value(merged[key], src[key], rules[key]) if key in merged else defaults[key]
    height: float | None = defaults["takeoff_height"]
    if "takeoff_height" in merged:
        if kind == "ground":
            c.err(src["takeoff_height"], "ground robots do not take off", "remove takeoff_height")
            height = 0.0
        else:
            height = c.value(
                merged["takeoff_height"], src["takeoff_height"], rules["takeoff_height"]
            )
    body["takeoff_height"] = height
    if kind == "crazyflie" and arena is not None and height is not None and height > arena.z[1]:
        c.err(
            src.get("takeoff_height", f"{path}.takeoff_height"),
            f"{height} m is above the arena ceiling {arena.z[1]} m",
            "lower it or raise arena.z",
        )
    return body


def _links(
    c: Checker, merged: dict, src: dict, path: str, backend: str | None
) -> tuple[str | None, dict[str, str | None]]:
    """The radio URI and the driver / mocap topics, checked against the backend."""
    rules = rules_of(RobotConfig)
    uri = None
    if "uri" in merged and merged["uri"] is not None:
        uri = c.value(merged["uri"], src["uri"], rules["uri"])
        if uri is not None and not URI_RE.fullmatch(uri):
            c.err(
                src["uri"],
                f"{describe(uri)} is not a Crazyflie URI",
                "e.g. radio://0/80/2M/E7E7E7E701",
            )
    if backend == "cflib" and uri is None and "uri" not in merged:
        c.err(
            f"{path}.uri", "a cflib robot needs a radio URI", "add uri: radio://0/80/2M/E7E7E7E7xx"
        )
    topics: dict[str, str | None] = {}
    for key in _TOPIC_KEYS:
        topics[key] = None
        if key in merged and merged[key] is not None:
            topics[key] = c.value(merged[key], src[key], rules[key])
            if topics[key] is not None and not TOPIC_RE.fullmatch(topics[key]):
                c.err(
                    src[key],
                    f"{describe(topics[key])} is not a valid topic name",
                    "e.g. /robot1/odom",
                )
    if backend == "external":
        for key in ("cmd_topic", "odom_topic"):
            if topics[key] is None and key not in merged:
                c.err(f"{path}.{key}", "an external robot needs it", f"add `{key}: /<driver>/...`")
    elif backend == "sim":
        for key in ("cmd_topic", "odom_topic"):
            if topics[key] is not None:
                c.err(src[key], "only used by backend external", f"remove {key}")
    return uri, topics


def _robot_resources(
    c: Checker, m: dict, base: dict, merged: dict, src: dict, path: str
) -> dict[str, ResourceSpec] | None:
    """The robot's resources, each problem named at the robot or type entry that wrote it."""
    origin = {}
    if isinstance(base.get("resources"), Mapping):
        origin = {k: f"robot_types.{m.get('type')}.resources" for k in base["resources"]}
    if isinstance(m.get("resources"), Mapping):
        origin.update({k: f"{path}.resources" for k in m["resources"]})
    return resources(c, merged.get("resources", {}), src.get("resources", path), origin)


def _battery(
    c: Checker, m: dict, merged: dict, src: dict, path: str, backend: str | None
) -> BatteryConfig | None:
    """Battery thresholds (``critical_v < warning_v``); only cflib robots read them."""
    if "battery" not in merged or merged["battery"] is None:
        return None
    battery = fill(c, merged["battery"], src["battery"], BatteryConfig)
    if battery is not None and battery.critical_v >= battery.warning_v:
        c.err(src["battery"], "critical_v must be below warning_v", "e.g. 3.5 / 3.2 V")
    if backend != "cflib" and "battery" in m:
        c.warn(f"{path}.battery", "only cflib robots read a battery", "remove it")
    return battery


def _pose(
    c: Checker, value: Any, path: str, arena: Arena | None
) -> tuple[float, float, float, float] | None:
    """``[x, y]`` to ``[x, y, z, yaw]`` (missing ones 0), inside the arena."""
    items = c.seq(value, path)
    if items is None:
        return None
    if not 2 <= len(items) <= 4:
        c.err(path, f"expected 2 to 4 values, got {len(items)}", "write [x, y, z, yaw]")
        return None
    vals = [c.number(v, f"{path}[{k}]") for k, v in enumerate(items)]
    if any(v is None for v in vals):
        return None
    vals = vals + [0.0] * (4 - len(vals))
    x, y, z, yaw = (float(v) for v in vals)
    if arena is not None:
        if not arena.contains_xy(x, y):
            c.err(
                path,
                f"({x}, {y}) is outside the arena x {list(arena.x)}, y {list(arena.y)}",
                "move the robot inside the arena or enlarge it",
            )
            return None
        if not arena.z[0] <= z <= arena.z[1]:
            c.err(f"{path}[2]", f"z = {z} is outside arena.z {list(arena.z)}", "start on the floor")
            return None
    return (x, y, z, yaw)


def check_depletion(c: Checker, robots: list[RobotConfig]) -> None:
    """A resource type has one depletion kind across all robots."""
    first: dict[str, tuple[str, str]] = {}
    for robot in robots:
        for rname, spec in robot.resources.items():
            if rname not in first:
                first[rname] = (spec.depletion, robot.name)
            elif first[rname][0] != spec.depletion:
                kind, other = first[rname]
                c.err(
                    f"{c.robot_paths[robot.name]}.resources.{rname}.depletion",
                    f"{rname!r} is {spec.depletion} here but {kind} on robot {other!r}",
                    "a resource type has one depletion kind; make them equal",
                )
