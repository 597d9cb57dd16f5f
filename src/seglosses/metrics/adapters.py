"""A ``torchmetrics.Metric`` around :class:`~seglosses.metrics.SegmentationMetrics`.

This module imports ``torchmetrics``; :mod:`seglosses.metrics` imports it only when
:class:`TorchmetricsSegmentationMetrics` is first used, so torchmetrics stays optional.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import Tensor
from torchmetrics import Metric

from .streaming import SegmentationMetrics

__all__ = ["TorchmetricsSegmentationMetrics"]


def _attr(key: str) -> str:
    return "state_" + key.replace("/", "__")


class TorchmetricsSegmentationMetrics(Metric):
    """:class:`~seglosses.metrics.SegmentationMetrics` as a ``torchmetrics.Metric`` (for Lightning).

    The same metrics, formulas and result keys; the sums become torchmetrics states with
    ``dist_reduce_fx="sum"``, so torchmetrics (and Lightning's ``self.log``) synchronise
    them across processes. ``forward`` returns the metrics of the batch alone and adds
    the batch to the running sums (``full_state_update=False``).

    Args:
        metrics, num_classes: as :class:`~seglosses.metrics.SegmentationMetrics`.
        **kwargs: as :class:`~seglosses.metrics.SegmentationMetrics`
            (``process_group`` and ``device`` are torchmetrics' business here and are not
            accepted; use ``process_group=`` / ``.to(device)`` of ``torchmetrics.Metric``).

    Example:
        >>> m = TorchmetricsSegmentationMetrics(["dice"], aggregation="dataset")
        >>> m.update(torch.tensor([[[1.0, 1.0, 0.0]]]), torch.tensor([[1, 0, 0]]))
        >>> round(float(m.compute()["dice_dataset"]), 4)
        0.6667
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, metrics: Any, num_classes: Any = None, **kwargs: Any) -> None:
        tm_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in (
            "compute_on_cpu", "dist_sync_on_step", "process_group", "dist_sync_fn", "distributed_available_fn",
            "sync_on_compute", "compute_with_cache")}
        if "device" in kwargs:
            raise TypeError("`device` must not be given; got it (move the metric with .to(device))")
        super().__init__(**tm_kwargs)
        self._plan = SegmentationMetrics(metrics, num_classes, **kwargs)
        for key, value in self._plan.state().items():
            self.add_state(_attr(key), default=torch.zeros_like(value), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> None:  # type: ignore[override]
        for key, value in self._plan.batch_sums(pred, target, mask).items():
            state = getattr(self, _attr(key))
            setattr(self, _attr(key), state + value.to(device=state.device, dtype=state.dtype))

    def compute(self) -> Dict[str, Tensor]:  # type: ignore[override]
        return self._plan.finalize({key: getattr(self, _attr(key)) for key in self._plan.state()})
