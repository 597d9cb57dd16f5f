r"""Boundary-based losses (seed 001, section 4): the boundary loss and the Hausdorff-DT loss.

Both weight the per-pixel prediction by distance maps computed from hard masks with
:mod:`seglosses.distance`. The maps are constants (no gradient flows through them;
a target that requires grad is therefore refused with a ``ValueError`` naming ``target``),
computed for all (image, class) masks of a batch in one call, and in physical units
when ``spacing`` is given. Each (item, class) value is a mean over the item's valid
pixels; an item is an image (``domain="image"``) or the whole batch
(``domain="batch"``). The two domains differ only when ``ignore_index`` leaves
images with different numbers of valid pixels.

Sources: seed 001 = Ma, "Segmentation Loss Odyssey" (2020), sections 4.1-4.2;
Kervadec et al., "Boundary loss for highly unbalanced segmentation" (MIDL 2019);
Karimi & Salcudean, "Reducing the Hausdorff distance in medical image segmentation
with convolutional neural networks" (IEEE TMI 2020).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from typing_extensions import Unpack

from .._arguments import BOUNDARY, BoundaryKeywords, shared_keywords
from .._inputs import Canonical, canonicalize, check_class_weights, check_constant_target
from .._options import check_count, check_domain, check_nonnegative, check_positive
from .._reduce import reduce_items
from .._stats import compute_dtype, safe_ratio
from ..distance import signed_distance, two_sided_distance

__all__ = ["boundary_loss", "hausdorff_dt_loss", "log_hausdorff_dt_loss", "hausdorff_er_loss"]



def _prepare(input: Tensor, target: Tensor, kw: BoundaryKeywords, caller: str = "loss",
             constant_target: bool = True) -> Tuple[Canonical, Tensor, Tensor, Tensor]:
    """Canonical pair, probabilities ``[B, K, N]``, target ``[B, K, N]`` (float) and its hard mask (bool)."""
    mode = kw["mode"]
    include_background = kw["include_background"]
    if include_background is None:
        include_background = mode != "multiclass"
    canon = canonicalize(
        input, target, mode=mode, from_logits=kw["from_logits"], include_background=include_background,
        ignore_index=kw["ignore_index"], check_values=kw["check_values"], mask=kw["mask"],
    )
    if constant_target:
        check_constant_target(canon.dense, f"the {caller} reads the target through distance maps of its mask")
    dtype = compute_dtype(canon.x.dtype)
    first = canon.first_class
    p = canon.probs(dtype)[:, first:]
    if canon.labels is not None:
        cls = torch.arange(first, canon.num_channels, device=p.device).view(1, -1, 1)
        mask = canon.labels.unsqueeze(1) == cls
        g = mask.to(dtype)
    else:
        g = canon.dense[:, first:].to(dtype)
        mask = g > 0.5
    keep = _kept(canon)
    if keep is not None:
        mask = mask & keep.unsqueeze(1)
    return canon, p, g, mask


def _kept(canon: Canonical) -> Optional[Tensor]:
    """The pixels that count at all ``[B, N]`` (bool; weight > 0 for a float ``mask``), or ``None``."""
    valid = canon.valid
    if valid is None or valid.dtype == torch.bool:
        return valid
    return valid > 0


def _finish(values: Tensor, kw: BoundaryKeywords) -> Tensor:
    """Class weights and the reduction of ``[I, K]`` values."""
    w = check_class_weights(kw["class_weights"], values.shape[1], values)
    return reduce_items(values, kw["reduction"], w, domain=kw["domain"])


def _maps_shape(canon: Canonical, k: int) -> Tuple[int, ...]:
    return (canon.batch_size * k,) + canon.spatial_shape


def _map_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _pixel_mean(canon: Canonical, values: Tensor, weights: Tensor, domain: str) -> Tensor:
    """``Σ_i w v / n_valid`` per (item, class): ``[B, K]`` (image) or ``[1, K]`` (batch)."""
    if canon.valid is not None:
        weights = weights * canon.valid.unsqueeze(1).to(weights.dtype)
        count = canon.valid.sum(-1).to(values.dtype)
    else:
        n = values.shape[-1]
        count = torch.full((canon.batch_size,), float(n), dtype=values.dtype, device=values.device)
    sums = torch.linalg.vecdot(values, weights)
    if domain == "batch":
        sums, count = sums.sum(0, keepdim=True), count.sum(0, keepdim=True)
    return safe_ratio(sums, count.unsqueeze(1).expand_as(sums), empty=0.0)


@shared_keywords(BOUNDARY)
def boundary_loss(input: Tensor, target: Tensor, **kw: Unpack[BoundaryKeywords]) -> Tensor:
    r"""Boundary loss (Kervadec et al. 2019; seed 001 section 4.1).

    .. math::
        L_c = \frac{1}{|Ω|} \sum_{q \in Ω} φ_{G_c}(q)\, s_c(q),\qquad
        φ_G(q) = \begin{cases} -D_G(q) & q \in G \\ \phantom{-}D_G(q) & q \notin G \end{cases}

    per (item, class), with :math:`s_c` the predicted probabilities and :math:`φ_G` the
    signed distance map of the target mask (:func:`seglosses.distance.signed_distance`:
    negative inside, at least one pixel size in magnitude, so it has no zero level).
    It is seed 001's :math:`L_{BD} = \int_Ω φ_G\, s_θ`, a mean instead of an integral,
    as in Kervadec et al.'s code.

    Range :math:`(-∞, ∞)`: the loss can be negative. For a hard target the minimum over
    :math:`s \in [0, 1]` is reached at the truth :math:`s = g` and equals
    :math:`-\frac{1}{|Ω|}\sum_{q \in G} D_G(q)`, minus the mean inside distance; an
    absent class reaches its minimum 0 at :math:`s = 0`. The paper uses it with a
    region loss and a weight that ramps up during training: Kervadec et al. start with
    the generalised Dice loss alone and move 0.01 of the weight to the boundary loss per
    epoch. With :func:`seglosses.build_loss` (or ``+`` and ``*`` on the loss modules,
    which build the same :class:`~seglosses.losses.compound.WeightedSum`), advancing
    the schedule once per epoch with ``loss.step()``: see the example of
    :func:`seglosses.functional.boundary_loss`.

    Convention:
        * Empty target mask (absent class): :math:`φ > 0` is the distance to the image
          border (:func:`~seglosses.distance.signed_distance` pads an image without
          object with object), so any predicted probability of the class is penalised;
          Kervadec et al.'s code uses :math:`φ = 0` there (no penalty). A full mask gives
          :math:`φ < 0` everywhere. Values and gradients are finite in every case.
        * ``ignore_index``: ignored pixels are outside every class in :math:`φ` and are
          left out of the mean; an all-ignored image contributes 0.
        * The distance maps are constants, computed in float32 (float64 for float64
          input) from the hard target on the input's device.

    Example:
        >>> # 1x4 image, target (0, 1, 1, 0): φ = (1, -1, -1, 1)
        >>> # probabilities (0.5, 1, 0, 0): (0.5 - 1 + 0 + 0) / 4 = -0.125
        >>> p = torch.tensor([[[[0.5, 1.0, 0.0, 0.0]]]])
        >>> float(boundary_loss(p, torch.tensor([[[0, 1, 1, 0]]]), from_logits=False))
        -0.125
        >>> # the weight ramp of Kervadec et al., as a weighted sum with two schedules
        >>> from seglosses import build_loss
        >>> loss = build_loss("ramp(1.0, 0.01, 99)*generalized_dice(mode='multiclass')"
        ...                   " + ramp(0.0, 0.99, 99)*boundary(mode='multiclass')")
        >>> loss.step(10)  # after 10 epochs
        >>> [round(w, 2) for w in loss.weights()]
        [0.9, 0.1]
    """
    domain = check_domain(kw["domain"])
    canon, p, _, mask = _prepare(input, target, kw, caller="boundary loss")
    b, k, n = p.shape
    phi = signed_distance(mask.reshape(_maps_shape(canon, k)), kw["spacing"], dtype=_map_dtype(p.dtype))
    values = _pixel_mean(canon, p, phi.reshape(b, k, n).to(p.dtype), domain)
    return _finish(values, kw)


def _boundary_distance(mask: Tensor, spacing, dtype: torch.dtype) -> Tensor:
    """``edt(m) + edt(~m)`` per mask ``[M, *S]``, 0 for masks without a boundary (empty or full)."""
    d = two_sided_distance(mask, spacing, dtype=dtype)
    flat = mask.flatten(1)
    has_boundary = flat.any(1) & ~flat.all(1)
    return d * has_boundary.view((-1,) + (1,) * (mask.dim() - 1)).to(dtype)


@shared_keywords(BOUNDARY)
def hausdorff_dt_loss(input: Tensor, target: Tensor, *, alpha: float = 2.0, **kw: Unpack[BoundaryKeywords]) -> Tensor:
    r"""Hausdorff-distance loss by distance transforms (Karimi & Salcudean 2019; seed 001 section 4.2).

    .. math::
        L_c = \frac{1}{|Ω|} \sum_{q \in Ω} \big(s_c(q) - g_c(q)\big)^2
              \big(d_{G_c}(q)^α + d_{S_c}(q)^α\big)

    per (item, class), with :math:`d_M = D(M) + D(\lnot M)` the distance of every pixel
    to the boundary of mask :math:`M` from inside and from outside (:math:`D` =
    :func:`seglosses.distance.edt`), :math:`G_c` the target mask and
    :math:`S_c = \{s_c > 0.5\}` the thresholded prediction. :math:`d_S` is recomputed
    at every call and carries no gradient. Seed 001 writes :math:`(s - g)` with α = 2
    on the distances; Karimi et al.'s loss (their eq. 8), like MONAI's
    ``HausdorffDTLoss``, squares the error, as here.

    Range [0, ∞), minimum 0 at :math:`s = g`. The weights are :math:`\ge 1` pixel size to
    the power α at every pixel of a mask with a boundary.

    Convention:
        * A mask without a boundary (empty or full) has :math:`d = 0`, as in MONAI: an
          absent class predicted absent (:math:`s \le 0.5` everywhere) scores 0, and a
          false positive is penalised through :math:`d_S` once it crosses 0.5. Values
          and gradients are finite in every case.
        * Soft targets: :math:`g` enters the error as given and is thresholded at 0.5
          for :math:`d_G`.
        * ``ignore_index``: ignored pixels are outside both masks (target and
          thresholded prediction) and left out of the mean, so the prediction there
          has no influence on the value.
        * Agreement with MONAI ``HausdorffDTLoss(alpha, include_background, sigmoid /
          softmax, batch)`` on one-hot targets without ``ignore_index`` (which MONAI
          does not have): equal up to float32 rounding, as MONAI casts its distance
          maps to float32; its ``batch=True`` is ``domain="batch"``.

    Args:
        alpha: the exponent α > 0 of the distances (2 in the paper).

    Example:
        >>> # 1x4 image, target (0, 1, 1, 0): d_G = (1, 1, 1, 1)
        >>> # probabilities (0.5, 1, 0, 0): S = (0, 1, 0, 0), d_S = (1, 1, 1, 2)
        >>> # (s - g)^2 (d_G^2 + d_S^2) = (0.25*2, 0, 1*2, 0): mean 2.5 / 4 = 0.625
        >>> p = torch.tensor([[[[0.5, 1.0, 0.0, 0.0]]]])
        >>> float(hausdorff_dt_loss(p, torch.tensor([[[0, 1, 1, 0]]]), from_logits=False))
        0.625
    """
    alpha = check_positive("alpha", alpha)
    domain = check_domain(kw["domain"])
    spacing = kw["spacing"]
    canon, p, g, mask = _prepare(input, target, kw, caller="Hausdorff-DT loss")
    b, k, n = p.shape
    shape = _maps_shape(canon, k)
    with torch.no_grad():
        pred_mask = p.detach() > 0.5
        keep = _kept(canon)
        if keep is not None:
            pred_mask &= keep.unsqueeze(1)
        d = _boundary_distance(torch.cat([mask.reshape(shape), pred_mask.reshape(shape)]), spacing,
                               _map_dtype(p.dtype))
        d_g, d_s = d.reshape(2, b, k, n).to(p.dtype).unbind(0)
        weight = d_g.pow_(alpha).add_(d_s.pow_(alpha))
    err = (p - g).square()
    return _finish(_pixel_mean(canon, err, weight, domain), kw)


@shared_keywords(BOUNDARY)
def log_hausdorff_dt_loss(input: Tensor, target: Tensor, *, alpha: float = 2.0,
                          **kw: Unpack[BoundaryKeywords]) -> Tensor:
    r"""Log Hausdorff-DT loss: :math:`\log(1 + L_{HD})` of :func:`hausdorff_dt_loss`.

    .. math::
        L = \log\big(1 + L_{HD\text{-}DT}\big)

    with :math:`L_{HD\text{-}DT}` the reduced Hausdorff-DT loss (Karimi & Salcudean 2019):
    the same minimiser, a value that grows slowly for large distances (MONAI's
    ``LogHausdorffDTLoss``). Range [0, ∞), minimum 0 at ``p = g``.

    Convention:
        The logarithm is taken after the reduction (of the mean, not a mean of
        logarithms), as MONAI does; with ``reduction="none"`` it is taken per value.

    Args:
        alpha: the exponent α > 0 of the distances, as in :func:`hausdorff_dt_loss`.

    Example:
        >>> p = torch.tensor([[[[0.5, 1.0, 0.0, 0.0]]]])
        >>> # the Hausdorff-DT loss of this case is 0.625: log 1.625 = 0.4855
        >>> round(float(log_hausdorff_dt_loss(p, torch.tensor([[[0, 1, 1, 0]]]), from_logits=False)), 4)
        0.4855
    """
    return torch.log1p(hausdorff_dt_loss(input, target, alpha=alpha, **kw))


def _erosion_kernel(ndim: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The cross of Karimi & Salcudean's erosion: 5 pixels, weight 1/5 (2D); 7 voxels, 1/7 (3D)."""
    k = torch.zeros((3,) * ndim, dtype=dtype, device=device)
    centre = (1,) * ndim
    k[centre] = 1
    for d in range(ndim):
        for off in (0, 2):
            idx = list(centre)
            idx[d] = off
            k[tuple(idx)] = 1
    return (k / k.sum()).view((1, 1) + (3,) * ndim)


@shared_keywords(BOUNDARY, without=("spacing",))
def hausdorff_er_loss(input: Tensor, target: Tensor, *, alpha: float = 2.0, erosions: int = 10,
                      **kw: Unpack[BoundaryKeywords]) -> Tensor:
    r"""Hausdorff loss by morphological erosion (Karimi & Salcudean 2019, eqs. 10-11), 2D and 3D.

    .. math::
        L_c = \frac{1}{|Ω|} \sum_{q \in Ω} \sum_{k=1}^{K} k^{α}\,
              \big((s_c - g_c)^2 \ominus_k B\big)(q)

    per (item, class): the squared error map :math:`e_0 = (s - g)^2` is eroded K times
    (``erosions``) by the cross B (the pixel and its 2·d neighbours, weights 1/5 in 2D,
    1/7 in 3D): :math:`e_k = \max(e_{k-1} * B - 0.5, 0)`, then min-max normalised per
    (image, class); each erosion is weighted by :math:`k^α`. An error region survives
    about as many erosions as its thickness, so the sum approximates the Hausdorff
    distance between prediction and target; unlike :func:`hausdorff_dt_loss` no distance
    transform is needed. Range [0, ∞) (at most :math:`\sum_k k^α` per pixel), minimum 0
    at ``p = g``.

    Convention:
        * Agrees with kornia ``HausdorffERLoss`` / ``HausdorffERLoss3D(alpha, k)`` (same
          kernels, normalisation and zero padding) on ``softmax(input)`` in multiclass
          mode with ``include_background=True`` (kornia scores every channel); kornia's
          ``"mean"`` is the mean over (class, image, pixel), here the mean over images
          and classes of each one's pixel mean, the same number.
        * ``ignore_index``: the error is 0 at ignored pixels and they are left out of the
          mean. A ``mask`` leaves out its pixels of weight 0 (False) the same way; a float
          mask's weights then weigh the final pixel mean (the erosions see only which
          pixels are kept, as their 0.5 threshold is on the unweighted error). Soft targets enter the error as given; a target that requires grad gets
          its gradient (the erosion is differentiable in both).
        * Spatial size: 2D or 3D (the erosion is a 3 × 3 (× 3) convolution).

    Args:
        alpha: the exponent α >= 0 of the erosion weights (2 in the paper).
        erosions: K, the number of erosions (an int >= 1; 10 in kornia).

    Example:
        >>> # a 3x3 error of 1 (zero padding): one erosion gives the centre 5/5 - 0.5, the
        >>> # edge centres 4/5 - 0.5, the corners 3/5 - 0.5; normalised 1, 0.5, 0: mean 3/9
        >>> p = torch.ones(1, 1, 3, 3)
        >>> g = torch.zeros(1, 3, 3, dtype=torch.long)
        >>> round(float(hausdorff_er_loss(p, g, from_logits=False, erosions=1)), 4)
        0.3333
    """
    alpha = check_nonnegative("alpha", alpha)
    erosions = check_count("erosions", erosions)
    domain = check_domain(kw["domain"])
    canon, p, g, _ = _prepare(input, target, kw, caller="Hausdorff-ER loss", constant_target=False)
    b, k, n = p.shape
    ndim = len(canon.spatial_shape)
    if ndim not in (2, 3):
        raise ValueError(f"`input` must have 2 or 3 spatial dims for the erosion; got {ndim} "
                         f"(shape {tuple(canon.x.shape[:2]) + canon.spatial_shape})")
    err = (p - g).square()
    keep = _kept(canon)
    if keep is not None:
        err = err * keep.unsqueeze(1).to(err.dtype)
    bound = err.reshape((b * k, 1) + canon.spatial_shape)
    kernel = _erosion_kernel(ndim, bound.dtype, bound.device)
    conv = torch.nn.functional.conv2d if ndim == 2 else torch.nn.functional.conv3d
    total = torch.zeros_like(bound)
    for step in range(erosions):
        dil = conv(bound, kernel, padding=1)
        er = torch.where(dil < 0.5, torch.zeros_like(dil), dil - 0.5)
        flat = er.flatten(1)
        lo = flat.amin(1).view((-1,) + (1,) * (ndim + 1))
        span = flat.amax(1).view_as(lo) - lo
        keep = span != 0
        er = torch.where(keep, (er - lo) / torch.where(keep, span, torch.ones_like(span)), er)
        total = total + er * float(step + 1) ** alpha
        bound = er
    values = _pixel_mean(canon, total.reshape(b, k, n), torch.ones_like(p), domain)
    return _finish(values, kw)
