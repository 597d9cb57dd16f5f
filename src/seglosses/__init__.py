"""seglosses: loss functions and evaluation metrics for medical image segmentation.

Losses are ``torch.nn.Module`` classes called as ``loss(input, target)``; their
functional forms live in :mod:`seglosses.functional`. Every region loss and overlap
metric is a formula over one statistics kernel,
:func:`seglosses.functional.soft_confusion`.
"""
from . import functional, regularizers
from .losses import (
    AsymmetricSimilarityLoss,
    ConfidencePenalty,
    DiceLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    IoULoss,
    JaccardLoss,
    LabelNoisePenalty,
    PenaltyGeneralizedDiceLoss,
    SegLoss,
    SensitivitySpecificityLoss,
    TverskyLoss,
    WeightedSum,
)
from . import accumulate, distributed
from .accumulate import BatchwiseAccumulator, freeze_bn, split_batch
from .losses import BoundaryLoss, HausdorffDTLoss, LovaszLoss

__version__ = "0.1.0"

__all__ = [
    "functional",
    "regularizers",
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
    "LovaszLoss",
    "BoundaryLoss",
    "HausdorffDTLoss",
    "accumulate",
    "distributed",
    "BatchwiseAccumulator",
    "split_batch",
    "freeze_bn",
]
