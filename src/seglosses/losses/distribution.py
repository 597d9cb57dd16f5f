"""Module forms of the distribution losses (formulas in :mod:`seglosses.functional.distribution`)."""
from __future__ import annotations

import math

from ..functional import distribution as F
from ._base import make_loss_class

__all__ = ["CrossEntropyLoss", "TopKLoss", "FocalLoss", "DistancePenalizedCELoss"]

_RANGE = (0.0, math.inf)

CrossEntropyLoss = make_loss_class("CrossEntropyLoss", F.cross_entropy_loss, value_range=_RANGE)
TopKLoss = make_loss_class("TopKLoss", F.topk_loss, value_range=_RANGE)
FocalLoss = make_loss_class("FocalLoss", F.focal_loss, value_range=_RANGE)
DistancePenalizedCELoss = make_loss_class("DistancePenalizedCELoss", F.distance_penalized_ce_loss,
                                          value_range=_RANGE)
