"""Functional forms of every loss and regulariser, and the statistics kernel."""
from .._stats import Confusion, soft_confusion
from .region import (
    asymmetric_similarity_loss,
    dice_loss,
    focal_tversky_loss,
    generalized_dice_loss,
    iou_loss,
    jaccard_loss,
    penalty_generalized_dice_loss,
    sensitivity_specificity_loss,
    tversky_loss,
)
from .regularizers import confidence_penalty, label_noise_penalty, label_smoothing

__all__ = [
    "soft_confusion",
    "Confusion",
    "dice_loss",
    "iou_loss",
    "jaccard_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "asymmetric_similarity_loss",
    "generalized_dice_loss",
    "penalty_generalized_dice_loss",
    "sensitivity_specificity_loss",
    "label_smoothing",
    "label_noise_penalty",
    "confidence_penalty",
]
