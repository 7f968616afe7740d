"""One way for a node to declare, describe and read its parameters (node floor: uses rclpy).

A node lists its parameters once, as a table of :class:`Param` (name, default, description,
an optional :class:`Rule`, whether it may change at run time), then::

    values = declare_and_read(self, PARAMETERS, error=config_error)

Every parameter is declared with a ``ParameterDescriptor`` (description, the rule's text as
``additional_constraints``, a closed numeric range where the rule has one, ``read_only`` unless
``dynamic``), so ``ros2 param describe`` tells a user what a value means and what is allowed.
The values read back are checked against the rules; the first bad one raises the node's own
error type with one line naming the parameter, what is wrong and the fix, e.g.
``share: must be in (0, 1], got 1.5 (fix: use 0.5)``.

Parameters marked ``dynamic`` may change while the node runs: :func:`on_set_callback` builds
the callback that checks the changed values against the same rules and hands them to the node
(``ros2 param set`` answers with the same one line when a value is refused).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.node import Node

#: Builds a package's exception from ``(parameter, problem, fix)``.
ErrorFactory = Callable[[str, str, str], Exception]


def config_error(name: str, problem: str, fix: str) -> Exception:
    """sim_bridge's error for a bad node parameter: a one-problem ``ConfigError``."""
    from sim_bridge.config import ConfigError, Problem

    return ConfigError([Problem(name, problem, fix)])


@dataclass(frozen=True)
class Rule:
    """What a parameter value must be.

    Attributes:
        test: ``test(value)`` is true for an acceptable value.
        text: the requirement as words, completing "must be ...", e.g. ``"> 0"``.
        fix: what to pass instead, e.g. ``"a duration [s] such as 0.5"``.
        low: closed lower bound for the descriptor's range, when the rule has one.
        high: closed upper bound for the descriptor's range, when the rule has one.
    """

    test: Callable[[Any], bool]
    text: str
    fix: str
    low: float | None = None
    high: float | None = None

    def problem(self, value: Any) -> str | None:
        """``None`` for an acceptable value, else ``"must be <text>, got <value>"``."""
        try:
            ok = bool(self.test(value))
        except (TypeError, ValueError):
            ok = False
        return None if ok else f"must be {self.text}, got {value!r}"


def positive(fix: str) -> Rule:
    """Finite and ``value > 0`` (NaN and infinities fail: every positive parameter is a rate, a
    duration, a gain or a size, and an infinite one overflows a timer or never ends a wait)."""
    return Rule(lambda v: 0.0 < float(v) < math.inf, "finite and > 0", fix)


def finite_positive(fix: str, unit: str = "") -> Rule:
    """Finite and ``value > 0`` (NaN and infinities fail): a duration, a rate, a voltage."""
    text = f"finite and > 0{' ' + unit if unit else ''}"
    return Rule(lambda v: 0.0 < float(v) < math.inf, text, fix)


def at_least(low: float, fix: str, unit: str = "") -> Rule:
    """Finite and ``value >= low``."""
    text = f">= {low:g}{' ' + unit if unit else ''}"
    return Rule(lambda v: math.isfinite(float(v)) and float(v) >= low, text, fix, low=low)


#: Shortest timer period [s] a rate or period parameter may ask for: rclpy keeps a period in
#: whole nanoseconds, so a much shorter one (``rate_hz:=1e300``) rounds to 0 ns, a timer that
#: fires without pause (a busy loop on one core).
MIN_TIMER_PERIOD_S = 1e-4
#: Longest timer period or wait [s] (about 11.6 days): a longer one (``rate_hz:=1e-300``)
#: overflows rclpy's int64 nanoseconds (``OverflowError``, a traceback) or never ends.
MAX_TIMER_PERIOD_S = 1e6


def timer_rate(fix: str, low: float = 1.0 / MAX_TIMER_PERIOD_S) -> Rule:
    """A rate [Hz] that becomes a timer: finite, in ``[low, 1 / MIN_TIMER_PERIOD_S]``."""
    high = 1.0 / MIN_TIMER_PERIOD_S
    return Rule(lambda v: low <= float(v) <= high, f"in [{low:g}, {high:g}] Hz", fix, low, high)


def timer_period(fix: str) -> Rule:
    """A period or wait [s] that becomes a timer or a deadline: finite, in
    ``[MIN_TIMER_PERIOD_S, MAX_TIMER_PERIOD_S]``."""
    low, high = MIN_TIMER_PERIOD_S, MAX_TIMER_PERIOD_S
    return Rule(lambda v: low <= float(v) <= high, f"in [{low:g}, {high:g}] s", fix, low, high)


def between(low: float, high: float, fix: str, open_low: bool = False) -> Rule:
    """``low <= value <= high`` (``low < value`` with ``open_low``)."""
    if open_low:
        return Rule(lambda v: low < float(v) <= high, f"in ({low:g}, {high:g}]", fix)
    return Rule(lambda v: low <= float(v) <= high, f"in [{low:g}, {high:g}]", fix, low, high)


def one_of(choices: Iterable[str], fix: str | None = None) -> Rule:
    """One of ``choices``."""
    options = tuple(choices)
    return Rule(
        lambda v: v in options,
        f"one of {', '.join(options)}",
        fix or f"pass one of {', '.join(options)}",
    )


def not_empty(fix: str) -> Rule:
    """A non-empty string."""
    return Rule(lambda v: bool(v), "non-empty", fix)


@dataclass(frozen=True)
class Param:
    """One node parameter.

    Attributes:
        name: parameter name.
        default: default value; its type is the parameter's type (``float('nan')``, ``""``
            or ``[nan]`` may stand for "not given" where the node resolves it elsewhere).
        description: what it means, with its unit, for ``ros2 param describe``.
        rule: what the value must be (checked at start and on every run-time change).
        dynamic: the node applies changes at run time; otherwise the parameter is
            read-only once declared.
    """

    name: str
    default: Any
    description: str
    rule: Rule | None = None
    dynamic: bool = False


def descriptor(param: Param, with_range: bool = True) -> ParameterDescriptor:
    """The ``ParameterDescriptor`` of ``param``: description, rule, range, ``read_only``.

    ``with_range=False``: the descriptor a parameter with a range is first declared with
    (no range, not yet read-only), so a bad start value is reported with the rule's fix
    before rclpy's generic range check sees it (see :func:`declare_and_read`).
    """
    rule = param.rule
    desc = ParameterDescriptor(
        description=param.description,
        additional_constraints=f"must be {rule.text}" if rule else "",
        read_only=not param.dynamic,
    )
    if rule is None or (rule.low is None and rule.high is None) or isinstance(param.default, bool):
        return desc
    if not with_range:
        desc.read_only = False
        return desc
    low = -math.inf if rule.low is None else float(rule.low)
    high = math.inf if rule.high is None else float(rule.high)
    if isinstance(param.default, float):
        desc.floating_point_range = [FloatingPointRange(from_value=low, to_value=high)]
    elif isinstance(param.default, int) and math.isfinite(low) and math.isfinite(high):
        desc.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
    return desc


def _has_range(param: Param) -> bool:
    d = descriptor(param)
    return bool(d.floating_point_range or d.integer_range)


#: (what, example) of a parameter of each default's type, as written on the command line.
_TYPE_WORDS = {
    bool: ("a boolean", "true"),
    int: ("an integer", "3"),
    float: ("a floating-point number", "20.0"),
    str: ("a string", "'text'"),
}


def _type_words(default: Any) -> tuple[str, str]:
    """(what, how to write it) for a parameter with this default."""
    if isinstance(default, list | tuple):
        what, ex = _TYPE_WORDS.get(type(default[0]) if default else float, ("a value", "x"))
        return f"a list of {what.split(' ', 1)[1]}s", f"a list such as [{ex}, {ex}]"
    what, ex = _TYPE_WORDS.get(type(default), ("a value", "the default's type"))
    return what, f"e.g. {ex}" + (" (with the decimal point)" if type(default) is float else "")


def declare(node: Node, table: Sequence[Param], error: ErrorFactory | None = None) -> None:
    """Declare every parameter of ``table`` on ``node`` (ranges go on in :func:`finish`).

    A command-line value of another type than the default's (``-p rate_hz:=20`` for a float,
    ``-p autostart:=maybe``) raises ``error`` with one line naming the parameter and how to
    write it (rclpy's ``InvalidParameterTypeException`` otherwise, a traceback).
    """
    for param in table:
        try:
            node.declare_parameter(param.name, param.default, descriptor(param, with_range=False))
        except InvalidParameterTypeException as exc:
            if error is None:
                raise
            what, how = _type_words(param.default)
            m = re.search(r"to '(.*)' of type '(\w+)'", str(exc))
            got = f", got {m[1][:40]!r} ({m[2].lower()})" if m else ""
            raise error(param.name, f"must be {what}{got}", f"write {how}") from None


def finish(node: Node, table: Sequence[Param]) -> None:
    """Put the full descriptor (range, ``read_only``) on the parameters that have a range.

    Call once the start values passed the rules: the values then lie in the ranges.
    """
    for param in table:
        if _has_range(param):
            desc = descriptor(param)
            desc.type = node.get_parameter(param.name).type_.value
            node.set_descriptor(param.name, desc)


def check(table: Sequence[Param], values: Mapping[str, Any], error: ErrorFactory) -> dict[str, Any]:
    """``values`` checked against the rules of ``table`` (raises ``error`` on the first bad)."""
    for param in table:
        if param.rule is not None and param.name in values:
            problem = param.rule.problem(values[param.name])
            if problem is not None:
                raise error(param.name, problem, param.rule.fix)
    return dict(values)


def read(
    node: Node,
    table: Sequence[Param],
    error: ErrorFactory,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Current values of ``table``'s parameters (``overrides`` win), checked by the rules."""
    overrides = overrides or {}
    values = {
        p.name: overrides[p.name] if p.name in overrides else node.get_parameter(p.name).value
        for p in table
    }
    return check(table, values, error)


def declare_and_read(node: Node, table: Sequence[Param], error: ErrorFactory) -> dict[str, Any]:
    """:func:`declare`, :func:`read` (raises ``error`` on a bad value), :func:`finish`."""
    declare(node, table, error)
    values = read(node, table, error)
    finish(node, table)
    return values


def on_set_callback(
    table: Sequence[Param],
    apply: Callable[[dict[str, Any]], None],
    error: ErrorFactory,
    errors: tuple[type[Exception], ...] = (TypeError, ValueError),
) -> Callable[[list], SetParametersResult]:
    """An ``add_on_set_parameters_callback`` callback for the ``dynamic`` parameters.

    The changed values are checked by their rules, then passed to ``apply`` (the node
    rebuilds whatever depends on them; an exception in ``errors`` refuses the change with its
    message as the reason). Changes to parameters outside ``table`` are accepted untouched.
    """
    names = {p.name for p in table}

    def callback(changes) -> SetParametersResult:
        values = {p.name: p.value for p in changes if p.name in names}
        if not values:
            return SetParametersResult(successful=True)
        try:
            apply(check(table, values, error))
        except errors as err:
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    return callback


#: The ``config`` parameter every swarm-wide node takes: the swarm YAML it serves.
SWARM_CONFIG = Param(
    "config",
    "",
    "swarm YAML (sim_bridge.config)",
    not_empty("pass -p config:=path/to/swarm.yaml"),
)


def describe(table: Sequence[Param]) -> str:
    """The table as text lines ``name (default): description [must be ...]`` (docs, help)."""
    lines = []
    for p in table:
        rule = f" [must be {p.rule.text}]" if p.rule else ""
        lines.append(f"{p.name} ({p.default!r}): {p.description}{rule}")
    return "\n".join(lines)
