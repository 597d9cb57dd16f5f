"""Hard predictions for the metrics: thresholds, argmax and integer predictions.

Every overlap and surface metric scores a *hard* prediction. :func:`hard_pair` turns
what the user passes into one :class:`HardPair`:

============  ===========================================  ==============================
mode          prediction accepted                          hard prediction
============  ===========================================  ==============================
binary        float ``[B, 1, *S]`` (probabilities, or       ``p >= threshold``
              logits with ``from_logits=True``); integer
              or bool ``[B, *S]`` / ``[B, 1, *S]`` in {0, 1}
multiclass    float ``[B, C, *S]``; integer label map       ``argmax_c``; the label map
              ``[B, *S]`` in ``[0, C)``                     as given
multilabel    float ``[B, C, *S]``; integer or bool         ``p >= threshold`` per channel
              ``[B, C, *S]`` in {0, 1}
============  ===========================================  ==============================

The target side is validated by :func:`seglosses._inputs.canonicalize` (the same
checks and messages as the losses, their bounds read in memory order). Binary and multilabel hard predictions are kept as a bool
mask; for the confusion they become a float {0, 1} prediction for the statistics
kernel (:func:`seglosses._stats.moments`). A multiclass label map goes through
:func:`seglosses._stats.label_moments`; multiclass scores against a dense (one-hot
or soft) target are counted without a label map (:func:`dense_moments`), and the
arg-max is taken only where a label map is needed (:func:`argmax_classes`).
"""
from __future__ import annotations

import math

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor

from .._inputs import Canonical, canonicalize, check_labels, check_tensor
from .._options import check_fraction, check_mode
from .._stats import label_moments, moments

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def stat_dtype(device: torch.device) -> torch.dtype:
    """float64 (exact pixel counts) where the device has it, else float32."""
    return torch.float32 if device.type == "mps" else torch.float64


def argmax_classes(x: Tensor) -> Tensor:
    """Arg-max over the class axis of scores ``[B, C, N]``: ``[B, N]`` int64, the first maximal class.

    Equals ``x.argmax(1)``. On the CPU that reduction is slow when the class axis is not
    the innermost one in memory (tens of times slower than a pass over the data), so
    there the index comes from the maxima: ``C - max_c([x_c = max x] (C - c))`` over
    uint8 flags, which picks the first maximal class too. NaN scores (no class equals
    the maximum) go to ``argmax``, which treats NaN as the maximum.
    """
    c = x.shape[1]
    if x.device.type != "cpu" or x.stride(1) == 1 or c > 255 or x.shape[2] <= 1:
        return x.argmax(1)
    top = torch.eq(x, x.amax(1, keepdim=True)).view(torch.uint8)
    top.mul_(torch.arange(c, 0, -1, dtype=torch.uint8, device=x.device).view(1, c, 1))
    top = top.amax(1)
    if bool((top == 0).any()):
        return x.argmax(1)
    return c - top.long()


# Elements of [B, C, N] per chunk of pixels in dense_moments: the float temporaries of a
# chunk (8 MB each in float32) stay below the sizes the C library hands back to the
# system after each call, so they are reused instead of being faulted in afresh.
_CHUNK_ELEMENTS = 1 << 21


def _class_max(x: Tensor, cdim: int) -> Tensor:
    """Maximum over the class axis of ``[B, C, n]`` (``cdim=1``) or ``[B, n, C]`` (``cdim=2``), kept as a dim.

    With the classes innermost in memory (``[B, n, C]``, each image contiguous), a max
    pooling of the flat memory with window and stride ``C`` gives the same values (NaN
    included) about twice as fast as ``amax`` over the short last dim.
    """
    if cdim == 2 and x.dtype in (torch.float32, torch.float64) and x.stride(2) == 1 and x.stride(1) == x.shape[2]:
        b, n, c = x.shape
        return torch.nn.functional.max_pool1d(x.reshape(b, 1, n * c), c).view(b, n, 1)
    return x.amax(cdim, keepdim=True)


def dense_moments(x: Tensor, dense: Tensor, valid: Optional[Tensor]) -> Optional[Dict[str, Tensor]]:
    r"""Moments ``p, g, pg, n`` ``[B, C]`` (float64) of the arg-max of scores ``x`` against a dense target.

    With :math:`a_{ic} = [x_{ic} = \max_k x_{ik}]` (the one-hot arg-max when every
    pixel has one maximal class) and the validity weights :math:`w`:
    :math:`p_c = \sum_i w_i a_{ic}`, :math:`g_c = \sum_i w_i g_{ic}`,
    :math:`pg_c = \sum_i w_i a_{ic} g_{ic}`, the moments of
    :func:`seglosses._stats.label_moments` for the arg-max label map, from a few passes
    over the data in its own memory layout (``[B, N, C]`` views for channels-last
    data), in chunks of pixels, and no label map. The sums run in float32 (float64 for
    float64 data or images of 2**24 pixels or more): exact for {0, 1} values. Returns
    ``None`` when some pixel has tied maxima (or NaN): the caller then takes the
    arg-max, which breaks ties by the first class.

    It is a second form of :func:`seglosses._stats.label_moments` (dense branch) after
    :func:`argmax_classes`, kept for speed: the overlap section of the benchmark suite
    (``python -m benchmarks.run --sections overlap --threads 1``: Dice of 64x4x256x256
    one-hot float predictions) takes 167 ms with it and 914 ms with the arg-max and
    ``label_moments`` alone (same machine, same run conditions; 0.74x and 4.1x MONAI's
    ``DiceMetric``).
    """
    b, c, n = x.shape
    wide = x.dtype == torch.float64 or dense.dtype == torch.float64 or n >= 2**24
    work = torch.float64 if wide and x.device.type != "mps" else torch.float32
    if x.stride(1) == 1 and c > 1:  # class axis innermost in memory
        x, dense, cdim, pdim = x.transpose(1, 2), dense.transpose(1, 2), 2, 1
    else:
        cdim, pdim = 1, 2
    sums = torch.zeros(4, b, c, dtype=work, device=x.device)  # count, p, g, pg
    step = max(1, _CHUNK_ELEMENTS // max(1, b * c))
    for start in range(0, n, step):  # chunks of pixels (every image in each)
        size = min(step, n - start)
        xs, gs = x.narrow(pdim, start, size), dense.narrow(pdim, start, size)
        a = torch.sub(xs, _class_max(xs, cdim)).eq_(0)
        if a.dtype != work:
            a = a.to(work)
        if gs.dtype != work:
            gs = gs.to(work)
        count = a.sum(pdim)
        sums[0] += count
        if valid is None:
            sums[1] += count
        else:
            w = valid[:, start:start + size].to(work).unsqueeze(cdim)
            sums[1] += a.mul_(w).sum(pdim)
            gs = gs * w
        sums[2] += gs.sum(pdim)
        sums[3] += a.mul_(gs).sum(pdim)
    if not bool((sums[0].sum(1) == n).all()):
        return None
    if valid is None:
        n_valid = torch.full((b, c), float(n), dtype=work, device=x.device)
    else:
        n_valid = valid.sum(-1, keepdim=True).to(work).expand(b, c)
    dtype = stat_dtype(x.device)
    return {k: v.to(dtype) for k, v in zip(("p", "g", "pg", "n"), (sums[1], sums[2], sums[3], n_valid))}


@dataclass(frozen=True)
class HardPair:
    """A validated (hard prediction, target) pair.

    ``canon`` holds the target and the validity mask. For binary and multilabel mode
    ``mask`` ``[B, C, N]`` (bool) is the hard prediction. For multiclass mode
    :attr:`pred_labels` ``[B, N]`` holds the predicted class of every pixel: the given
    label map (``labels``), or the arg-max of the scores ``canon.x``, taken on first
    use. ``canon.x`` is otherwise not to be read.
    """

    canon: Canonical
    labels: Optional[Tensor] = None
    mask: Optional[Tensor] = None

    @property
    def num_classes(self) -> int:
        return self.canon.num_channels

    @cached_property
    def pred_labels(self) -> Optional[Tensor]:
        """The multiclass label map ``[B, N]`` (``None`` in binary and multilabel mode)."""
        if self.canon.mode != "multiclass":
            return None
        return self.labels if self.labels is not None else argmax_classes(self.canon.x)

    def all_moments(self) -> Dict[str, Tensor]:
        """Moments ``p, g, pg, n`` of every channel (background included), ``[B, C]``."""
        full = replace(self.canon, include_background=True)
        if full.mode == "multiclass":
            if self.labels is None and full.dense is not None:
                out = dense_moments(full.x, full.dense, full.valid)
                if out is not None:
                    return out
            return label_moments(self.pred_labels, full, stat_dtype(full.x.device))
        dtype = stat_dtype(self.mask.device)
        return moments(replace(full, x=self.mask.to(dtype), from_logits=False), ("p", "g", "pg", "n"))

    def masks(self) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """Boolean masks of the kept classes, ``[B, C_kept, *S]`` each, and the validity ``[B, *S]``.

        A target pixel removed by ``ignore_index`` belongs to no class. A soft binary or
        multilabel target is taken as foreground where it is >= 0.5; a soft multiclass
        target at its arg-max.
        """
        canon = self.canon
        b, c = canon.batch_size, canon.num_channels
        classes = torch.arange(c, device=canon.x.device).view(1, c, 1)
        if self.mask is not None:
            pred = self.mask
        else:
            pred = self.pred_labels.unsqueeze(1) == classes
        if canon.labels is not None:
            target = canon.labels.unsqueeze(1) == classes
        elif canon.mode == "multiclass":
            target = argmax_classes(canon.dense).unsqueeze(1) == classes
        else:
            target = canon.dense >= 0.5
        if canon.valid is not None:
            target = target & canon.valid.unsqueeze(1)
        first = canon.first_class
        shape = (b, c - first) + tuple(canon.spatial_shape)
        valid = None if canon.valid is None else canon.valid.view((b,) + tuple(canon.spatial_shape))
        return pred[:, first:].reshape(shape), target[:, first:].reshape(shape), valid


def _is_hard(t: Tensor) -> bool:
    return t.dtype == torch.bool or not (t.dtype in _FLOATS or t.is_complex())


#: the keywords that describe a (prediction, target) pair of the metrics
PAIR_KEYWORDS = ("mode", "from_logits", "threshold", "num_classes", "include_background", "ignore_index",
                 "check_values", "mask")


def hard_pair(input: Tensor, target: Tensor, kw: Mapping[str, Any], *, mask_weights: bool = True) -> HardPair:
    """Validate (prediction, target) and make the prediction hard; see the module docstring.

    ``kw`` holds :data:`PAIR_KEYWORDS` (``mask`` may be missing); ``mask_weights=False``
    refuses a float ``mask`` that is not 0/1 (metrics that only keep or drop pixels).

    Raises:
        TypeError: as :func:`~seglosses._inputs.canonicalize`; ``num_classes`` not an int.
        ValueError: as :func:`~seglosses._inputs.canonicalize`; ``from_logits=True`` with
            an integer prediction; an integer prediction out of range; a multiclass label
            map without ``num_classes`` (and without a one-hot target to read C from);
            ``num_classes`` that disagrees with the prediction's channels.
    """
    mode = check_mode(kw["mode"])
    input = check_tensor("input", input)
    target = check_tensor("target", target)
    threshold = check_fraction("threshold", kw["threshold"])
    num_classes = kw["num_classes"]
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)):
        raise TypeError(f"`num_classes` must be an int or None; got {type(num_classes).__name__}")
    common: Dict[str, Any] = dict(mode=mode, include_background=kw["include_background"],
                                  ignore_index=kw["ignore_index"], check_values=kw["check_values"],
                                  mask=kw.get("mask"), mask_weights=mask_weights)
    if not _is_hard(input):
        canon = canonicalize(input, target, from_logits=kw["from_logits"], **common)
        _check_num_classes(num_classes, canon.num_channels)
        if mode == "multiclass":
            return HardPair(canon)  # the arg-max (or the dense counts) when needed
        hard = canon.probs(torch.float64 if canon.x.dtype == torch.float64 else torch.float32) >= threshold
        return HardPair(canon, mask=hard)
    _check_hard_from_logits(kw["from_logits"], input)
    if mode == "multiclass":
        return _label_map_pair(input, target, num_classes, common)
    x = input
    if mode == "binary" and x.dim() == target.dim() and not (x.dim() >= 3 and x.shape[1] == 1):
        x = x.unsqueeze(1)  # [B, *S] -> [B, 1, *S]
    if common["check_values"]:
        check_labels("input", x, 2, None)
    canon = canonicalize(x.to(torch.float32), target, from_logits=False, **common)
    _check_num_classes(num_classes, canon.num_channels)
    return HardPair(canon, mask=canon.x > 0.5)


def _check_num_classes(num_classes: Optional[int], channels: int) -> None:
    if num_classes is not None and num_classes != channels:
        raise ValueError(f"`num_classes` must equal the prediction's {channels} channels; got {num_classes}")


def _check_hard_from_logits(from_logits: object, input: Tensor) -> None:
    if not isinstance(from_logits, bool):
        raise TypeError(f"`from_logits` must be a bool; got {type(from_logits).__name__}")
    if from_logits:
        raise ValueError(
            f"`from_logits` must be False for a hard (integer or bool) prediction; got True with "
            f"`input` of dtype {input.dtype}"
        )


def _label_map_pair(input: Tensor, target: Tensor, num_classes: Optional[int], common: Dict[str, Any]) -> HardPair:
    """The pair of a multiclass label-map prediction ``[B, *S]``: the target validated against a
    stand-in prediction of ``C`` channels, the labels checked to lie in ``[0, C)``."""
    if input.dim() < 2:
        raise ValueError(f"`input` label map must have shape [B, *spatial]; got {tuple(input.shape)}")
    # an integer [B, C, *S] prediction (one-hot or channels) is not a label map
    one_hot_like = target.dim() == input.dim() if target.dtype in _FLOATS else input.dim() == target.dim() + 1
    if one_hot_like:
        raise ValueError(
            f"`input` must be a label map [B, *spatial] (hard multiclass prediction) or float scores "
            f"[B, C, *spatial]; got an integer tensor of shape {tuple(input.shape)}"
        )
    c = num_classes
    if c is None:
        if not (target.dtype in _FLOATS and target.dim() == input.dim() + 1):
            raise ValueError(
                "`num_classes` must be given for a multiclass label-map prediction (or pass a one-hot "
                "target [B, C, *spatial] to read C from); got None"
            )
        c = target.shape[1]
    if c < 2:
        raise ValueError(f"`num_classes` must be at least 2 in multiclass mode; got {c}")
    # a stand-in prediction of the right shape (expanded: no memory of pixel size)
    stand_in = torch.zeros((), dtype=torch.float32, device=input.device).expand(
        (input.shape[0], c) + tuple(input.shape[1:])
    )
    canon = canonicalize(stand_in, target, from_logits=False, **common)
    if common["check_values"]:
        check_labels("input", input, c, None)
    return HardPair(canon, labels=input.reshape(input.shape[0], -1).long())


def options_with_defaults(name: str, allowed: Mapping[str, Any], opts: Mapping[str, Any]) -> Dict[str, Any]:
    """The options ``opts`` of metric ``name`` over its ``allowed`` defaults; an unknown one raises,
    ``empty`` is checked."""
    for key in opts:
        if key not in allowed:
            listed = ", ".join(repr(k) for k in allowed)
            raise ValueError(f"`{key}` must be an option of {name!r} ({listed}); got {key!r}")
    out = {**allowed, **opts}
    out["empty"] = check_empty("empty", out["empty"])
    return out


def check_empty(name: str, value: object, extra: Tuple[str, ...] = (), *, allow_inf: bool = False) -> Any:
    """A value for undefined cases: a number, ``"nan"``, or one of ``extra``; returns float or str.

    An infinite number is refused unless ``allow_inf`` (a score of an empty case is a finite value or
    NaN; a distance of a missing surface may be infinite).
    """
    if isinstance(value, str):
        if value == "nan":
            return float("nan")
        if value in extra:
            return value
        choices = ", ".join(repr(v) for v in ("nan",) + extra)
        raise ValueError(f"`{name}` must be a number or one of {choices}; got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number or a string; got {type(value).__name__}")
    if not allow_inf and math.isinf(value):
        raise ValueError(f"`{name}` must be a finite number or 'nan'; got {value!r}")
    return float(value)
