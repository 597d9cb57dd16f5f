"""Module form of the margin calibration loss (formula in :mod:`seglosses.functional.margin`)."""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from .._contract import LossInfo, fixed_class_weights
from ..functional import margin as F
from ._base import SegLoss

__all__ = ["MarginCalibrationLoss"]


def _fixed_margins(config: Mapping[str, Any]) -> Optional[str]:
    if config.get("class_counts") is None:
        return ("its margins come from the class counts of each batch (pass fixed class_counts, e.g. "
                "seglosses.functional.count_classes over the data set)")
    return fixed_class_weights(config)


class MarginCalibrationLoss(SegLoss):
    function = staticmethod(F.margin_calibration_loss)
    info = LossInfo("margin_calibration", "pixel_mean", modes=("binary", "multiclass"),
                    value_range=(0.0, math.inf), batch_dependence=_fixed_margins)
