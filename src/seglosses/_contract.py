"""What a loss declares about itself: :class:`LossInfo`, read instead of inferred.

Every registered loss class carries ``info = LossInfo(...)``. The registry takes the
canonical name from it, :class:`~seglosses.BatchwiseAccumulator` decides from
``batching`` how a loss splits over micro-batches and processes, the spec builder
writes ``info.name``, and the generic test suite runs each loss in ``info.modes`` and
checks ``value_range`` and ``minimum_at_truth``. Nothing here imports the rest of the
package.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Tuple

from ._options import MODES, lookup_option

#: ``batching`` values.
#: ``"statistics"``: a formula over sums of per-pixel statistics per (item, class)
#: (the region losses): in the batch domain the sums add over micro-batches and
#: processes (exact accumulation and ``sync``), in the image domain every image is
#: an item of a mean. The functional form takes ``domain`` and ``sync``.
#: ``"pixel_mean"``: a mean of per-pixel values over the valid pixels; exact over
#: micro-batches when ``batch_dependence`` finds nothing that reads the whole batch.
#: ``"whole_batch"``: neither (sorting over the batch, distance maps of the batch,
#: mixed terms): trained on whole batches only.
BATCHINGS = ("statistics", "pixel_mean", "whole_batch")

#: The condition under which a pixel-mean loss's per-pixel values depend on the rest
#: of the batch: ``None`` when they do not, else a sentence saying why.
BatchDependence = Callable[[Mapping[str, Any]], Optional[str]]


def independent(config: Mapping[str, Any]) -> Optional[str]:
    """Per-pixel values never depend on the rest of the batch."""
    return None


def fixed_class_weights(config: Mapping[str, Any]) -> Optional[str]:
    """Depends on the batch when ``class_weights`` is a rule computed from the batch."""
    cw = config.get("class_weights")
    if isinstance(cw, str):
        return (f"its class_weights={cw!r} are computed from the class frequencies of each batch (pass fixed "
                f"weights, e.g. from the data set's frequencies)")
    return None


@dataclass(frozen=True)
class LossInfo:
    """The declared contract of a loss class.

    Attributes:
        name: canonical registry name (``build_loss`` specs, logs, ``spec()``).
        batching: one of :data:`BATCHINGS`.
        modes: the ``mode`` values the loss accepts.
        value_range: documented range ``(low, high)`` of the reduced loss.
        minimum_at_truth: the minimum is reached at a perfect prediction.
        differentiable: the loss has a gradient w.r.t. the prediction (every loss here).
        batch_dependence: for ``"pixel_mean"``, when its values read the whole batch.
        range_of: the range for a configuration when it depends on one (e.g. Dice's
            ``log_loss=True``): ``config -> (low, high)``; ``None``: always ``value_range``.
            Read through :meth:`range_for` (or a loss module's ``value_range``).
    """

    name: str
    batching: str
    modes: Tuple[str, ...] = MODES
    value_range: Tuple[float, float] = (0.0, 1.0)
    minimum_at_truth: bool = True
    differentiable: bool = True
    batch_dependence: BatchDependence = independent
    range_of: Optional[Callable[[Mapping[str, Any]], Tuple[float, float]]] = None

    def __post_init__(self) -> None:
        lookup_option("batching", self.batching, BATCHINGS)
        for m in self.modes:
            lookup_option("modes", m, MODES)
        lo, hi = self.value_range
        if not (lo <= hi) or math.isnan(lo) or math.isnan(hi):
            raise ValueError(f"`value_range` must be (low, high) with low <= high; got {self.value_range!r}")

    def range_for(self, config: Mapping[str, Any]) -> Tuple[float, float]:
        """The documented range ``(low, high)`` of the reduced loss under ``config``."""
        if self.range_of is None:
            return self.value_range
        lo, hi = self.range_of(config)
        return float(lo), float(hi)

    @property
    def exact_over_batches(self) -> bool:
        """A ratio of batch sums: exact accumulation and ``sync`` apply in the batch domain."""
        return self.batching == "statistics"
