r"""Region losses over the whole soft confusion matrix: Matthews correlation and the
generalised Wasserstein Dice loss.

Both are ratios of sums per item (an image, or the whole batch for ``domain="batch"``),
so in the batch domain they are exact over micro-batches
(:class:`~seglosses.BatchwiseAccumulator`) and processes (``sync``), like the region
losses of :mod:`seglosses.functional.region`, whose shared keywords they take.

Sources: Abhishek & Hamarneh, "Matthews correlation coefficient loss for deep
convolutional networks: application to skin lesion segmentation" (ISBI 2021);
Fidon et al., "Generalised Wasserstein Dice score for imbalanced multi-class
segmentation using holistic convolutional networks" (BrainLes 2017).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import Tensor

from typing_extensions import Unpack

from .._arguments import REGION, RegionKeywords, shared_keywords
from .._inputs import check_distance_matrix
from .._options import check_nonnegative, lookup_option
from .._reduce import reduce_per_item
from .._stats import _class_sums, _pieces, compute_dtype, confusion_from_moments, over_domain, safe_ratio
from ..distributed import resolve_sync
from .region import _canonical, finish, region_moments

__all__ = ["mcc_loss", "generalized_wasserstein_dice_loss"]


@shared_keywords(REGION)
def mcc_loss(input: Tensor, target: Tensor, **kw: Unpack[RegionKeywords]) -> Tensor:
    r"""Matthews correlation coefficient loss (Abhishek & Hamarneh 2021).

    .. math::
        \mathrm{MCC} = \frac{TP \cdot TN - FP \cdot FN}
        {\sqrt{(TP + FP)(TP + FN)(TN + FP)(TN + FN) + δ}},\qquad L = 1 - \mathrm{MCC}

    per (item, class), from the soft statistics TP = Σpg, FP = Σp(1−g), FN = Σ(1−p)g,
    TN = Σ(1−p)(1−g) (the paper's eq. 5); δ (``smooth``) enters under the root only.
    Unlike the Dice index it rewards the true negatives. Range [0, 2], minimum 0 at
    ``p = g``.

    Convention:
        * An item and class with FP = FN = 0 (a perfect prediction) has loss 0, as in
          MONAI ``MCCLoss`` (the root tends to 0 there).
        * A class absent from the target of an item (TP = FN = 0 for every prediction)
          has MCC 0, loss 1 and no gradient unless the prediction is exact: MCC gives
          no signal on an empty mask; pair it with a pixelwise loss for such images.
        * Agrees with MONAI ``MCCLoss(smooth_dr=δ)`` (its ``batch=True`` is
          ``domain="batch"``) and smp's binary ``MCCLoss`` up to its ``eps``.

    Example:
        >>> p = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
        >>> g = torch.tensor([[[1, 0], [0, 1]]])
        >>> # TP = FP = FN = TN = 1: MCC = 0
        >>> float(mcc_loss(p, g, from_logits=False, smooth=0.0))
        1.0
    """
    smooth = check_nonnegative("smooth", kw["smooth"])
    m, _ = region_moments(input, target, ("p", "g", "pg", "n"), kw)
    c = confusion_from_moments(m)
    tn = m["n"] - c.tp - c.fp - c.fn
    num = c.tp * tn - c.fp * c.fn
    den2 = (c.tp + c.fp) * (c.tp + c.fn) * (tn + c.fp) * (tn + c.fn) + smooth
    zero = den2 <= 0
    den = torch.sqrt(torch.where(zero, torch.ones_like(den2), den2))
    mcc = torch.where(zero, torch.zeros_like(num), num / den)
    perfect = (c.fp == 0) & (c.fn == 0)
    return finish(torch.where(perfect, torch.zeros_like(mcc), 1 - mcc), kw)


WEIGHTINGS = ("default", "gdl")


def _pair_sums(canon, dtype: torch.dtype) -> Dict[str, Tensor]:
    """``S[b, l, c] = Σ_i g_il p_ic`` (the soft confusion matrix) and ``n[b, l] = Σ_i g_il``.

    A label map is never expanded to one-hot: ``S[b, :, c]`` sums ``p_ic`` into the bin of
    each pixel's label (one ``scatter_add`` over the probabilities, the label index
    broadcast over the class axis; its backward gathers the gradient at the label), and
    ``n`` counts the labels. A dense target takes one batched product."""
    if canon.pending_check is not None:
        canon.pending_check.run()
    p = canon.probs(dtype)
    if canon.labels is not None:
        b, c, n = p.shape
        k = _pieces(n)  # (rows of at most n/k pixels: parallel work for the CPU kernel, see _class_sums)
        pw = p if canon.valid is None else p * canon.valid.unsqueeze(1).to(dtype)
        index = canon.labels.reshape(b, 1, k, n // k).expand(b, c, k, n // k)
        s_cl = torch.zeros(b, c, k, c, dtype=dtype, device=p.device).scatter_add(3, index, pw.reshape(b, c, k, n // k))
        counts = _class_sums(canon.labels, canon.valid, b, c, dtype)
        return {"S": s_cl.sum(2).transpose(1, 2), "n": counts}  # S: [b, l, c]
    g = canon.dense_target(dtype)
    if canon.valid is not None:
        g = g * canon.valid.unsqueeze(1).to(dtype)
    return {"S": torch.einsum("bln,bcn->blc", g, p), "n": g.sum(-1)}


@shared_keywords(REGION, defaults={"mode": "multiclass"}, without=("class_weights", "include_background"))
def generalized_wasserstein_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    dist_matrix: Optional[Sequence[Sequence[float]]] = None,
    weighting_mode: str = "default",
    **kw: Unpack[RegionKeywords],
) -> Tensor:
    r"""Generalised Wasserstein Dice loss (Fidon et al. 2017).

    .. math::
        W_i = \sum_c M_{g_i c}\, p_{ic},\qquad
        TP = \sum_l α_l \sum_{i: g_i = l} (1 - W_i),\qquad
        L = 1 - \frac{2\,TP + δ}{2\,TP + \sum_i W_i + δ}

    one value per item. :math:`W_i` is the Wasserstein distance between the predicted
    distribution :math:`p_i` and the label :math:`g_i` under the class distance matrix
    M (the cost of confusing label l with class c; M = 1 − I, the default, makes every
    confusion equally bad). ``weighting_mode="default"`` is the paper's: α_l = 1 for
    every class but the background (α_0 = 0). ``"gdl"`` weighs classes as the
    generalised Dice loss, α_l = 1/(n_l + 1) with n_l the pixels of class l, and
    uses :math:`\sum_l α_l \sum_{i: g_i = l} (2 - W_i)` as the denominator. Both are
    functions of the soft confusion matrix :math:`S_{lc} = \sum_i g_{il} p_{ic}`
    (:math:`\sum_{i: g_i = l} W_i = \sum_c M_{lc} S_{lc}`), so soft targets work and
    the batch domain is exact over micro-batches. Range [0, 1], minimum 0 at ``p = g``.

    Convention:
        M is scaled to maximum 1 (as MONAI does, so that W ∈ [0, 1]). Agrees with MONAI
        ``GeneralizedWassersteinDiceLoss(dist_matrix, weighting_mode)`` with
        ``smooth_nr = smooth_dr = δ`` (MONAI has no batch domain and no ignore_index).

    Args:
        dist_matrix: C × C non-negative distances with a zero diagonal (nested
            sequences); ``None``: 1 − I.
        weighting_mode: ``"default"`` (Fidon et al.) or ``"gdl"``.

    ``reduction="none"`` gives ``[B]`` (image domain) or a 0-dim tensor (batch domain).

    Example:
        >>> p = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])   # 2 classes, 1x2 image
        >>> g = torch.tensor([[[0, 1]]])
        >>> # pixel 1 is background (α_0 = 0); pixel 2 is class 1, predicted exactly: W = 0
        >>> float(generalized_wasserstein_dice_loss(p, g, from_logits=False, smooth=0.0))
        0.0
    """
    smooth = check_nonnegative("smooth", kw["smooth"])
    mode = lookup_option("weighting_mode", weighting_mode.lower() if isinstance(weighting_mode, str)
                         else weighting_mode, WEIGHTINGS)
    canon = _canonical(input, target, {**kw, "include_background": True})
    lookup_option("mode", kw["mode"], ("multiclass",))  # after the input checks every loss shares
    c = canon.num_channels
    dtype = compute_dtype(canon.x.dtype)
    m = check_distance_matrix(dist_matrix, c, dtype, canon.x.device)
    hook = resolve_sync(kw["sync"], kw["domain"])
    st = over_domain(_pair_sums(canon, dtype), kw["domain"])
    st = st if hook is None else hook(st, kw["domain"])
    err = (st["S"] * m).sum(-1)  # [I, L]: Σ_{i: g=l} W_i
    n = st["n"]
    if mode == "default":
        alpha = torch.ones_like(n)
        alpha[:, 0] = 0
    else:
        alpha = 1.0 / (n + 1.0)
    tp = (alpha * (n - err)).sum(1)
    den = 2 * tp + err.sum(1) if mode == "default" else (alpha * (2 * n - err)).sum(1)
    loss = 1 - safe_ratio(2 * tp + smooth, den + smooth)
    return reduce_per_item(loss, kw["reduction"], domain=kw["domain"])
