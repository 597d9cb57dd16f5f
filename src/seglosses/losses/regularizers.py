"""Module forms of the seed 000 regularisers (formulas in :mod:`seglosses.functional.regularizers`).

Each is a loss of its own and composes with any other: ``TverskyLoss() + 0.1 * ConfidencePenalty()``.
"""
from __future__ import annotations

import math

from ..functional import regularizers as F
from ._base import make_loss_class

__all__ = ["LabelNoisePenalty", "ConfidencePenalty"]

LabelNoisePenalty = make_loss_class(
    "LabelNoisePenalty", F.label_noise_penalty, value_range=(0.0, math.inf), minimum_at_truth=False
)
ConfidencePenalty = make_loss_class(
    "ConfidencePenalty", F.confidence_penalty, value_range=(0.0, math.inf), minimum_at_truth=False
)
