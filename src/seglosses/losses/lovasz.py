"""Module form of the Lovász losses (formulas in :mod:`seglosses.functional.lovasz`)."""
from __future__ import annotations

import math

from ..functional import lovasz as F
from ._base import make_loss_class

__all__ = ["LovaszLoss"]

LovaszLoss = make_loss_class("LovaszLoss", F.lovasz_loss, value_range=(0.0, math.inf))
