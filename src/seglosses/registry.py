"""Names of losses and regularisers: one explicit table, no import side effects.

Every loss module class is registered here once, with its aliases, a one-line
description and its family; the canonical name is the one the class declares
(``cls.info.name``, see :class:`~seglosses._contract.LossInfo`).
:func:`seglosses.build_loss` and the command line read this table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple, Type

from ._options import did_you_mean
from .losses import (
    AsymmetricSimilarityLoss,
    ConfidencePenalty,
    DiceLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    IoULoss,
    LabelNoisePenalty,
    PenaltyGeneralizedDiceLoss,
    SegLoss,
    SensitivitySpecificityLoss,
    TverskyLoss,
)
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


@dataclass(frozen=True)
class Entry:
    cls: Type[SegLoss]
    description: str
    aliases: Tuple[str, ...] = field(default_factory=tuple)
    family: str = "region"

    @property
    def name(self) -> str:
        """The canonical name the class declares."""
        return self.cls.info.name


ENTRIES: List[Entry] = [
    Entry(DiceLoss, "soft Dice loss 1 - (2TP+d)/(2TP+FP+FN+d) (Milletari 2016)", ("dice_loss",)),
    Entry(IoULoss, "soft IoU / Jaccard loss 1 - (TP+d)/(TP+FP+FN+d) (Rahman & Wang 2016)",
          ("jaccard", "iou_loss", "jaccard_loss")),
    Entry(TverskyLoss, "Tversky loss 1 - (TP+d)/(TP+aFP+bFN+d) (Salehi 2017; seed 000)",
          ("tversky_loss",)),
    Entry(FocalTverskyLoss, "focal Tversky loss (1 - T)^(1/gamma) (Abraham & Khan 2018)",
          ("focal_tversky_loss", "ftl")),
    Entry(AsymmetricSimilarityLoss, "F-beta loss, Tversky with a+b=1 (Hashemi 2019)",
          ("asymmetric", "asymmetric_similarity_loss")),
    Entry(GeneralizedDiceLoss, "generalised Dice loss, weights 1/(sum g)^2 (Sudre 2017)",
          ("gdl", "generalised_dice", "generalized_dice_loss")),
    Entry(PenaltyGeneralizedDiceLoss, "penalty GDL  L/(1+k(1-L)) (Su 2019)",
          ("pgdl", "penalty_gdl", "penalty_generalized_dice_loss")),
    Entry(SensitivitySpecificityLoss,
          "weighted squared error on positives and negatives (Brosch 2015)", ("ss", "sensitivity_specificity_loss")),
    Entry(LabelNoisePenalty, "KL(u || y_hat): label smoothing for any loss (seed 000)",
          ("lnp",), "regularizer"),
    Entry(ConfidencePenalty, "KL(y_hat || u) = log C - H(y_hat) (Pereyra 2017; seed 000)",
          ("cp",), "regularizer"),
    Entry(CrossEntropyLoss,
          "(weighted) cross entropy -sum_c w_c g_c log p_c, label smoothing (seed 001 eqs. 2-3)",
          ("ce", "wce", "bce", "weighted_ce", "cross_entropy_loss"), "distribution"),
    Entry(TopKLoss, "CE of the k% hardest pixels or of those with p_true < t (Wu 2016; seed 001 eq. 4)",
          ("topk_loss", "topk_ce"), "distribution"),
    Entry(FocalLoss, "focal loss -(1-p)^gamma log p, alpha-balance (Lin 2017; seed 001 eq. 5)",
          ("focal_loss", "fl"), "distribution"),
    Entry(DistancePenalizedCELoss,
          "CE weighted by 1 + inverted distance map of the truth (Caliva 2019; seed 001 eq. 6)",
          ("dpce", "distance_penalized_ce_loss"), "distribution"),
    Entry(MarginCalibrationLoss,
          "distribution-aware margin calibration, rho-calibrated log loss (Li 2021; seed 003 eq. 27-29)",
          ("margin", "mc", "margin_calibration_loss"), "margin"),
    Entry(ComboLoss, "alpha * weighted BCE(beta) + (1 - alpha)(1 - Dice) (Taghanaki 2019; seed 001 eq. 15)",
          ("combo_loss",), "compound"),
    Entry(ExpLogLoss, "exponential logarithmic loss, Dice and CE to powers (Wong 2018; seed 001 eq. 16)",
          ("ell", "exp_log_loss", "exponential_logarithmic"), "compound"),
    Entry(LovaszLoss,
          "Lovasz extension of the Jaccard loss: hinge on logits (binary) or |g - p| softmax (Berman 2018)",
          ("lovasz_loss", "lovasz_hinge", "lovasz_softmax"), "lovasz"),
    Entry(BoundaryLoss, "mean of phi_G * s, phi_G the signed distance map (Kervadec 2019; seed 001 4.1)",
          ("bd", "boundary_loss"), "boundary"),
    Entry(HausdorffDTLoss,
          "mean of (s - g)^2 (d_G^a + d_S^a), distance-transform HD loss (Karimi 2019; seed 001 4.2)",
          ("hd_dt", "hausdorff_dt_loss", "hddt"), "boundary"),
    Entry(LogCoshDiceLoss, "log cosh of the Dice loss (Jadon 2020)", ("log_cosh_dice_loss", "lcd")),
    Entry(MCCLoss, "1 - Matthews correlation of the soft TP, FP, FN, TN (Abhishek & Hamarneh 2021)",
          ("mcc_loss", "matthews")),
    Entry(GeneralizedWassersteinDiceLoss,
          "generalised Wasserstein Dice loss with a class distance matrix (Fidon 2017)",
          ("generalized_wasserstein_dice", "generalised_wasserstein_dice", "wasserstein_dice"), "confusion_matrix"),
    Entry(SoftClDiceLoss, "soft clDice: topology precision/sensitivity of soft skeletons (Shit 2021)",
          ("cldice_loss", "soft_cldice", "cl_dice"), "topology"),
    Entry(DiceClDiceLoss, "(1 - alpha) soft Dice + alpha soft clDice (Shit 2021)",
          ("dice_cldice_loss", "soft_dice_cldice"), "topology"),
    Entry(SkeletonRecallLoss, "1 - soft recall of the tubed skeleton of the target (Kirchhoff 2024)",
          ("skeleton_recall_loss", "skel_recall"), "topology"),
    Entry(UnifiedFocalLoss, "asymmetric unified focal: focal CE + focal Tversky, rare classes enhanced (Yeung 2022)",
          ("unified_focal_loss", "asymmetric_unified_focal", "ufl"), "compound"),
    Entry(HausdorffERLoss, "Hausdorff loss by iterated erosion of the squared error (Karimi 2019)",
          ("hausdorff_er_loss", "hd_er"), "boundary"),
    Entry(LogHausdorffDTLoss, "log(1 + Hausdorff-DT loss), as MONAI's LogHausdorffDTLoss",
          ("log_hausdorff_dt_loss", "log_hd_dt"), "boundary"),
]


def _tables() -> Tuple[Dict[str, Entry], Dict[str, str]]:
    by_name: Dict[str, Entry] = {}
    alias: Dict[str, str] = {}
    for e in ENTRIES:
        if e.name in by_name or e.name in alias:
            raise RuntimeError(f"loss name {e.name!r} registered twice")
        by_name[e.name] = e
        for a in e.aliases:
            if a in alias or a in by_name:
                raise RuntimeError(f"loss alias {a!r} registered twice")
            alias[a] = e.name
    return by_name, alias


LOSSES, ALIASES = _tables()


def resolve(name: str) -> Entry:
    """The entry of a canonical name or alias (case-insensitive, '-' = '_')."""
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in LOSSES:
        known = sorted(set(LOSSES) | set(ALIASES))
        raise ValueError(
            f"`name` must be a registered loss; got {name!r}{did_you_mean(key, known)}. "
            f"Registered: {', '.join(sorted(LOSSES))}"
        )
    return LOSSES[key]


def list_losses() -> List[Tuple[str, str]]:
    """(canonical name, one-line description) of every registered loss and regulariser."""
    return [(e.name, e.description) for e in ENTRIES]
