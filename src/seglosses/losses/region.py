"""Module forms of the region losses (formulas in :mod:`seglosses.functional.region`)."""
from __future__ import annotations

from ..functional import region as F
from ._base import make_loss_class

__all__ = [
    "DiceLoss",
    "IoULoss",
    "JaccardLoss",
    "TverskyLoss",
    "FocalTverskyLoss",
    "AsymmetricSimilarityLoss",
    "GeneralizedDiceLoss",
    "PenaltyGeneralizedDiceLoss",
    "SensitivitySpecificityLoss",
]

DiceLoss = make_loss_class("DiceLoss", F.dice_loss)
IoULoss = make_loss_class("IoULoss", F.iou_loss)
JaccardLoss = IoULoss
TverskyLoss = make_loss_class("TverskyLoss", F.tversky_loss)
FocalTverskyLoss = make_loss_class("FocalTverskyLoss", F.focal_tversky_loss)
AsymmetricSimilarityLoss = make_loss_class("AsymmetricSimilarityLoss", F.asymmetric_similarity_loss)
GeneralizedDiceLoss = make_loss_class("GeneralizedDiceLoss", F.generalized_dice_loss)
PenaltyGeneralizedDiceLoss = make_loss_class("PenaltyGeneralizedDiceLoss", F.penalty_generalized_dice_loss)
SensitivitySpecificityLoss = make_loss_class("SensitivitySpecificityLoss", F.sensitivity_specificity_loss)
