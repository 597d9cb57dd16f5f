"""Weighted sums of losses: ``DiceLoss() + 0.1 * ConfidencePenalty()``.

:class:`WeightedSum` is the one compound mechanism of the package: ``+`` and scalar
``*`` on loss modules build it, and :func:`seglosses.build_loss` returns it for a
spec with several terms. A term's weight is a number or a schedule: a callable
``weight(step) -> float`` evaluated at the sum's current ``step`` (advance it with
:meth:`WeightedSum.step`, e.g. once per epoch, for the boundary-loss weight ramp of
Kervadec et al.).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ._base import SegLoss

Weight = Union[float, Callable[[int], float]]


def _weight_value(w: Weight, step: int) -> float:
    if not callable(w):
        return float(w)
    value = float(w(step))
    if not math.isfinite(value):
        raise ValueError(f"`weight` schedule {w!r} must give a finite number; got {value} at step {step}")
    return value


class _Scaled:
    """A schedule multiplied by a constant (keeps `0.5 * (ramp * loss)` a schedule)."""

    def __init__(self, factor: float, inner: Callable[[int], float]) -> None:
        self.factor, self.inner = factor, inner

    def __call__(self, step: int) -> float:
        return self.factor * float(self.inner(step))

    def __repr__(self) -> str:
        return f"{self.factor}*{self.inner!r}"


def _is_finite(w: Any) -> bool:
    try:
        return math.isfinite(w)
    except OverflowError:  # an int beyond the float range
        return False


def _mul(a: Weight, b: Weight) -> Weight:
    if callable(a) and callable(b):
        return lambda step: float(a(step)) * float(b(step))
    if callable(a):
        return _Scaled(float(b), a)
    if callable(b):
        return _Scaled(float(a), b)
    return float(a) * float(b)


class WeightedSum(SegLoss):
    r"""A weighted sum of losses: :math:`L = \sum_k w_k L_k(\text{input}, \text{target})`.

    Built by ``+`` and ``*`` on loss modules or by :func:`seglosses.build_loss`. Each
    term sees the same ``(input, target)``. ``forward(input, target, return_terms=True)``
    also returns each term's (unweighted, detached) value for logging.
    The schedule position (``current_step``, advanced by :meth:`step`) is part of
    ``state_dict()``, so a checkpoint of the loss resumes its weight schedules where they were.

    Args:
        terms: ``(weight, loss)`` pairs; a weight is a float or a schedule
            ``step -> float``.

    Example:
        >>> from seglosses import DiceLoss, ConfidencePenalty
        >>> loss = DiceLoss() + 0.1 * ConfidencePenalty()
        >>> [round(w, 2) for w in loss.weights()]
        [1.0, 0.1]
    """

    value_range = (0.0, float("inf"))

    def __init__(self, terms: Sequence[Tuple[Weight, SegLoss]]) -> None:
        nn.Module.__init__(self)
        terms = list(terms)
        if not terms:
            raise ValueError("`terms` must hold at least one (weight, loss) pair; got none")
        for i, (w, loss) in enumerate(terms):
            if not isinstance(loss, nn.Module):
                raise TypeError(f"`terms[{i}]` loss must be a loss module; got {type(loss).__name__}")
            if not callable(w) and (isinstance(w, bool) or not isinstance(w, (int, float))):
                raise TypeError(f"`terms[{i}]` weight must be a number or a callable schedule; got {type(w).__name__}")
            if not callable(w) and not _is_finite(w):
                raise ValueError(f"`terms[{i}]` weight must be a finite number; got {w!r}")
        self.losses = nn.ModuleList([loss for _, loss in terms])
        self._weights: List[Weight] = [w if callable(w) else float(w) for w, _ in terms]
        self.config: Dict[str, Any] = {}
        self.current_step = 0
        self.minimum_at_truth = all(getattr(l, "minimum_at_truth", False) for l in self.losses)

    @classmethod
    def of(cls, loss: SegLoss) -> "WeightedSum":
        """``loss`` as a sum (itself when it is one already)."""
        return loss if isinstance(loss, WeightedSum) else cls([(1.0, loss)])

    def terms(self) -> List[Tuple[Weight, nn.Module]]:
        return list(zip(self._weights, self.losses))

    def weights(self) -> List[float]:
        """The term weights at the current step."""
        return [_weight_value(w, self.current_step) for w in self._weights]

    def step(self, n: int = 1) -> None:
        """Advance the schedule step (e.g. once per epoch)."""
        self.current_step += n

    def get_extra_state(self) -> Dict[str, int]:
        """The schedule position, saved by ``state_dict()`` so a resumed training continues the ramp."""
        return {"step": int(self.current_step)}

    def set_extra_state(self, state: Any) -> None:
        """Restore the schedule position saved by :meth:`get_extra_state` (``load_state_dict``)."""
        step = state.get("step") if isinstance(state, dict) else None
        if isinstance(step, torch.Tensor) and step.numel() == 1:
            step = int(step)
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"`state` must hold the schedule position as {{'step': int >= 0}}; got {state!r}")
        self.current_step = step

    def scaled(self, factor: Weight) -> "WeightedSum":
        if not callable(factor) and not _is_finite(factor):
            raise ValueError(f"`weight` must be a finite number; got {factor!r}")
        terms = [(_mul(factor, w), l) for w, l in self.terms()]
        for (w, _), (product, _) in zip(self.terms(), terms):
            if not callable(product) and not _is_finite(product):
                raise ValueError(f"`weight` must be a finite number, also times each term's weight; got {factor!r} "
                                 f"times {w!r} = {product!r}")
        return WeightedSum(terms)

    def __add__(self, other: SegLoss) -> "WeightedSum":
        if not isinstance(other, SegLoss):
            return NotImplemented
        return WeightedSum(self.terms() + WeightedSum.of(other).terms())

    def term_names(self) -> List[str]:
        """Unique names of the terms, for logging (``dice``, ``dice_2``, ...)."""
        names: List[str] = []
        taken: set = set()
        next_k: Dict[str, int] = {}  # (sets: linear in the number of terms)
        for loss in self.losses:
            base = getattr(loss, "registry_name", None) or type(loss).__name__
            name, k = base, next_k.get(base, 2)
            while name in taken:
                name, k = f"{base}_{k}", k + 1
            next_k[base] = k
            taken.add(name)
            names.append(name)
        return names

    def forward(self, input: Tensor, target: Tensor, return_terms: bool = False):  # type: ignore[override]
        total = None
        values: Dict[str, Tensor] = {}
        for name, w, loss in zip(self.term_names(), self.weights(), self.losses):
            v = loss(input, target)
            values[name] = v.detach()
            total = w * v if total is None else total + w * v
        return (total, values) if return_terms else total

    def extra_repr(self) -> str:
        return " + ".join(f"{w!r}*{type(l).__name__}" for w, l in self.terms())


# --------------------------------------------------------------------------- schedules

import math  # noqa: E402


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


# --------------------------------------------------------------------------- compound losses of seed 001

from ..functional import compound as _F  # noqa: E402
from ._base import make_loss_class  # noqa: E402

ComboLoss = make_loss_class("ComboLoss", _F.combo_loss, value_range=(-1.0, math.inf))
ExpLogLoss = make_loss_class("ExpLogLoss", _F.exp_log_loss, value_range=(0.0, math.inf))
