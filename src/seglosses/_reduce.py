"""Reductions: the only place where "mean", "sum" and "none" are implemented.

Two kinds of per-item values exist in the package:

* per (image, class) values of region losses and metrics, ``[I, C]`` with ``I = B``
  (image domain) or ``I = 1`` (batch domain): :func:`reduce_items`;
* per-pixel values of distribution losses, ``[B, *S]`` with an optional validity
  mask: :func:`reduce_pixels`.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ._options import check_reduction


def reduce_items(
    values: Tensor,
    reduction: str,
    class_weights: Optional[Tensor] = None,
    *,
    domain: str = "image",
    skip_nan: bool = False,
) -> Tensor:
    """Reduce ``[I, C]`` per-(item, class) values.

    With class weights ``w`` (normalised to mean 1, ``w̃ = C w / Σw``):

    * ``"none"``: ``values * w̃``, shape ``[B, C]`` (image domain) or ``[C]`` (batch domain);
    * ``"mean"``: the mean of that, i.e. ``Σ_c w_c L_c / Σ_c w_c`` averaged over images;
    * ``"sum"``: its sum.

    With ``skip_nan=True`` (metrics, where NaN marks an undefined value on request)
    ``"mean"`` and ``"sum"`` leave NaN entries out; the mean of only NaN is NaN.
    """
    reduction = check_reduction(reduction)
    if class_weights is not None:
        w = class_weights.to(values.dtype)
        values = values * (w * (w.numel() / w.sum()))
    if reduction == "mean":
        return values.nanmean() if skip_nan else values.mean()
    if reduction == "sum":
        return values.nansum() if skip_nan else values.sum()
    return values[0] if domain == "batch" else values


def reduce_per_item(values: Tensor, reduction: str, *, domain: str = "image") -> Tensor:
    """Reduce ``[I]`` per-item values (losses that sum over classes, e.g. generalised Dice).

    ``"none"`` gives ``[B]`` (image domain) or a 0-dim tensor (batch domain).
    """
    reduction = check_reduction(reduction)
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values[0] if domain == "batch" else values


def reduce_pixels(values: Tensor, reduction: str, valid: Optional[Tensor] = None) -> Tensor:
    """Reduce per-pixel values ``[B, *S]``; ignored pixels (``valid`` False) count nowhere.

    ``"mean"`` divides by the number of valid pixels (0 when there is none),
    ``"none"`` returns the map with 0 at ignored pixels. A float ``valid`` holds per-pixel
    weights (a float ``mask``): ``"none"`` returns ``w v``, ``"sum"`` ``Σ w v`` and
    ``"mean"`` the weighted mean ``Σ w v / Σ w`` (0 when every weight is 0).
    """
    reduction = check_reduction(reduction)
    weights = valid is not None and valid.is_floating_point()
    if valid is not None:
        valid = valid.reshape(values.shape)
        if weights:
            values = values * valid.to(values.dtype)
        else:
            values = torch.where(valid, values, torch.zeros((), dtype=values.dtype, device=values.device))
    if reduction == "none":
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    if valid is None:
        return total / max(values.numel(), 1)
    if weights:
        den = valid.sum().to(values.dtype)
        return total / torch.where(den > 0, den, torch.ones_like(den))
    return total / valid.sum().clamp_min(1).to(values.dtype)
