"""Evaluation metrics: overlap, ranking and surface metrics, per image and per data set.

* overlap (:mod:`.overlap`): :func:`dice`, :func:`jaccard`, :func:`tversky_index`,
  :func:`sensitivity`, :func:`specificity`, :func:`precision`, :func:`balanced_accuracy`,
  :func:`pixel_accuracy`, :func:`iou_per_class`, :func:`mean_iou`: formulas over the
  confusion counts of a hard prediction, from the package's one statistics kernel;
* ranking (:mod:`.ranking`): :func:`average_precision` (exact, or binned for streaming)
  and :func:`average_precision_error_bound`;
* surface (:mod:`.surface`): :func:`hausdorff`, :func:`hd95`, :func:`assd`,
  :func:`surface_dice`, :func:`modified_hausdorff` (seed 000 eq. 7), and
  :func:`surface_metrics` for several at once from one surface extraction;
* streaming (:mod:`.streaming`): :class:`SegmentationMetrics`, sums of statistics with
  dataset-level and per-image-mean results, all-reduced under ``torch.distributed``;
* :class:`TorchmetricsSegmentationMetrics` (:mod:`.adapters`): the same as a
  ``torchmetrics.Metric``; importing it needs torchmetrics, nothing else here does.

Every function is called as ``f(input, target, *, mode=..., ...)`` with ``input`` the
prediction (probabilities by default, logits with ``from_logits=True``, or a hard
prediction) and returns the mean over images and classes by default, the
``[B, C]`` values with ``reduction="none"``.
"""
from .overlap import (
    balanced_accuracy,
    dice,
    iou_per_class,
    jaccard,
    mean_iou,
    pixel_accuracy,
    precision,
    sensitivity,
    specificity,
    tversky_index,
)
from .ranking import average_precision, average_precision_error_bound
from .streaming import METRIC_NAMES, SegmentationMetrics
from .surface import assd, hausdorff, hd95, modified_hausdorff, surface_dice, surface_mask, surface_metrics

__all__ = [
    "dice",
    "jaccard",
    "tversky_index",
    "sensitivity",
    "specificity",
    "precision",
    "balanced_accuracy",
    "pixel_accuracy",
    "iou_per_class",
    "mean_iou",
    "average_precision",
    "average_precision_error_bound",
    "hausdorff",
    "hd95",
    "assd",
    "surface_dice",
    "modified_hausdorff",
    "surface_metrics",
    "surface_mask",
    "SegmentationMetrics",
    "METRIC_NAMES",
    "TorchmetricsSegmentationMetrics",
]


def __getattr__(name: str):
    # torchmetrics is optional: import the adapter on first use only
    if name == "TorchmetricsSegmentationMetrics":
        from .adapters import TorchmetricsSegmentationMetrics

        return TorchmetricsSegmentationMetrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
