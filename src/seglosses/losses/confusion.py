"""Module forms of the confusion-matrix losses (formulas in :mod:`seglosses.functional.confusion`).

Both are ratios of sums per item (``batching="statistics"``): exact over micro-batches
and processes in the batch domain.
"""
from __future__ import annotations

from .._contract import LossInfo
from ..functional import confusion as F
from ._base import SegLoss

__all__ = ["MCCLoss", "GeneralizedWassersteinDiceLoss"]


class MCCLoss(SegLoss):
    function = staticmethod(F.mcc_loss)
    info = LossInfo("mcc", "statistics", value_range=(0.0, 2.0))


class GeneralizedWassersteinDiceLoss(SegLoss):
    function = staticmethod(F.generalized_wasserstein_dice_loss)
    info = LossInfo("gwdl", "statistics", modes=("multiclass",))
