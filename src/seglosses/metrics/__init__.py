"""Evaluation metrics: overlap, ranking and surface metrics, per image and per data set.

* overlap (:mod:`.overlap`): :func:`dice`, :func:`jaccard`, :func:`tversky_index`,
  :func:`sensitivity`, :func:`specificity`, :func:`precision`, :func:`balanced_accuracy`,
  :func:`pixel_accuracy`, :func:`iou_per_class`, :func:`mean_iou`,
  :func:`generalized_dice_score`, :func:`volume_difference`: formulas over the
  confusion counts of a hard prediction, from the package's one statistics kernel;
* the confusion-matrix family (:mod:`.confusion`): :func:`matthews_correlation`,
  :func:`fbeta_score`, :func:`negative_predictive_value`, :func:`miss_rate`,
  :func:`fall_out`, :func:`false_discovery_rate`, :func:`false_omission_rate`,
  :func:`threat_score`, :func:`informedness`, :func:`markedness`,
  :func:`fowlkes_mallows`, :func:`prevalence_threshold`, and :func:`confusion_metric`
  by name (MONAI's names accepted), from the same counts;
* ranking (:mod:`.ranking`): :func:`average_precision` and :func:`roc_auc` (exact, or
  binned for streaming) and their error bounds :func:`average_precision_error_bound`,
  :func:`roc_auc_error_bound`;
* calibration (:mod:`.calibration`): :func:`expected_calibration_error`,
  :func:`maximum_calibration_error`, and the reliability bins :func:`calibration_bins`;
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
    generalized_dice_score,
    volume_difference,
)
from .confusion import (
    confusion_metric,
    fall_out,
    false_discovery_rate,
    false_omission_rate,
    fbeta_score,
    fowlkes_mallows,
    informedness,
    markedness,
    matthews_correlation,
    miss_rate,
    negative_predictive_value,
    prevalence_threshold,
    threat_score,
)
from .calibration import calibration_bins, expected_calibration_error, maximum_calibration_error
from .ranking import average_precision, average_precision_error_bound, roc_auc, roc_auc_error_bound
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
    "generalized_dice_score",
    "volume_difference",
    "matthews_correlation",
    "fbeta_score",
    "negative_predictive_value",
    "miss_rate",
    "fall_out",
    "false_discovery_rate",
    "false_omission_rate",
    "threat_score",
    "informedness",
    "markedness",
    "fowlkes_mallows",
    "prevalence_threshold",
    "confusion_metric",
    "average_precision",
    "average_precision_error_bound",
    "roc_auc",
    "roc_auc_error_bound",
    "expected_calibration_error",
    "maximum_calibration_error",
    "calibration_bins",
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
