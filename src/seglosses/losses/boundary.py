"""Module forms of the boundary-based losses (formulas in :mod:`seglosses.functional.boundary`)."""
from __future__ import annotations

import math

from .._contract import LossInfo
from ..functional import boundary as F
from ._base import SegLoss

__all__ = ["BoundaryLoss", "HausdorffDTLoss", "LogHausdorffDTLoss", "HausdorffERLoss"]


class BoundaryLoss(SegLoss):
    function = staticmethod(F.boundary_loss)
    info = LossInfo("boundary", "whole_batch", value_range=(-math.inf, math.inf))


class HausdorffDTLoss(SegLoss):
    function = staticmethod(F.hausdorff_dt_loss)
    info = LossInfo("hausdorff_dt", "whole_batch", value_range=(0.0, math.inf))


class LogHausdorffDTLoss(SegLoss):
    function = staticmethod(F.log_hausdorff_dt_loss)
    info = LossInfo("log_hausdorff_dt", "whole_batch", value_range=(0.0, math.inf))


class HausdorffERLoss(SegLoss):
    function = staticmethod(F.hausdorff_er_loss)
    info = LossInfo("hausdorff_er", "whole_batch", value_range=(0.0, math.inf))
