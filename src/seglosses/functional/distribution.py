"""Distribution losses (seed 001 section 2): cross entropy, weighted CE, TopK, focal, DPCE.

Every function here is a per-pixel loss: canonicalise the pair, compute one value per
pixel in log space, reduce it with :func:`seglosses._reduce.reduce_pixels`.

Outcomes per pixel:

* ``mode="multiclass"``: the C classes of the softmax, :math:`\\ell_i = -\\sum_c w_c g_{ic} \\log p_{ic}`;
* ``mode="binary"`` / ``"multilabel"``: each channel is a two-outcome (Bernoulli)
  distribution, :math:`\\ell_i = -\\sum_c [w_{c,1} g_{ic} \\log q_{ic} + w_{c,0}(1-g_{ic})\\log(1-q_{ic})]`
  with :math:`q = σ(x)`. Channels are **summed**, so for ``multilabel`` the value is C times
  the mean of ``torch.nn.functional.binary_cross_entropy_with_logits`` (which averages over
  channels too); for ``binary`` (C = 1) both agree.

Log-probabilities come from ``log_softmax`` / ``logsigmoid`` of the logits
(``from_logits=True``), or from ``log(p)`` clamped at the dtype's smallest normal number for
probabilities. Binary/multilabel logits take a fused kernel (:class:`_BernoulliNLL`): one
``logsigmoid`` gives both logs (:math:`\\log(1-q) = \\log q - x`, the form of
``F.binary_cross_entropy_with_logits``), the steps run in place and the gradient is written
in closed form. Statistics are computed in float32 for half inputs; the result has the
input's dtype.

Sources: seed 001 = Ma, "Segmentation Loss Odyssey" (2020), eqs. 2-6; Lin et al., "Focal
loss for dense object detection" (ICCV 2017); Caliva et al., "Distance map loss penalty
term for semantic segmentation" (MIDL 2019); Wu et al. 2016 (TopK / bootstrapped CE).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from typing_extensions import Unpack

from .._arguments import PIXEL, PixelKeywords, shared_keywords
from .._inputs import Canonical, canonicalize, check_class_weights, check_constant_target
from .._options import check_fraction, check_nonnegative, check_positive, lookup_option
from .._reduce import reduce_pixels
from .._stats import _compiling, compute_dtype

__all__ = [
    "cross_entropy_loss",
    "topk_loss",
    "focal_loss",
    "distance_penalized_ce_loss",
    "class_frequency_weights",
]

WEIGHT_SCHEMES = ("inverse_frequency", "sqrt_inverse_frequency")
WEIGHT_NORMS = ("pixels", "weights")
_LN2 = math.log(2.0)

ClassWeights = Union[None, str, Sequence[float], Tensor]



# --------------------------------------------------------------------------- log space


def _log_tiny(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).tiny


def _log_probs(canon: Canonical) -> Tuple[Tensor, Optional[Tensor]]:
    """Per-pixel log-probabilities in the compute dtype.

    Returns ``(log p, None)`` with ``log p`` ``[B, C, N]`` for multiclass, or
    ``(log q, log(1 - q))`` (each ``[B, C, N]``) for binary and multilabel.
    """
    dt = compute_dtype(canon.x.dtype)
    x = canon.x.to(dt)
    tiny = _log_tiny(dt)
    if canon.mode == "multiclass":
        if canon.from_logits:
            return F.log_softmax(x, dim=1), None
        return torch.log(x.clamp_min(tiny)), None
    if canon.from_logits:
        return F.logsigmoid(x), F.logsigmoid(-x)
    return torch.log(x.clamp_min(tiny)), torch.log((1 - x).clamp_min(tiny))


def _log1mexp(a: Tensor) -> Tensor:
    r""":math:`\log(1 - e^{a})` for :math:`a \le 0`, stable at both ends (Mächler 2012).

    ``a`` is clamped at ``-tiny`` so that :math:`a = 0` (a saturated probability) gives a
    large finite negative value with zero gradient, never ``-inf`` or NaN.
    """
    tiny = _log_tiny(a.dtype) if a.dtype == torch.float64 else 1e-30
    a = a.clamp_max(-tiny)
    near = a > -_LN2
    a_near = torch.where(near, a, torch.full_like(a, -1.0))
    a_far = torch.where(near, torch.full_like(a, -1.0), a)
    return torch.where(near, torch.log(-torch.expm1(a_near)), torch.log1p(-torch.exp(a_far)))


def _pow_clamped(base: Tensor, gamma: float, floor: float = 1e-12) -> Tensor:
    """``base ** gamma`` with the base clamped at ``floor`` (finite gradient for gamma < 1)."""
    return base.clamp_min(floor) ** gamma


# --------------------------------------------------------------------------- class weights


def _class_counts(canon: Canonical, dtype: torch.dtype) -> Tensor:
    """Valid-pixel counts over the batch: ``[C]`` (multiclass) or ``[C, 2]`` (negatives, positives)."""
    w = None if canon.valid is None else canon.valid.to(dtype)
    if canon.mode == "multiclass":
        c = canon.num_channels
        if canon.labels is not None:
            ones = torch.ones_like(canon.labels, dtype=dtype) if w is None else w
            return torch.zeros(c, dtype=dtype, device=canon.x.device).scatter_add(
                0, canon.labels.reshape(-1), ones.reshape(-1))
        g = canon.dense.detach().to(dtype)
        return (g if w is None else g * w.unsqueeze(1)).sum((0, 2))
    g = canon.dense.detach().to(dtype)
    n = torch.full((), float(g.shape[0] * g.shape[2]), dtype=dtype, device=g.device) if w is None else w.sum()
    pos = (g if w is None else g * w.unsqueeze(1)).sum((0, 2))
    return torch.stack([n - pos, pos], dim=-1)


def class_frequency_weights(counts: Tensor, scheme: str = "inverse_frequency") -> Tensor:
    r"""Class weights from class counts, along the last axis.

    .. math::
        \text{inverse\_frequency:}\quad w_c = \frac{N}{K\, n_c},\qquad
        \text{sqrt\_inverse\_frequency:}\quad w_c = \Big(\frac{N}{n_c}\Big)^{1/2}

    with :math:`n_c` the (soft) count of class c, :math:`N = \sum_c n_c` and K the number
    of classes present (:math:`n_c > 0`). ``inverse_frequency`` is scikit-learn's
    ``compute_class_weight("balanced")``; it makes :math:`\sum_i w_{y_i} = N`, so the
    weighted mean is the same whether it divides by N or by the sum of the weights. It is
    the weighting of weighted CE (seed 001 eq. 3: "inversely proportional to the class
    frequencies"). ``sqrt_inverse_frequency`` is the weight of Wong et al. (2018)'s
    exponential logarithmic loss, :math:`w_c = ((\sum_k f_k)/f_c)^{0.5}`.

    Convention:
        A class absent from the counts (:math:`n_c = 0`, infinite weight) takes the
        largest weight of the present classes; if no class is present every weight is 1.

    Args:
        counts: non-negative counts, ``[..., K]``.
        scheme: ``"inverse_frequency"`` or ``"sqrt_inverse_frequency"``.

    Returns:
        Weights of the shape and dtype of ``counts`` (constants: no gradient).

    Example:
        >>> class_frequency_weights(torch.tensor([6.0, 2.0, 0.0]))
        tensor([0.6667, 2.0000, 2.0000])
        >>> class_frequency_weights(torch.tensor([3.0, 1.0]), "sqrt_inverse_frequency")
        tensor([1.1547, 2.0000])
    """
    scheme = lookup_option("class_weights", scheme, WEIGHT_SCHEMES)
    counts = counts.detach()
    present = counts > 0
    safe = torch.where(present, counts, torch.ones_like(counts))
    total = counts.sum(-1, keepdim=True)
    if scheme == "inverse_frequency":
        k = present.sum(-1, keepdim=True).clamp_min(1).to(counts.dtype)
        w = total / (k * safe)
    else:
        w = torch.sqrt(total / safe)
    w = torch.where(present, w, torch.zeros_like(w))
    wmax = w.amax(-1, keepdim=True)
    wmax = torch.where(wmax > 0, wmax, torch.ones_like(wmax))
    return torch.where(present, w, wmax.expand_as(w))


def _resolve_class_weights(class_weights: ClassWeights, canon: Canonical, dtype: torch.dtype) -> Optional[Tensor]:
    """Per-outcome weights: ``[C]`` (multiclass) or ``[C, 2]`` (binary/multilabel: negatives, positives)."""
    if class_weights is None:
        return None
    if isinstance(class_weights, str):
        check_constant_target(canon.dense, f"class_weights={class_weights!r} are computed from the target's class "
                                           f"counts, a constant")
        return class_frequency_weights(_class_counts(canon, dtype), class_weights).to(dtype)
    c = canon.num_channels
    like = torch.empty((), dtype=dtype, device=canon.x.device)
    if canon.mode == "multiclass":
        return check_class_weights(class_weights, c, like).to(dtype)
    if canon.mode == "binary":
        n = torch.as_tensor(class_weights).numel() if not isinstance(class_weights, Tensor) else class_weights.numel()
        w = check_class_weights(class_weights, 2 if n == 2 else 1, like).to(dtype)
        return w.view(1, 2) if n == 2 else w.view(1, 1).expand(1, 2)
    w = check_class_weights(class_weights, c, like).to(dtype)
    return w.view(c, 1).expand(c, 2)


# --------------------------------------------------------------------------- the per-pixel kernel


class _BernoulliNLL(torch.autograd.Function):
    r"""Per-pixel Bernoulli NLL of logits, summed over channels: ``[B, C, N]`` → ``[B, 1, N]``.

    .. math::
        \ell = -\sum_c \big[u \log q + v \log(1-q)\big],\qquad
        u = w_1\, g\, (1-q)^γ,\quad v = w_0\, (1-g)\, q^γ,\quad q = σ(x)

    and, since :math:`\partial_x \log q = 1-q`, :math:`\partial_x \log(1-q) = -q`,
    :math:`\partial_x u = -γ q u`, :math:`\partial_x v = γ (1-q) v`:

    .. math::
        \partial_x \ell = q\,(γ u \log q + v) - (1-q)\,(u + γ v \log(1-q))

    (γ = 0: :math:`q (u + v) - u`, i.e. :math:`q - g` without weights). One ``logsigmoid``
    gives both logs (:math:`\log(1-q) = \log q - x`, as
    ``F.binary_cross_entropy_with_logits`` computes it) and every other step runs in place
    on fresh temporaries. For γ > 0 the gradient is built in the forward (it shares the
    modulating factors) and kept for the backward; for γ = 0 the backward rebuilds it from
    ``x`` and ``g`` (a sigmoid and one or two passes), so nothing input-sized is kept.

    ``g`` (target, possibly smoothed or soft), ``w0`` / ``w1`` (negative / positive
    outcome weights, ``None`` or broadcastable to ``x``, both given or neither) are
    constants.
    """

    @staticmethod
    def forward(ctx, x, g, w0, w1, gamma, need_grad):  # type: ignore[override]
        lq = F.logsigmoid(x)
        if gamma == 0 and w0 is None:
            # -(g log q + (1-g) log(1-q)) = x - (log q + g x), written over log q
            per = torch.sub(x, lq.addcmul_(g, x), out=lq)
        elif gamma == 0:
            lnq = torch.sub(lq, x).mul_(w0)  # w0 log(1-q)
            lnq.addcmul_(g, lnq, value=-1)  # w0 (1-g) log(1-q)
            per = lq.mul_(g).mul_(w1).add_(lnq).neg_()
        else:
            lnq = torch.sub(lq, x)
            u = torch.mul(lnq, gamma).exp_().mul_(g)  # g (1-q)^γ
            v = torch.mul(lq, gamma).exp_()
            v.addcmul_(g, v, value=-1)  # (1-g) q^γ
            if w0 is not None:
                u.mul_(w1)
                v.mul_(w0)
            per = torch.mul(u, lq).addcmul_(v, lnq).neg_()
            if need_grad:
                a = torch.addcmul(v, u, lq, value=gamma, out=lq)  # γ u log q + v
                d = torch.addcmul(u, v, lnq, value=gamma, out=lnq)  # u + γ v log(1-q)
                q = torch.sigmoid(x, out=u)
                del v
                ctx.save_for_backward(a.add_(d).mul_(q).sub_(d))  # q a - (1-q) d
        ctx.gamma = gamma
        if not gamma:
            ctx.save_for_backward(x, g, w0, w1)
        return per if per.shape[1] == 1 else per.sum(1, keepdim=True)  # a fresh tensor, not a view

    @staticmethod
    def backward(ctx, go):  # type: ignore[override]
        if ctx.gamma:
            (grad,) = ctx.saved_tensors
            return grad * go, None, None, None, None, None
        x, g, w0, w1 = ctx.saved_tensors
        grad = torch.sigmoid(x)
        if w0 is None:
            grad.sub_(g)
        else:
            # q (u + v) - u with u = w1 g, v = w0 (1-g): w0 q + g (q (w1 - w0) - w1)
            t = torch.mul(grad, w1 - w0).sub_(w1).mul_(g)
            grad.mul_(w0).add_(t)
        return grad.mul_(go), None, None, None, None, None


def _fused_bernoulli(canon: Canonical, factor: Optional[Tensor], pixel_weight: Optional[Tensor]) -> bool:
    """Whether :class:`_BernoulliNLL` computes this case: binary/multilabel logits with
    constant target and weights, outside ``torch.compile`` (which fuses the plain form)."""
    if canon.mode == "multiclass" or not canon.from_logits or _compiling():
        return False
    return not any(t is not None and t.requires_grad for t in (canon.dense, factor, pixel_weight))


def _pixel_nll(
    canon: Canonical,
    *,
    factor: Optional[Tensor] = None,
    smoothing: float = 0.0,
    gamma: float = 0.0,
    pixel_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Per-pixel (weighted, optionally focal) negative log-likelihood ``[B, N]`` (compute dtype).

    Multiclass: :math:`-\sum_c a_c \tilde g_{ic} (1-p_{ic})^γ \log p_{ic}`; binary/multilabel:
    :math:`-\sum_c [a_{c,1}\tilde g (1-q)^γ \log q + a_{c,0}(1-\tilde g) q^γ \log(1-q)]`, with
    :math:`\tilde g` the target smoothed by ``smoothing`` (ε/C multiclass, ε/2 Bernoulli).
    ``pixel_weight`` multiplies the per-pixel (multiclass, ``[B, N]``) or per-channel
    (``[B, C, N]``) values. A label map is never expanded to one-hot unless smoothing needs
    every class. Binary/multilabel logits go through :class:`_BernoulliNLL` (one
    ``logsigmoid``, in-place steps, the gradient in closed form); the rest through autograd.
    """
    eps = smoothing
    if _fused_bernoulli(canon, factor, pixel_weight):
        dt = compute_dtype(canon.x.dtype)
        g = canon.dense.to(dt)
        if eps:
            g = torch.mul(g, 1 - eps).add_(eps / 2)  # (1 - ε) g + ε/2, one fresh tensor
        w0 = w1 = pixel_weight
        if factor is not None:
            a0, a1 = factor[:, 0].view(1, -1, 1), factor[:, 1].view(1, -1, 1)
            w0 = a0 if pixel_weight is None else pixel_weight * a0
            w1 = a1 if pixel_weight is None else pixel_weight * a1
        x = canon.x.to(dt)
        need_grad = torch.is_grad_enabled() and x.requires_grad
        return _BernoulliNLL.apply(x, g, w0, w1, float(gamma), need_grad).squeeze(1)
    lp, lnq = _log_probs(canon)
    dt = lp.dtype
    if canon.mode == "multiclass":
        c = lp.shape[1]
        if canon.labels is not None:
            y = canon.labels
            lpt = lp.gather(1, y.unsqueeze(1)).squeeze(1)
            t = -lpt
            if gamma:
                t = t * torch.exp(gamma * _log1mexp(lpt))
            if factor is not None:
                t = t * factor[y]
            if eps:
                full = -lp
                if gamma:
                    full = full * torch.exp(gamma * _log1mexp(lp))
                if factor is not None:
                    full = full * factor.view(1, -1, 1)
                t = (1 - eps) * t + (eps / c) * full.sum(1)
            loss = t
        else:
            g = canon.dense.to(dt)
            if eps:
                g = (1 - eps) * g + eps / c
            e = -lp
            if gamma:
                e = e * torch.exp(gamma * _log1mexp(lp))
            if factor is not None:
                e = e * factor.view(1, -1, 1)
            loss = (g * e).sum(1)
        if pixel_weight is not None:
            loss = loss * pixel_weight
        return loss
    lq = lp
    g = canon.dense.to(dt)
    if eps:
        g = (1 - eps) * g + eps / 2
    pos, neg = -lq, -lnq
    if gamma:
        pos = pos * torch.exp(gamma * lnq)
        neg = neg * torch.exp(gamma * lq)
    if factor is not None:
        pos = pos * factor[:, 1].view(1, -1, 1)
        neg = neg * factor[:, 0].view(1, -1, 1)
    per = g * pos + (1 - g) * neg
    if pixel_weight is not None:
        per = per * pixel_weight
    return per.sum(1)


def _pixel_weight_total(canon: Canonical, factor: Tensor) -> Tensor:
    """Σ over valid pixels of each pixel's target weight (torch's weighted-mean denominator)."""
    dt = factor.dtype
    if canon.mode == "multiclass":
        if canon.labels is not None:
            per = factor[canon.labels]
        else:
            per = (canon.dense.detach().to(dt) * factor.view(1, -1, 1)).sum(1)
    else:
        g = canon.dense.detach().to(dt)
        per = (g * factor[:, 1].view(1, -1, 1) + (1 - g) * factor[:, 0].view(1, -1, 1)).mean(1)
    if canon.valid is not None:
        per = per * canon.valid.to(dt)
    return per.sum()


def _finish(loss: Tensor, canon: Canonical, reduction: str, dtype: torch.dtype) -> Tensor:
    loss = loss.reshape((canon.batch_size,) + canon.spatial_shape)
    valid = None if canon.valid is None else canon.valid.reshape(loss.shape)
    return reduce_pixels(loss, reduction, valid).to(dtype)


def _canon(input: Tensor, target: Tensor, kw: PixelKeywords) -> Canonical:
    return canonicalize(input, target, mode=kw["mode"], from_logits=kw["from_logits"],
                        ignore_index=kw["ignore_index"], check_values=kw["check_values"], mask=kw["mask"])


# --------------------------------------------------------------------------- losses


@shared_keywords(PIXEL)
def cross_entropy_loss(
    input: Tensor,
    target: Tensor,
    *,
    label_smoothing: float = 0.0,
    weight_norm: str = "pixels",
    **kw: Unpack[PixelKeywords],
) -> Tensor:
    r"""Cross entropy and weighted cross entropy (seed 001 eqs. 2-3).

    .. math::
        L_{WCE} = -\frac{1}{N} \sum_{i=1}^{N} \sum_{c=1}^{C} w_c\, \tilde g_{ic} \log p_{ic},
        \qquad \tilde g = (1-ε)\,g + ε/C

    with :math:`w_c = 1` for the plain CE (eq. 2) and N the number of valid pixels. For
    binary and multilabel the sum runs over the two outcomes of each channel
    (:math:`\tilde g = (1-ε) g + ε/2`, weights ``(negatives, positives)``), i.e. the binary
    cross entropy summed over channels. ``label_smoothing`` ε follows
    :func:`seglosses.regularizers.label_smoothing` (ε/C multiclass, ε/2 binary); by seed
    000 Claim 2 it equals :math:`(1-ε)\,L_{CE} + ε\,D(u\,\|\,\hat y) + \log n` with
    :func:`~seglosses.functional.label_noise_penalty`.

    Weighted mean (``weight_norm``): ``"pixels"`` (default) divides by N as seed 001 eq. 3
    does; ``"weights"`` divides by :math:`\sum_i \sum_c w_c g_{ic}` (:math:`\sum_i w_{y_i}`
    for a label map, the unsmoothed target), which is what
    ``torch.nn.functional.cross_entropy(weight=...)`` does for class-index targets. For
    binary/multilabel the per-pixel weight is averaged over channels, so both agree when
    every weight is 1. With ``class_weights="inverse_frequency"`` both normalisations give
    the same value (see :func:`class_frequency_weights`). Agreement: multiclass
    ``weight_norm="weights"`` equals ``F.cross_entropy(x, y, weight=w, ignore_index=...,
    label_smoothing=ε)``; binary equals ``F.binary_cross_entropy_with_logits`` (with
    ``weight_norm="pixels"`` and the weights applied per element); multilabel is C times
    that mean.

    Convention:
        Range [0, ∞); the infimum 0 is approached at ``p = g`` for hard targets (for soft
        targets the minimum is the entropy of the target, reached at ``p = g``). An image
        with every pixel ignored contributes nothing; all pixels ignored gives 0 with zero
        gradient. The target and inverse-frequency weights are constants.

    Args:
        label_smoothing: ε in [0, 1).
        weight_norm: ``"pixels"`` (seed 001 eq. 3, the default) or ``"weights"`` (torch).

    Returns:
        Scalar for ``"mean"``/``"sum"``, ``[B, *S]`` for ``"none"``.

    Example:
        >>> x = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)]]])  # [B=1, C=2, N=2] logits
        >>> y = torch.tensor([[0, 1]])
        >>> # pixel 0: p = (1/2, 1/2), y = 0: ln 2; pixel 1: p = (1/4, 3/4), y = 1: ln 4/3
        >>> round(float(cross_entropy_loss(x, y, mode="multiclass")), 4)
        0.4904
    """
    eps = check_fraction("label_smoothing", label_smoothing, open_high=True)
    weight_norm = lookup_option("weight_norm", weight_norm, WEIGHT_NORMS)
    canon = _canon(input, target, kw)
    dt = compute_dtype(canon.x.dtype)
    factor = _resolve_class_weights(kw["class_weights"], canon, dt)
    loss = _pixel_nll(canon, factor=factor, smoothing=eps)
    if factor is not None and weight_norm == "weights" and kw["reduction"] == "mean":
        total = _finish(loss, canon, "sum", dt)
        den = _pixel_weight_total(canon, factor)
        return (total / torch.where(den > 0, den, torch.ones_like(den))).to(input.dtype)
    return _finish(loss, canon, kw["reduction"], input.dtype)


TOPK_DOMAINS = ("image", "batch")


def _select_top(score: Tensor, valid: Optional[Tensor], k: float) -> Tensor:
    """Boolean mask of the ceil(k% of valid) highest scores per row of ``score`` [R, M]."""
    r, m = score.shape
    k_static = max(1, min(m, math.ceil(k * m / 100.0)))
    if valid is None:
        idx = torch.topk(score, k_static, dim=1, sorted=False).indices
        return torch.zeros_like(score, dtype=torch.bool).scatter_(1, idx, True)
    neg_inf = torch.full((), float("-inf"), dtype=score.dtype, device=score.device)
    s = torch.where(valid, score, neg_inf)
    n_valid = valid.sum(1).to(torch.float32)
    n_sel = torch.ceil(n_valid * (k / 100.0) - 1e-4).clamp(min=1.0, max=float(k_static))
    n_sel = torch.where(n_valid > 0, n_sel, torch.zeros_like(n_sel))
    idx = torch.topk(s, k_static, dim=1, sorted=True).indices
    keep = torch.arange(k_static, device=score.device).unsqueeze(0) < n_sel.unsqueeze(1)
    return torch.zeros_like(valid).scatter_(1, idx, keep)


@shared_keywords(PIXEL)
def topk_loss(
    input: Tensor,
    target: Tensor,
    *,
    k: Optional[float] = None,
    threshold: Optional[float] = None,
    domain: str = "batch",
    **kw: Unpack[PixelKeywords],
) -> Tensor:
    r"""TopK loss: the cross entropy of the hardest pixels only (Wu et al. 2016; seed 001 eq. 4).

    Two forms:

    * **percent form** (``k``, default 10 when neither is given): the mean CE of the
      :math:`\lceil k N_v / 100 \rceil` valid pixels with the largest (weighted) CE, per
      image (``domain="image"``, then averaged over the images) or over the whole batch
      (``domain="batch"``, the default, as nnU-Net's ``TopKLoss``, which rounds the count
      down instead);
    * **threshold form** (``threshold`` t in (0, 1]), seed 001 eq. 4:

      .. math::
          L = -\frac{1}{\sum_i 1\{p_{i,y_i} < t\}} \sum_i 1\{p_{i,y_i} < t\} \log p_{i,y_i}

      the mean CE of the pixels whose true-class probability is below t ("easy" pixels,
      with :math:`p \ge t`, are dropped; the paper's sentence "losses below t" means this).
      For soft targets "true-class probability" is :math:`e^{-CE_i}` (the geometric mean of
      p under g), equal to :math:`p_{i,y_i}` for hard targets.

    The selection is a constant (no gradient flows through the ranking). ``torch.topk``
    runs on the flattened per-pixel CE with a static size (no loop over images, no sync).

    Convention:
        When no pixel qualifies (all ignored, or every pixel has :math:`p \ge t`) the loss
        is 0 with zero gradient. In the image domain, images without a selected pixel are
        left out of the mean. ``reduction="none"`` gives the ``[B, *S]`` map of the
        selected pixels' CE (0 elsewhere), ``"sum"`` its sum. Range [0, ∞).
        A float ``mask`` weighs the selected pixels: the ranking runs over the pixels of
        weight > 0 (``k`` is a share of their number, not of their weight) and the mean
        becomes :math:`\sum_{sel} w_i \ell_i / \sum_{sel} w_i`; a bool mask leaves pixels out
        as ``ignore_index`` does.

    Args:
        k: percentage in (0, 100] of the valid pixels to keep (percent form).
        threshold: t in (0, 1] (threshold form). Give ``k`` or ``threshold``, not both.
        domain: ``"batch"`` (rank over the whole batch) or ``"image"`` (per image).

    Raises:
        ValueError: both ``k`` and ``threshold`` given, or either out of range.

    Example:
        >>> x = torch.tensor([[[2.0, -1.0, -1.0, 3.0]]])  # binary logits
        >>> y = torch.tensor([[1, 1, 0, 0]])
        >>> # per-pixel BCE: softplus(-2), softplus(1), softplus(-1), softplus(3); the top 50 %
        >>> # are softplus(3) = 3.0486 and softplus(1) = 1.3133
        >>> round(float(topk_loss(x, y, k=50)), 4)
        2.1809
        >>> # threshold 0.5: pixels with p_true < 0.5 are the 2nd (0.27) and 4th (0.05)
        >>> round(float(topk_loss(x, y, threshold=0.5)), 4)
        2.1809
    """
    if k is not None and threshold is not None:
        raise ValueError(f"`k` must be None when `threshold` is given (two forms of the loss); got k={k}, "
                         f"threshold={threshold}")
    if threshold is not None:
        threshold = check_fraction("threshold", threshold, open_low=True)
    else:
        k = 10.0 if k is None else check_positive("k", k)
        if k > 100:
            raise ValueError(f"`k` must be a percentage in (0, 100]; got {k}")
    domain = lookup_option("domain", domain, TOPK_DOMAINS)
    canon = _canon(input, target, kw)
    dt = compute_dtype(canon.x.dtype)
    factor = _resolve_class_weights(kw["class_weights"], canon, dt)
    ce = _pixel_nll(canon, factor=factor)
    keep = _kept(canon.valid)
    if threshold is not None:
        plain = ce if factor is None else _pixel_nll(canon)
        sel = plain.detach() > -math.log(threshold)
        if keep is not None:
            sel = sel & keep
    else:
        rows = ce.detach() if domain == "image" else ce.detach().reshape(1, -1)
        v = None if keep is None else (keep if domain == "image" else keep.reshape(1, -1))
        sel = _select_top(rows, v, k).reshape(ce.shape)
    return _topk_reduce(ce, sel, canon, domain, lookup_option("reduction", kw["reduction"], ("mean", "sum", "none")),
                        input.dtype)


def _kept(valid: Optional[Tensor]) -> Optional[Tensor]:
    """The pixels that count at all (weight > 0 for a float validity), as bool ``[B, N]``."""
    if valid is None or valid.dtype == torch.bool:
        return valid
    return valid > 0


def _topk_reduce(ce: Tensor, sel: Tensor, canon: Canonical, domain: str, reduction: str,
                 dtype: torch.dtype) -> Tensor:
    """Reduce the selected pixels' CE; a float validity weighs them (the count becomes Σ w)."""
    b = canon.batch_size
    loss = ce.reshape((b,) + canon.spatial_shape)
    weight: Tensor = sel
    if canon.valid is not None and canon.valid.is_floating_point():
        weight = sel.to(canon.valid.dtype) * canon.valid
    weight = weight.reshape(loss.shape)
    if reduction != "mean" or domain == "batch":
        return reduce_pixels(loss, reduction, weight).to(dtype)
    per_image = reduce_pixels(loss, "none", weight).reshape(b, -1).sum(1)
    count = weight.reshape(b, -1).sum(1).to(per_image.dtype)
    means = per_image / torch.where(count > 0, count, torch.ones_like(count))
    return reduce_pixels(means, "mean", count > 0).to(dtype)


@shared_keywords(PIXEL)
def focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: Optional[float] = None,
    **kw: Unpack[PixelKeywords],
) -> Tensor:
    r"""Focal loss (Lin et al. 2017; seed 001 eq. 5).

    .. math::
        L_{FL} = -\frac{1}{N} \sum_{i=1}^{N} \sum_{c} α_c\, w_c\, (1 - p_{ic})^{γ}\, g_{ic} \log p_{ic}

    over the classes (multiclass) or the two outcomes of each channel (binary/multilabel,
    where the negative outcome has :math:`p = 1 - q`). The modulating factor is computed in
    log space: :math:`(1-p)^γ = \exp(γ \log(1-p))` with :math:`\log(1-q) =` ``logsigmoid(x) - x``
    and :math:`\log(1-p_c) = \log(1 - e^{\log p_c})` (the stable ``log1mexp``), so saturated
    logits give finite values and gradients for every γ >= 0. γ = 0 is the cross entropy.

    ``alpha`` (Lin et al.'s α-balance): binary/multilabel α for positives and 1 − α for
    negatives (:math:`α_t`); multiclass 1 − α for class 0 (background) and α for the other
    classes, as MONAI's ``FocalLoss(use_softmax=True)``. Per-class weights go in
    ``class_weights``.

    Agreement: MONAI ``FocalLoss(gamma=γ, alpha=α)`` averages over the channels as well
    as the pixels, so its ``"mean"`` is this loss divided by C (binary: equal); torchvision's
    ``sigmoid_focal_loss`` and kornia's ``binary_focal_loss_with_logits`` agree for hard
    targets (for soft targets they modulate the summed BCE by :math:`(1-p_t)^γ` with
    :math:`p_t = qg + (1-q)(1-g)`; this function modulates each outcome).

    Convention:
        Range [0, ∞), infimum 0 at ``p = g`` for hard targets. Ignored pixels and
        all-ignored batches as :func:`cross_entropy_loss`.

    Args:
        gamma: focusing parameter γ >= 0 (default 2, the paper's).
        alpha: α in [0, 1] or None (no α-balance).

    Example:
        >>> x = torch.tensor([[[0.0, 0.0]]])  # q = 1/2 at both pixels
        >>> y = torch.tensor([[1, 0]])
        >>> # (1 - 1/2)^2 * ln 2 = 0.1733 at each pixel
        >>> round(float(focal_loss(x, y)), 4)
        0.1733
    """
    gamma = check_nonnegative("gamma", gamma)
    if alpha is not None:
        alpha = check_fraction("alpha", alpha)
    canon = _canon(input, target, kw)
    dt = compute_dtype(canon.x.dtype)
    factor = _resolve_class_weights(kw["class_weights"], canon, dt)
    if alpha is not None:
        if canon.mode == "multiclass":
            a = torch.full((canon.num_channels,), alpha, dtype=dt, device=canon.x.device)
            a[0] = 1 - alpha
        else:
            a = torch.tensor([[1 - alpha, alpha]], dtype=dt, device=canon.x.device)
        factor = a if factor is None else factor * a
    loss = _pixel_nll(canon, factor=factor, gamma=gamma)
    return _finish(loss, canon, kw["reduction"], input.dtype)


def _region_distance_penalty(regions: Tensor, num_regions: int, valid: Optional[Tensor], spatial: Tuple[int, ...],
                             spacing, dtype: torch.dtype) -> Tensor:
    """D in [0, 1) per pixel for region labels ``[R, N]`` (values in [0, K)); see DPCE's docstring."""
    from ..distance import edt

    r, n = regions.shape
    onehot = F.one_hot(regions, num_regions).movedim(-1, 1).bool()  # [R, K, N]
    if valid is not None:
        onehot = onehot | ~valid.unsqueeze(1)  # ignored pixels belong to every region
    full = onehot.all(-1)  # region (with ignored pixels) covers the whole image: no boundary
    d = edt(onehot.reshape((r * num_regions,) + spatial), spacing, dtype=dtype).reshape(r, num_regions, n)
    own = d.gather(1, regions.unsqueeze(1)).squeeze(1)  # distance to the nearest pixel of another region
    inside = F.one_hot(regions, num_regions).movedim(-1, 1).to(d.dtype)
    if valid is not None:
        inside = inside * valid.unsqueeze(1).to(d.dtype)
    dmax = (d * inside).amax(-1)  # [R, K]
    m = dmax.gather(1, regions)
    D = torch.where(m > 0, 1 - own / torch.where(m > 0, m, torch.ones_like(m)), torch.zeros_like(m))
    D = torch.where(full.gather(1, regions), torch.zeros_like(D), D)
    return D


@shared_keywords(PIXEL)
def distance_penalized_ce_loss(
    input: Tensor,
    target: Tensor,
    *,
    spacing: Optional[Union[float, Sequence[float]]] = None,
    **kw: Unpack[PixelKeywords],
) -> Tensor:
    r"""Distance map penalised cross entropy, DPCE (Caliva et al. 2019; seed 001 eq. 6).

    .. math::
        L_{DPCE} = -\frac{1}{N} \sum_{i=1}^{N} (1 + D_i) \sum_{c} w_c\, g_{ic} \log p_{ic},
        \qquad D_i = 1 - \frac{d_i}{\max_{j \in R(i)} d_j}

    The "inverted" distance map: :math:`R(i)` is the region of pixel i in the ground truth
    of its image (its class for multiclass; foreground or background of the channel for
    binary/multilabel), :math:`d_i` the Euclidean distance (:func:`seglosses.distance.edt`,
    with physical ``spacing``) from i to the nearest pixel outside :math:`R(i)`, and the
    maximum is taken over the pixels of :math:`R(i)` in that image. So :math:`D \in [0, 1)`:
    largest (:math:`1 - s/d_{max}`) on the pixels next to a boundary, 0 at the pixel deepest
    inside each region, and the weight :math:`1 + D \in [1, 2)`. This is the map of the
    reference implementation of seed 001's author (per image, inside and outside each
    normalised by its maximum), written per region so that it also covers multiclass.
    The map is a constant (no gradient). Soft targets use their argmax (multiclass) or
    ``g >= 0.5`` (binary/multilabel) for the regions.

    Convention:
        Ignored pixels belong to every region (an ignored area is not a boundary) and have
        loss 0. A region that covers the whole image (with the ignored pixels) has no
        boundary: D = 0 there, i.e. plain CE. Empty masks therefore give finite values and
        gradients. Range [0, ∞). ``mask``: a pixel with weight 0 (or False) is an
        ignored pixel; a float mask weighs the others, the mean becoming
        :math:`\sum_i w_i (1 + D_i) \ell_i / \sum_i w_i` (the map D does not read the
        weights).

    Args:
        spacing: pixel size per spatial axis (or one number), passed to
            :func:`seglosses.distance.edt`; ``None`` = 1.

    Example:
        >>> x = torch.zeros(1, 1, 5)  # q = 1/2 everywhere: BCE ln 2 per pixel
        >>> y = torch.tensor([[0, 1, 1, 1, 0]])
        >>> # fg distances 1, 2, 1 (max 2): D = 0.5, 0, 0.5; bg distances 1, 1: D = 0
        >>> round(float(distance_penalized_ce_loss(x, y)) / math.log(2), 4)  # mean(1, 1.5, 1, 1.5, 1)
        1.2
    """
    canon = _canon(input, target, kw)
    check_constant_target(canon.dense, "the distance-penalised CE weighs pixels by a distance map of the target's "
                                       "regions")
    dt = compute_dtype(canon.x.dtype)
    factor = _resolve_class_weights(kw["class_weights"], canon, dt)
    b, c, n = canon.x.shape
    spatial = canon.spatial_shape
    keep = _kept(canon.valid)
    with torch.no_grad():
        if canon.mode == "multiclass":
            regions = canon.labels if canon.labels is not None else canon.dense.argmax(1)
            D = _region_distance_penalty(regions, c, keep, spatial, spacing, dt)  # [B, N]
        else:
            fg = (canon.dense >= 0.5).long().reshape(b * c, n)
            valid = None if keep is None else keep.repeat_interleave(c, 0)
            D = _region_distance_penalty(fg, 2, valid, spatial, spacing, dt).reshape(b, c, n)
        weight = (1 + D).to(dt)
    loss = _pixel_nll(canon, factor=factor, pixel_weight=weight)
    return _finish(loss, canon, kw["reduction"], input.dtype)
