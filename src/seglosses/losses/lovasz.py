"""Module form of the Lovász losses (formulas in :mod:`seglosses.functional.lovasz`)."""
from __future__ import annotations

import math

from .._contract import LossInfo
from ..functional import lovasz as F
from ._base import SegLoss

__all__ = ["LovaszLoss"]


class LovaszLoss(SegLoss):
    function = staticmethod(F.lovasz_loss)
    info = LossInfo("lovasz", "whole_batch", value_range=(0.0, math.inf))
