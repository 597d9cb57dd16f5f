r"""Topology-aware region losses for thin and tubular structures: clDice and skeleton recall.

Both compare a prediction with a *skeleton* (a thin centreline) and are ratios of sums
over pixels per (item, class); the skeleton of an image depends only on that image, so
in the batch domain the sums add over micro-batches and processes like the statistics
of :mod:`seglosses.functional.region` (exact accumulation and ``sync``).

The skeletons come from iterated min/max pooling (:func:`soft_skeleton`, Shit et al.):
on probabilities it is differentiable, on a hard mask it is the morphological
(Lantuéjoul) skeleton, truncated after ``iterations`` erosions.

Sources: Shit et al., "clDice - a novel topology-preserving loss function for tubular
structure segmentation" (CVPR 2021); Kirchhoff et al., "Skeleton recall loss for
connectivity conserving and resource efficient segmentation of thin tubular
structures" (ECCV 2024).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from typing_extensions import Unpack

from .._arguments import REGION, RegionKeywords, shared_keywords
from .._inputs import Canonical, check_constant_target
from .._options import check_count, check_fraction, check_nonnegative
from .._stats import compute_dtype, over_domain, safe_ratio
from ..distributed import resolve_sync
from .region import _canonical, finish

__all__ = ["soft_skeleton", "cldice_loss", "dice_cldice_loss", "skeleton_recall_loss"]


def _pool_axes(x: Tensor, op: str) -> Tensor:
    """Max (``op="max"``) or min over the 3-neighbourhood along each spatial axis
    separately, combined by max / min: a cross-shaped dilation / erosion."""
    nd = x.dim() - 2
    pool = F.max_pool2d if nd == 2 else F.max_pool3d
    sign = 1.0 if op == "max" else -1.0
    pooled = []
    for d in range(nd):
        k = [1] * nd
        k[d] = 3
        pad = [0] * nd
        pad[d] = 1
        pooled.append(pool(x * sign, tuple(k), 1, tuple(pad)))
    out = pooled[0]
    for y in pooled[1:]:
        out = torch.maximum(out, y)
    return out * sign


def _erode(x: Tensor) -> Tensor:
    return _pool_axes(x, "min")


def _dilate(x: Tensor) -> Tensor:
    """Max over the full 3 × 3 (× 3) window."""
    return (F.max_pool2d if x.dim() == 4 else F.max_pool3d)(x, 3, 1, 1)


def _open(x: Tensor) -> Tensor:
    return _dilate(_erode(x))


def soft_skeleton(x: Tensor, iterations: int = 3) -> Tensor:
    r"""Soft skeleton of maps in [0, 1] by iterated min/max pooling (Shit et al. 2021, Alg. 1).

    .. math::
        S_0 = \mathrm{relu}(x - \mathrm{open}(x)),\quad
        x_k = \mathrm{erode}(x_{k-1}),\quad
        S_k = S_{k-1} + \mathrm{relu}\big(δ_k - S_{k-1} δ_k\big),\ δ_k = \mathrm{relu}(x_k - \mathrm{open}(x_k))

    with erode = the minimum over the cross-shaped 3-neighbourhood, open = erode then
    the maximum over the 3 × 3 (× 3) window; the result is :math:`S_K`, K =
    ``iterations``. Differentiable almost everywhere; on a {0, 1} mask it is the
    morphological skeleton of structures up to about 2K + 1 pixels thick.

    Args:
        x: ``[B, C, H, W]`` or ``[B, C, D, H, W]``.
        iterations: K >= 0.

    Example:
        >>> m = torch.zeros(1, 1, 5, 5)
        >>> m[..., 1:4, :] = 1  # a bar 3 pixels thick
        >>> soft_skeleton(m, 1)[0, 0, :, 1:4]  # its centre line
        tensor([[0., 0., 0.],
                [0., 0., 0.],
                [1., 1., 1.],
                [0., 0., 0.],
                [0., 0., 0.]])
    """
    iterations = check_count("iterations", iterations, low=0)
    if x.dim() not in (4, 5):
        raise ValueError(f"`input` must have 2 or 3 spatial dims for the skeleton; got shape {tuple(x.shape)}")
    skel = F.relu(x - _open(x))
    for _ in range(iterations):
        x = _erode(x)
        delta = F.relu(x - _open(x))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def _maps(canon: Canonical) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    """Probabilities, target ``[B, K, *S]`` (kept classes; 0 at left-out pixels), the kept
    pixels ``[B, 1, *S]`` (1/0) and the pixel weights of the sums (``None``: all 1).

    The skeletons see only which pixels are kept; a float ``mask``'s weights weigh the
    sums (a weight is no probability: scaling ``p`` or ``g`` by it would change the
    skeleton and, for the skeleton recall, the 0.5 threshold of the target).
    """
    if canon.pending_check is not None:
        canon.pending_check.run()
    if len(canon.spatial_shape) not in (2, 3):
        raise ValueError(f"`input` must have 2 or 3 spatial dims for the skeleton; got "
                         f"{len(canon.spatial_shape)} (shape {(canon.batch_size, canon.num_channels)}"
                         f"{tuple(canon.spatial_shape)})")
    dt = compute_dtype(canon.x.dtype)
    first = canon.first_class
    p = canon.probs(dt)[:, first:]
    g = canon.dense_target(dt)[:, first:]
    shape = p.shape[:2] + canon.spatial_shape
    one = (shape[0], 1) + canon.spatial_shape
    if canon.valid is None:
        return p.reshape(shape), g.reshape(shape), torch.ones_like(p[:, :1]).reshape(one), None
    valid = canon.valid.unsqueeze(1)
    keep = (valid > 0 if valid.is_floating_point() else valid).to(dt)
    weight = valid.to(dt).reshape(one) if valid.is_floating_point() else None
    return (p * keep).reshape(shape), (g * keep).reshape(shape), keep.reshape(one), weight


def _weighed(t: Tensor, weight: Optional[Tensor]) -> Tensor:
    return t if weight is None else t * weight


def _domain_sums(sums: Dict[str, Tensor], kw: RegionKeywords) -> Dict[str, Tensor]:
    hook = resolve_sync(kw["sync"], kw["domain"])
    m = over_domain(sums, kw["domain"])
    return m if hook is None else hook(m, kw["domain"])


def _sum(t: Tensor) -> Tensor:
    return t.flatten(2).sum(-1)


def _cldice_sums(input: Tensor, target: Tensor, iterations: int, kw: RegionKeywords) -> Dict[str, Tensor]:
    canon = _canonical(input, target, kw)
    p, g, _, w = _maps(canon)
    sp, sg = soft_skeleton(p, iterations), soft_skeleton(g, iterations)
    if w is not None:
        sp, sg, pw, gw = sp * w, sg * w, p * w, g * w
    else:
        pw, gw = p, g
    return _domain_sums({"sp_g": _sum(sp * g), "sp": _sum(sp), "sg_p": _sum(sg * p), "sg": _sum(sg),
                         "pg": _sum(pw * g), "p": _sum(pw), "g": _sum(gw)}, kw)


def _cldice_values(m: Dict[str, Tensor], smooth: float, harmonic_smooth: float) -> Tensor:
    tprec = safe_ratio(m["sp_g"] + smooth, m["sp"] + smooth)
    tsens = safe_ratio(m["sg_p"] + smooth, m["sg"] + smooth)
    return 1 - safe_ratio(2 * tprec * tsens, tprec + tsens + harmonic_smooth, empty=0.0)


@shared_keywords(REGION, defaults={"smooth": 1.0})
def cldice_loss(
    input: Tensor,
    target: Tensor,
    *,
    iterations: int = 3,
    harmonic_smooth: float = 1e-4,
    **kw: Unpack[RegionKeywords],
) -> Tensor:
    r"""Soft clDice loss (Shit et al. 2021, eqs. 1-3 and Alg. 2).

    .. math::
        T_{prec} = \frac{\sum S_P\, g + δ}{\sum S_P + δ},\quad
        T_{sens} = \frac{\sum S_G\, p + δ}{\sum S_G + δ},\quad
        L = 1 - \frac{2\, T_{prec} T_{sens}}{T_{prec} + T_{sens} + ε}

    per (item, class), with :math:`S_P` and :math:`S_G` the soft skeletons
    (:func:`soft_skeleton`) of the prediction and of the target: topology precision
    (how much of the predicted centreline lies in the target) and topology sensitivity
    (how much of the true centreline is covered). Range [0, 1], minimum 0 at ``p = g``
    for a non-empty skeleton.

    Convention:
        * Per (item, class) like every region loss; MONAI ``SoftclDiceLoss`` pools the
          sums over its channels (the same in binary mode and for one class). With
          ``iter_ = iterations``, ``smooth_nr = smooth_dr = δ`` and ``smooth = ε`` it
          gives the same value on one channel.
        * Ignored pixels are 0 in both maps before the skeletons (background), so the
          prediction there has no influence.
        * A class absent from an item has :math:`T_{sens} = 1` (with δ > 0).

    Args:
        iterations: K >= 0, erosions of the soft skeleton (3 as in MONAI and the
            paper's code); structures up to about 2K + 1 pixels thick get a skeleton.
        harmonic_smooth: ε >= 0 added to the denominator of the harmonic mean.

    Example:
        >>> p = torch.zeros(1, 1, 5, 5)
        >>> p[..., 2, :] = 1.0   # predicts the centre line only
        >>> g = torch.zeros(1, 5, 5, dtype=torch.long)
        >>> g[:, 1:4, :] = 1     # a bar 3 pixels thick: skeleton = its centre line
        >>> round(float(cldice_loss(p, g, from_logits=False, smooth=0.0, harmonic_smooth=0.0)), 4)
        0.0
    """
    iterations = check_count("iterations", iterations, low=0)
    smooth = check_nonnegative("smooth", kw["smooth"])
    eps = check_nonnegative("harmonic_smooth", harmonic_smooth)
    m = _cldice_sums(input, target, iterations, kw)
    return finish(_cldice_values(m, smooth, eps), kw)


@shared_keywords(REGION, defaults={"smooth": 1.0})
def dice_cldice_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.5,
    iterations: int = 3,
    harmonic_smooth: float = 1e-4,
    **kw: Unpack[RegionKeywords],
) -> Tensor:
    r"""Soft Dice + clDice (Shit et al. 2021, eq. 4): :math:`L = (1 - α) L_{Dice} + α L_{clDice}`.

    .. math::
        L = (1 - α)\Big(1 - \frac{2\sum p g + δ}{\sum p + \sum g + δ}\Big) + α\, L_{clDice}

    per (item, class), with :math:`L_{clDice}` of :func:`cldice_loss`; both terms from
    one canonicalisation and one pass. The paper combines them to keep the volume of
    the segmentation while clDice enforces its topology. Range [0, 1].

    Convention:
        Agrees with MONAI ``SoftDiceclDiceLoss(iter_, alpha, smooth_nr = smooth_dr = δ,
        smooth = ε)`` in binary mode (MONAI pools clDice's sums over channels; see
        :func:`cldice_loss`).

    Args:
        alpha: α in [0, 1], the weight of clDice (0.5 as MONAI).
        iterations: K >= 0, as in :func:`cldice_loss`.
        harmonic_smooth: ε >= 0, as in :func:`cldice_loss`.

    Example:
        >>> p = torch.zeros(1, 1, 5, 5)
        >>> p[..., 2, :] = 1.0
        >>> g = torch.zeros(1, 5, 5, dtype=torch.long)
        >>> g[:, 1:4, :] = 1
        >>> # Dice = 2 * 5 / (5 + 15) = 0.5; clDice loss 0: 0.5 * 0.5
        >>> round(float(dice_cldice_loss(p, g, from_logits=False, smooth=0.0, harmonic_smooth=0.0)), 4)
        0.25
    """
    alpha = check_fraction("alpha", alpha)
    iterations = check_count("iterations", iterations, low=0)
    smooth = check_nonnegative("smooth", kw["smooth"])
    eps = check_nonnegative("harmonic_smooth", harmonic_smooth)
    m = _cldice_sums(input, target, iterations, kw)
    dice = safe_ratio(2 * m["pg"] + smooth, m["p"] + m["g"] + smooth)
    return finish((1 - alpha) * (1 - dice) + alpha * _cldice_values(m, smooth, eps), kw)


def tubed_skeleton(mask: Tensor, iterations: int, tube: int) -> Tensor:
    """The skeleton of a {0, 1} mask ``[B, K, *S]`` (:func:`soft_skeleton`, exact on a
    binary mask), dilated ``tube`` times by the cross-shaped 3-neighbourhood."""
    with torch.no_grad():
        skel = (soft_skeleton(mask, iterations) > 0).to(mask.dtype)
        for _ in range(tube):
            skel = _pool_axes(skel, "max")
        return skel * mask


@shared_keywords(REGION, defaults={"smooth": 1.0})
def skeleton_recall_loss(
    input: Tensor,
    target: Tensor,
    *,
    iterations: int = 10,
    tube: int = 2,
    **kw: Unpack[RegionKeywords],
) -> Tensor:
    r"""Skeleton recall loss (Kirchhoff et al. 2024).

    .. math::
        L = 1 - \frac{\sum_i p_i\, T_i + δ}{\sum_i T_i + δ}

    per (item, class): the soft recall of the tubed skeleton T of the target, the
    skeleton of the target mask dilated ``tube`` times by the cross-shaped neighbourhood
    and kept inside the mask (the paper dilates twice). T is computed from the target
    only, without gradient (a dense target is thresholded at 0.5). Used with a region or
    distribution loss (the paper adds it to nnU-Net's Dice + CE) it keeps thin
    structures connected at the cost of a few max-pooling passes. Range [0, 1],
    minimum 0 at ``p = g``.

    Convention:
        * The skeleton is the morphological skeleton of :func:`soft_skeleton` on the
          hard mask (truncated after ``iterations`` erosions), computed on the
          device with the tensors; Kirchhoff et al. use scikit-image's thinning
          (``skeletonize``, topology-preserving), which can differ by a pixel and stays
          connected where the morphological skeleton may break.
        * The paper's code returns −recall (the same gradient); here 1 − recall, so the
          range is [0, 1] like every region loss.
        * nnU-Net's version leaves the background out; pass
          ``include_background=False`` in multiclass mode for that.

    Args:
        iterations: K >= 0, erosions of the skeleton (structures up to ~2K + 1 thick).
        tube: dilations of the skeleton (>= 0; 2 as in the paper).

    Example:
        >>> g = torch.zeros(1, 5, 5, dtype=torch.long)
        >>> g[:, 1:4, :] = 1   # skeleton = row 2; tubed once: rows 1-3, inside the mask
        >>> p = torch.zeros(1, 1, 5, 5)
        >>> p[..., 2, :] = 1.0
        >>> round(float(skeleton_recall_loss(p, g, from_logits=False, smooth=0.0, tube=1)), 4)
        0.6667
    """
    iterations = check_count("iterations", iterations, low=0)
    tube = check_count("tube", tube, low=0)
    smooth = check_nonnegative("smooth", kw["smooth"])
    canon = _canonical(input, target, kw)
    check_constant_target(canon.dense, "the skeleton recall loss reads the target through its skeleton")
    p, g, keep, w = _maps(canon)
    t = _weighed(tubed_skeleton((g > 0.5).to(g.dtype), iterations, tube) * keep, w)
    m = _domain_sums({"pt": _sum(p * t), "t": _sum(t)}, kw)
    return finish(1 - safe_ratio(m["pt"] + smooth, m["t"] + smooth), kw)
