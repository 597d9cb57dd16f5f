"""The loss module base class :class:`SegLoss` and the one compound, :class:`WeightedSum`.

A loss module holds its configuration only (validated at construction) and calls
its function in ``forward``; it computes nothing of its own. A loss class is three
lines: its functional form, its :class:`~seglosses._contract.LossInfo` and a
docstring (made from the function's when the class has none); the constructor takes
the function's keyword-only arguments. Loss modules compose: ``a + b``, ``0.1 * a``
and ``a * 0.1`` give a :class:`WeightedSum`. ``loss.spec()`` writes the string that
:func:`seglosses.build_loss` turns back into an equal module.
"""
from __future__ import annotations

import ast
import inspect
import math
from typing import Any, Callable, ClassVar, Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from .._contract import LossInfo
from .._inputs import float_tuple
from .._options import did_you_mean, lookup_option, MODES, DOMAINS, REDUCTIONS, check_fraction, check_nonnegative
from ..distributed import resolve_sync
from ..functional.region import shared_statistics
from ._schedule import Ramp, Weight, is_finite, mul, mul_weights, scale_weight, weight_value

# validators applied at construction to configuration keys, by name
_VALIDATORS: Dict[str, Callable[[str, Any], Any]] = {
    "mode": lambda n, v: lookup_option(n, v, MODES),
    "domain": lambda n, v: lookup_option(n, v, DOMAINS),
    "reduction": lambda n, v: lookup_option(n, v, REDUCTIONS),
    "alpha": lambda n, v: None if v is None else check_nonnegative(n, v),
    "beta": check_nonnegative,
    "smooth": check_nonnegative,
    "label_smoothing": lambda n, v: check_fraction(n, v, open_high=True),
    "k": lambda n, v: None if v is None else check_nonnegative(n, v),
}
# keyword arguments of the functions that are per-call data: taken by ``forward``
_PER_CALL = ("mask",)
# sequence-valued configuration keys stored as tuples of floats (strings, e.g.
# class_weights="inverse_frequency", are kept as given)
_FLOAT_TUPLES = ("class_weights", "class_counts", "spacing")


class SegLoss(nn.Module):
    """Base of every loss module: configuration plus a call to :attr:`function`.

    Class attributes of a loss class:

    * ``function``: the functional form, called as ``function(input, target, **config)``;
      its keyword-only arguments are the constructor's (same names, defaults and docs);
    * ``info``: the :class:`~seglosses._contract.LossInfo` contract (registry name,
      modes, batching, value range, minimum at truth), read by the registry, the spec
      builder, the accumulator and the generic tests.
    """

    function: ClassVar[Callable[..., Tensor]]
    info: ClassVar[LossInfo]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "function" not in cls.__dict__:
            return
        fn = cls.__dict__["function"]
        fn = fn.__func__ if isinstance(fn, staticmethod) else fn
        cls.function = staticmethod(fn)  # type: ignore[assignment]
        # (per-call data, e.g. ``mask``, is an argument of ``forward``, not configuration)
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind is p.KEYWORD_ONLY and p.name not in _PER_CALL]
        defaults = {p.name: p.default for p in params}

        def __init__(self: SegLoss, **config: Any) -> None:
            for key in config:
                if key not in defaults:
                    raise TypeError(
                        f"{type(self).__name__}() got an unexpected keyword argument {key!r}"
                        f"{did_you_mean(key, defaults)}; valid: {', '.join(defaults)}"
                    )
            SegLoss.__init__(self, **{**defaults, **config})

        __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + params
        )
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = __init__  # type: ignore[method-assign]
        if not cls.__doc__:
            fdoc = inspect.cleandoc(fn.__doc__ or cls.__name__)
            summary, _, rest = fdoc.partition("\n")
            rest = rest.split("Example:")[0].rstrip()  # the examples run once, on the function
            cls.__doc__ = (
                f"{summary}\n\nModule form of :func:`seglosses.functional.{fn.__name__}`, called as "
                f"``loss(input, target)``; the constructor takes its keyword arguments.\n{rest}\n"
            )

    def __init__(self, **config: Any) -> None:
        super().__init__()
        for key, value in config.items():
            if key in _VALIDATORS:
                config[key] = _VALIDATORS[key](key, value)
            if key in _FLOAT_TUPLES and value is not None and not isinstance(value, (str, int, float)):
                config[key] = float_tuple(key, value)
        if config.get("sync") is not None:
            resolve_sync(config["sync"], config.get("domain"))  # raises early on a bad value
        self.config: Dict[str, Any] = config

    def forward(self, input: Tensor, target: Tensor, *, mask: Tensor | None = None) -> Tensor:  # noqa: D102
        if mask is None:
            return type(self).function(input, target, **self.config)
        return type(self).function(input, target, **self.config, mask=mask)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())

    @property
    def name(self) -> str:
        """The registry name of the loss (its class name when it declares none)."""
        info = getattr(type(self), "info", None)
        return info.name if info is not None else type(self).__name__

    @property
    def value_range(self) -> Tuple[float, float]:
        """The documented range ``(low, high)`` of this loss as configured (``info.range_for``)."""
        info = getattr(type(self), "info", None)
        return info.range_for(self.config) if info is not None else (-math.inf, math.inf)

    def spec(self) -> str:
        """A string that :func:`seglosses.build_loss` turns back into an equal module:
        ``name(key=value, ...)`` with the non-default arguments.

        Raises:
            ValueError: the class declares no ``info`` (not registered), or a value is
                not a Python literal.
        """
        if getattr(type(self), "info", None) is None:
            raise ValueError(f"`loss` must be a registered loss module to have a spec; got {type(self).__name__}")
        defaults = {k: p.default for k, p in inspect.signature(type(self)).parameters.items()}
        args = []
        for key, value in self.config.items():
            if key in defaults and defaults[key] is not inspect.Parameter.empty and _same(defaults[key], value):
                continue
            args.append(f"{key}={_literal(value, f'config {key!r}')}")
        return f"{self.name}({', '.join(args)})" if args else self.name

    # ---- composition ----
    def __add__(self, other: "SegLoss") -> "SegLoss":
        if not isinstance(other, SegLoss):
            return NotImplemented
        return WeightedSum.of(self) + WeightedSum.of(other)

    def __mul__(self, weight: Any) -> "SegLoss":
        if isinstance(weight, (SegLoss, Tensor)) or not (isinstance(weight, (int, float)) or callable(weight)):
            return NotImplemented
        return WeightedSum.of(self).scaled(weight)

    __rmul__ = __mul__

    def __truediv__(self, divisor: float) -> "SegLoss":
        if not isinstance(divisor, (int, float)) or isinstance(divisor, bool):
            return NotImplemented
        if divisor == 0 or not math.isfinite(divisor):
            raise ValueError(f"`divisor` must be a finite non-zero number; got {divisor!r}")
        return self * (1.0 / divisor)


def _literal(value: Any, where: str) -> str:
    text = repr(value)
    try:
        ok = ast.literal_eval(text) == value
    except (ValueError, SyntaxError):
        ok = False
    if not ok:
        raise ValueError(f"`loss` {where} must be a Python literal to have a spec; got {value!r}")
    return text


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b) or (
            isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
            and not isinstance(b, bool) and float(a) == float(b))
    except Exception:  # noqa: BLE001 - tensors and other odd defaults: not the same
        return False


class WeightedSum(SegLoss):
    r"""A weighted sum of losses: :math:`L = \sum_k w_k L_k(\text{input}, \text{target})`.

    Built by ``+`` and ``*`` on loss modules or by :func:`seglosses.build_loss`. Each
    term sees the same ``(input, target)``. ``forward(input, target, return_terms=True)``
    also returns each term's (unweighted, detached) value for logging. Region terms
    share one canonicalisation and value check (one host sync), and one statistics pass
    when they need the same moments (:func:`~seglosses.functional.region.shared_statistics`).
    A term's weight
    is a number or a schedule ``step -> float`` evaluated at the sum's current step
    (advance it with :meth:`step`, e.g. once per epoch); the step is part of
    ``state_dict()``, so a resumed run continues its schedules where it stopped.

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

    def __init__(self, terms: Sequence[Tuple[Weight, nn.Module]]) -> None:
        super().__init__()
        terms = list(terms)
        if not terms:
            raise ValueError("`terms` must hold at least one (weight, loss) pair; got none")
        for i, (w, loss) in enumerate(terms):
            if not isinstance(loss, nn.Module):
                raise TypeError(f"`terms[{i}]` loss must be a loss module; got {type(loss).__name__}")
            if not callable(w) and (isinstance(w, bool) or not isinstance(w, (int, float))):
                raise TypeError(f"`terms[{i}]` weight must be a number or a callable schedule; got {type(w).__name__}")
            if not callable(w) and not is_finite(w):
                raise ValueError(f"`terms[{i}]` weight must be a finite number; got {w!r}")
        self.losses = nn.ModuleList([loss for _, loss in terms])
        self._weights: List[Weight] = [w if callable(w) else float(w) for w, _ in terms]
        self.current_step = 0
        self.minimum_at_truth: bool = all(
            l.minimum_at_truth if isinstance(l, WeightedSum)
            else getattr(getattr(type(l), "info", None), "minimum_at_truth", False)
            for l in self.losses
        )

    @classmethod
    def of(cls, loss: SegLoss) -> "WeightedSum":
        """``loss`` as a sum (itself when it is one already)."""
        return loss if isinstance(loss, WeightedSum) else cls([(1.0, loss)])

    def terms(self) -> List[Tuple[Weight, nn.Module]]:
        return list(zip(self._weights, self.losses))

    def weights(self) -> List[float]:
        """The term weights at the current step."""
        return [weight_value(w, self.current_step) for w in self._weights]

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

    def scaled(self, factor: Weight) -> WeightedSum:
        if not callable(factor) and not is_finite(factor):
            raise ValueError(f"`weight` must be a finite number; got {factor!r}")
        terms = [(mul(factor, w), l) for w, l in self.terms()]
        for (w, _), (product, _) in zip(self.terms(), terms):
            if not callable(product) and not is_finite(product):
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
            base = loss.name if isinstance(loss, SegLoss) else type(loss).__name__
            name, k = base, next_k.get(base, 2)
            while name in taken:
                name, k = f"{base}_{k}", k + 1
            next_k[base] = k
            taken.add(name)
            names.append(name)
        return names

    def forward(self, input: Tensor, target: Tensor, return_terms: bool = False, *,  # type: ignore[override]
                mask: Tensor | None = None):
        total = None
        values: Dict[str, Tensor] = {}
        with shared_statistics():  # region terms share one canonicalisation and value check
            for name, w, loss in zip(self.term_names(), self.weights(), self.losses):
                v = loss(input, target) if mask is None else loss(input, target, mask=mask)
                values[name] = v.detach()
                total = w * v if total is None else total + w * v
        return (total, values) if return_terms else total

    def extra_repr(self) -> str:
        return " + ".join(f"{w!r}*{type(l).__name__}" for w, l in self.terms())

    def flat_terms(self, factor: Any = 1.0) -> List[Tuple[Any, nn.Module]]:
        """The terms of nested sums with their weights multiplied out (numbers and ramps)."""
        out: List[Tuple[Any, nn.Module]] = []
        for w, term in self.terms():
            if isinstance(term, WeightedSum):
                if callable(w) and not isinstance(w, Ramp):
                    raise ValueError("`loss` nested sums must have numeric weights to have a spec")
                out += term.flat_terms(mul_weights(factor, w, "nested sum"))
            else:
                out.append((mul_weights(factor, w, "weight") if not callable(w) or isinstance(w, Ramp) else w, term))
        return out

    def spec(self) -> str:
        """``w1*a(...) + w2*b(...)``: the terms' specs with their weights (numbers or ramps).

        Raises:
            ValueError: a term is not registered, or a weight is an arbitrary callable.
        """
        text = ""
        for w, term in self.flat_terms():
            if not isinstance(term, SegLoss):
                raise ValueError(f"`loss` must be a registered loss module to have a spec; got {type(term).__name__}")
            ws = _weight_spec(w)
            if text and ws.startswith("-"):
                text += f" - {ws[1:]}*{term.spec()}"
            else:
                text += f"{' + ' if text else ''}{ws}*{term.spec()}"
        return text


def _weight_spec(w: Any) -> str:
    if isinstance(w, Ramp):
        return repr(w)
    factor, inner = getattr(w, "factor", None), getattr(w, "inner", None)
    if isinstance(inner, Ramp) and isinstance(factor, (int, float)):
        return repr(scale_weight(inner, float(factor)))
    if callable(w):
        raise ValueError(f"`loss` weight must be a number or a Ramp to have a spec; got the callable {w!r}")
    return repr(float(w))
