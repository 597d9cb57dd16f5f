"""Module forms of the distribution losses (formulas in :mod:`seglosses.functional.distribution`)."""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from .._contract import LossInfo, fixed_class_weights
from ..functional import distribution as F
from ._base import SegLoss

__all__ = ["CrossEntropyLoss", "TopKLoss", "FocalLoss", "DistancePenalizedCELoss"]

_RANGE = (0.0, math.inf)


def _ce_batch_dependence(config: Mapping[str, Any]) -> Optional[str]:
    if config.get("class_weights") is not None and config.get("weight_norm", "pixels") != "pixels":
        return (f"weight_norm={config.get('weight_norm')!r} divides by the class weights of the batch's pixels "
                f"(use weight_norm='pixels', the mean over valid pixels of seed 001 eq. 3)")
    return fixed_class_weights(config)


class CrossEntropyLoss(SegLoss):
    function = staticmethod(F.cross_entropy_loss)
    info = LossInfo("cross_entropy", "pixel_mean", value_range=_RANGE, batch_dependence=_ce_batch_dependence)


class TopKLoss(SegLoss):
    function = staticmethod(F.topk_loss)
    info = LossInfo("topk", "whole_batch", value_range=_RANGE)


class FocalLoss(SegLoss):
    function = staticmethod(F.focal_loss)
    info = LossInfo("focal", "pixel_mean", value_range=_RANGE, batch_dependence=fixed_class_weights)


class DistancePenalizedCELoss(SegLoss):
    function = staticmethod(F.distance_penalized_ce_loss)
    info = LossInfo("distance_penalized_ce", "pixel_mean", value_range=_RANGE, batch_dependence=fixed_class_weights)
