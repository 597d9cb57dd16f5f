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
    log_cosh_dice_loss,
    sensitivity_specificity_loss,
    tversky_loss,
)
from .confusion import generalized_wasserstein_dice_loss, mcc_loss
from .regularizers import confidence_penalty, label_noise_penalty, label_smoothing
from .distribution import (
    class_frequency_weights,
    cross_entropy_loss,
    distance_penalized_ce_loss,
    focal_loss,
    topk_loss,
)
from .margin import MarginOffsets, count_classes, margin_calibration_loss, margin_offsets
from .compound import combo_loss, exp_log_loss, unified_focal_loss
from .lovasz import lovasz_extension, lovasz_loss
from .boundary import boundary_loss, hausdorff_dt_loss, hausdorff_er_loss, log_hausdorff_dt_loss
from .topology import cldice_loss, dice_cldice_loss, skeleton_recall_loss, soft_skeleton

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
    "cross_entropy_loss",
    "topk_loss",
    "focal_loss",
    "distance_penalized_ce_loss",
    "class_frequency_weights",
    "margin_calibration_loss",
    "margin_offsets",
    "MarginOffsets",
    "count_classes",
    "combo_loss",
    "exp_log_loss",
    "lovasz_loss",
    "lovasz_extension",
    "boundary_loss",
    "hausdorff_dt_loss",
    "log_hausdorff_dt_loss",
    "hausdorff_er_loss",
    "log_cosh_dice_loss",
    "mcc_loss",
    "generalized_wasserstein_dice_loss",
    "unified_focal_loss",
    "cldice_loss",
    "dice_cldice_loss",
    "skeleton_recall_loss",
    "soft_skeleton",
]
