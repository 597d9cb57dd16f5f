r"""Overlap metrics of hard predictions: formulas over the confusion statistics.

Every function here makes the prediction hard (threshold or arg-max, see
:mod:`seglosses.metrics._hard`), counts

.. math::
    TP_c = \sum_i w_i\,\hat y_{ic}\,g_{ic},\quad FP_c = \sum_i w_i\,\hat y_{ic}(1-g_{ic}),\quad
    FN_c = \sum_i w_i(1-\hat y_{ic})\,g_{ic},\quad TN_c = \sum_i w_i(1-\hat y_{ic})(1-g_{ic})

per (item, class) with the package's one statistics kernel (:mod:`seglosses._stats`;
``w`` is the ``ignore_index`` mask), and applies its formula. An item is an image
(``domain="image"``) or the whole batch (``domain="batch"``: the sums run over every
pixel of the batch, the "global" data-set statistic of seed 003 section "Problem
formulation" when the batch is the data set).

Sources: seed 000 (Hidy 2022) section 1.1 and section 3 "Metrics" (Tversky, Dice and
Jaccard indices, balanced accuracy); seed 003 (margin calibration) eq. 1 and the mIoU
after eq. 2 (IoU with 0/0 = 1, per class, per image or over the data set), and its
pixel accuracy.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from typing_extensions import Unpack

from .._arguments import OVERLAP, OverlapKeywords, shared_keywords
from .._options import check_nonnegative, lookup_option
from .._reduce import reduce_items
from ..distance import _check_spacing
from .._stats import Confusion, confusion_from_moments, over_domain, safe_ratio
from ._hard import HardPair, check_empty, hard_pair

__all__ = [
    "dice",
    "jaccard",
    "tversky_index",
    "sensitivity",
    "specificity",
    "precision",
    "balanced_accuracy",
    "pixel_accuracy",
    "iou_per_class",
    "mean_iou",
    "generalized_dice_score",
    "volume_difference",
]

def out_dtype(input: Tensor) -> torch.dtype:
    return torch.float64 if input.dtype == torch.float64 else torch.float32


def confusion_of_hard(pair: HardPair, domain: str) -> Tuple[Confusion, Dict[str, Tensor]]:
    """TP, FP, FN, TN of the kept classes ``[I, C_kept]``, and the all-class moments ``[I, C]``."""
    allm = over_domain(pair.all_moments(), domain)
    first = pair.canon.first_class
    kept = {k: v[:, first:] for k, v in allm.items()}
    return confusion_from_moments(kept, with_tn=True), allm


def _confusion(input: Tensor, target: Tensor, kw: OverlapKeywords) -> Tuple[Confusion, Dict[str, Tensor], HardPair]:
    pair = hard_pair(input, target, kw)
    conf, allm = confusion_of_hard(pair, kw["domain"])
    return conf, allm, pair


# ----------------------------------------------------------------------------- formulas
# Each takes a Confusion (with TN) and returns [I, C] values; shared with the streaming metrics.

def dice_from(c: Confusion, empty: float) -> Tensor:
    return safe_ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn, empty)


def jaccard_from(c: Confusion, empty: float) -> Tensor:
    return safe_ratio(c.tp, c.tp + c.fp + c.fn, empty)


def tversky_from(c: Confusion, empty: float, alpha: float, beta: float) -> Tensor:
    return safe_ratio(c.tp, c.tp + alpha * c.fp + beta * c.fn, empty)


def sensitivity_from(c: Confusion, empty: float) -> Tensor:
    return safe_ratio(c.tp, c.tp + c.fn, empty)


def specificity_from(c: Confusion, empty: float) -> Tensor:
    return safe_ratio(c.tn, c.tn + c.fp, empty)


def precision_from(c: Confusion, empty: float) -> Tensor:
    return safe_ratio(c.tp, c.tp + c.fp, empty)


def balanced_accuracy_from(c: Confusion, empty: float) -> Tensor:
    return (sensitivity_from(c, empty) + specificity_from(c, empty)) / 2


def pixel_accuracy_from(c: Confusion, allm: Dict[str, Tensor], mode: str, empty: float) -> Tensor:
    """Binary: ``[I]``; multiclass: ``[I]`` (all classes); multilabel: ``[I, C_kept]``."""
    if mode == "multiclass":
        return safe_ratio(allm["pg"].sum(1), allm["n"][:, 0], empty)
    acc = safe_ratio(c.tp + c.tn, c.tp + c.fp + c.fn + c.tn, empty)
    return acc[:, 0] if mode == "binary" else acc


def _finish(values: Tensor, reduction: str, domain: str, dtype: torch.dtype) -> Tensor:
    return reduce_items(values, reduction, domain=domain, skip_nan=True).to(dtype)


AVERAGES = ("macro", "micro", "weighted")


def check_average(average: object) -> Optional[str]:
    """``None`` or one of :data:`AVERAGES`."""
    if average is None:
        return None
    return lookup_option("average", average, AVERAGES)


def average_classes(formula: Callable[..., Tensor], c: Confusion, average: Optional[str], empty: float,
                    **extra: float) -> Tensor:
    """``[I, C]`` per-class values (``average=None``) or ``[I, 1]`` class averages (see ``average``).

    ``"macro"``: the mean of the per-class values (NaN left out); ``"micro"``: the formula
    of the counts summed over the classes; ``"weighted"``: the per-class values weighted
    by the support ``TP + FN`` (NaN values and their weights left out; NaN without any
    support).
    """
    if average == "micro":
        summed = Confusion(*(t.sum(1, keepdim=True) for t in c.as_tuple()))
        return formula(summed, empty, **extra)
    values = formula(c, empty, **extra)
    if average is None:
        return values
    if average == "macro":
        return values.nanmean(1, keepdim=True)
    defined = ~torch.isnan(values)
    support = torch.where(defined, c.tp + c.fn, torch.zeros_like(values))
    num = (torch.where(defined, values, torch.zeros_like(values)) * support).sum(1, keepdim=True)
    return safe_ratio(num, support.sum(1, keepdim=True), math.nan)


def finish_averaged(values: Tensor, average: Optional[str], reduction: str, domain: str,
                    dtype: torch.dtype) -> Tensor:
    """Reduce the output of :func:`average_classes`: ``reduction="none"`` gives ``[B]`` / 0-dim when averaged."""
    out = _finish(values, reduction, domain, dtype)
    return out if average is None or out.dim() == 0 else out.squeeze(-1)


def _ratio_metric(formula: Callable[..., Tensor], input: Tensor, target: Tensor, kw: OverlapKeywords,
                  **extra: float) -> Tensor:
    empty = check_empty("empty", kw["empty"])
    average = check_average(kw["average"])
    c, _, _ = _confusion(input, target, kw)
    values = average_classes(formula, c, average, empty, **extra)
    return finish_averaged(values, average, kw["reduction"], kw["domain"], out_dtype(input))


# ----------------------------------------------------------------------------- public


@shared_keywords(OVERLAP)
def dice(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Dice index (F1 score) of a hard prediction (seed 000 Definition 1 with α = β = ½).

    .. math::
        D_c = \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c}

    Range [0, 1], 1 for a perfect prediction. Equals scikit-learn's ``f1_score`` on the
    flattened masks and MONAI's ``DiceMetric`` (with ``ignore_empty=False``, which
    also scores 0/0 as 1).

    Example:
        >>> p = torch.tensor([[[[0.9, 0.8], [0.2, 0.1]]]])   # hard: [[1, 1], [0, 0]]
        >>> g = torch.tensor([[[1, 0], [1, 0]]])
        >>> # TP = 1, FP = 1, FN = 1: D = 2 / (2 + 1 + 1)
        >>> dice(p, g)
        tensor(0.5000)
    """
    return _ratio_metric(dice_from, input, target, kw)


@shared_keywords(OVERLAP)
def jaccard(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Jaccard index (IoU) of a hard prediction (seed 000 Definition 1 with α = β = 1; seed 003 eq. 1).

    .. math::
        J_c = \frac{TP_c}{TP_c + FP_c + FN_c}
            = \frac{\sum_i [y_i = c \wedge \hat y_i = c]}{\sum_i [y_i = c \vee \hat y_i = c]}

    Range [0, 1]. ``domain="batch"`` gives seed 003's IoU over a data set (the sums run
    over all its pixels); see also :func:`iou_per_class` and :func:`mean_iou`. Equals
    scikit-learn's ``jaccard_score`` on the flattened masks and MONAI's ``MeanIoU``.

    Example:
        >>> p = torch.tensor([[[[0.9, 0.8], [0.2, 0.1]]]])
        >>> g = torch.tensor([[[1, 0], [1, 0]]])
        >>> # TP = 1, FP = 1, FN = 1: J = 1 / 3
        >>> jaccard(p, g)
        tensor(0.3333)
    """
    return _ratio_metric(jaccard_from, input, target, kw)


@shared_keywords(OVERLAP)
def tversky_index(input: Tensor, target: Tensor, *, alpha: float = 0.3, beta: float = 0.7,
                  **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Tversky index of a hard prediction (seed 000 Definition 1, eq. 1).

    .. math::
        T_{α,β,c} = \frac{TP_c}{TP_c + α\,FP_c + β\,FN_c}

    α = β = ½ gives :func:`dice`, α = β = 1 :func:`jaccard`. Range [0, 1] (for
    α, β > 0). The defaults α = 0.3, β = 0.7 are those of ``tversky_loss``.

    Args:
        alpha: weight of the false positives (>= 0).
        beta: weight of the false negatives (>= 0).

    Raises:
        ValueError, TypeError: as :func:`dice`; a negative ``alpha`` or ``beta``.

    Example:
        >>> p = torch.tensor([[[[0.9, 0.8], [0.2, 0.1]]]])
        >>> g = torch.tensor([[[1, 0], [1, 0]]])
        >>> # TP = 1, FP = 1, FN = 1: T = 1 / (1 + 0.3 + 0.7)
        >>> tversky_index(p, g)
        tensor(0.5000)
    """
    alpha = check_nonnegative("alpha", alpha)
    beta = check_nonnegative("beta", beta)
    return _ratio_metric(tversky_from, input, target, kw, alpha=alpha, beta=beta)


@shared_keywords(OVERLAP)
def sensitivity(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Sensitivity (recall, true positive rate) of a hard prediction.

    .. math::
        \mathrm{TPR}_c = \frac{TP_c}{TP_c + FN_c}

    0/0 (the class is absent from the target) takes ``empty``.

    Example:
        >>> p = torch.tensor([[[[0.9, 0.8], [0.2, 0.1]]]])
        >>> g = torch.tensor([[[1, 0], [1, 0]]])
        >>> # TP = 1, FN = 1
        >>> sensitivity(p, g)
        tensor(0.5000)
    """
    return _ratio_metric(sensitivity_from, input, target, kw)


@shared_keywords(OVERLAP)
def specificity(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Specificity (true negative rate) of a hard prediction.

    .. math::
        \mathrm{TNR}_c = \frac{TN_c}{TN_c + FP_c}

    0/0 (every valid pixel belongs to the class) takes ``empty``.

    Example:
        >>> p = torch.tensor([[[[0.9, 0.8], [0.2, 0.1]]]])
        >>> g = torch.tensor([[[1, 0], [1, 0]]])
        >>> # TN = 1 (bottom right), FP = 1 (top right)
        >>> specificity(p, g)
        tensor(0.5000)
    """
    return _ratio_metric(specificity_from, input, target, kw)


@shared_keywords(OVERLAP)
def precision(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Precision (positive predictive value) of a hard prediction.

    .. math::
        \mathrm{PPV}_c = \frac{TP_c}{TP_c + FP_c}

    0/0 (nothing predicted for the class) takes ``empty``.

    Example:
        >>> p = torch.tensor([[[[0.9, 0.8], [0.2, 0.1]]]])
        >>> g = torch.tensor([[[1, 0], [0, 0]]])
        >>> # TP = 1, FP = 1
        >>> precision(p, g)
        tensor(0.5000)
    """
    return _ratio_metric(precision_from, input, target, kw)


@shared_keywords(OVERLAP)
def balanced_accuracy(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Balanced accuracy of a hard prediction (seed 000 section 3: "the arithmetic mean of the true
    positive and true negative rates").

    .. math::
        \mathrm{BA}_c = \tfrac12\left(\frac{TP_c}{TP_c + FN_c} + \frac{TN_c}{TN_c + FP_c}\right)

    per class, one class against the rest in multiclass mode. (scikit-learn's
    ``balanced_accuracy_score`` of a multiclass problem is the mean *sensitivity* over
    classes instead; both agree in the binary case.) A 0/0 rate takes ``empty``.

    Example:
        >>> p = torch.tensor([[[[0.9, 0.8], [0.2, 0.1]]]])
        >>> g = torch.tensor([[[1, 0], [0, 0]]])
        >>> # TPR = 1/1, TNR = 2/3: BA = (1 + 2/3) / 2
        >>> balanced_accuracy(p, g)
        tensor(0.8333)
    """
    return _ratio_metric(balanced_accuracy_from, input, target, kw)


@shared_keywords(OVERLAP, without=("average",))
def pixel_accuracy(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Pixel accuracy: the fraction of valid pixels classified correctly (seed 003, section "Results").

    .. math::
        \mathrm{PA} = \frac{\sum_c TP_c}{n}\ \text{(multiclass)},\qquad
        \mathrm{PA}_c = \frac{TP_c + TN_c}{n}\ \text{(binary, multilabel)}

    with ``n`` the number of valid pixels. Multiclass accuracy counts every class
    (``include_background`` does not apply to it); multilabel accuracy is per label.

    Returns:
        The reduced value; with ``reduction="none"``: ``[B]`` (binary, multiclass) or
        ``[B, C]`` (multilabel) for ``domain="image"``, a 0-dim tensor or ``[C]`` for
        ``domain="batch"``.

    Convention:
        An image whose every pixel is ignored has 0/0, which takes ``empty``.

    Example:
        >>> p = torch.tensor([[[[0.9, 0.8], [0.2, 0.1]]]])
        >>> g = torch.tensor([[[1, 0], [0, 0]]])
        >>> # 3 of 4 pixels right
        >>> pixel_accuracy(p, g)
        tensor(0.7500)
    """
    empty = check_empty("empty", kw["empty"])
    c, allm, _ = _confusion(input, target, kw)
    acc = pixel_accuracy_from(c, allm, kw["mode"], empty)
    if acc.dim() == 2:
        return _finish(acc, kw["reduction"], kw["domain"], out_dtype(input))
    out = _finish(acc.unsqueeze(1), kw["reduction"], kw["domain"], out_dtype(input))  # one column
    return out.squeeze(-1) if out.dim() else out


@shared_keywords(OVERLAP, defaults={"mode": "multiclass", "domain": "batch"}, without=("reduction", "average"))
def iou_per_class(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""IoU of every class, ``[C]`` (seed 003 eq. 1; its "IoU computed globally over an image data set").

    .. math::
        \mathrm{IoU}_c = \frac{\sum_{b,i} [y_{bi} = c \wedge \hat y_{bi} = c]}
                              {\sum_{b,i} [y_{bi} = c \vee \hat y_{bi} = c]}
        \ \text{(domain="batch")},\qquad
        \frac{1}{B}\sum_b \mathrm{IoU}_{c,b}\ \text{(domain="image")}

    The default ``domain="batch"`` pools the counts of every image (seed 003); with
    ``domain="image"`` the per-image IoUs are averaged per class (NaN left out).

    Returns:
        ``[C]`` (the kept classes).

    Example:
        >>> p = torch.tensor([[0, 1, 1, 2]])  # a label map prediction, 3 classes
        >>> g = torch.tensor([[0, 1, 2, 2]])
        >>> # class 0: 1/1, class 1: 1/2, class 2: 1/2
        >>> iou_per_class(p, g, num_classes=3)
        tensor([1.0000, 0.5000, 0.5000])
    """
    empty = check_empty("empty", kw["empty"])
    c, _, _ = _confusion(input, target, kw)
    values = jaccard_from(c, empty)
    return values.nanmean(0).to(out_dtype(input))


@shared_keywords(OVERLAP, defaults={"mode": "multiclass", "domain": "batch"}, without=("reduction", "average"))
def mean_iou(input: Tensor, target: Tensor, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Mean IoU over classes (seed 003: :math:`\mathrm{mIoU} = \frac1c \sum_k \mathrm{IoU}_k`).

    .. math::
        \mathrm{mIoU} = \frac{1}{C} \sum_c \mathrm{IoU}_c

    with :math:`\mathrm{IoU}_c` of :func:`iou_per_class` (by default over the whole
    batch, as seed 003 computes it over a data set). Classes whose IoU is NaN
    (``empty="nan"``) are left out of the mean.

    Returns:
        A 0-dim tensor.

    Example:
        >>> p = torch.tensor([[0, 1, 1, 2]])
        >>> g = torch.tensor([[0, 1, 2, 2]])
        >>> mean_iou(p, g, num_classes=3)   # (1 + 1/2 + 1/2) / 3
        tensor(0.6667)
    """
    return iou_per_class(input, target, **kw).nanmean()


GDS_WEIGHTS = ("square", "simple", "uniform")


def sudre_weights(volume: Tensor, weight_type: str) -> Tensor:
    """Class weights ``[I, C]`` from the target volumes: ``1/V²`` (square), ``1/V`` (simple) or 1 (uniform).

    A class absent from an item's target (V = 0, an infinite weight) takes the largest
    finite weight of that item; an item without any present class takes 1 for all.
    """
    if weight_type == "uniform":
        return torch.ones_like(volume)
    power = 2 if weight_type == "square" else 1
    absent = volume == 0
    w = 1.0 / torch.where(absent, torch.ones_like(volume), volume) ** power
    largest = torch.where(absent, torch.zeros_like(w), w).amax(dim=1, keepdim=True)
    largest = torch.where(largest > 0, largest, torch.ones_like(largest))
    return torch.where(absent, largest.expand_as(w), w)


def generalized_dice_from(c: Confusion, empty: float, weight_type: str = "square") -> Tensor:
    """``[I, 1]``: the generalised Dice score of each item (classes summed inside the ratio)."""
    w = sudre_weights(c.tp + c.fn, weight_type)
    num = 2 * (w * c.tp).sum(1, keepdim=True)
    return safe_ratio(num, (w * (2 * c.tp + c.fp + c.fn)).sum(1, keepdim=True), empty)


@shared_keywords(OVERLAP, defaults={"mode": "multiclass"}, without=("average",))
def generalized_dice_score(input: Tensor, target: Tensor, *, weight_type: str = "square",
                           **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Generalised Dice score of a hard prediction (Sudre et al. 2017, DLMIA, eq. 2 without the 1 −).

    .. math::
        \mathrm{GDS} = \frac{2 \sum_c w_c\, TP_c}{\sum_c w_c\,(2\,TP_c + FP_c + FN_c)},\qquad
        w_c = \frac{1}{\big(\sum_i g_{ic}\big)^2}

    one value per item (image, or the batch with ``domain="batch"``): the classes are
    summed inside the ratio, each weighted by the inverse square of its true volume
    (``weight_type="square"``, the paper), its inverse (``"simple"``) or 1
    (``"uniform"``, then the pooled Dice of the kept classes). The same formula over
    the same statistics as :func:`seglosses.functional.generalized_dice_loss`, on the
    hard prediction. Equals MONAI's ``GeneralizedDiceScore(sum_over_classes=True)`` and
    torchmetrics' ``GeneralizedDiceScore(per_class=False)`` where every class is present.

    Convention:
        A class absent from an item's target would get an infinite weight; it takes the
        largest finite weight of the item instead (MONAI's and NiftyNet's guard; an item
        with no class present weights every class 1, so a false positive still lowers
        the score). torchmetrics replaces it by another maximum (over the batch), so the
        two differ on items with an absent class. A zero denominator (no class in
        prediction or target) gives ``empty``.

    Args:
        weight_type: ``"square"``, ``"simple"`` or ``"uniform"``.

    Returns:
        The mean over items (``reduction="mean"``), their sum, or ``[B]`` / 0-dim values
        (``reduction="none"``, image / batch domain).

    Raises:
        ValueError, TypeError: as :func:`dice`; an unknown ``weight_type``.

    Example:
        >>> p = torch.tensor([[0, 0, 0, 1]])
        >>> g = torch.tensor([[0, 0, 1, 1]])
        >>> # w = (1/4, 1/4); TP = (2, 1), 2TP+FP+FN = (5, 3): 2(2+1)/4 / ((5+3)/4)
        >>> generalized_dice_score(p, g, num_classes=2)
        tensor(0.7500)
    """
    weight_type = lookup_option("weight_type", weight_type, GDS_WEIGHTS)
    empty = check_empty("empty", kw["empty"])
    c, _, _ = _confusion(input, target, kw)
    values = generalized_dice_from(c, empty, weight_type)
    return finish_averaged(values, "macro", kw["reduction"], kw["domain"], out_dtype(input))


def volume_difference_from(c: Confusion, empty: float, voxel: float = 1.0, relative: bool = False,
                           signed: bool = False) -> Tensor:
    """``[I, C]``: predicted minus true volume (``TP + FP`` and ``TP + FN``), absolute or relative."""
    diff = c.fp - c.fn  # (TP + FP) - (TP + FN)
    if not signed:
        diff = diff.abs()
    if relative:
        return safe_ratio(diff, c.tp + c.fn, empty)
    return diff * voxel


@shared_keywords(OVERLAP, defaults={"empty": "nan"}, without=("average",))
def volume_difference(input: Tensor, target: Tensor, *, spacing: Optional[object] = None, relative: bool = False,
                      signed: bool = False, **kw: Unpack[OverlapKeywords]) -> Tensor:
    r"""Volume difference between the hard prediction and the target, absolute or relative.

    .. math::
        \mathrm{AVD}_c = \Big|\,V(\hat Y_c) - V(Y_c)\Big| = |FP_c - FN_c|\cdot v,\qquad
        \mathrm{RVD}_c = \frac{\big|V(\hat Y_c) - V(Y_c)\big|}{V(Y_c)}

    with :math:`V(\hat Y_c) = TP_c + FP_c` and :math:`V(Y_c) = TP_c + FN_c` the predicted
    and true volumes (the counts of the statistics kernel) and :math:`v` the volume of a
    voxel: 1 (volumes in voxels) or the product of ``spacing`` (physical units). With
    ``signed=True`` the difference keeps its sign (> 0: the prediction is too large).
    The relative form (Heimann et al. 2009, IEEE TMI 28(8), "relative absolute volume
    difference") does not depend on the spacing. Range [0, ∞); 0 for equal volumes (not
    only for a perfect prediction). The absolute form equals MONAI's
    ``AbsoluteVolumeDifferenceMetric(ignore_empty=False)`` (in voxels).

    Convention:
        The absolute difference is always defined (0 when the class is absent from
        both). The relative one divides by the true volume: a class absent from the
        target takes ``empty`` (NaN by default, left out of ``reduction="mean"``; MONAI's
        ``ignore_empty=True`` does the same for its absolute value). Ignored pixels count
        in neither volume.

    Args:
        spacing: ``None`` (voxels), one number, or one voxel size per spatial dim.
        relative: divide by the true volume.
        signed: keep the sign of the difference.
        empty: here the relative difference where the target lacks the class (``"nan"`` by
            default; the absolute difference does not use it).

    Raises:
        ValueError, TypeError: as :func:`dice`; a bad ``spacing``.

    Example:
        >>> p = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
        >>> g = torch.tensor([[[1, 0], [0, 0]]])
        >>> volume_difference(p, g, spacing=(0.5, 2.0))   # |3 - 1| voxels of 0.5 * 2.0
        tensor(2.)
        >>> volume_difference(p, g, relative=True)   # |3 - 1| / 1
        tensor(2.)
    """
    empty_value = check_empty("empty", kw["empty"])
    for name, flag in (("relative", relative), ("signed", signed)):
        if not isinstance(flag, bool):
            raise TypeError(f"`{name}` must be a bool; got {type(flag).__name__}")
    c, _, pair = _confusion(input, target, kw)
    voxel = math.prod(_check_spacing(spacing, len(pair.canon.spatial_shape)))
    values = volume_difference_from(c, empty_value, voxel, relative, signed)
    return _finish(values, kw["reduction"], kw["domain"], out_dtype(input))
