"""Module forms of the boundary-based losses (formulas in :mod:`seglosses.functional.boundary`)."""
from __future__ import annotations

import math

from ..functional import boundary as F
from ._base import make_loss_class

__all__ = ["BoundaryLoss", "HausdorffDTLoss"]

BoundaryLoss = make_loss_class("BoundaryLoss", F.boundary_loss, value_range=(-math.inf, math.inf))
HausdorffDTLoss = make_loss_class("HausdorffDTLoss", F.hausdorff_dt_loss, value_range=(0.0, math.inf))
