"""Weighted sums of losses and the compound losses of seed 001.

:class:`WeightedSum` (defined with :class:`~seglosses.losses.SegLoss`) is the one
compound mechanism of the package: ``+`` and scalar ``*`` on loss modules build it,
and :func:`seglosses.build_loss` returns it for a spec with several terms. A term's
weight is a number or a schedule (:class:`Ramp`, or any callable
``weight(step) -> float``) evaluated at the sum's current step.
"""
from __future__ import annotations

import math

from .._contract import LossInfo
from ..functional import compound as F
from ._base import SegLoss, WeightedSum
from ._schedule import Ramp, Weight  # noqa: F401 - Weight: the type of a term weight

__all__ = ["WeightedSum", "Ramp", "ComboLoss", "ExpLogLoss", "UnifiedFocalLoss"]


class ComboLoss(SegLoss):
    function = staticmethod(F.combo_loss)
    info = LossInfo("combo", "whole_batch", value_range=(-1.0, math.inf))


class ExpLogLoss(SegLoss):
    function = staticmethod(F.exp_log_loss)
    info = LossInfo("exp_log", "whole_batch", value_range=(0.0, math.inf))


class UnifiedFocalLoss(SegLoss):
    function = staticmethod(F.unified_focal_loss)
    info = LossInfo("unified_focal", "whole_batch", modes=("binary", "multiclass"), value_range=(0.0, math.inf))
