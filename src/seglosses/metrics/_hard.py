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
checks and messages as the losses). Binary and multilabel hard predictions become a
float {0, 1} prediction inside the canonical pair, so the statistics kernel
(:func:`seglosses._stats.moments`) computes their confusion; a multiclass prediction
stays a label map and goes through :func:`seglosses._stats.label_moments`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from .._inputs import Canonical, canonicalize, check_labels, check_tensor
from .._options import check_fraction, check_mode
from .._stats import label_moments, moments

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def stat_dtype(device: torch.device) -> torch.dtype:
    """float64 (exact pixel counts) where the device has it, else float32."""
    return torch.float32 if device.type == "mps" else torch.float64


@dataclass(frozen=True)
class HardPair:
    """A validated (hard prediction, target) pair.

    ``canon`` holds the target, the validity mask and, for binary and multilabel mode,
    the hard prediction as a float {0, 1} tensor ``x`` ``[B, C, N]``; for multiclass
    mode ``pred_labels`` ``[B, N]`` holds the predicted class of every pixel and
    ``canon.x`` is not to be read.
    """

    canon: Canonical
    pred_labels: Optional[Tensor]

    @property
    def num_classes(self) -> int:
        return self.canon.num_channels

    def all_moments(self) -> Dict[str, Tensor]:
        """Moments ``p, g, pg, n`` of every channel (background included), ``[B, C]``."""
        full = replace(self.canon, include_background=True)
        if self.pred_labels is not None:
            return label_moments(self.pred_labels, full, stat_dtype(self.pred_labels.device))
        return moments(full, ("p", "g", "pg", "n"))

    def masks(self) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """Boolean masks of the kept classes, ``[B, C_kept, *S]`` each, and the validity ``[B, *S]``.

        A target pixel removed by ``ignore_index`` belongs to no class. A soft binary or
        multilabel target is taken as foreground where it is >= 0.5; a soft multiclass
        target at its arg-max.
        """
        canon = self.canon
        b, c = canon.batch_size, canon.num_channels
        classes = torch.arange(c, device=canon.x.device).view(1, c, 1)
        if self.pred_labels is not None:
            pred = self.pred_labels.unsqueeze(1) == classes
        else:
            pred = canon.x > 0.5
        if canon.labels is not None:
            target = canon.labels.unsqueeze(1) == classes
        elif canon.mode == "multiclass":
            target = canon.dense.argmax(1, keepdim=True) == classes
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


def hard_pair(
    input: Tensor,
    target: Tensor,
    *,
    mode: str,
    from_logits: bool,
    threshold: float,
    num_classes: Optional[int],
    include_background: bool,
    ignore_index: Optional[int],
    check_values: bool,
) -> HardPair:
    """Validate (prediction, target) and make the prediction hard; see the module docstring.

    Raises:
        TypeError: as :func:`~seglosses._inputs.canonicalize`; ``num_classes`` not an int.
        ValueError: as :func:`~seglosses._inputs.canonicalize`; ``from_logits=True`` with
            an integer prediction; an integer prediction out of range; a multiclass label
            map without ``num_classes`` (and without a one-hot target to read C from);
            ``num_classes`` that disagrees with the prediction's channels.
    """
    mode = check_mode(mode)
    input = check_tensor("input", input)
    target = check_tensor("target", target)
    threshold = check_fraction("threshold", threshold)
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)):
        raise TypeError(f"`num_classes` must be an int or None; got {type(num_classes).__name__}")
    common = dict(include_background=include_background, ignore_index=ignore_index, check_values=check_values)

    if not _is_hard(input):
        canon = canonicalize(input, target, mode=mode, from_logits=from_logits, **common)
        c = canon.num_channels
        if num_classes is not None and num_classes != c:
            raise ValueError(
                f"`num_classes` must equal the prediction's {c} channels; got {num_classes}"
            )
        if mode == "multiclass":
            return HardPair(canon, canon.x.argmax(1))
        dtype = stat_dtype(canon.x.device)
        hard = canon.probs(torch.float64 if canon.x.dtype == torch.float64 else torch.float32) >= threshold
        return HardPair(replace(canon, x=hard.to(dtype), from_logits=False), None)

    if not isinstance(from_logits, bool):
        raise TypeError(f"`from_logits` must be a bool; got {type(from_logits).__name__}")
    if from_logits:
        raise ValueError(
            f"`from_logits` must be False for a hard (integer or bool) prediction; got True with "
            f"`input` of dtype {input.dtype}"
        )
    dtype = stat_dtype(input.device)
    if mode == "multiclass":
        if input.dim() < 2:
            raise ValueError(
                f"`input` label map must have shape [B, *spatial]; got {tuple(input.shape)}"
            )
        # an integer [B, C, *S] prediction (one-hot or channels) is not a label map
        one_hot_like = target.dim() == input.dim() if target.dtype in _FLOATS else input.dim() == target.dim() + 1
        if one_hot_like:
            raise ValueError(
                f"`input` must be a label map [B, *spatial] (hard multiclass prediction) or float scores "
                f"[B, C, *spatial]; got an integer tensor of shape {tuple(input.shape)}"
            )
        c = num_classes
        if c is None:
            if target.dtype in _FLOATS and target.dim() == input.dim() + 1:
                c = target.shape[1]
            else:
                raise ValueError(
                    "`num_classes` must be given for a multiclass label-map prediction (or pass a one-hot "
                    "target [B, C, *spatial] to read C from); got None"
                )
        if c < 2:
            raise ValueError(f"`num_classes` must be at least 2 in multiclass mode; got {c}")
        # a stand-in prediction of the right shape lets canonicalize validate the target
        # (expanded: no memory of pixel size)
        stand_in = torch.zeros((), dtype=torch.float32, device=input.device).expand(
            (input.shape[0], c) + tuple(input.shape[1:])
        )
        canon = canonicalize(stand_in, target, mode=mode, from_logits=False, **common)
        if check_values:
            check_labels("input", input, c, None)
        return HardPair(canon, input.reshape(input.shape[0], -1).long())

    x = input
    if mode == "binary" and x.dim() == target.dim() and not (x.dim() >= 3 and x.shape[1] == 1):
        x = x.unsqueeze(1)  # [B, *S] -> [B, 1, *S]
    if check_values:
        check_labels("input", x, 2, None)
    canon = canonicalize(x.to(dtype), target, mode=mode, from_logits=False,
                         include_background=include_background, ignore_index=ignore_index,
                         check_values=check_values)
    if num_classes is not None and num_classes != canon.num_channels:
        raise ValueError(
            f"`num_classes` must equal the prediction's {canon.num_channels} channels; got {num_classes}"
        )
    return HardPair(canon, None)


def check_empty(name: str, value: object, extra: Tuple[str, ...] = ()) -> object:
    """A value for undefined cases: a number, ``"nan"``, or one of ``extra``; returns float or str."""
    if isinstance(value, str):
        if value == "nan":
            return float("nan")
        if value in extra:
            return value
        choices = ", ".join(repr(v) for v in ("nan",) + extra)
        raise ValueError(f"`{name}` must be a number or one of {choices}; got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number or a string; got {type(value).__name__}")
    return float(value)
