"""Module form of the margin calibration loss (formula in :mod:`seglosses.functional.margin`)."""
from __future__ import annotations

import math

from ..functional import margin as F
from ._base import make_loss_class

__all__ = ["MarginCalibrationLoss"]

MarginCalibrationLoss = make_loss_class("MarginCalibrationLoss", F.margin_calibration_loss,
                                        value_range=(0.0, math.inf))
