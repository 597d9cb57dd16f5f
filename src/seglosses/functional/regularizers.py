"""Regularisers of seed 000 (sections 2.2-2.3): label smoothing, label-noise penalty, confidence penalty.

Seed 000 = Hidy, "The Tversky loss function and its modifications for medical image
segmentation" (2022); the confidence penalty is Pereyra et al. (2017).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from typing_extensions import Unpack

from .._arguments import PIXEL, PixelKeywords, shared_keywords, with_docs
from .._inputs import Canonical, canonicalize, check_tensor
from .._options import check_fraction
from .._reduce import reduce_pixels

__all__ = ["label_smoothing", "label_noise_penalty", "confidence_penalty"]


def label_smoothing(target: Tensor, eps: float, num_classes: int, *, ignore_index: Optional[int] = None) -> Tensor:
    r"""Label smoothing as a target transform (Szegedy et al. 2016; seed 000 eq. 5 and its remark).

    .. math::
        \tilde{y} = (1 - ε)\,y + \frac{ε}{C}\mathbf{1}

    so that :math:`\tilde{y}` stays a distribution at every pixel. ``num_classes = 1``
    means a binary single-channel target, treated as the two-outcome (Bernoulli)
    distribution: :math:`\tilde{y} = (1-ε)y + ε/2`, i.e. labels {ε/2, 1 − ε/2}
    (seed 000 Claim 1 writes these as {ε', 1 − ε'} with ε' = ε/2).

    With the cross entropy, training on :math:`\tilde{y}` equals training on y plus
    ε times the label-noise penalty, up to constants (seed 000 Claim 2). With the
    standard Tversky/Dice statistics the optimum stays at {0, 1} (Claim 1): use
    ``soft_form=True`` in the region losses for soft targets.

    Args:
        target: label map ``[B, *S]`` (integer) or dense ``[B, C, *S]`` (float), or for
            ``num_classes = 1`` a binary ``[B, *S]`` / ``[B, 1, *S]`` target.
        eps: ε in [0, 1).
        num_classes: C, the number of channels of the prediction (1 for binary).
        ignore_index: label of ignored pixels in a label map; they come out with
            ``ignore_index`` in every channel, which the losses recognise.

    Returns:
        Float target ``[B, C, *S]``.

    Example:
        >>> label_smoothing(torch.tensor([[0, 2]]), 0.3, 3)
        tensor([[[0.8000, 0.1000],
                 [0.1000, 0.1000],
                 [0.1000, 0.8000]]])
    """
    target = check_tensor("target", target)
    eps = check_fraction("eps", eps, open_high=True)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be an int >= 1; got {num_classes!r}")
    dtype = target.dtype if target.is_floating_point() else torch.float32
    ignored = None
    if num_classes == 1:
        y = target if target.dim() >= 2 and target.shape[1:2] == (1,) and target.is_floating_point() else None
        if y is None:
            if target.is_floating_point():
                y = target.unsqueeze(1)
            else:
                t = target if target.dim() < 2 or target.shape[1] != 1 else target[:, 0]
                if ignore_index is not None:
                    ignored = (t == ignore_index).unsqueeze(1)
                    t = torch.where(ignored[:, 0], torch.zeros_like(t), t)
                if t.numel() and (int(t.min()) < 0 or int(t.max()) > 1):
                    raise ValueError(f"`target` must hold binary labels {{0, 1}} for num_classes=1; got values in "
                                     f"[{int(t.min())}, {int(t.max())}]")
                y = t.unsqueeze(1).to(dtype)
        out = (1 - eps) * y + eps / 2
    elif target.is_floating_point():
        if target.dim() < 2 or target.shape[1] != num_classes:
            raise ValueError(f"`target` (dense) must have {num_classes} channels in dim 1; got shape {tuple(target.shape)}")
        out = (1 - eps) * target + eps / num_classes
    else:
        t = target
        if ignore_index is not None:
            ignored = (t == ignore_index).unsqueeze(1)
            t = torch.where(ignored[:, 0], torch.zeros_like(t), t)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(f"`target` labels must lie in [0, {num_classes - 1}]; got values in "
                             f"[{int(t.min())}, {int(t.max())}]")
        onehot = F.one_hot(t.long(), num_classes).movedim(-1, 1).to(dtype)
        out = (1 - eps) * onehot + eps / num_classes
    if ignored is not None:
        out = torch.where(ignored, torch.full((), float(ignore_index), dtype=out.dtype, device=out.device), out)
    return out


def _log_probs(canon) -> tuple[Tensor, Optional[Tensor]]:
    """Per-pixel log-probabilities: ``[B, C, N]`` (softmax) or the pair (log q1, log q0) (Bernoulli)."""
    x = canon.x if canon.x.dtype == torch.float64 else canon.x.float()
    if canon.mode == "multiclass":
        if canon.from_logits:
            return F.log_softmax(x, dim=1), None
        return torch.log(x.clamp_min(1e-12)), None
    if canon.from_logits:
        return F.logsigmoid(x), F.logsigmoid(-x)
    return torch.log(x.clamp_min(1e-12)), torch.log((1 - x).clamp_min(1e-12))


_PENALTY_ARGS = """
    The target is read only for its shape, ``ignore_index`` and ``mask`` (any format the
    losses accept). ``mode``: ``"binary"``/``"multilabel"``: each channel is a Bernoulli
    distribution (n = 2; channels are summed, the KL of independent labels);
    ``"multiclass"``: the softmax distribution over C classes (n = C).

    Range [0, log n] per channel for the confidence penalty, [0, ∞) for the label-noise
    penalty; minimum 0 at the uniform prediction. Computed in float32 for half inputs.
"""


def _canonical(input: Tensor, target: Tensor, kw: PixelKeywords) -> Canonical:
    return canonicalize(input, target, mode=kw["mode"], from_logits=kw["from_logits"],
                        ignore_index=kw["ignore_index"], check_values=kw["check_values"], mask=kw["mask"])


_doc = with_docs(_PENALTY_ARGS)


@_doc
@shared_keywords(PIXEL, without=("class_weights",))
def label_noise_penalty(
    input: Tensor,
    target: Tensor,
    **kw: Unpack[PixelKeywords],
) -> Tensor:
    r"""Label-noise penalty KL(u ‖ ŷ) (seed 000 section 2.3, Claim 2).

    .. math::
        D(u \,\|\, \hat{y}) = \sum_{k=1}^{n} \frac{1}{n} \log \frac{1/n}{\hat{y}_k}
        = -\log n - \frac{1}{n} \sum_k \log \hat{y}_k

    per pixel, with u the uniform distribution over the n outcomes. Added with weight
    ε/(1−ε) to the cross entropy it is label smoothing (Claim 2); it can be added to
    any loss.
    """
    canon = _canonical(input, target, kw)
    a, b = _log_probs(canon)
    if b is None:
        n = a.shape[1]
        kl = -math.log(n) - a.mean(dim=1)
    else:
        kl = (-math.log(2.0) - 0.5 * (a + b)).sum(dim=1)
    kl = kl.reshape((canon.batch_size,) + canon.spatial_shape).to(input.dtype)
    return reduce_pixels(kl, kw["reduction"], canon.valid)


@_doc
@shared_keywords(PIXEL, without=("class_weights",))
def confidence_penalty(
    input: Tensor,
    target: Tensor,
    **kw: Unpack[PixelKeywords],
) -> Tensor:
    r"""Confidence penalty KL(ŷ ‖ u) = log n − H(ŷ) (Pereyra et al. 2017; seed 000 eq. 6).

    .. math::
        D(\hat{y} \,\|\, u) = \sum_{k=1}^{n} \hat{y}_k \log (n \hat{y}_k) = \log n - H(\hat{y})

    per pixel: the negative entropy of the prediction plus a constant. It pushes
    predictions away from 0 and 1, with a gradient different from the label-noise
    penalty's.
    """
    canon = _canonical(input, target, kw)
    a, b = _log_probs(canon)
    if b is None:
        n = a.shape[1]
        kl = math.log(n) + (a.exp() * a).sum(dim=1)
    else:
        kl = (math.log(2.0) + a.exp() * a + b.exp() * b).sum(dim=1)
    kl = kl.clamp_min(0.0).reshape((canon.batch_size,) + canon.spatial_shape).to(input.dtype)
    return reduce_pixels(kl, kw["reduction"], canon.valid)
