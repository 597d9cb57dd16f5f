"""Term weights of a :class:`~seglosses.WeightedSum`: numbers and schedules.

A weight is a float or a schedule ``step -> float``; :class:`Ramp` is the schedule a
spec can write (``ramp(start, end, steps)``). :func:`scale_weight` and
:func:`mul_weights` keep products of a ramp and numbers a ramp, so that they still
have a spec.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Union

Weight = Union[float, Callable[[int], float]]


def weight_value(w: Weight, step: int) -> float:
    """A weight at ``step``; a schedule must give a finite number."""
    if not callable(w):
        return float(w)
    value = float(w(step))
    if not math.isfinite(value):
        raise ValueError(f"`weight` schedule {w!r} must give a finite number; got {value} at step {step}")
    return value


def is_finite(w: Any) -> bool:
    try:
        return math.isfinite(w)
    except OverflowError:  # an int beyond the float range
        return False


class Scaled:
    """A schedule multiplied by a constant (keeps `0.5 * (ramp * loss)` a schedule)."""

    def __init__(self, factor: float, inner: Callable[[int], float]) -> None:
        self.factor, self.inner = factor, inner

    def __call__(self, step: int) -> float:
        return self.factor * float(self.inner(step))

    def __repr__(self) -> str:
        return f"{self.factor}*{self.inner!r}"


def mul(a: Weight, b: Weight) -> Weight:
    """The product of two weights (a schedule when either is one)."""
    if callable(a) and callable(b):
        fa, fb = a, b
        return lambda step: float(fa(step)) * float(fb(step))
    if callable(a):
        return Scaled(float(b), a)  # type: ignore[arg-type]
    if callable(b):
        return Scaled(float(a), b)
    return float(a) * float(b)


class Ramp:
    """Linear weight schedule: ``start`` at step 0 to ``end`` at step ``steps``, then constant.

    .. math::
        w(t) = w_0 + (w_1 - w_0)\\,\\frac{\\min(t, T)}{T}

    (``steps = 0`` gives ``end`` at once). A schedule for :class:`WeightedSum` terms, e.g.
    the boundary-loss weight ramp of Kervadec et al.; :meth:`WeightedSum.step` advances t.
    In a :func:`seglosses.build_loss` spec it is written ``ramp(start, end, steps)*name``
    or, in dict form, ``{"name": ..., "weight": {"ramp": [start, end, steps]}}``.

    Convention:
        Steps before 0 count as 0; after ``steps`` the weight stays at ``end``. Ramps
        compare equal when their three numbers are equal (used by the spec round trip).

    Args:
        start: weight at step 0 (finite).
        end: weight from step ``steps`` on (finite).
        steps: length T of the ramp, an integer >= 0.

    Raises:
        ValueError: a non-finite ``start``/``end`` or a negative / fractional ``steps``.

    Example:
        >>> r = Ramp(0.0, 1.0, 4)
        >>> [r(t) for t in (0, 2, 4, 9)]
        [0.0, 0.5, 1.0, 1.0]
    """

    def __init__(self, start: float, end: float, steps: int) -> None:
        for name, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"`{name}` of a ramp must be a finite number; got {value!r}")
        if isinstance(steps, bool) or not isinstance(steps, (int, float)) or steps < 0 or int(steps) != steps:
            raise ValueError(f"`steps` of a ramp must be an integer >= 0; got {steps!r}")
        self.start, self.end, self.steps = float(start), float(end), int(steps)

    def __call__(self, step: int) -> float:
        if self.steps == 0:
            return self.end
        t = min(max(int(step), 0), self.steps) / self.steps
        return self.start + (self.end - self.start) * t

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ramp) and (self.start, self.end, self.steps) == (other.start, other.end, other.steps)

    def __hash__(self) -> int:
        return hash((self.start, self.end, self.steps))

    def __repr__(self) -> str:
        return f"ramp({self.start!r}, {self.end!r}, {self.steps!r})"


def scale_weight(w: Any, f: float) -> Any:
    """A number or a :class:`Ramp` times a number."""
    if isinstance(w, Ramp):
        return Ramp(w.start * f, w.end * f, w.steps)
    return w * f


def mul_weights(a: Any, b: Any, where: str) -> Any:
    """The product of a number or ramp with a number (two ramps: ``ValueError``)."""
    if isinstance(a, Ramp) and isinstance(b, Ramp):
        raise ValueError(f"`spec` {where}: a term can have one schedule; got a product of two ramps")
    if isinstance(a, Ramp):
        return scale_weight(a, b)
    return scale_weight(b, a)
