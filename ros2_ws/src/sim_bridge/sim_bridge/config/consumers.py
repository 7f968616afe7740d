"""The ``consumers`` and ``events`` sections, and the supply/demand balance of the mission."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sim_bridge.config.checks import MISSING, Checker, describe, join, one_of, present, rules_of
from sim_bridge.config.limits import EVENT_TYPES
from sim_bridge.config.schema import Arena, ConsumerConfig, Event, RobotConfig

#: Keys of each event type.
EVENT_KEYS = {
    "discharge": ("t", "type", "robot", "select", "resource", "amount"),
    "fail": ("t", "type", "robot", "select"),
    "takeoff": ("t", "type", "robot"),
    "land": ("t", "type", "robot", "select"),
    "demand": ("t", "type", "consumer", "resource", "amount"),
}
#: Event types that may pick their robot when they fire (``select``) instead of naming it.
SELECTABLE = ("discharge", "fail", "land")


def consumers(c: Checker, value: Any, arena: Arena | None) -> list[ConsumerConfig]:
    """The ``consumers`` list; a consumer with a problem is left out (its problems reported)."""
    if value is None:
        return []
    items = c.seq(value, "consumers")
    if items is None:
        return []
    out = []
    seen: dict[str, int] = {}
    for m_idx, item in enumerate(items):
        path = f"consumers[{m_idx}]"
        m = c.mapping(item, path, tuple(rules_of(ConsumerConfig)))
        if m is None:
            continue
        c.declared["consumers"].append(m.get("name"))
        consumer = _consumer(c, m, path, arena, seen)
        if consumer is not None:
            seen[consumer.name] = m_idx
            out.append(consumer)
    return out


def _consumer(
    c: Checker, m: dict, path: str, arena: Arena | None, seen: dict[str, int]
) -> ConsumerConfig | None:
    """One consumer; ``None`` after reporting its problems."""
    rules = rules_of(ConsumerConfig)
    n_before = len(c.problems)
    name = None
    if present(c, m, path, "name", rules["name"]):
        name = c.name(m["name"], f"{path}.name")
    if name is not None and name in seen:
        c.err(f"{path}.name", f"duplicate name {name!r}", "give every consumer a unique name")
    position = None
    if present(c, m, path, "position", rules["position"]):
        position = _position(c, m["position"], f"{path}.position", arena)
    radius = None
    if present(c, m, path, "radius", rules["radius"]):
        radius = c.value(m["radius"], f"{path}.radius", rules["radius"])
    demand: dict[str, float] = {}
    if present(c, m, path, "demand", rules["demand"]):
        demand = _demand(c, m["demand"], f"{path}.demand")
    if len(c.problems) > n_before:
        return None
    return ConsumerConfig(name, position, radius, demand)


def _position(c: Checker, value: Any, path: str, arena: Arena | None) -> tuple[float, float] | None:
    """A consumer's floor position ``[x, y]`` [m], inside the arena."""
    items = c.seq(value, path)
    if items is None:
        return None
    if len(items) != 2:
        c.err(path, f"expected [x, y], got {len(items)}", "write [x, y]")
        return None
    xs = [c.number(v, f"{path}[{k}]") for k, v in enumerate(items)]
    if None in xs:
        return None
    position = (float(xs[0]), float(xs[1]))
    if arena is not None and not arena.contains_xy(*position):
        c.err(
            path,
            f"{list(position)} is outside the arena x {list(arena.x)}, y {list(arena.y)}",
            "move the consumer inside the arena",
        )
    return position


def _demand(c: Checker, value: Any, path: str) -> dict[str, float]:
    """``{type: amount}``, amounts >= 0."""
    demand: dict[str, float] = {}
    for rname, amount in (c.free_mapping(value, path) or {}).items():
        rpath = join(path, rname)
        if c.name(rname, rpath) is None:
            continue
        val = c.number(amount, rpath, low=0.0)
        if val is not None:
            demand[rname] = val
    return demand


def events(c: Checker, value: Any, resource_types: tuple[str, ...]) -> list[Event]:
    """The ``events`` list sorted by time; references are checked against the robots and
    consumers as written (a robot with a problem of its own still counts)."""
    if value is None:
        return []
    items = c.seq(value, "events")
    if items is None:
        return []
    known = {
        kind: (names, {n for n in names if isinstance(n, str)})
        for kind, names in c.declared.items()
    }  # sets for the look-ups (E x N list scans are slow at the limits)
    out = []
    for k, item in enumerate(items):
        event = _event(c, item, f"events[{k}]", known, resource_types)
        if event is not None:
            out.append(event)
    out.sort(key=lambda e: e.t)
    return out


def _event(
    c: Checker,
    item: Any,
    path: str,
    known: dict[str, tuple[list, set]],
    resource_types: tuple[str, ...],
) -> Event | None:
    """One event; ``None`` after reporting its problems."""
    if not isinstance(item, Mapping):
        c.mapping(item, path, ())
        return None
    rules = rules_of(Event)
    etype = item.get("type", MISSING)
    if etype is MISSING:
        c.err(f"{path}.type", "missing", f"add `type: {'|'.join(EVENT_TYPES)}`")
        return None
    etype = c.value(etype, f"{path}.type", rules["type"])
    if etype is None:
        return None
    m = c.mapping(item, path, EVENT_KEYS[etype])
    if m is None:
        return None
    n_before = len(c.problems)
    kwargs: dict[str, Any] = {"type": etype}
    for key in EVENT_KEYS[etype]:
        if key in ("type", "select") or key in m:
            continue
        if key == "robot" and etype in SELECTABLE:
            if "select" not in m:
                c.err(
                    f"{path}.robot",
                    "missing",
                    f"a {etype} event needs `robot: NAME` or `select: "
                    f"{'|'.join(rules['select'].choices)}`",
                )
            continue
        c.err(f"{path}.{key}", "missing", f"a {etype} event needs `{key}`")
    if "robot" in m and "select" in m:
        c.err(f"{path}.select", "given with `robot`", "keep one of `robot` and `select`")
    elif "select" in m:
        kwargs["select"] = c.value(m["select"], f"{path}.select", rules["select"])
    if "t" in m:
        kwargs["t"] = c.value(m["t"], f"{path}.t", rules["t"])
    for key, names in (("robot", "robots"), ("consumer", "consumers")):
        if key not in m:
            continue
        written, valid = known[names]
        if isinstance(m[key], str) and m[key] in valid:
            kwargs[key] = m[key]
        else:
            c.err(f"{path}.{key}", f"unknown {key} {describe(m[key])}", one_of(written))
    if "resource" in m and m["resource"] not in resource_types:
        c.err(
            f"{path}.resource",
            f"unknown resource type {describe(m['resource'])}",
            f"use one of {list(resource_types)}",
        )
    elif "resource" in m:
        kwargs["resource"] = m["resource"]
    if "amount" in m:
        kwargs["amount"] = c.value(m["amount"], f"{path}.amount", rules["amount"])
    return Event(**kwargs) if len(c.problems) == n_before else None


def check_supply(
    c: Checker,
    robots: list[RobotConfig],
    consumers: list[ConsumerConfig],
    resource_types: tuple[str, ...],
) -> None:
    """Warn about a demanded type nobody carries, and about total supply above total demand
    (the LGTC paper, Sec. II, assumes sum of supplies <= sum of demands)."""
    supply = {
        k: sum(r.resources[k].amount for r in robots if k in r.resources) for k in resource_types
    }
    demand = {k: sum(m.demand.get(k, 0.0) for m in consumers) for k in resource_types}
    for k in resource_types:
        if demand[k] > 0 and supply[k] == 0:
            c.warn(
                f"consumers.demand.{k}",
                f"consumers demand {k!r} but no robot carries it",
                "give some robot that resource",
            )
    total_s, total_d = sum(supply.values()), sum(demand.values())
    if total_s > total_d + 1e-12:
        per = ", ".join(
            f"{k}: {supply[k]:g} > {demand[k]:g}" for k in resource_types if supply[k] > demand[k]
        )
        c.warn(
            "robots.resources",
            f"total supply {total_s:g} exceeds total demand {total_d:g} ({per}); the LGTC paper "
            "(Sec. II) assumes sum of supplies <= sum of demands for a unique allocation",
            "lower the supplies or raise the demands",
        )
