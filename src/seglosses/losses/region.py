"""Module forms of the region losses (formulas in :mod:`seglosses.functional.region`).

Each is a ratio of sums over (item, class) statistics (``batching="statistics"``):
exact over micro-batches (:class:`~seglosses.BatchwiseAccumulator`) and processes
(``sync``) in the batch domain.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Tuple

from .._contract import LossInfo
from ..functional import region as F
from ._base import SegLoss


def _index_range(config: Mapping[str, Any]) -> Tuple[float, float]:
    """[0, 1] for ``1 - I``; [0, -log 1e-7] for ``log_loss=True`` (``-log`` of the floored index)."""
    return (0.0, -math.log(F.LOG_FLOOR)) if config.get("log_loss") else (0.0, 1.0)

__all__ = [
    "DiceLoss",
    "IoULoss",
    "JaccardLoss",
    "TverskyLoss",
    "FocalTverskyLoss",
    "AsymmetricSimilarityLoss",
    "GeneralizedDiceLoss",
    "PenaltyGeneralizedDiceLoss",
    "SensitivitySpecificityLoss",
    "LogCoshDiceLoss",
]


class DiceLoss(SegLoss):
    function = staticmethod(F.dice_loss)
    info = LossInfo("dice", "statistics", range_of=_index_range)


class IoULoss(SegLoss):
    function = staticmethod(F.iou_loss)
    info = LossInfo("iou", "statistics", range_of=_index_range)


JaccardLoss = IoULoss


class TverskyLoss(SegLoss):
    function = staticmethod(F.tversky_loss)
    info = LossInfo("tversky", "statistics", range_of=_index_range)


class FocalTverskyLoss(SegLoss):
    function = staticmethod(F.focal_tversky_loss)
    info = LossInfo("focal_tversky", "statistics")


class AsymmetricSimilarityLoss(SegLoss):
    function = staticmethod(F.asymmetric_similarity_loss)
    info = LossInfo("asymmetric_similarity", "statistics")


class GeneralizedDiceLoss(SegLoss):
    function = staticmethod(F.generalized_dice_loss)
    info = LossInfo("generalized_dice", "statistics")


class PenaltyGeneralizedDiceLoss(SegLoss):
    function = staticmethod(F.penalty_generalized_dice_loss)
    info = LossInfo("penalty_generalized_dice", "statistics")


class SensitivitySpecificityLoss(SegLoss):
    function = staticmethod(F.sensitivity_specificity_loss)
    info = LossInfo("sensitivity_specificity", "statistics")


class LogCoshDiceLoss(SegLoss):
    function = staticmethod(F.log_cosh_dice_loss)
    info = LossInfo("log_cosh_dice", "statistics", value_range=(0.0, math.log(math.cosh(1.0))))
