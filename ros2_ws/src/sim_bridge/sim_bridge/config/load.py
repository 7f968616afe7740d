""":func:`load_config` and :func:`validate`: plain data through every section's checks into a
frozen :class:`~sim_bridge.config.swarm.SwarmConfig`, or one :class:`ConfigError` listing
every problem."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim_bridge.config.checks import MISSING, Checker, describe, fill, rules_of
from sim_bridge.config.consumers import check_supply, consumers, events
from sim_bridge.config.geometry import check_consumer_geometry, check_robot_geometry
from sim_bridge.config.limits import (
    FILEVERSION,
    MAX_ARENA_M,
    MAX_CONSUMERS,
    MAX_EVENTS,
    MAX_RESOURCE_TYPES,
    MAX_ROBOTS,
)
from sim_bridge.config.parse import read_source
from sim_bridge.config.problems import ConfigError, Problem
from sim_bridge.config.robots import check_depletion, robot_types, robots
from sim_bridge.config.routing import routing, routing_radii
from sim_bridge.config.schema import (
    Arena,
    ConsumerConfig,
    PolicyConfig,
    Rates,
    RobotConfig,
    Safety,
)
from sim_bridge.config.swarm import SwarmConfig
from sim_bridge.topics import CMD_TIMEOUT_S

TOP_KEYS = (
    "fileversion",
    "seed",
    "arena",
    "resource_types",
    "comm_radius",
    "sensing_radius",
    "rates",
    "safety",
    "policy",
    "robot_types",
    "robots",
    "consumers",
    "events",
    "routing",
)


def load_config(source: str | os.PathLike | Mapping[str, Any]) -> SwarmConfig:
    """Parse and validate a swarm file (path) or already-parsed mapping.

    Raises:
        ConfigError: listing every problem (key path, message, fix).
    """
    data, name, problems = read_source(source)
    if problems:
        raise ConfigError(problems, name)
    try:
        cfg, checker = build(data, Path(name).parent if name else None)
    except RecursionError:
        raise ConfigError(
            [Problem("<root>", "data nested too deeply", "flatten the file")], name
        ) from None
    if checker.problems:
        raise ConfigError(checker.problems, name)
    assert cfg is not None
    return SwarmConfig(**{**cfg.__dict__, "source": name})


def validate(source: str | os.PathLike | Mapping[str, Any]) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings) of a swarm file without raising."""
    try:
        cfg = load_config(source)
    except ConfigError as exc:
        return exc.problems, []
    return [], list(cfg.warnings)


@dataclass
class _Head:
    """The top-level scalars and small sections, as read (``None`` where reported)."""

    seed: int | None
    arena: Arena | None
    has_routing: bool
    comm_radius: float | None
    sensing_radius: float | None
    rates: Rates | None
    safety: Safety | None
    policy: PolicyConfig | None


def build(data: Any, base: Path | None = None) -> tuple[SwarmConfig | None, Checker]:
    """Validate plain data; ``base`` is the directory relative file paths start from (the swarm
    file's; the working directory for a mapping)."""
    c = Checker()
    top = c.mapping(data, "", TOP_KEYS) if data is not None else None
    if data is None:
        c.err("<root>", "the file is empty", "start from launch/example.yaml")
    if top is None:
        return None, c
    if not _within_count_limits(c, top):
        # one line per list over its limit, in O(1): the lists are not read at all
        return None, c
    head = _head(c, top)
    declared = _declared_types(c, top)
    types = robot_types(c, top.get("robot_types", {}))
    fleet = robots(c, top.get("robots", MISSING), types, head.arena)
    served = consumers(c, top.get("consumers", []), head.arena)
    resource_types = _resource_types(c, fleet, served, declared)
    if resource_types is None:
        c.unique()
        return None, c
    check_depletion(c, fleet)
    check_robot_geometry(c, fleet)
    check_consumer_geometry(c, served)
    timeline = events(c, top.get("events", []), resource_types)
    _warn_radii(c, head, fleet)
    check_supply(c, fleet, served, resource_types)
    route = None
    if head.has_routing and head.arena is not None:
        route = routing(c, top["routing"], head.arena, fleet, base, int(head.seed or 0))
        if route is not None:
            head.comm_radius, head.sensing_radius = routing_radii(
                c, top, route, head.comm_radius, head.sensing_radius
            )
    c.unique()
    if c.problems:
        return None, c
    assert head.arena is not None and head.rates is not None and head.safety is not None
    assert head.policy is not None
    cfg = SwarmConfig(
        fileversion=FILEVERSION,
        seed=int(head.seed),
        arena=head.arena,
        resource_types=resource_types,
        robots=tuple(fleet),
        consumers=tuple(served),
        comm_radius=float(head.comm_radius),
        sensing_radius=float(head.sensing_radius),
        rates=head.rates,
        safety=head.safety,
        policy=head.policy,
        events=tuple(timeline),
        routing=route,
        warnings=tuple(c.warnings),
    )
    return cfg, c


def _within_count_limits(c: Checker, top: dict[str, Any]) -> bool:
    """Report each top-level list longer than its limit; False if any is."""
    ok = True
    for key, limit, what in (
        ("robots", MAX_ROBOTS, "robots"),
        ("consumers", MAX_CONSUMERS, "consumers"),
        ("events", MAX_EVENTS, "events"),
        ("resource_types", MAX_RESOURCE_TYPES, "resource types"),
    ):
        items = top.get(key)
        if isinstance(items, list | tuple) and len(items) > limit:
            c.err(
                key,
                f"{len(items)} {what}, more than the limit of {limit} per swarm file",
                f"list at most {limit} {what} (sim_bridge.config.MAX_{key.upper()})",
            )
            ok = False
    return ok


def _head(c: Checker, top: dict[str, Any]) -> _Head:
    """``fileversion``, ``seed``, ``arena``, the radii, ``rates``, ``safety`` and ``policy``."""
    fileversion = top.get("fileversion", MISSING)
    if fileversion is MISSING:
        c.err("fileversion", "missing", f"add `fileversion: {FILEVERSION}`")
    elif fileversion != FILEVERSION or isinstance(fileversion, bool):
        c.err("fileversion", f"unsupported version {describe(fileversion)}", f"use {FILEVERSION}")
    rules = rules_of(SwarmConfig)
    seed = c.value(top["seed"], "seed", rules["seed"]) if "seed" in top else 0
    arena = _arena(c, top.get("arena", MISSING))
    # a routing mission derives both radii from routing.k (checked in routing_radii)
    has_routing = top.get("routing") is not None
    comm_radius = _radius(c, top, "comm_radius", 1.0 if has_routing else None)
    sensing_radius = _radius(c, top, "sensing_radius", 1.0)
    rates = _rates(c, top.get("rates", {}))
    safety = fill(c, top.get("safety", {}), "safety", Safety)
    policy_value = top.get("policy", {})
    policy = (
        PolicyConfig() if policy_value is None else fill(c, policy_value, "policy", PolicyConfig)
    )
    return _Head(seed, arena, has_routing, comm_radius, sensing_radius, rates, safety, policy)


def _radius(c: Checker, top: dict, key: str, default: float | None) -> float | None:
    """``comm_radius`` / ``sensing_radius``; required where ``default`` is ``None``."""
    spec = rules_of(SwarmConfig)[key]
    if key not in top:
        if default is None:
            c.err(key, "missing", spec.missing)
        return default
    return c.value(top[key], key, spec)


def _arena(c: Checker, value: Any) -> Arena | None:
    """``arena: {x: [min, max], y: [min, max], z: [0, ceiling]}`` (``z`` defaults to [0, 2])."""
    if value is MISSING:
        c.err("arena", "missing", "add `arena: {x: [-2, 2], y: [-2, 2], z: [0, 2]}`")
        return None
    m = c.mapping(value, "arena", ("x", "y", "z"))
    if m is None:
        return None
    out = {}
    for axis in ("x", "y"):
        if axis not in m:
            c.err(f"arena.{axis}", "missing", f"add `{axis}: [min, max]` in metres")
            continue
        out[axis] = c.pair(m[axis], f"arena.{axis}")
    out["z"] = c.pair(m["z"], "arena.z") if "z" in m else (0.0, 2.0)
    for axis, pair in out.items():
        if pair is not None and max(abs(pair[0]), abs(pair[1])) > MAX_ARENA_M:
            c.err(
                f"arena.{axis}",
                f"{list(pair)} reaches beyond {MAX_ARENA_M:g} m",
                f"give the walls in metres, within +-{MAX_ARENA_M:g}",
            )
            return None
    if out["z"] is not None and out["z"][0] < 0.0:
        c.err("arena.z", f"floor {out['z'][0]} is below 0", "the floor is z = 0; use [0, ceiling]")
        return None
    if any(out.get(a) is None for a in ("x", "y", "z")):
        return None
    return Arena(out["x"], out["y"], out["z"])


def _rates(c: Checker, value: Any) -> Rates | None:
    """``rates``, each > 0, the controllers fast enough that a command is still fresh when the
    next one comes, the simulator stepping at least as fast as the controllers."""
    rates = fill(c, value, "rates", Rates)
    if rates is None:
        return None
    if rates.control_hz * CMD_TIMEOUT_S < 1.0:
        # also keeps sim_hz >= control_hz away from a 1e-300 Hz step timer (an overflow)
        c.err(
            "rates.control_hz",
            f"{rates.control_hz} Hz is too slow: a command is fresh for {CMD_TIMEOUT_S} s "
            "only (CMD_TIMEOUT_S), so every robot would stop between two commands",
            f"use a value >= {math.ceil(100.0 / CMD_TIMEOUT_S) / 100:g} Hz (e.g. 20)",
        )
        return None
    if rates.sim_hz < rates.control_hz:
        c.err(
            "rates.sim_hz",
            f"{rates.sim_hz} Hz is below control_hz {rates.control_hz} Hz",
            "step the simulator at least as fast as the controllers",
        )
        return None
    if rates.sim_hz > 2000.0:
        c.err("rates.sim_hz", f"{rates.sim_hz} Hz is unrealistic", "use <= 2000 Hz")
        return None
    if rates.clock_hz > rates.sim_hz:
        c.warn(
            "rates.clock_hz",
            "is above sim_hz; /clock is published at most once a step",
            f"use a value <= sim_hz ({rates.sim_hz:g})",
        )
    return rates


def _declared_types(c: Checker, top: dict[str, Any]) -> list[str] | None:
    """``resource_types`` as listed (unique ROS names), or ``None`` when not given."""
    if "resource_types" not in top:
        return None
    items = c.seq(top["resource_types"], "resource_types")
    if items is None:
        return None
    declared: list[str] = []
    for k, item in enumerate(items):
        nm = c.name(item, f"resource_types[{k}]")
        if nm is not None:
            if nm in declared:
                c.err(f"resource_types[{k}]", f"duplicate type {nm!r}", "list it once")
            else:
                declared.append(nm)
    return declared


def _resource_types(
    c: Checker,
    fleet: list[RobotConfig],
    served: list[ConsumerConfig],
    declared: list[str] | None,
) -> tuple[str, ...] | None:
    """The column order of resources: ``resource_types`` as listed (every type used must be
    in it), else the sorted types used; ``None`` when more than the limit are used."""
    used = sorted({k for r in fleet for k in r.resources} | {k for m in served for k in m.demand})
    if len(used) > MAX_RESOURCE_TYPES:
        c.err(
            "resource_types",
            f"robots and consumers use {len(used)} resource types, more than the limit of "
            f"{MAX_RESOURCE_TYPES}",
            f"use at most {MAX_RESOURCE_TYPES} types",
        )
        return None
    if declared is None:
        return tuple(used)
    fix = f"add it to resource_types or use one of {declared}"
    for r in fleet:
        for k in r.resources:
            if k not in declared:
                message = f"resource type {k!r} is not in resource_types"
                c.err(f"{c.robot_paths[r.name]}.resources.{k}", message, fix)
    for m, cons in enumerate(served):
        for k in cons.demand:
            if k not in declared:
                c.err(
                    f"consumers[{m}].demand.{k}",
                    f"resource type {k!r} is not in resource_types",
                    fix,
                )
    return tuple(declared)


def _warn_radii(c: Checker, head: _Head, fleet: list[RobotConfig]) -> None:
    """Warn when ``safety.distance`` is below the two largest body radii, and (outside a
    routing mission) when ``sensing_radius`` exceeds ``comm_radius``."""
    safety = head.safety
    if safety is not None and fleet:
        radii = sorted((r.radius for r in fleet), reverse=True)
        need = radii[0] + (radii[1] if len(radii) > 1 else radii[0])
        if safety.distance < need - 1e-9:
            c.warn(
                "safety.distance",
                f"{safety.distance} m is below the sum of the two largest body radii ({need} m)",
                "raise it so the CBF keeps bodies apart",
            )
    comm, sensing = head.comm_radius, head.sensing_radius
    if not head.has_routing and comm is not None and sensing is not None and sensing > comm:
        c.warn(
            "sensing_radius",
            f"{sensing} m exceeds comm_radius {comm} m",
            "usually sensing_radius <= comm_radius",
        )
