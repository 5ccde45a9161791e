"""Declarative parameter constraints with one message format.

Modelled on scikit-learn's ``utils/_param_validation.py``. An estimator or a
step declares its constraints once::

    _parameter_constraints = {
        "max_depth": [Interval(int, 1, 16, closed="both")],
        "learning_rate": [Interval(float, 0, 1, closed="right")],
        "key_bits": [Options(int, {2048, 3072})],
        "objective": [Options(str, {"binary"})],
        "random_state": [None, Interval(int, 0, None)],
        "verbose": ["boolean"],
    }

and calls ``validate_params(params, _parameter_constraints, "VerticalSecureBoost")``.
Every violation is reported at once in a :class:`~fedcredit.errors.ConfigError`
whose ``problems`` hold messages such as::

    The 'max_depth' parameter of VerticalSecureBoost must be an int in [1, 16]. Got 0 instead.

Rules
-----
* ``bool`` is never accepted where an ``int`` or a ``float`` is asked (``True``
  is an ``int`` subclass in Python; a config value ``true`` for ``max_depth``
  is a mistake, not a 1).
* ``int`` is accepted where a ``float`` is asked (``learning_rate = 1``).
* A constraint list is a disjunction: the value must satisfy one of them.
* Keys that have no constraint are errors (a typo must not be ignored), unless
  ``allow_unknown=True``.

Every estimator (:class:`fedcredit.models._base._BaseEstimator`) and every job
step's parameters (:class:`Params`) spell their constraints the same way, as a
``_parameter_constraints`` class attribute.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, ClassVar

from .errors import ConfigError

__all__ = [
    "Interval",
    "Options",
    "StrOptions",
    "validate_params",
    "check_param",
    "describe",
    "Params",
    "NoParams",
]

_TYPE_NAMES = {int: "an int", float: "a float", str: "a str", bool: "a bool"}


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and not _is_np_bool(value)


def _is_np_bool(value: Any) -> bool:
    return type(value).__name__ == "bool_" and type(value).__module__ == "numpy"


def _is_real(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and not _is_np_bool(value)
    )


def _fmt(x: float | None, inf: str) -> str:
    if x is None:
        return inf
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return repr(x)
    return str(x)


@dataclass(frozen=True)
class Interval:
    """A numeric range.

    Parameters
    ----------
    type : {int, float}
        ``int`` accepts integers only (never ``bool``); ``float`` accepts any
        real number except ``bool`` (an ``int`` is fine) and never NaN.
    lo, hi : number or None
        Bounds; ``None`` means unbounded on that side.
    closed : {"both", "left", "right", "neither"}, default="both"
        Which bounds are included.
    """

    type: type
    lo: float | None
    hi: float | None
    closed: str = "both"

    def __post_init__(self) -> None:
        if self.type not in (int, float):
            raise TypeError(f"Interval type must be int or float, got {self.type!r}")
        if self.closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be 'both', 'left', 'right' or 'neither', got {self.closed!r}")
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise ValueError(f"empty interval: lo={self.lo} > hi={self.hi}")

    def is_satisfied_by(self, value: Any) -> bool:
        if self.type is int:
            if not _is_int(value):
                return False
        elif not _is_real(value) or math.isnan(float(value)):
            return False
        left_closed = self.closed in ("both", "left")
        right_closed = self.closed in ("both", "right")
        if self.lo is not None and (value < self.lo or (value == self.lo and not left_closed)):
            return False
        if self.hi is not None and (value > self.hi or (value == self.hi and not right_closed)):
            return False
        return True

    def __str__(self) -> str:
        left = "[" if self.closed in ("both", "left") and self.lo is not None else "("
        right = "]" if self.closed in ("both", "right") and self.hi is not None else ")"
        lo = _fmt(self.lo, "-inf")
        hi = _fmt(self.hi, "inf")
        return f"{_TYPE_NAMES[self.type]} in {left}{lo}, {hi}{right}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values of one type.

    Parameters
    ----------
    type : type
        The values' type (``str``, ``int``, ...); ``bool`` never passes as ``int``.
    options : set
        The allowed values.
    """

    type: type
    options: frozenset

    def __init__(self, type: type, options: Iterable) -> None:  # noqa: A002 - mirrors sklearn
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "options", frozenset(options))

    def is_satisfied_by(self, value: Any) -> bool:
        if self.type is int and not _is_int(value):
            return False
        if self.type is float and not _is_real(value):
            return False
        if self.type not in (int, float) and not isinstance(value, self.type):
            return False
        return value in self.options

    def __str__(self) -> str:
        opts = ", ".join(repr(o) for o in sorted(self.options, key=repr))
        return f"{_TYPE_NAMES.get(self.type, 'a ' + self.type.__name__)} among {{{opts}}}"


def StrOptions(options: Iterable[str]) -> Options:  # noqa: N802 - sklearn's spelling
    """Shorthand for ``Options(str, options)``."""
    return Options(str, options)


class _Kind:
    """A bare type constraint: ``int``, ``float``, ``str``, ``"boolean"``, ``list``, ``dict`` or None."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    def is_satisfied_by(self, value: Any) -> bool:
        s = self.spec
        if s is None:
            return value is None
        if s == "boolean" or s is bool:
            return isinstance(value, bool) or _is_np_bool(value)
        if s is int:
            return _is_int(value)
        if s is float:
            return _is_real(value) and not math.isnan(float(value))
        if isinstance(s, type):
            return isinstance(value, s)
        if callable(s):
            return bool(s(value))
        raise TypeError(f"unsupported constraint {s!r}")

    def __str__(self) -> str:
        s = self.spec
        if s is None:
            return "None"
        if s == "boolean" or s is bool:
            return "a bool"
        if isinstance(s, type):
            return _TYPE_NAMES.get(s, f"a {s.__name__}")
        return getattr(s, "__doc__", None) or getattr(s, "__name__", repr(s))


def _make(constraint: Any):
    if isinstance(constraint, (Interval, Options)):
        return constraint
    return _Kind(constraint)


def describe(constraints: Iterable[Any]) -> str:
    """Human text for a disjunction of constraints: ``"an int in [1, 16] or None"``."""
    parts = [str(_make(c)) for c in constraints]
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def check_param(name: str, value: Any, constraints: Iterable[Any], owner: str) -> str | None:
    """Return the error message for one parameter, or None when it is valid."""
    constraints = list(constraints)
    if any(_make(c).is_satisfied_by(value) for c in constraints):
        return None
    return f"The {name!r} parameter of {owner} must be {describe(constraints)}. Got {value!r} instead."


def validate_params(
    params: Mapping[str, Any],
    constraints: Mapping[str, Iterable[Any]],
    owner: str,
    *,
    allow_unknown: bool = False,
) -> None:
    """Check every parameter against its constraints; report all violations at once.

    Parameters
    ----------
    params : mapping
        Parameter name to value (e.g. a job step's ``params`` table). Missing
        keys are not checked (the caller applies its defaults).
    constraints : mapping
        Parameter name to a list of constraints, any of which may hold:
        :class:`Interval`, :class:`Options`, a type (``int``, ``float``,
        ``str``, ``list``, ``dict``), ``"boolean"`` or ``None``.
    owner : str
        Who owns the parameters, used in messages (``"VerticalSecureBoost"``,
        ``"step 'sbt' (secureboost)"``).
    allow_unknown : bool, default=False
        When False, a key without constraints is an error.

    Raises
    ------
    ConfigError
        With one message per problem in ``problems``.
    """
    problems: list[str] = []
    for name, value in params.items():
        if name not in constraints:
            if not allow_unknown:
                known = ", ".join(sorted(constraints)) or "none"
                problems.append(f"{owner} has no parameter {name!r} (known: {known}).")
            continue
        msg = check_param(name, value, constraints[name], owner)
        if msg:
            problems.append(msg)
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else f"{len(problems)} invalid parameters:\n  " + "\n  ".join(problems), problems)



class Params:
    """Base of a job step's parameters: a frozen dataclass whose fields are checked declaratively.

    A subclass is a ``@dataclass(frozen=True)`` whose fields (with their
    defaults) are the step's parameters, and whose ``_parameter_constraints``
    name exactly those fields::

        @dataclass(frozen=True)
        class SelectParams(Params):
            _parameter_constraints = {"iv_threshold": [Interval(float, 0, None)]}
            iv_threshold: float = 0.02

    :meth:`from_dict` checks a job file's ``params`` table (every problem at
    once, unknown keys included), applies the defaults and runs the
    cross-field checks of :meth:`_check`. The job loader does this when a job
    is submitted or proposed, so the step receives the typed object and never
    re-reads a dict.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {}
    #: who owns the parameters in messages when the caller names nobody (default: the class name)
    _owner: ClassVar[str | None] = None

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None, owner: str | None = None):
        """Check ``params`` and build the dataclass.

        Raises
        ------
        ConfigError
            One message per problem, in the format of :func:`validate_params`.
        """
        owner = owner or cls._owner or cls.__name__
        raw = dict(params or {})
        validate_params(raw, cls._parameter_constraints, owner)
        obj = cls(**cls._convert(raw, owner))
        obj._check(owner)
        return obj

    @classmethod
    def coerce(cls, params: Any, owner: str | None = None):
        """``params`` when it already is one of these (checked at submission), else :meth:`from_dict` of it."""
        if isinstance(params, cls):
            return params
        return cls.from_dict(params, owner)

    @classmethod
    def _convert(cls, params: dict[str, Any], owner: str) -> dict[str, Any]:
        """Hook: turn checked raw values into field values (e.g. a list into a tuple)."""
        return params

    def _check(self, owner: str) -> None:
        """Hook: cross-field checks; raise :class:`ConfigError` with a message naming ``owner``."""

    def as_dict(self) -> dict[str, Any]:
        """Every field and its value (defaults included)."""
        return {f.name: getattr(self, f.name) for f in fields(self)} if is_dataclass(self) else {}


class NoParams(Params):
    """A step without parameters (``handshake``): any key in its ``params`` table is a typo."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
