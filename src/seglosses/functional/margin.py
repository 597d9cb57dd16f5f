"""Distribution-aware margin calibration (seed 003: Li, Yu & Zhang, "Distribution-aware
Margin Calibration for Medical Image Segmentation").

The loss is seed 003 eq. 27 with the ρ-margin loss replaced by the ρ-calibrated log loss
(eqs. 28-29), and the margin offsets of Corollary 1.1 (eq. 23) scaled by τ. Choices where
the paper leaves room are listed in :func:`margin_offsets` and
:func:`margin_calibration_loss`.
"""
from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .._inputs import Canonical, canonicalize, check_class_weights, check_constant_target, check_tensor, float_tuple
from .._options import check_positive, lookup_option
from .._reduce import reduce_pixels
from .._stats import compute_dtype
from .distribution import class_frequency_weights

__all__ = ["margin_offsets", "margin_calibration_loss", "count_classes", "MarginOffsets"]

OFFSET_NORMS = ("sum", "none")
_LN2 = math.log(2.0)


class MarginOffsets(NamedTuple):
    """The two offsets per class: ``rho_k0`` (pixels of class k) and ``rho_0k`` (the other pixels)."""

    rho_k0: Tensor
    rho_0k: Tensor


def margin_offsets(
    class_counts: Union[Sequence[float], Tensor],
    tau: float = 1.0,
    v: float = 1.0,
    *,
    offset_norm: str = "sum",
) -> MarginOffsets:
    r"""Margin offsets of seed 003 Corollary 1.1.

    .. math::
        r_k = \frac{\sqrt{n - n_k}}{n_k},\qquad
        ρ_{0k} = τ\,\frac{r_k}{\sum_{j} r_j}\ \ (\texttt{offset\_norm="sum"})\quad\text{or}\quad
        ρ_{0k} = τ\, r_k\ \ (\texttt{"none"}),

    .. math::
        ρ_{k0} = μ_k\, ρ_{0k},\qquad μ_k = \frac{p_k \sqrt{n_k}}{v\,(n - n_k) - p_k \sqrt{n - n_k}},
        \qquad p_k = n_k / n

    with :math:`n_k` the pixels of class k and :math:`n = \sum_k n_k`. Both forms have the
    optimal proportions of eq. 23, :math:`ρ_{0i}/ρ_{0j} = n_j\sqrt{n-n_i}\,/\,(n_i\sqrt{n-n_j})`:
    a rarer class gets a larger offset. The paper fixes only the proportions ("assume
    :math:`\sum_k ρ_{0k}` = some constant") and calls τ "the scale hyper-parameter of
    margin-offsets". ``"sum"`` (default) takes that constant to be τ, which makes the
    offsets independent of the number of pixels (the same class proportions give the same
    offsets from a batch or from a whole data set); ``"none"`` is the literal
    :math:`τ\sqrt{n-n_k}/n_k` of the authors' released code, which shrinks like
    :math:`1/\sqrt{n}`. :math:`μ_k` is the paper's (it depends on n in both forms; for
    :math:`p_k \ll 1` it is about :math:`p_k^{3/2}/(v\sqrt{n})`, so :math:`ρ_{k0} \ll ρ_{0k}`).

    Convention:
        An absent class (:math:`n_k = 0`, infinite :math:`r_k`) takes the largest
        :math:`ρ_{0k}` of the present classes and :math:`ρ_{k0} = 0` (it has no pixels); the
        sum of ``"sum"`` runs over the present classes. :math:`μ_k` is taken as 0 where its
        denominator is <= 0 (a class covering nearly every pixel with v <= p_k/√(n−n_k)), so
        the offsets are finite and >= 0. No class present: all offsets 0.

    Args:
        class_counts: pixel counts per class ``[C]`` (from a batch or a data set, see
            :func:`count_classes`); float counts are allowed.
        tau: τ > 0, the scale of the offsets.
        v: v > 0, the hyper-parameter of :math:`μ_k`.
        offset_norm: ``"sum"`` or ``"none"`` (see above).

    Returns:
        :class:`MarginOffsets` ``(rho_k0, rho_0k)``, two ``[C]`` tensors (constants).

    Example:
        >>> off = margin_offsets([3.0, 1.0], tau=1.0, offset_norm="none")
        >>> # n = 4: r = (sqrt(1)/3, sqrt(3)/1) = (0.3333, 1.7321)
        >>> off.rho_0k
        tensor([0.3333, 1.7321])
        >>> # mu_0 = (3/4 sqrt 3) / (1 - 3/4) = 5.1962, mu_1 = (1/4) / (3 - sqrt(3)/4) = 0.0974
        >>> off.rho_k0
        tensor([1.7321, 0.1687])
    """
    tau = check_positive("tau", tau)
    v = check_positive("v", v)
    offset_norm = lookup_option("offset_norm", offset_norm, OFFSET_NORMS)
    if isinstance(class_counts, Tensor):
        counts = class_counts.detach()
        if not counts.is_floating_point():
            counts = counts.to(torch.float32)
    else:
        counts = torch.as_tensor(float_tuple("class_counts", class_counts), dtype=torch.float64)
    if counts.dim() != 1 or counts.numel() < 1:
        raise ValueError(f"`class_counts` must be a 1-D sequence with one count per class; got shape "
                         f"{tuple(counts.shape)}")
    if not isinstance(class_counts, Tensor) and (not bool(torch.isfinite(counts).all()) or bool((counts < 0).any())):
        raise ValueError(f"`class_counts` must be finite and >= 0; got {counts.tolist()}")
    present = counts > 0
    n = counts.sum()
    safe = torch.where(present, counts, torch.ones_like(counts))
    rest = (n - counts).clamp_min(0)
    r = torch.where(present, torch.sqrt(rest) / safe, torch.zeros_like(counts))
    if offset_norm == "sum":
        total = r.sum()
        rho_0k = tau * r / torch.where(total > 0, total, torch.ones_like(total))
    else:
        rho_0k = tau * r
    rmax = rho_0k.amax()
    rho_0k = torch.where(present, rho_0k, rmax.expand_as(rho_0k))
    p = counts / torch.where(n > 0, n, torch.ones_like(n))
    den = v * rest - p * torch.sqrt(rest)
    ok = present & (den > 0)
    mu = torch.where(ok, p * torch.sqrt(counts) / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den))
    rho_k0 = mu * rho_0k
    if not isinstance(class_counts, Tensor):
        rho_k0, rho_0k = rho_k0.float(), rho_0k.float()
    return MarginOffsets(rho_k0, rho_0k)


def count_classes(targets: Iterable, num_classes: int, *, ignore_index: Optional[int] = None) -> Tensor:
    """Pixel counts per class over a data set, for ``class_counts`` of the margin loss.

    Args:
        targets: an iterable of integer label maps ``[B, *S]`` (or of tuples/lists whose last
            element is one, e.g. a ``DataLoader`` yielding ``(image, target)``).
        num_classes: C (binary: 2).
        ignore_index: label of pixels that are not counted.

    Returns:
        ``[C]`` float64 counts (CPU).

    Raises:
        ValueError: ``num_classes`` < 1, or labels outside [0, num_classes) (ignore_index
            excepted).

    Example:
        >>> count_classes([torch.tensor([[0, 1, 1]]), torch.tensor([[2, 0, 255]])], 3, ignore_index=255)
        tensor([2., 2., 1.], dtype=torch.float64)
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be an int >= 1; got {num_classes!r}")
    total = torch.zeros(num_classes, dtype=torch.float64)
    for item in targets:
        t = item[-1] if isinstance(item, (tuple, list)) else item
        t = check_tensor("targets", t).detach().reshape(-1)
        if ignore_index is not None:
            t = t[t != ignore_index]
        t = t.long().cpu()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(f"`targets` labels must lie in [0, {num_classes - 1}]; got values in "
                             f"[{int(t.min())}, {int(t.max())}]")
        total += torch.bincount(t, minlength=num_classes).double()
    return total


def _scores_and_labels(canon: Canonical, dtype: torch.dtype):
    """Class scores ``[B, K, N]`` and hard labels ``[B, N]`` (binary: K = 2, scores (0, x))."""
    x = canon.x.to(dtype)
    tiny = torch.finfo(dtype).tiny
    if canon.mode == "multiclass":
        s = x if canon.from_logits else torch.log(x.clamp_min(tiny))
        labels = canon.labels if canon.labels is not None else canon.dense.argmax(1)
        return s, labels
    if canon.from_logits:
        s = torch.cat([torch.zeros_like(x), x], dim=1)
    else:
        s = torch.cat([torch.log((1 - x).clamp_min(tiny)), torch.log(x.clamp_min(tiny))], dim=1)
    labels = (canon.dense[:, 0] >= 0.5).long()
    return s, labels


def margin_calibration_loss(
    input: Tensor,
    target: Tensor,
    *,
    tau: float = 1.0,
    v: float = 1.0,
    class_counts: Optional[Sequence[float]] = None,
    offset_norm: str = "sum",
    mode: str = "binary",
    from_logits: bool = True,
    ignore_index: Optional[int] = None,
    class_weights: Union[None, str, Sequence[float]] = None,
    reduction: str = "mean",
    check_values: bool = True,
    mask: Optional[Tensor] = None,
) -> Tensor:
    r"""Margin calibration loss (seed 003 eqs. 4, 27-29 with the offsets of Corollary 1.1).

    .. math::
        λ_{ik} = s_{ik} - \max_{j \ne k} s_{ij}\quad\text{(eq. 4)},\qquad
        φ_ρ(λ) = \log_2\!\left(1 + 2^{ρ - λ}\right)

    .. math::
        L = \frac{1}{n} \sum_{k=1}^{c} \Big( \sum_{i \in Y_k} φ_{ρ_{k0}}(λ_{ik})
            + \sum_{i \notin Y_k} φ_{ρ_{0k}}(-λ_{ik}) \Big)
        \quad\text{(eq. 27 with eqs. 28-29)}

    over the n valid pixels of the batch, with :math:`Y_k` the pixels of class k and the
    offsets :math:`(ρ_{k0}, ρ_{0k})` of :func:`margin_offsets`. The scores s are the logits;
    with ``from_logits=False`` they are :math:`\log p` (equal margins, since the softmax
    keeps logit differences). Binary mode is the two-class case with scores :math:`(0, x)`,
    so :math:`λ_{i1} = x_i = -λ_{i0}`. :math:`\log_2(1 + 2^z)` is computed as
    ``softplus(z ln 2) / ln 2`` (finite values and gradients for any logits).

    Choices where the paper leaves room:

    * the class counts :math:`n_k` come from the valid pixels of the batch (default), or
      from ``class_counts`` (e.g. a data set's, see :func:`count_classes`); the paper
      derives them for the training set, its practical section uses mini-batches;
    * ``offset_norm`` and absent classes: see :func:`margin_offsets`;
    * eq. 27 is a sum over classes and a mean over pixels, used as printed (the authors'
      code averages a natural-log BCE over pixels and classes with ``pos_weight=c``; this
      function follows the equations: base 2, class sum);
    * soft targets use their argmax (multiclass) or ``g >= 0.5`` (binary); ``multilabel``
      is not defined by the paper and is rejected;
    * ``class_weights`` (not in the paper) multiply each class's term
      :math:`(\ell_{k0} + \ell_{0k})`.

    Convention:
        Range [0, ∞) (the infimum 0 as every margin grows without bound; at λ = ρ a term is
        1). Ignored pixels count nowhere (neither in the loss nor in the batch counts); all
        pixels ignored gives 0 with zero gradient. Offsets are constants (no gradient).
        ``reduction="none"`` gives ``[B, *S]`` (per-pixel sums over the classes). A float
        ``mask`` weighs each pixel in the mean (:math:`\sum_i w_i \ell_i / \sum_i w_i`) and in
        the batch counts (:math:`n_k = \sum_{i \in Y_k} w_i`); a bool mask leaves pixels out
        as ``ignore_index`` does.

    Args:
        input: scores ``[B, C, *S]`` (logits), or probabilities with ``from_logits=False``.
        target: label map ``[B, *S]`` or one-hot ``[B, C, *S]``; binary: ``[B, *S]`` or
            ``[B, 1, *S]``.
        tau: τ > 0, scale of the offsets (default 1).
        v: v > 0, the hyper-parameter of :math:`μ_k` (default 1; seed 003 Table 1 uses
            0.01 to 10).
        class_counts: ``None`` (counts of the batch) or fixed counts ``[C]`` (binary:
            ``[background, foreground]``).
        offset_norm: ``"sum"`` (default) or ``"none"``, see :func:`margin_offsets`.
        mode: ``"binary"`` or ``"multiclass"``.
        from_logits: the input is logits; otherwise probabilities.
        ignore_index: target value whose pixels are left out.
        mask: spatial mask ``[B, 1, *S]`` or ``[B, *S]``: bool (False leaves the pixel out, as
            ``ignore_index`` does) or per-pixel weights >= 0 (see the convention).
        class_weights: per-class weights ``[C]`` (binary: 2) or ``"inverse_frequency"``.
        reduction: ``"mean"`` over valid pixels, ``"sum"``, or ``"none"`` (``[B, *S]``).
        check_values: run the value checks of the canonicalisation.

    Returns:
        Scalar for ``"mean"``/``"sum"``, ``[B, *S]`` for ``"none"``.

    Raises:
        ValueError: ``mode="multilabel"``, bad τ/v, ``class_counts`` of the wrong length.

    Example:
        >>> x = torch.tensor([[[0.0, 0.0]]])  # binary, logit 0: every margin is 0
        >>> y = torch.tensor([[1, 0]])
        >>> # one pixel per class (n = 2): r_k = 1, so rho_0k = 1/2 ("sum" norm with tau = 1);
        >>> # mu_k = (1/2 * 1) / (1 * 1 - 1/2 * 1) = 1, so rho_k0 = 1/2. Per pixel, its own
        >>> # class and the other class each give log2(1 + 2^(1/2)) = 1.2716
        >>> round(float(margin_calibration_loss(x, y)), 4)
        2.5431
    """
    mode = lookup_option("mode", mode, ("binary", "multiclass"))
    canon = canonicalize(input, target, mode=mode, from_logits=from_logits, ignore_index=ignore_index,
                         check_values=check_values, mask=mask)
    check_constant_target(canon.dense, "the margin loss reads the target as a label map (and its margin offsets "
                                       "from the label counts)")
    dt = compute_dtype(canon.x.dtype)
    s, labels = _scores_and_labels(canon, dt)
    c = s.shape[1]
    onehot = F.one_hot(labels, c).movedim(-1, 1).bool()  # [B, K, N]
    with torch.no_grad():
        counts = _class_counts(onehot, canon.valid, class_counts, dt)
        rho_k0, rho_0k = margin_offsets(counts, tau, v, offset_norm=offset_norm)
        factor = _class_factor(class_weights, counts, c, s)
    terms = _calibrated_terms(_margins(s), onehot, rho_k0.to(dt), rho_0k.to(dt))
    if factor is not None:
        terms = terms * factor.to(dt).view(1, c, 1)
    loss = terms.sum(1).reshape((canon.batch_size,) + canon.spatial_shape)
    valid = None if canon.valid is None else canon.valid.reshape(loss.shape)
    return reduce_pixels(loss, reduction, valid).to(input.dtype)


def _class_counts(onehot: Tensor, valid: Optional[Tensor], class_counts: object, dt: torch.dtype) -> Tensor:
    """``n_k`` ``[C]``: the (weighted) valid pixels of each class in the batch, or the given counts."""
    c = onehot.shape[1]
    if class_counts is None:
        w = onehot.to(dt)
        if valid is not None:
            w = w * valid.unsqueeze(1).to(dt)
        return w.sum((0, 2))
    if not isinstance(class_counts, Tensor):
        class_counts = float_tuple("class_counts", class_counts)
    counts = torch.as_tensor(class_counts, dtype=dt).to(onehot.device)
    if counts.dim() != 1 or counts.numel() != c:
        raise ValueError(f"`class_counts` must hold one count per class ({c}); got shape {tuple(counts.shape)}")
    return counts


def _class_factor(class_weights: object, counts: Tensor, c: int, like: Tensor) -> Optional[Tensor]:
    """Per-class factors ``[C]``: given weights, ``"inverse_frequency"`` of ``counts``, or ``None``."""
    if isinstance(class_weights, str):
        return class_frequency_weights(counts, lookup_option("class_weights", class_weights, ("inverse_frequency",)))
    if class_weights is not None:
        return check_class_weights(class_weights, c, like)  # type: ignore[arg-type]
    return None


def _margins(s: Tensor) -> Tensor:
    r"""Eq. 4, :math:`λ_{ik} = s_{ik} - \max_{j \ne k} s_{ij}`: the first maximum, or the second
    one at the arg max."""
    c = s.shape[1]
    top2 = s.topk(2, dim=1)
    first, second = top2.values[:, :1], top2.values[:, 1:]
    is_max = (torch.arange(c, device=s.device).view(1, c, 1) == top2.indices[:, :1]).to(s.dtype)
    return s - first + is_max * (first - second)


def _calibrated_terms(lam: Tensor, onehot: Tensor, rho_k0: Tensor, rho_0k: Tensor) -> Tensor:
    """:math:`φ_ρ` per pixel and class ``[B, C, N]``: eq. 28 for the true class
    (:math:`ρ_{k0} - λ`), eq. 29 for the others (:math:`λ + ρ_{0k}`)."""
    c = lam.shape[1]
    sign = 1 - 2 * onehot.to(lam.dtype)
    rho = torch.where(onehot, rho_k0.view(1, c, 1), rho_0k.view(1, c, 1))
    return F.softplus((sign * lam + rho) * _LN2) / _LN2
