"""Compound losses of seed 001 section 5: Combo loss (eq. 15) and exponential logarithmic loss (eq. 16).

Both mix a distribution term (a cross entropy computed per pixel in log space, see
:mod:`seglosses.functional.distribution`) with a region term (the Dice index of the
statistics kernel, through :func:`seglosses.functional.dice_loss`). One value per item
(image, or the whole batch for ``domain="batch"``): the cross-entropy part is the mean
over the item's valid pixels, the Dice part the mean over the item's classes.
``reduction="none"`` gives ``[B]`` (image domain) or a 0-dim tensor (batch domain).

Other sums of losses are built with ``+`` and ``*`` on loss modules or with
:func:`seglosses.build_loss` (:class:`~seglosses.losses.compound.WeightedSum`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from typing_extensions import Unpack

from .._arguments import REGION, RegionKeywords, shared_keywords, with_docs
from .._inputs import Canonical, canonicalize, check_class_weights
from .._options import check_fraction, check_nonnegative, lookup_option
from .._reduce import reduce_items, reduce_per_item
from .._stats import compute_dtype, confusion_from_moments, safe_ratio
from .distribution import _log1mexp, _log_probs, _pow_clamped, _resolve_class_weights
from .region import dice_loss, region_moments

__all__ = ["combo_loss", "exp_log_loss", "unified_focal_loss"]

DICE_TERMS = ("loss", "score")


def _item_mean(per_pixel: Tensor, canon: Canonical, domain: str) -> Tensor:
    """Mean of ``[B, N]`` values over each item's valid pixels: ``[B]`` or ``[1]`` (0 if none valid)."""
    if canon.valid is not None:
        w = canon.valid.to(per_pixel.dtype)
        total, count = (per_pixel * w).sum(1), w.sum(1)
    else:
        total = per_pixel.sum(1)
        count = torch.full_like(total, float(per_pixel.shape[1]))
    if domain == "batch":
        total, count = total.sum(0, keepdim=True), count.sum(0, keepdim=True)
    return total / torch.where(count > 0, count, torch.ones_like(count))  # (weights may sum below 1)


def _dice_values(input, target, *, mode, from_logits, domain, smooth, include_background, ignore_index,
                 mask=None) -> Tensor:
    """1 − Dice per (item, class) as ``[I, C]``."""
    d = dice_loss(input, target, mode=mode, from_logits=from_logits, domain=domain, smooth=smooth,
                  include_background=include_background, ignore_index=ignore_index, reduction="none",
                  check_values=False, mask=mask)
    return d.unsqueeze(0) if domain == "batch" else d


def _class_mean(values: Tensor, class_weights) -> Tensor:
    """``[I, C]`` → ``[I]``: the class mean, weighted as :func:`seglosses._reduce.reduce_items` does."""
    w = check_class_weights(class_weights, values.shape[1], values)
    return reduce_items(values, "none", w, domain="image").mean(1)


_COMPOUND_ARGS = """\
    Common args:
        input: prediction ``[B, C, *S]``: logits (``from_logits=True``) or probabilities.
        target: label map ``[B, *S]``, or ``[B, C, *S]`` one-hot / soft labels.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: the input is logits.
        ignore_index: target value whose pixels are left out.
        mask: spatial mask ``[B, 1, *S]`` or ``[B, *S]``: bool (False leaves the pixel out, as
            ``ignore_index`` does) or per-pixel weights >= 0 (pixel means become weighted means).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        check_values: run the value checks of the canonicalisation.

    Returns:
        Scalar, or ``[B]`` / 0-dim for ``reduction="none"``.
"""
_compound_docs = with_docs(_COMPOUND_ARGS)


@_compound_docs
def combo_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    dice_term: str = "loss",
    mode: str = "binary",
    from_logits: bool = True,
    domain: str = "image",
    smooth: float = 1.0,
    include_background: bool = True,
    ignore_index: Optional[int] = None,
    class_weights: Optional[Sequence[float]] = None,
    reduction: str = "mean",
    check_values: bool = True,
    mask: Optional[Tensor] = None,
) -> Tensor:
    r"""Combo loss (Taghanaki et al. 2019; seed 001 eq. 15).

    .. math::
        L = α \Big( -\frac{1}{N} \sum_{i=1}^{N} β\, g_i \log p_i + (1-β)(1-g_i)\log(1-p_i) \Big)
            - (1-α)\, \frac{2\sum_i p_i g_i + ε}{\sum_i p_i + \sum_i g_i + ε}

    the paper's form (``dice_term="score"``), with range :math:`[-(1-α), ∞)`. The default
    ``dice_term="loss"`` uses :math:`(1-α)(1 - \mathrm{Dice})` instead: it differs from the
    paper's by the constant :math:`1-α`, so the gradients are the same, but the value is
    >= 0 with infimum 0 at a perfect prediction, like every other loss of the package (it
    can be logged, compared and summed with others without a negative offset). β < ½
    penalises false positives more, β > ½ false negatives; α weighs the cross entropy
    against the Dice term.

    Several channels (multiclass, multilabel): the weighted BCE is taken one class against
    the rest on each kept channel (softmax probabilities for multiclass, with
    :math:`\log(1-p)` in log space) and averaged over the channels, as the authors' code
    averages over every (pixel, class) entry; the Dice term is the mean per-class Dice of
    :func:`seglosses.functional.dice_loss` (a single pooled Dice in the binary case, as
    eq. 15). ``class_weights`` weigh the channels in both means (normalised to mean 1).

    Convention:
        ε (``smooth``) defaults to 1, the authors' code's value; an absent class with no
        predicted pixels then has Dice 1. Ignored pixels leave both terms; an item with
        every pixel ignored has cross-entropy part 0. ``reduction="none"`` gives ``[B]``
        (image domain) or a 0-dim tensor (batch domain).

    Args:
        alpha: α in [0, 1], weight of the cross entropy (default ½).
        beta: β in [0, 1], weight of the positives in the cross entropy (default ½).
        dice_term: ``"loss"`` (1 − Dice, default) or ``"score"`` (−Dice, the paper).
        domain: ``"image"`` (per image, then averaged) or ``"batch"``.
        smooth: ε of the Dice term.
        include_background: keep channel 0 (multiclass/multilabel) in both terms.
        class_weights: one weight per kept channel, or None.

    Example:
        >>> x = torch.tensor([[[0.0, 0.0]]])  # binary, p = 1/2 at both pixels
        >>> y = torch.tensor([[1, 0]])
        >>> # WCE = 1/2 (1/2 ln 2 + 1/2 ln 2) = 0.3466 per pixel; Dice = (1 + 1)/(1 + 1 + 1) = 2/3
        >>> round(float(combo_loss(x, y)), 4)  # 0.5 * 0.3466 + 0.5 * (1 - 2/3)
        0.34
        >>> round(float(combo_loss(x, y, dice_term="score")), 4)  # 0.5 * 0.3466 - 0.5 * 2/3
        -0.16
    """
    alpha = check_fraction("alpha", alpha)
    beta = check_fraction("beta", beta)
    smooth = check_nonnegative("smooth", smooth)
    dice_term = lookup_option("dice_term", dice_term, DICE_TERMS)
    domain = lookup_option("domain", domain, ("image", "batch"))
    canon = canonicalize(input, target, mode=mode, from_logits=from_logits, include_background=include_background,
                         ignore_index=ignore_index, check_values=check_values, mask=mask)
    dt = compute_dtype(canon.x.dtype)
    lp, lnq = _log_probs(canon)
    if lnq is None:  # multiclass: one class against the rest on softmax probabilities
        lnq = _log1mexp(lp)
    g = canon.dense_target(dt)
    first = canon.first_class
    per = -(beta * g * lp + (1 - beta) * (1 - g) * lnq)[:, first:]  # [B, C_kept, N]
    w = check_class_weights(class_weights, per.shape[1], per)
    wce = (per * (w * (w.numel() / w.sum())).view(1, -1, 1) if w is not None else per).mean(1)
    wce = _item_mean(wce, canon, domain)
    dice_l = _dice_values(input, target, mode=mode, from_logits=from_logits, domain=domain, smooth=smooth,
                          include_background=include_background, ignore_index=ignore_index, mask=mask)
    d = _class_mean(dice_l.to(dt), class_weights)
    value = alpha * wce + (1 - alpha) * (d if dice_term == "loss" else d - 1)
    return reduce_per_item(value, reduction, domain=domain).to(input.dtype)


@_compound_docs
def exp_log_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma_dice: float = 0.3,
    gamma_ce: float = 0.3,
    w_dice: float = 0.8,
    w_ce: float = 0.2,
    mode: str = "binary",
    from_logits: bool = True,
    domain: str = "image",
    smooth: float = 1.0,
    include_background: bool = True,
    ignore_index: Optional[int] = None,
    class_weights: Union[None, str, Sequence[float]] = "sqrt_inverse_frequency",
    reduction: str = "mean",
    check_values: bool = True,
    mask: Optional[Tensor] = None,
) -> Tensor:
    r"""Exponential logarithmic loss, ELL (Wong et al. 2018; seed 001 eq. 16).

    .. math::
        L = w_{Dice}\, \mathbb{E}_c\big[(-\ln \mathrm{Dice}_c)^{γ_{Dice}}\big]
          + w_{CE}\, \mathbb{E}_i\big[w_{y_i} (-\ln p_{i,y_i})^{γ_{CE}}\big],\qquad
        \mathrm{Dice}_c = \frac{2\sum_i g_{ic} p_{ic} + ε}{\sum_i (g_{ic} + p_{ic}) + ε}

    with the class weights of Wong et al., :math:`w_c = ((\sum_k f_k)/f_c)^{0.5}`, where
    :math:`f_c` is the number of valid pixels of class c in the batch
    (``class_weights="sqrt_inverse_frequency"``, the default; see
    :func:`~seglosses.functional.class_frequency_weights`; explicit weights or ``None`` =
    uniform are accepted). Defaults are the paper's: γ = 0.3 for both terms,
    :math:`w_{Dice} = 0.8`, :math:`w_{CE} = 0.2`, ε = 1 (its pseudocount). Dice_c comes
    from the statistics kernel (:func:`~seglosses.functional.dice_loss`, ``1 − L``, so
    :math:`-\ln \mathrm{Dice} = -\mathrm{log1p}(-L)`). For soft targets the CE term is
    :math:`\sum_c g_{ic} w_c (-\ln p_{ic})^{γ}`; for binary/multilabel it runs over the two
    outcomes of each channel (weights from the negative/positive counts), channels summed.
    ``include_background`` applies to the Dice term only (the CE term needs every class).

    Convention:
        Both bases are clamped at 1e-12 before the power: for γ < 1 the derivative of
        :math:`u^γ` is unbounded at u = 0 (Dice = 1 or p = 1), and the clamp keeps the
        gradient finite (zero below the clamp), adding at most :math:`10^{-12γ}` to each term.
        Dice is clamped at 1e-7 (reachable only with ``smooth = 0``), so the value stays
        finite. Absent classes: Dice 1 (with ε > 0) and the weight of the rarest present class.
        ``reduction="none"``: ``[B]`` (image domain) / 0-dim (batch domain). Range [0, ∞).

    Args:
        gamma_dice, gamma_ce: exponents γ > 0 of the two terms.
        w_dice, w_ce: weights (>= 0) of the two terms.
        domain: ``"image"`` (Dice and CE per image, then averaged) or ``"batch"``.
        smooth: ε of Dice_c.
        include_background: keep channel 0 in the Dice term.
        class_weights: ``"sqrt_inverse_frequency"`` (default), ``"inverse_frequency"``,
            explicit weights (as :func:`~seglosses.functional.cross_entropy_loss`) or None.

    Example:
        >>> x = torch.tensor([[[0.0, 0.0]]])  # binary, p = 1/2 at both pixels
        >>> y = torch.tensor([[1, 0]])
        >>> # Dice = 2/3: (ln 3/2)^0.3 = 0.7627; one pixel per outcome, so w = sqrt(2) for both:
        >>> # sqrt(2) (ln 2)^0.3 = 1.2670; 0.8 * 0.7627 + 0.2 * 1.2670
        >>> round(float(exp_log_loss(x, y)), 4)
        0.8636
    """
    gamma_dice = check_nonnegative("gamma_dice", gamma_dice)
    gamma_ce = check_nonnegative("gamma_ce", gamma_ce)
    w_dice = check_nonnegative("w_dice", w_dice)
    w_ce = check_nonnegative("w_ce", w_ce)
    smooth = check_nonnegative("smooth", smooth)
    domain = lookup_option("domain", domain, ("image", "batch"))
    canon = canonicalize(input, target, mode=mode, from_logits=from_logits, include_background=include_background,
                         ignore_index=ignore_index, check_values=check_values, mask=mask)
    dt = compute_dtype(canon.x.dtype)
    factor = _resolve_class_weights(class_weights, canon, dt)
    lp, lnq = _log_probs(canon)
    if lnq is None:
        if canon.labels is not None:
            y = canon.labels
            per = _pow_clamped(-lp.gather(1, y.unsqueeze(1)).squeeze(1), gamma_ce)
            if factor is not None:
                per = per * factor[y]
        else:
            e = _pow_clamped(-lp, gamma_ce)
            if factor is not None:
                e = e * factor.view(1, -1, 1)
            per = (canon.dense.to(dt) * e).sum(1)
    else:
        g = canon.dense.to(dt)
        pos, neg = _pow_clamped(-lp, gamma_ce), _pow_clamped(-lnq, gamma_ce)
        if factor is not None:
            pos = pos * factor[:, 1].view(1, -1, 1)
            neg = neg * factor[:, 0].view(1, -1, 1)
        per = (g * pos + (1 - g) * neg).sum(1)
    ce = _item_mean(per, canon, domain)
    dice_l = _dice_values(input, target, mode=mode, from_logits=from_logits, domain=domain, smooth=smooth,
                          include_background=include_background, ignore_index=ignore_index, mask=mask).to(dt)
    ld = _pow_clamped(-torch.log1p(-dice_l.clamp_max(1 - 1e-7)), gamma_dice).mean(1)
    return reduce_per_item(w_dice * ld + w_ce * ce, reduction, domain=domain).to(input.dtype)


@shared_keywords(REGION, without=("class_weights", "include_background", "sync"))
def unified_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    weight: float = 0.5,
    delta: float = 0.6,
    gamma: float = 0.5,
    **kw: Unpack[RegionKeywords],
) -> Tensor:
    r"""Asymmetric unified focal loss (Yeung et al. 2022, "Unified Focal loss", eqs. 13-16).

    .. math::
        L = λ\, L_{maF} + (1 - λ)\, L_{maFT}

    .. math::
        L_{maF} = \frac{1}{N K} \sum_i \Big[-(1 - δ)(1 - p_{i0})^{γ} g_{i0}\log p_{i0}
                  - δ \sum_{c \ge 1} g_{ic} \log p_{ic}\Big],\qquad
        L_{maFT} = \frac{1}{K}\Big[(1 - \mathrm{mTI}_0) + \sum_{c \ge 1} (1 - \mathrm{mTI}_c)^{1-γ}\Big]

    with :math:`\mathrm{mTI}_c = (TP_c + δ_s)/(TP_c + δ\,FN_c + (1 - δ) FP_c + δ_s)`
    (δ_s = ``smooth``), K classes (binary mode: K = 2, background 1 − p and foreground
    p), N valid pixels per item. The asymmetry of the paper: the background (class 0)
    gets the focal suppression of the cross entropy and the plain Tversky term, every
    other class (the rare ones) the enhancement; δ weighs false negatives. Defaults are
    the paper's best setting (λ = 0.5, δ = 0.6, γ = 0.5). Range [0, ∞), minimum 0 at
    ``p = g``.

    Convention:
        * Multiclass mode follows the paper's multiclass form: class 0 is the background
          and every class c ≥ 1 is rare. Both parts are means over the K classes (the
          paper sums them; the mean is the paper's value divided by K, as MONAI's
          ``AsymmetricUnifiedFocalLoss``, which has the binary form only).
        * Agrees with MONAI ``AsymmetricUnifiedFocalLoss(weight=λ, delta=δ, gamma=γ)`` on
          ``sigmoid(input)`` in binary mode (MONAI clamps p to [1e-7, 1 − 1e-7] and takes
          probabilities; here the logarithms come from the logits). The bases of the
          fractional powers are clamped at 1e-12 (finite gradients at the truth).
        * Not a ratio of batch sums (a pixel mean plus a ratio): ``domain="batch"`` takes
          the whole batch as one item; the accumulator refuses it.

    Args:
        weight: λ in [0, 1], the share of the focal (distribution) part.
        delta: δ in [0, 1], the weight of false negatives (and of the rare classes'
            cross entropy).
        gamma: γ in [0, 1), the focal parameter of both parts.

    ``reduction="none"`` gives ``[B]`` (image domain) or a 0-dim tensor (batch domain).

    Example:
        >>> x = torch.tensor([[[0.0, 0.0]]])  # binary, p = 1/2 at both pixels
        >>> y = torch.tensor([[1, 0]])
        >>> # focal: (0.4 * 0.5**0.5 * ln 2 + 0.6 * ln 2) / (2 * 2) = 0.1530
        >>> # Tversky: every mTI = 0.5 / (0.5 + 0.6 * 0.5 + 0.4 * 0.5) = 0.5: (0.5 + 0.5**0.5) / 2 = 0.6036
        >>> round(float(unified_focal_loss(x, y, smooth=0.0)), 4)
        0.3783
    """
    lam = check_fraction("weight", weight)
    delta = check_fraction("delta", delta)
    gamma = check_fraction("gamma", gamma, open_high=True)
    smooth = check_nonnegative("smooth", kw["smooth"])
    lookup_option("mode", kw["mode"], ("binary", "multiclass"))
    domain = kw["domain"]
    kw = {**kw, "include_background": True, "sync": None}
    m, canon = region_moments(input, target, ("p", "g", "pg", "n"), kw)
    c = confusion_from_moments(m)
    dt = compute_dtype(canon.x.dtype)
    lp, lnq = _log_probs(canon)
    g = canon.dense_target(dt)
    if lnq is not None:  # binary: (background, foreground) = (1 - p, p)
        tn = m["n"] - c.tp - c.fp - c.fn
        tp, fp, fn = torch.cat([tn, c.tp], 1), torch.cat([c.fn, c.fp], 1), torch.cat([c.fp, c.fn], 1)
        lp, g = torch.cat([lnq, lp], 1), torch.cat([1 - g, g], 1)
    else:
        tp, fp, fn = c.tp, c.fp, c.fn
    k = lp.shape[1]
    back = (1 - delta) * _pow_clamped(-torch.expm1(lp[:, 0]), gamma) * (-g[:, 0] * lp[:, 0])
    per = (back + delta * (-g[:, 1:] * lp[:, 1:]).sum(1)) / k
    focal = _item_mean(per, canon, domain)
    mti = safe_ratio(tp + smooth, tp + delta * fn + (1 - delta) * fp + smooth)
    tversky = torch.cat([1 - mti[:, :1], _pow_clamped(1 - mti[:, 1:], 1 - gamma)], 1).mean(1)
    return reduce_per_item(lam * focal + (1 - lam) * tversky.to(focal.dtype), kw["reduction"], domain=domain)
