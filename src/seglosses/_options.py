"""String options shared by every loss and metric, with did-you-mean lookup.

All option validation of the package goes through :func:`lookup_option`, so an
unknown value always gives the same kind of message::

    ValueError: `mode` must be one of 'binary', 'multiclass', 'multilabel'; got 'multi-class' (did you mean 'multiclass'?)
"""
from __future__ import annotations

import difflib
from typing import Iterable, Sequence

MODES = ("binary", "multiclass", "multilabel")
DOMAINS = ("image", "batch")
REDUCTIONS = ("mean", "sum", "none")


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def lookup_option(name: str, value: object, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of ``choices`` and return it.

    Args:
        name: the argument's name, used in the error message.
        value: what the caller passed.
        choices: the accepted strings.

    Raises:
        ValueError: naming the argument, the accepted values, what was got and
            the closest accepted value.
    """
    if isinstance(value, str) and value in choices:
        return value
    listed = ", ".join(repr(c) for c in choices)
    hint = did_you_mean(value, choices) if isinstance(value, str) else ""
    raise ValueError(f"`{name}` must be one of {listed}; got {value!r}{hint}")


def check_mode(mode: object) -> str:
    return lookup_option("mode", mode, MODES)


def check_domain(domain: object) -> str:
    return lookup_option("domain", domain, DOMAINS)


def check_reduction(reduction: object) -> str:
    return lookup_option("reduction", reduction, REDUCTIONS)


def check_nonnegative(name: str, value: object) -> float:
    """Check that a scalar hyper-parameter is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number; got {type(value).__name__}")
    value = float(value)
    if not (value >= 0.0) or value == float("inf"):
        raise ValueError(f"`{name}` must be a finite number >= 0; got {value}")
    return value


def check_positive(name: str, value: object) -> float:
    """Check that a scalar hyper-parameter is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number; got {type(value).__name__}")
    value = float(value)
    if not (value > 0.0) or value == float("inf"):
        raise ValueError(f"`{name}` must be a finite number > 0; got {value}")
    return value


def check_fraction(name: str, value: object, *, open_low: bool = False, open_high: bool = False) -> float:
    """Check that a scalar lies in [0, 1] (ends open where asked)."""
    value = check_nonnegative(name, value)
    lo_ok = value > 0.0 if open_low else value >= 0.0
    hi_ok = value < 1.0 if open_high else value <= 1.0
    if not (lo_ok and hi_ok):
        lo = "(" if open_low else "["
        hi = ")" if open_high else "]"
        raise ValueError(f"`{name}` must lie in {lo}0, 1{hi}; got {value}")
    return value


def check_count(name: str, value: object, low: int = 1) -> int:
    """Check that a count (iterations, erosions) is an int >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int; got {type(value).__name__}")
    if value < low:
        raise ValueError(f"`{name}` must be an int >= {low}; got {value}")
    return value
