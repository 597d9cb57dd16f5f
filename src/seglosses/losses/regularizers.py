"""Module forms of the seed 000 regularisers (formulas in :mod:`seglosses.functional.regularizers`).

Each is a loss of its own and composes with any other: ``TverskyLoss() + 0.1 * ConfidencePenalty()``.
"""
from __future__ import annotations

import math

from .._contract import LossInfo
from ..functional import regularizers as F
from ._base import SegLoss

__all__ = ["LabelNoisePenalty", "ConfidencePenalty"]


class LabelNoisePenalty(SegLoss):
    function = staticmethod(F.label_noise_penalty)
    info = LossInfo("label_noise_penalty", "pixel_mean", value_range=(0.0, math.inf), minimum_at_truth=False)


class ConfidencePenalty(SegLoss):
    function = staticmethod(F.confidence_penalty)
    info = LossInfo("confidence_penalty", "pixel_mean", value_range=(0.0, math.inf), minimum_at_truth=False)
