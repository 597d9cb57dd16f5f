"""Module forms of the topology-aware losses (formulas in :mod:`seglosses.functional.topology`).

Ratios of sums of per-pixel values that depend on one image only
(``batching="statistics"``): exact over micro-batches and processes in the batch domain.
"""
from __future__ import annotations

from .._contract import LossInfo
from ..functional import topology as F
from ._base import SegLoss

__all__ = ["SoftClDiceLoss", "DiceClDiceLoss", "SkeletonRecallLoss"]


class SoftClDiceLoss(SegLoss):
    function = staticmethod(F.cldice_loss)
    info = LossInfo("cldice", "statistics")


class DiceClDiceLoss(SegLoss):
    function = staticmethod(F.dice_cldice_loss)
    info = LossInfo("dice_cldice", "statistics")


class SkeletonRecallLoss(SegLoss):
    function = staticmethod(F.skeleton_recall_loss)
    info = LossInfo("skeleton_recall", "statistics")
