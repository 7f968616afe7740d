"""The check engine: reads untrusted nested data against declared rules, collecting every
:class:`~sim_bridge.config.problems.Problem` and never raising.

A schema field declares how its key is checked with :func:`rule` in its dataclass metadata
(kind, bounds, choices, units, help, and the fix for a missing key); :func:`fill` reads a
whole mapping into that dataclass, and :meth:`Checker.value` checks one value. The
messages name the key path and say what to write instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sim_bridge.config.limits import MAX_KEYS, MAX_NAME_LEN, MAX_PROBLEMS, MAX_TEXT_LEN, NAME_RE
from sim_bridge.config.problems import Problem

#: Marks a key that is absent (``None`` is a value a file may write).
MISSING = object()


@dataclass(frozen=True)
class Rule:
    """How one key is checked.

    Attributes:
        kind: ``number``, ``integer``, ``text``, ``choice`` (one of ``choices``) or ``name``
            (a ROS name token), which :meth:`Checker.value` reads; or a structured value
            (``pose``, ``point``, ``amounts``) that its section's code reads, the rule giving
            the missing-key fix and the documentation.
        low, high: bounds of a number (``low`` excluded when ``strict_low``).
        choices: the allowed words of a ``choice``.
        max_len: the most characters of a ``text``.
        nullable: ``null`` is a valid value (read as ``None``).
        missing: the fix when the key is required and absent; ``None``: the key is optional.
        units: unit of a number (documentation: ``m``, ``Hz``, ``cells``, ...).
        help: what the key means (documentation).
    """

    kind: str = "number"
    low: float | None = None
    high: float | None = None
    strict_low: bool = False
    choices: tuple[str, ...] = ()
    max_len: int = MAX_TEXT_LEN
    nullable: bool = False
    missing: str | None = None
    units: str = ""
    help: str = ""


_RULE_KEY = "sim_bridge.config.rule"
#: Bounds of a strictly positive number (radii, speeds, rates).
POSITIVE: dict[str, Any] = {"low": 0.0, "strict_low": True}


def rule(**spec: Any) -> dict[str, Rule]:
    """Dataclass field metadata declaring how the field's key is checked (see :class:`Rule`)."""
    return {_RULE_KEY: Rule(**spec)}


@functools.cache
def rules_of(cls: type) -> dict[str, Rule]:
    """Key -> :class:`Rule` of every field of dataclass ``cls`` that declares one, in order."""
    return {
        f.name: f.metadata[_RULE_KEY] for f in dataclasses.fields(cls) if _RULE_KEY in f.metadata
    }


# ----------------------------------------------------------------------------- text helpers


def is_num(value: Any) -> bool:
    """True for an int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 30, 30
_REPR.maxlong = 30


def describe(value: Any) -> str:
    """Short, bounded text of any value (safe on huge or alias-bomb YAML data)."""
    try:
        text = _REPR.repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


def one_of(names: list) -> str:
    """Fix text listing the first few valid ``names`` (as written in the file)."""
    shown = [n for n in names if isinstance(n, str)][:8]
    more = " ..." if len(names) > len(shown) else ""
    return f"use one of {shown}{more}" if shown else "define it first"


def join(path: str, key: str) -> str:
    """``path.key``, or ``path[<key>]`` when the key is not a plain identifier."""
    if len(key) > MAX_NAME_LEN or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path or '<root>'}[{describe(key)}]"
    return f"{path}.{key}" if path else key


#: Stands in for a problem past :data:`MAX_PROBLEMS`: ``len(problems)`` still grows (callers
#: compare it before and after a check) while memory stays bounded.
_OMITTED = Problem("<root>", "", "")


# ----------------------------------------------------------------------------- checker


class Checker:
    """Collects problems while reading untrusted nested data; never raises."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.robot_paths: dict[str, str] = {}
        # names as written, valid or not, so one bad robot does not make events fail too
        self.declared: dict[str, list[Any]] = {"robots": [], "consumers": []}

    def unique(self) -> None:
        """Drop repeated problems (a bad ``robot_types`` entry is found once per robot) and
        count those past :data:`MAX_PROBLEMS` in one last problem."""
        kept = [p for p in self.problems if p is not _OMITTED]
        omitted = len(self.problems) - len(kept)
        self.problems = list(dict.fromkeys(kept))
        if omitted:
            self.problems.append(
                Problem(
                    "<root>",
                    f"at least {omitted} more problem(s) not listed",
                    "fix the problems above and validate again",
                )
            )
        self.warnings = list(dict.fromkeys(self.warnings))

    @property
    def full(self) -> bool:
        """True once :data:`MAX_PROBLEMS` problems are recorded (skip costly hints then)."""
        return len(self.problems) >= MAX_PROBLEMS

    def err(self, path: str, message: str, fix: str) -> None:
        self.problems.append(_OMITTED if self.full else Problem(path, message, fix))

    def warn(self, path: str, message: str, fix: str) -> None:
        self.warnings.append(Problem(path, message, fix))

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        """``value`` as a dict with string keys, reporting unknown keys; ``None`` if unusable.

        Past :data:`MAX_PROBLEMS` a mapping is not read (one omitted problem), so a file whose
        aliases repeat a bad mapping thousands of times still validates in O(entries)."""
        if self.full:
            self.err(path, "", "")
            return None
        if not isinstance(value, Mapping):
            self.err(
                path or "<root>",
                f"expected a mapping, got {describe(value)}",
                "write `key: value` pairs",
            )
            return None
        if len(value) > MAX_KEYS:
            self.err(
                path or "<root>",
                f"{len(value)} keys, more than the limit of {MAX_KEYS}",
                f"write at most {MAX_KEYS} keys here",
            )
            return None
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.err(f"{path}", f"key {describe(key)} is not a string", "use text keys")
                continue
            if key not in allowed:
                close = [] if self.full else difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean `{close[0]}`?" if close else f"allowed: {', '.join(allowed)}"
                self.err(join(path, key), "unknown key", f"remove it ({hint})")
                continue
            out[key] = item
        return out

    def free_mapping(self, value: Any, path: str) -> dict[str, Any] | None:
        """A mapping whose keys are names the file chooses (types, resources, demands)."""
        allowed = (
            tuple(k for k in value if isinstance(k, str)) if isinstance(value, Mapping) else ()
        )
        return self.mapping(value, path, allowed)

    def value(self, value: Any, path: str, spec: Rule) -> Any:
        """``value`` checked against ``spec`` (``None`` after reporting; see :meth:`number`)."""
        if spec.kind in ("number", "integer"):
            integer = spec.kind == "integer"
            return self.number(
                value,
                path,
                low=spec.low,
                high=spec.high,
                strict_low=spec.strict_low,
                integer=integer,
            )
        if spec.kind == "name":
            return self.name(value, path)
        if spec.kind == "choice":
            return self.string(value, path, spec.choices)
        if spec.kind == "text":
            return self.string(value, path, max_len=spec.max_len)
        # a structured kind (pose, point, amounts) has its own reader: a bug, not bad input
        raise TypeError(f"{path}: a {spec.kind!r} rule is read by its section's code")

    def number(
        self,
        value: Any,
        path: str,
        *,
        low: float | None = None,
        high: float | None = None,
        strict_low: bool = False,
        integer: bool = False,
    ) -> float | None:
        """A finite number within the bounds, or ``None`` after reporting."""
        if not is_num(value):
            what = "an integer" if integer else "a number"
            fix = f"write {what}"
            if isinstance(value, str) and _yaml_text_number(value):
                # YAML 1.1 reads `1e-3` (no dot) as text; `1.0e-3` is a number
                fix = f"YAML reads {value.strip()[:40]!r} as text: write it with a dot and a sign "
                fix += "in the exponent, e.g. 1.0e-3 or 2.0e+1"
            self.err(path, f"expected {what}, got {describe(value)}", fix)
            return None
        if integer and not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                self.err(path, f"expected an integer, got {value!r}", "write a whole number")
                return None
        if isinstance(value, float) and not math.isfinite(value):
            self.err(path, f"{value!r} is not finite", "write a finite number")
            return None
        if isinstance(value, int) and abs(value) > 1e300:
            self.err(path, "the number is too large", "write a realistic value")
            return None
        if low is not None and (value <= low if strict_low else value < low):
            rel = ">" if strict_low else ">="
            self.err(path, f"{value!r} is out of range", f"use a value {rel} {low}")
            return None
        if high is not None and value > high:
            self.err(path, f"{value!r} is out of range", f"use a value <= {high}")
            return None
        return value if integer else float(value)

    def string(
        self,
        value: Any,
        path: str,
        choices: tuple[str, ...] | None = None,
        max_len: int = MAX_TEXT_LEN,
    ) -> str | None:
        """Non-empty text of at most ``max_len`` characters (one of ``choices`` if given)."""
        if not isinstance(value, str) or not value:
            self.err(path, f"expected a non-empty string, got {describe(value)}", "write text")
            return None
        if len(value) > max_len:
            self.err(
                path,
                f"{describe(value)} has {len(value)} characters, more than the limit of {max_len}",
                f"shorten it to at most {max_len} characters",
            )
            return None
        if choices is not None and value not in choices:
            close = [] if self.full else difflib.get_close_matches(value, choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.err(path, f"{value!r} is not one of {list(choices)}", f"use one of them{hint}")
            return None
        return value

    def name(self, value: Any, path: str) -> str | None:
        """A ROS name token: ``[A-Za-z][A-Za-z0-9_]*``, whole, at most :data:`MAX_NAME_LEN`."""
        text = self.string(value, path, max_len=MAX_NAME_LEN)
        if text is None:
            return None
        if not NAME_RE.fullmatch(text):
            self.err(
                path,
                f"{describe(text)} is not a valid ROS name",
                "start with a letter; use only letters, digits and '_'",
            )
            return None
        return text

    def seq(self, value: Any, path: str) -> list[Any] | None:
        """``value`` as a list, or ``None`` after reporting."""
        if not isinstance(value, list | tuple):
            self.err(path, f"expected a list, got {describe(value)}", "write a YAML list")
            return None
        return list(value)

    def numbers(self, value: Any, path: str, n: int, shape: str, **bounds: Any) -> list | None:
        """Exactly ``n`` numbers written as ``shape`` (e.g. ``[x, y]``), each checked with
        ``bounds`` (see :meth:`number`); ``None`` after reporting."""
        items = self.seq(value, path)
        if items is None:
            return None
        if len(items) != n:
            self.err(path, f"expected {shape}, got {len(items)} values", f"write {shape}")
            return None
        vals = [self.number(v, f"{path}[{i}]", **bounds) for i, v in enumerate(items)]
        return None if None in vals else vals

    def pair(self, value: Any, path: str) -> tuple[float, float] | None:
        """``[min, max]`` with ``min < max``."""
        vals = self.numbers(value, path, 2, "[min, max]")
        if vals is None:
            return None
        lo, hi = vals
        if not lo < hi:
            self.err(path, f"min {lo} is not below max {hi}", "write [min, max] with min < max")
            return None
        return (lo, hi)


# ----------------------------------------------------------------------------- declarative reads


def first_missing(c: Checker, m: Mapping, path: str, rules: Mapping[str, Rule]) -> bool:
    """Report the first required key (a rule with ``missing``) absent from ``m``, in the
    rules' order; False if one is absent (the value checks are then skipped)."""
    for key, spec in rules.items():
        if spec.missing is not None and key not in m:
            c.err(f"{path}.{key}", "missing", spec.missing)
            return False
    return True


def present(c: Checker, m: Mapping, path: str, key: str, spec: Rule) -> bool:
    """True when ``key`` is in ``m``; otherwise reports it missing (``spec.missing``)."""
    if key in m:
        return True
    c.err(f"{path}.{key}", "missing", spec.missing or "add it")
    return False


def read(
    c: Checker, m: Mapping, path: str, rules: Mapping[str, Rule]
) -> tuple[dict[str, Any], bool]:
    """Check the keys of ``m`` that ``rules`` declare, in the rules' order; absent keys are
    skipped (their defaults apply). Returns ``(values, ok)``; ``ok`` is False when a
    present value was reported."""
    out: dict[str, Any] = {}
    ok = True
    for key, spec in rules.items():
        if key not in m:
            continue
        if spec.nullable and m[key] is None:
            out[key] = None
            continue
        got = c.value(m[key], f"{path}.{key}", spec)
        if got is None:
            ok = False
        else:
            out[key] = got
    return out, ok


def fill(c: Checker, value: Any, path: str, cls: type) -> Any:
    """``value`` (a mapping of ``cls``'s declared keys, all optional) read into ``cls``;
    ``None`` after reporting. Unknown keys are reported with a did-you-mean."""
    rules = rules_of(cls)
    m = c.mapping(value, path, tuple(rules))
    if m is None:
        return None
    kwargs, ok = read(c, m, path, rules)
    return cls(**kwargs) if ok else None


def _yaml_text_number(text: str) -> bool:
    """``text`` is a number that YAML 1.1 (PyYAML) leaves as a string, such as ``1e-3``."""
    try:
        return math.isfinite(float(text)) and text.strip() == text and len(text) <= 40
    except ValueError:
        return False
