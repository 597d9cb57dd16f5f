"""Region losses: formulas over the soft confusion statistics of :mod:`seglosses._stats`.

Every function here takes ``(input, target)`` and the shared keyword arguments
described in :data:`COMMON_ARGS`, computes the moments it needs with the one
statistics kernel, and applies its formula per (item, class), where an item is an
image (``domain="image"``) or the whole batch (``domain="batch"``, seed 000
section 2.1: "substituting a whole batch of images" into the index).

Sources: seed 000 = Hidy, "The Tversky loss function and its modifications for
medical image segmentation" (2022); seed 001 = Ma, "Segmentation Loss Odyssey" (2020).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .._inputs import Canonical, canonicalize, check_class_weights
from .._options import check_fraction, check_nonnegative, check_positive, lookup_option
from .._reduce import reduce_items, reduce_per_item
from .._stats import (
    confusion_from_moments,
    confusion_names,
    moments,
    over_domain,
    safe_ratio,
)
from ..distributed import resolve_sync

__all__ = [
    "dice_loss",
    "iou_loss",
    "jaccard_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "asymmetric_similarity_loss",
    "generalized_dice_loss",
    "penalty_generalized_dice_loss",
    "sensitivity_specificity_loss",
]

COMMON_ARGS = """
    Common args:
        input: prediction ``[B, C, *S]`` (2D, 3D or any number of spatial dims): logits
            (``from_logits=True``, the default) or probabilities.
        target: label map ``[B, *S]`` (integer), or ``[B, C, *S]`` one-hot / soft labels
            (float); binary mode also takes ``[B, *S]`` / ``[B, 1, *S]`` float probabilities.
        mode: ``"binary"`` (1 channel), ``"multiclass"`` (softmax over C) or
            ``"multilabel"`` (C independent sigmoids).
        from_logits: apply sigmoid (binary, multilabel) or softmax (multiclass) first.
        domain: ``"image"``: one index per image, then averaged; ``"batch"``: one index
            over the whole batch (seed 000 section 2.1; MONAI calls this ``batch=True``,
            smp the absence of its ``-imagewise`` suffix).
        smooth: the δ of seed 000 eq. 3, added to numerator and denominator.
        include_background: keep channel 0 (multiclass, multilabel). Binary mode always
            scores its single (foreground) channel.
        ignore_index: target value whose pixels leave every statistic.
        class_weights: one weight per kept class; the class mean becomes
            ``Σ w_c L_c / Σ w_c``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``[B, C]`` in the image domain,
            ``[C]`` in the batch domain).
        check_values: check label range, probability range and finiteness (one pass
            over the data and a device sync); shapes and dtypes are always checked.
        sync: ``None``; or, with ``domain="batch"``, ``"distributed"`` (or a
            ``torch.distributed`` process group) to sum the batch statistics over all
            processes, with autograd, before the formula: every rank gets the loss of the
            global batch and DDP's gradient averaging gives its exact gradient (see
            :mod:`seglosses.distributed`; the identity without a process group).

    Convention:
        Empty masks: with ``smooth > 0`` a class absent from target and prediction has
        index 1 (loss 0) and a false positive on an empty target gives a loss that
        grows with FP and a non-zero gradient. With ``smooth = 0`` a 0/0 index is
        taken as 1 with zero gradient. A dense (soft) target that requires grad gets the
        exact gradient of the loss (the statistics are sums; see :mod:`seglosses._stats`).
"""


def _with_common_args(fn):
    """Insert the shared argument docs before the function's example."""
    head, sep, tail = (fn.__doc__ or "").partition("    Example:")
    fn.__doc__ = head.rstrip() + "\n" + COMMON_ARGS + ("\n" + sep + tail if sep else "")
    return fn


def region_moments(
    input: Tensor,
    target: Tensor,
    names: Sequence[str],
    *,
    mode: str,
    from_logits: bool,
    include_background: bool,
    ignore_index: Optional[int],
    domain: str,
    check_values: bool = True,
    sync: object = None,
) -> Tuple[Dict[str, Tensor], Canonical]:
    """Canonicalise the pair and compute the named moments over the domain.

    ``sync`` (see :func:`seglosses.distributed.resolve_sync`) is applied to the domain
    moments before they are returned: the one synchronisation point of the region losses.
    """
    hook = resolve_sync(sync, domain)
    canon = canonicalize(
        input, target, mode=mode, from_logits=from_logits, include_background=include_background,
        ignore_index=ignore_index, check_values=check_values, defer_checks=True,
    )
    m = over_domain(moments(canon, names), domain)
    return (m if hook is None else hook(m, domain)), canon


def finish(values: Tensor, reduction: str, class_weights, domain: str) -> Tensor:
    """Apply class weights and the reduction to ``[I, C]`` loss values."""
    w = check_class_weights(class_weights, values.shape[1], values)
    return reduce_items(values, reduction, w, domain=domain)


def tversky_index(tp: Tensor, fp: Tensor, fn: Tensor, alpha: float, beta: float, smooth: float) -> Tensor:
    r""":math:`(TP + δ) / (TP + αFP + βFN + δ)`, seed 000 eq. 3 (0/0 taken as 1)."""
    return safe_ratio(tp + smooth, tp + alpha * fp + beta * fn + smooth)


def _check_ab(alpha, beta):
    return check_nonnegative("alpha", alpha), check_nonnegative("beta", beta)


def _tversky_values(input, target, alpha, beta, *, mode, from_logits, domain, smooth, include_background,
                    ignore_index, soft_form, check_values, sync=None) -> Tensor:
    smooth = check_nonnegative("smooth", smooth)
    m, _ = region_moments(
        input, target, confusion_names(soft_form, False), mode=mode, from_logits=from_logits,
        include_background=include_background, ignore_index=ignore_index, domain=domain, check_values=check_values,
        sync=sync,
    )
    c = confusion_from_moments(m, soft_form=soft_form)
    return tversky_index(c.tp, c.fp, c.fn, alpha, beta, smooth)


@_with_common_args
def tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    mode: str = "binary",
    from_logits: bool = True,
    domain: str = "image",
    smooth: float = 1e-5,
    include_background: bool = True,
    ignore_index: Optional[int] = None,
    class_weights: Optional[Sequence[float]] = None,
    reduction: str = "mean",
    soft_form: bool = False,
    check_values: bool = True,
    sync: object = None,
) -> Tensor:
    r"""Tversky loss (Salehi et al. 2017; seed 000 eqs. 2-4, seed 001 eq. 10).

    .. math::
        \mathcal{T}_{α,β} = \frac{TP + δ}{TP + α\,FP + β\,FN + δ},\qquad
        L = 1 - \mathcal{T}_{α,β}

    with the soft statistics TP = Σ p g, FP = Σ p (1 − g), FN = Σ (1 − p) g per
    (item, class). α weighs false positives and β false negatives; α = β = ½ is the
    Dice index (``dice_loss`` with ``smooth`` = 2δ) and α = β = 1 the Jaccard index
    (``iou_loss``, same δ). Range [0, 1], minimum 0 at ``p = g`` for hard targets.

    Args:
        alpha: weight of FP (>= 0). Default 0.3, beta: weight of FN (>= 0). Default 0.7
            (the setting Salehi et al. found best for lesions).
        soft_form: build TP from Σp, Σg, Σ|p−g| (TP = (Σp + Σg − Σ|p−g|)/2), equal to the
            standard form for hard targets and minimised at ``p = g`` for soft targets
            (label smoothing); the standard form keeps its optimum at {0, 1} (seed 000
            Claim 1).

    Example:
        >>> p = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
        >>> g = torch.tensor([[[1, 0], [0, 1]]])
        >>> # TP = 1, FP = 1, FN = 1: T = 1 / (1 + 0.3 + 0.7) = 0.5
        >>> float(tversky_loss(p, g, from_logits=False, smooth=0.0))
        0.5
    """
    alpha, beta = _check_ab(alpha, beta)
    t = _tversky_values(input, target, alpha, beta, mode=mode, from_logits=from_logits, domain=domain,
                        smooth=smooth, include_background=include_background, ignore_index=ignore_index,
                        soft_form=soft_form, check_values=check_values, sync=sync)
    return finish(1 - t, reduction, class_weights, domain)


@_with_common_args
def dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: str = "binary",
    from_logits: bool = True,
    domain: str = "image",
    smooth: float = 1e-5,
    include_background: bool = True,
    ignore_index: Optional[int] = None,
    class_weights: Optional[Sequence[float]] = None,
    reduction: str = "mean",
    squared_denominator: bool = False,
    soft_form: bool = False,
    check_values: bool = True,
    sync: object = None,
) -> Tensor:
    r"""Soft Dice loss (Milletari et al. 2016; seed 001 eq. 8; seed 004).

    .. math::
        D = \frac{2\,TP + δ}{2\,TP + FP + FN + δ} = \frac{2 \sum p g + δ}{\sum p + \sum g + δ},
        \qquad L = 1 - D

    per (item, class). With ``squared_denominator=True`` the denominator is
    :math:`\sum p^2 + \sum g^2 + δ` as in seed 001 eq. 8 (V-Net); seed 000 uses the plain
    sums. ``smooth`` enters as in MONAI's ``DiceLoss(smooth_nr=δ, smooth_dr=δ)``;
    ``tversky_loss(alpha=0.5, beta=0.5, smooth=δ)`` equals ``dice_loss(smooth=2δ)``.
    Range [0, 1], minimum 0 at ``p = g`` (hard targets; soft targets too with
    ``soft_form=True`` or ``squared_denominator=True``).

    Args:
        squared_denominator: use Σp² + Σg² in the denominator (seed 001 eq. 8).
        soft_form: TP = (Σp + Σg − Σ|p−g|)/2, see :func:`tversky_loss`.

    Example:
        >>> p = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
        >>> g = torch.tensor([[[1, 0], [0, 1]]])
        >>> # 2TP = 2, Σp + Σg = 4: D = 0.5
        >>> float(dice_loss(p, g, from_logits=False, smooth=0.0))
        0.5
    """
    smooth = check_nonnegative("smooth", smooth)
    if squared_denominator and soft_form:
        raise ValueError("`soft_form` must be False when `squared_denominator` is True (the squared form "
                         "already has its optimum at p = g for soft targets); got both True")
    if squared_denominator:
        m, _ = region_moments(
            input, target, ("pg", "pp", "gg"), mode=mode, from_logits=from_logits,
            include_background=include_background, ignore_index=ignore_index, domain=domain,
            check_values=check_values, sync=sync,
        )
        d = safe_ratio(2 * m["pg"] + smooth, m["pp"] + m["gg"] + smooth)
    else:
        m, _ = region_moments(
            input, target, confusion_names(soft_form, False), mode=mode, from_logits=from_logits,
            include_background=include_background, ignore_index=ignore_index, domain=domain,
            check_values=check_values, sync=sync,
        )
        c = confusion_from_moments(m, soft_form=soft_form)
        d = safe_ratio(2 * c.tp + smooth, 2 * c.tp + c.fp + c.fn + smooth)
    return finish(1 - d, reduction, class_weights, domain)


@_with_common_args
def iou_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: str = "binary",
    from_logits: bool = True,
    domain: str = "image",
    smooth: float = 1e-5,
    include_background: bool = True,
    ignore_index: Optional[int] = None,
    class_weights: Optional[Sequence[float]] = None,
    reduction: str = "mean",
    soft_form: bool = False,
    check_values: bool = True,
    sync: object = None,
) -> Tensor:
    r"""Soft IoU (Jaccard) loss (Rahman & Wang 2016; seed 001 eq. 9; seed 004).

    .. math::
        J = \frac{TP + δ}{TP + FP + FN + δ} = \frac{\sum pg + δ}{\sum (p + g - pg) + δ},
        \qquad L = 1 - J

    equal to ``tversky_loss(alpha=1, beta=1)`` with the same δ. Range [0, 1], minimum 0
    at ``p = g``.

    Example:
        >>> p = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
        >>> g = torch.tensor([[[1, 0], [0, 1]]])
        >>> # TP = 1, FP = 1, FN = 1: J = 1/3
        >>> round(float(iou_loss(p, g, from_logits=False, smooth=0.0)), 4)
        0.6667
    """
    t = _tversky_values(input, target, 1.0, 1.0, mode=mode, from_logits=from_logits, domain=domain,
                        smooth=smooth, include_background=include_background, ignore_index=ignore_index,
                        soft_form=soft_form, check_values=check_values, sync=sync)
    return finish(1 - t, reduction, class_weights, domain)


jaccard_loss = iou_loss


@_with_common_args
def focal_tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    gamma: float = 4.0 / 3.0,
    mode: str = "binary",
    from_logits: bool = True,
    domain: str = "image",
    smooth: float = 1e-5,
    include_background: bool = True,
    ignore_index: Optional[int] = None,
    class_weights: Optional[Sequence[float]] = None,
    reduction: str = "mean",
    soft_form: bool = False,
    check_values: bool = True,
    sync: object = None,
) -> Tensor:
    r"""Focal Tversky loss (Abraham & Khan 2018; seed 001 eq. 12).

    .. math::
        L_c = (1 - \mathcal{T}_{α,β,c})^{1/γ}

    per (item, class), then the (weighted) mean: the exponent is 1/γ and it is applied
    per class before the mean, as the paper writes it (segmentation_models_pytorch
    applies γ after the class mean instead). γ in [1, 3] in the paper; γ = 1 is the
    Tversky loss. Range [0, 1], minimum 0 at ``p = g``. For γ > 1 the derivative grows
    without bound as the index approaches 1; the base is clamped at 1e-12 to keep the
    gradient finite.

    Args:
        alpha, beta: as in :func:`tversky_loss`.
        gamma: focal exponent γ > 0 (the loss uses 1/γ). Default 4/3 as in the paper.
    """
    alpha, beta = _check_ab(alpha, beta)
    gamma = check_positive("gamma", gamma)
    t = _tversky_values(input, target, alpha, beta, mode=mode, from_logits=from_logits, domain=domain,
                        smooth=smooth, include_background=include_background, ignore_index=ignore_index,
                        soft_form=soft_form, check_values=check_values, sync=sync)
    return finish((1 - t).clamp_min(1e-12) ** (1.0 / gamma), reduction, class_weights, domain)


@_with_common_args
def asymmetric_similarity_loss(
    input: Tensor,
    target: Tensor,
    *,
    beta: float = 1.5,
    mode: str = "binary",
    from_logits: bool = True,
    domain: str = "image",
    smooth: float = 1e-5,
    include_background: bool = True,
    ignore_index: Optional[int] = None,
    class_weights: Optional[Sequence[float]] = None,
    reduction: str = "mean",
    soft_form: bool = False,
    check_values: bool = True,
    sync: object = None,
) -> Tensor:
    r"""Asymmetric similarity loss (Hashemi et al. 2019; seed 001 eq. 13).

    .. math::
        F_β = \frac{TP + δ}{TP + \frac{β^2}{1+β^2} FN + \frac{1}{1+β^2} FP + δ},\qquad L = 1 - F_β

    the F_β score, i.e. the Tversky loss with α = 1/(1+β²) (FP) and β' = β²/(1+β²)
    (FN), α + β' = 1. β > 1 weighs false negatives more. Range [0, 1].

    Args:
        beta: the F_β parameter (>= 0), default 1.5 as in the paper.
    """
    b = check_nonnegative("beta", beta)
    a_fp, b_fn = 1.0 / (1.0 + b * b), b * b / (1.0 + b * b)
    t = _tversky_values(input, target, a_fp, b_fn, mode=mode, from_logits=from_logits, domain=domain,
                        smooth=smooth, include_background=include_background, ignore_index=ignore_index,
                        soft_form=soft_form, check_values=check_values, sync=sync)
    return finish(1 - t, reduction, class_weights, domain)


GDL_WEIGHTS = ("square", "simple", "uniform")


def _gdl_values(input, target, *, weight_type, mode, from_logits, domain, smooth, include_background, ignore_index,
                soft_form, check_values, sync=None) -> Tensor:
    smooth = check_nonnegative("smooth", smooth)
    weight_type = lookup_option("weight_type", weight_type, GDL_WEIGHTS)
    m, _ = region_moments(
        input, target, confusion_names(soft_form, False), mode=mode, from_logits=from_logits,
        include_background=include_background, ignore_index=ignore_index, domain=domain, check_values=check_values,
        sync=sync,
    )
    c = confusion_from_moments(m, soft_form=soft_form)
    vol = m["g"]  # (differentiable: a soft target that requires grad gets the weights' share too)
    if weight_type == "uniform":
        w = torch.ones_like(vol)
    else:
        power = 2 if weight_type == "square" else 1
        # guard for classes absent from the target (infinite weight): they take the
        # largest finite weight of their item; an item with no class present uses 1.
        # (double where: the infinite weights are never formed, so no NaN gradient)
        inf = torch.isinf(1.0 / vol.detach() ** power)
        w = 1.0 / torch.where(inf, torch.ones_like(vol), vol) ** power
        finite = torch.where(inf, torch.zeros_like(w), w)
        wmax = finite.amax(dim=1, keepdim=True)
        wmax = torch.where(wmax > 0, wmax, torch.ones_like(wmax))
        w = torch.where(inf, wmax.expand_as(w), w)
    num = 2 * (w * c.tp).sum(1) + smooth
    den = (w * (2 * c.tp + c.fp + c.fn)).sum(1) + smooth
    return 1 - safe_ratio(num, den)


@_with_common_args
def generalized_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    weight_type: str = "square",
    mode: str = "multiclass",
    from_logits: bool = True,
    domain: str = "image",
    smooth: float = 1e-5,
    include_background: bool = True,
    ignore_index: Optional[int] = None,
    reduction: str = "mean",
    soft_form: bool = False,
    check_values: bool = True,
    sync: object = None,
) -> Tensor:
    r"""Generalised Dice loss (Sudre et al. 2017; seed 001 eq. 11).

    .. math::
        L = 1 - \frac{2 \sum_c w_c \sum_i g_{ic} p_{ic} + δ}{\sum_c w_c \sum_i (g_{ic} + p_{ic}) + δ},
        \qquad w_c = \frac{1}{(\sum_i g_{ic})^2}

    one value per item (classes are summed inside the ratio). The weights are constants
    (no gradient), computed per item (per image, or over the batch for
    ``domain="batch"``).

    Convention:
        Guard for absent classes: a class with Σg = 0 would get an infinite weight; it
        takes the largest finite weight of its item instead (as MONAI does). An item in
        which no kept class is present uses weight 1 for every class, so that false
        positives on an empty target still give a loss and a gradient (MONAI gives
        weight 0 and loss 0 there).

    Args:
        weight_type: ``"square"`` (1/(Σg)², the paper), ``"simple"`` (1/Σg) or
            ``"uniform"`` (1).

    ``reduction="none"`` gives ``[B]`` (image domain) or a 0-dim tensor (batch domain).
    """
    v = _gdl_values(input, target, weight_type=weight_type, mode=mode, from_logits=from_logits, domain=domain,
                    smooth=smooth, include_background=include_background, ignore_index=ignore_index,
                    soft_form=soft_form, check_values=check_values, sync=sync)
    return reduce_per_item(v, reduction, domain=domain)


@_with_common_args
def penalty_generalized_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    k: float = 2.5,
    weight_type: str = "square",
    mode: str = "multiclass",
    from_logits: bool = True,
    domain: str = "image",
    smooth: float = 1e-5,
    include_background: bool = True,
    ignore_index: Optional[int] = None,
    reduction: str = "mean",
    soft_form: bool = False,
    check_values: bool = True,
    sync: object = None,
) -> Tensor:
    r"""Penalty generalised Dice loss (Su et al. 2019; seed 001 eq. 14).

    .. math::
        L_{pGD} = \frac{L_{GD}}{1 + k\,(1 - L_{GD})}

    with :math:`L_{GD}` the generalised Dice loss of :func:`generalized_dice_loss`.
    ``k = 0`` gives the generalised Dice loss; ``k > 0`` weighs FP and FN more. Range
    [0, 1], minimum 0 at ``p = g``.

    Args:
        k: non-negative penalty coefficient (default 2.5, the paper's setting).
    """
    k = check_nonnegative("k", k)
    v = _gdl_values(input, target, weight_type=weight_type, mode=mode, from_logits=from_logits, domain=domain,
                    smooth=smooth, include_background=include_background, ignore_index=ignore_index,
                    soft_form=soft_form, check_values=check_values, sync=sync)
    return reduce_per_item(v / (1 + k * (1 - v)), reduction, domain=domain)


@_with_common_args
def sensitivity_specificity_loss(
    input: Tensor,
    target: Tensor,
    *,
    w: float = 0.05,
    mode: str = "binary",
    from_logits: bool = True,
    domain: str = "image",
    smooth: float = 1e-5,
    include_background: bool = True,
    ignore_index: Optional[int] = None,
    class_weights: Optional[Sequence[float]] = None,
    reduction: str = "mean",
    check_values: bool = True,
    sync: object = None,
) -> Tensor:
    r"""Sensitivity-specificity loss (Brosch et al. 2015; seed 001 eq. 7).

    .. math::
        L = w \frac{\sum (g - p)^2 g}{\sum g + ε} + (1 - w) \frac{\sum (g - p)^2 (1 - g)}{\sum (1 - g) + ε}

    per (item, class): the mean squared error over the positives (sensitivity term)
    and over the negatives (specificity term). Here ε is ``smooth``, added to the
    denominators only, as in the paper. Range [0, 1], minimum 0 at ``p = g``.

    Args:
        w: weight of the sensitivity term in [0, 1]; the paper's 0.05 weighs
            specificity higher.
    """
    w = check_fraction("w", w)
    smooth = check_nonnegative("smooth", smooth)
    m, _ = region_moments(
        input, target, ("g", "gg", "ggg", "pg", "pgg", "pp", "ppg", "n"), mode=mode, from_logits=from_logits,
        include_background=include_background, ignore_index=ignore_index, domain=domain, check_values=check_values,
        sync=sync,
    )
    # Σ(g - p)² g = Σg³ - 2Σpg² + Σp²g ;  Σ(g - p)² = Σg² - 2Σpg + Σp²
    sens_num = m["ggg"] - 2 * m["pgg"] + m["ppg"]
    spec_num = (m["gg"] - 2 * m["pg"] + m["pp"]) - sens_num
    sens = safe_ratio(sens_num, m["g"] + smooth, empty=0.0)
    spec = safe_ratio(spec_num, (m["n"] - m["g"]) + smooth, empty=0.0)
    return finish(w * sens + (1 - w) * spec, reduction, class_weights, domain)
