"""The loss module base class and the factory that makes one thin class per function.

A loss module holds its configuration only (validated at construction) and calls
its function in ``forward``; it computes nothing of its own. Loss modules compose:
``a + b``, ``0.1 * a`` and ``a * 0.1`` give a :class:`~seglosses.losses.compound.WeightedSum`.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Tuple

import torch
from torch import Tensor, nn

from .._inputs import float_tuple
from .._options import did_you_mean, lookup_option, MODES, DOMAINS, REDUCTIONS, check_nonnegative

# validators applied at construction to configuration keys, by name
_VALIDATORS: Dict[str, Callable[[str, Any], Any]] = {
    "mode": lambda n, v: lookup_option(n, v, MODES),
    "domain": lambda n, v: lookup_option(n, v, DOMAINS),
    "reduction": lambda n, v: lookup_option(n, v, REDUCTIONS),
    "alpha": lambda n, v: None if v is None else check_nonnegative(n, v),
    "beta": check_nonnegative,
    "smooth": check_nonnegative,
    "k": lambda n, v: None if v is None else check_nonnegative(n, v),
}
# sequence-valued configuration keys stored as tuples of floats (strings, e.g.
# class_weights="inverse_frequency", are kept as given)
_FLOAT_TUPLES = ("class_weights", "class_counts", "spacing")


class SegLoss(nn.Module):
    """Base of every loss module: configuration plus a call to :attr:`function`.

    Class attributes read by the generic tests and by the registry:

    * ``function``: the functional form, called as ``function(input, target, **config)``;
    * ``value_range``: the documented range ``(low, high)`` of the reduced loss;
    * ``minimum_at_truth``: whether the minimum is reached at a perfect prediction.
    """

    function: Callable[..., Tensor]
    value_range: Tuple[float, float] = (0.0, 1.0)
    minimum_at_truth: bool = True

    def __init__(self, **config: Any) -> None:
        super().__init__()
        for key, value in config.items():
            if key in _VALIDATORS:
                config[key] = _VALIDATORS[key](key, value)
            if key in _FLOAT_TUPLES and value is not None and not isinstance(value, (str, int, float)):
                config[key] = float_tuple(key, value)
        if config.get("sync") is not None:
            from ..distributed import resolve_sync

            resolve_sync(config["sync"], config.get("domain"))  # raises early on a bad value
        self.config: Dict[str, Any] = config

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: D102
        return type(self).function(input, target, **self.config)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())

    def spec(self) -> str:
        """A string that :func:`seglosses.build_loss` turns back into an equal module."""
        from ..build import loss_spec

        return loss_spec(self)

    # ---- composition ----
    def __add__(self, other: "SegLoss") -> "SegLoss":
        from .compound import WeightedSum

        if not isinstance(other, SegLoss):
            return NotImplemented
        return WeightedSum.of(self) + WeightedSum.of(other)

    def __mul__(self, weight: Any) -> "SegLoss":
        from .compound import WeightedSum

        if isinstance(weight, (SegLoss, Tensor)) or not (isinstance(weight, (int, float)) or callable(weight)):
            return NotImplemented
        return WeightedSum.of(self).scaled(weight)

    __rmul__ = __mul__

    def __truediv__(self, divisor: float) -> "SegLoss":
        if not isinstance(divisor, (int, float)) or isinstance(divisor, bool):
            return NotImplemented
        return self * (1.0 / divisor)


def make_loss_class(
    name: str,
    function: Callable[..., Tensor],
    *,
    value_range: Tuple[float, float] = (0.0, 1.0),
    minimum_at_truth: bool = True,
    module: str = "seglosses.losses",
) -> type:
    """Make the module class of a functional loss: its keyword-only arguments become
    the constructor's, with the same defaults, names and docs.

    Unknown keywords raise ``TypeError`` with the closest valid name.
    """
    params = [p for p in inspect.signature(function).parameters.values() if p.kind is p.KEYWORD_ONLY]
    defaults = {p.name: p.default for p in params}

    def __init__(self, **kwargs: Any) -> None:
        for key in kwargs:
            if key not in defaults:
                raise TypeError(
                    f"{name}() got an unexpected keyword argument {key!r}{did_you_mean(key, defaults)}; "
                    f"valid: {', '.join(defaults)}"
                )
        SegLoss.__init__(self, **{**defaults, **kwargs})

    __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + params
    )
    fdoc = inspect.cleandoc(function.__doc__ or name)
    summary, _, body = fdoc.partition("\n")
    body = body.split("Example:")[0].rstrip()  # the examples run once, on the function
    doc = (
        f"{summary}\n\nModule form of :func:`seglosses.functional.{function.__name__}`, called as "
        f"``loss(input, target)``; the constructor takes its keyword arguments.\n{body}\n"
    )
    cls = type(
        name,
        (SegLoss,),
        {
            "__init__": __init__,
            "__doc__": doc,
            "__module__": module,
            "function": staticmethod(function),
            "value_range": value_range,
            "minimum_at_truth": minimum_at_truth,
        },
    )
    return cls
