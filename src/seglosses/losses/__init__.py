"""Loss modules: one thin class per functional loss, plus :class:`WeightedSum`."""
from ._base import SegLoss
from .compound import WeightedSum
from .compound import ComboLoss, ExpLogLoss, Ramp, UnifiedFocalLoss
from .distribution import CrossEntropyLoss, DistancePenalizedCELoss, FocalLoss, TopKLoss
from .margin import MarginCalibrationLoss
from .lovasz import LovaszLoss
from .boundary import BoundaryLoss, HausdorffDTLoss, HausdorffERLoss, LogHausdorffDTLoss
from .confusion import GeneralizedWassersteinDiceLoss, MCCLoss
from .topology import DiceClDiceLoss, SkeletonRecallLoss, SoftClDiceLoss
from .region import (
    AsymmetricSimilarityLoss,
    DiceLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    IoULoss,
    JaccardLoss,
    LogCoshDiceLoss,
    PenaltyGeneralizedDiceLoss,
    SensitivitySpecificityLoss,
    TverskyLoss,
)
from .regularizers import ConfidencePenalty, LabelNoisePenalty

__all__ = [
    "SegLoss",
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
    "CrossEntropyLoss",
    "TopKLoss",
    "FocalLoss",
    "DistancePenalizedCELoss",
    "MarginCalibrationLoss",
    "ComboLoss",
    "ExpLogLoss",
    "Ramp",
    "LovaszLoss",
    "BoundaryLoss",
    "HausdorffDTLoss",
    "LogHausdorffDTLoss",
    "HausdorffERLoss",
    "LogCoshDiceLoss",
    "MCCLoss",
    "GeneralizedWassersteinDiceLoss",
    "UnifiedFocalLoss",
    "SoftClDiceLoss",
    "DiceClDiceLoss",
    "SkeletonRecallLoss",
]
