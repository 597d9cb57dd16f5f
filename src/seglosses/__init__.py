"""seglosses: loss functions and evaluation metrics for medical image segmentation.

Losses are ``torch.nn.Module`` classes called as ``loss(input, target)``; their
functional forms live in :mod:`seglosses.functional`. Every region loss and overlap
metric is a formula over one statistics kernel,
:func:`seglosses.functional.soft_confusion`.
"""
from . import functional, regularizers
from . import metrics
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

from . import registry
from .registry import list_losses
from .losses import (
    ComboLoss,
    CrossEntropyLoss,
    DistancePenalizedCELoss,
    ExpLogLoss,
    FocalLoss,
    MarginCalibrationLoss,
    TopKLoss,
)
from .losses import BoundaryLoss, HausdorffDTLoss, LovaszLoss
from .losses import (
    DiceClDiceLoss,
    GeneralizedWassersteinDiceLoss,
    HausdorffERLoss,
    LogCoshDiceLoss,
    LogHausdorffDTLoss,
    MCCLoss,
    SkeletonRecallLoss,
    SoftClDiceLoss,
    UnifiedFocalLoss,
)
from .build import build_loss
from .wrappers import DeepSupervisionLoss
from ._fused import get_kernel, set_kernel, use_kernel
from . import accumulate, distributed
from .accumulate import BatchwiseAccumulator, freeze_bn, split_batch

__version__ = "0.1.0"

__all__ = [
    "functional",
    "regularizers",
    "metrics",
    "registry",
    "list_losses",
    "build_loss",
    "CrossEntropyLoss",
    "TopKLoss",
    "FocalLoss",
    "DistancePenalizedCELoss",
    "MarginCalibrationLoss",
    "ComboLoss",
    "ExpLogLoss",
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
    "DeepSupervisionLoss",
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
    "accumulate",
    "distributed",
    "BatchwiseAccumulator",
    "split_batch",
    "freeze_bn",
    "set_kernel",
    "get_kernel",
    "use_kernel",
]
