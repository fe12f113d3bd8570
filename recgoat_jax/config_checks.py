"""The value checks and choice tuples that config sections declare (CHOICES / RANGES),
and the coercion of a YAML value to a field's type that applies them.

A leaf module (the standard library and errors.py only), so config.py and every
model/*_config.py import it without importing each other. A RANGES entry is
(test, what is expected); a tuple value is checked element by element.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any

from recgoat_jax.errors import ConfigError


def at_least(lo: int):
    return (lambda v: v >= lo, f"an integer >= {lo}")


POSITIVE = (lambda v: v > 0, "a number > 0")
NON_NEGATIVE = (lambda v: v >= 0, "a number >= 0")
BELOW_1 = (lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
UNIT = (lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")

INITS = ("xavier", "normal")  # model/base.py init_embedding
KNN_BACKENDS = ("auto", "numpy", "xla")  # graphs/knn.py build backends


def check_range(key: str, value: Any, check: tuple | None) -> None:
    """ConfigError unless every number in value is finite and passes check (test, expected)."""
    test, expected = check or (None, "")
    if isinstance(value, tuple):
        if key == "eval.ks" and not value:
            raise ConfigError(f"config key {key!r}: expected at least one K, got []")
        for v in value:
            num = v[1] if isinstance(v, tuple) else v
            if isinstance(num, (int, float)) and not isinstance(num, bool):
                _check_one(key, num, test, expected, shown=list(value) if not isinstance(
                    v, tuple) else dict(value))
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_one(key, value, test, expected, shown=value)


def _check_one(key, v, test, expected, shown) -> None:
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"config key {key!r}: expected a finite number, got {shown!r}")
    if test is not None and not test(v):
        raise ConfigError(f"config key {key!r}: expected {expected}, got {shown!r}")


def coerce(value: Any, tp: Any, key: str, allowed: tuple = ()) -> Any:
    """Checks/converts a YAML value to the dataclass field type (allowed: its CHOICES)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return coerce(value, args[0], key)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        inner = args[0]
        if typing.get_origin(inner) is tuple:  # pairs, e.g. init_weights
            if isinstance(value, dict):
                value = list(value.items())
            return tuple(tuple(coerce(v, a, key) for v, a in zip(p, typing.get_args(inner)))
                         for p in value)
        return tuple(coerce(v, inner, key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"config key {key!r}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, bool) and "on" in allowed:
            return "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key {key!r}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"config key {key!r}: unsupported type {tp}")
