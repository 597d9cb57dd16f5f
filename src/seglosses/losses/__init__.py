"""Loss modules: one thin class per functional loss, plus :class:`WeightedSum`."""
from ._base import SegLoss, make_loss_class
from .compound import WeightedSum
from .region import (
    AsymmetricSimilarityLoss,
    DiceLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    IoULoss,
    JaccardLoss,
    PenaltyGeneralizedDiceLoss,
    SensitivitySpecificityLoss,
    TverskyLoss,
)
from .regularizers import ConfidencePenalty, LabelNoisePenalty

__all__ = [
    "SegLoss",
    "make_loss_class",
    "WeightedSum",
    "DiceLoss",
    "IoULoss",
    "JaccardLoss",
    "TverskyLoss",
    "FocalTverskyLoss",
    "AsymmetricSimilarityLoss",
    "GeneralizedDiceLoss",
    "PenaltyGeneralizedDiceLoss",
    "SensitivitySpecificityLoss",
    "LabelNoisePenalty",
    "ConfidencePenalty",
]
