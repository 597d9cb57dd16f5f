r"""Deep supervision: one loss over the outputs of several scales against one target.

.. math::
    L = \sum_k w_k\, \mathcal{L}\big(\text{output}_k,\ \text{resize}_k(\text{target})\big)

The target is brought to each output's spatial size: a label target (integer) by
nearest-neighbour sampling (``"nearest-exact"``, the default, or ``"nearest"``) or by
max pooling (``"max"``: a pixel of the coarse grid is foreground when any pixel of its
cell is, so thin structures survive); a float (one-hot or soft) target by area
averaging, which keeps it a distribution. Sources: Lee et al., "Deeply-supervised
nets" (2015); Isensee et al., nnU-Net (2021), for the weights.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._options import lookup_option
from .build import build_loss

__all__ = ["DeepSupervisionLoss", "deep_supervision_weights"]

WEIGHT_SCHEMES = ("nnunet", "halving", "exp", "same", "two")
LABEL_RESIZE = ("nearest-exact", "nearest", "max")


def deep_supervision_weights(num_outputs: int, scheme: str = "nnunet") -> List[float]:
    """The weights of ``num_outputs`` outputs, highest resolution first.

    * ``"nnunet"``: 1, 1/2, 1/4, ... with the lowest resolution set to 0 (when there
      are several outputs), normalised to sum 1 (nnU-Net v2);
    * ``"halving"``: 1, 1/2, 1/4, ... normalised to sum 1;
    * ``"exp"``, ``"same"``, ``"two"``: MONAI's ``weight_mode`` (``max(0.5^k, 1/16)``;
      all 1; 1 then 0.5), not normalised.

    Example:
        >>> [round(w, 4) for w in deep_supervision_weights(4)]
        [0.5714, 0.2857, 0.1429, 0.0]
        >>> deep_supervision_weights(3, "exp")
        [1.0, 0.5, 0.25]
    """
    scheme = lookup_option("weights", scheme, WEIGHT_SCHEMES)
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
        raise ValueError(f"`num_outputs` must be an int >= 1; got {num_outputs!r}")
    if scheme == "same":
        return [1.0] * num_outputs
    if scheme == "two":
        return [1.0] + [0.5] * (num_outputs - 1)
    if scheme == "exp":
        return [max(0.5 ** k, 0.0625) for k in range(num_outputs)]
    w = [0.5 ** k for k in range(num_outputs)]
    if scheme == "nnunet" and num_outputs > 1:
        w[-1] = 0.0
    total = sum(w)
    return [v / total for v in w]


def _ignore_index(loss: nn.Module) -> Optional[int]:
    config = getattr(loss, "config", None)
    if isinstance(config, dict):
        return config.get("ignore_index")
    terms = getattr(loss, "losses", None)
    if terms is not None:
        found = {_ignore_index(t) for t in terms} - {None}
        return next(iter(found)) if len(found) == 1 else None
    return None


class DeepSupervisionLoss(nn.Module):
    r"""One loss over deep-supervision outputs at several scales: :math:`\sum_k w_k L(o_k, t_k)`.

    ``forward(outputs, target)`` takes a list or tuple of predictions
    ``[B, C, *S_k]`` (highest resolution first) and one target at the highest
    resolution, resized to each output (or, as nnU-Net's loaders give them, a list with
    one target per output, used as they are); a single tensor is passed to the loss
    unchanged. Terms of weight 0 are not computed.

    Convention:
        * Agrees with MONAI ``DeepSupervisionLoss(loss, weights=...)`` (or its
          ``weight_mode``: ``weights="exp" | "same" | "two"``) with the default
          ``label_resize="nearest-exact"`` (MONAI's resizing of every target); MONAI
          resizes float targets by nearest neighbour too, here by area.
        * ``"max"`` on a multiclass label map takes the largest label of each cell
          (meant for binary targets and for label orders where a larger label is a
          structure to keep); ignored pixels (the loss's ``ignore_index``) take part
          only where a whole cell is ignored.
        * The wrapper is not a registered loss: the accumulator refuses it; wrap the
          deep-supervision outputs in a training step instead.

    Args:
        loss: a loss module, or a spec for :func:`seglosses.build_loss` (``"dice + ce"``).
        weights: ``"nnunet"`` (default), ``"halving"``, ``"exp"``, ``"same"``,
            ``"two"`` (see :func:`deep_supervision_weights`) or one number per output.
        label_resize: ``"nearest-exact"`` (default), ``"nearest"`` or ``"max"``, for
            integer targets.

    Example:
        >>> import seglosses as sl
        >>> loss = sl.DeepSupervisionLoss("dice(mode='multiclass')", weights="halving")
        >>> outs = [torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)]
        >>> t = torch.randint(0, 3, (2, 8, 8))
        >>> bool(torch.isfinite(loss(outs, t)))
        True
    """

    def __init__(self, loss: Any, weights: Union[str, Sequence[float]] = "nnunet",
                 label_resize: str = "nearest-exact") -> None:
        super().__init__()
        if not isinstance(loss, nn.Module):
            loss = build_loss(loss)
        self.loss = loss
        if isinstance(weights, str):
            self.scheme: Optional[str] = lookup_option("weights", weights, WEIGHT_SCHEMES)
            self.fixed: Optional[List[float]] = None
        else:
            try:
                fixed = [float(w) for w in weights]
            except (TypeError, ValueError):
                raise TypeError(f"`weights` must be one of {WEIGHT_SCHEMES} or a sequence of numbers; "
                                f"got {weights!r}") from None
            if not fixed or any(not (w >= 0 and w < float("inf")) for w in fixed):
                raise ValueError(f"`weights` must be finite numbers >= 0, at least one; got {weights!r}")
            self.scheme, self.fixed = None, fixed
        self.label_resize = lookup_option("label_resize", label_resize, LABEL_RESIZE)

    def weights(self, num_outputs: int) -> List[float]:
        """The weights of ``num_outputs`` outputs."""
        if self.fixed is None:
            return deep_supervision_weights(num_outputs, self.scheme or "nnunet")
        if len(self.fixed) != num_outputs:
            raise ValueError(f"`weights` must have one number per output ({num_outputs}); got {len(self.fixed)}")
        return list(self.fixed)

    def resize_target(self, target: Tensor, size: Sequence[int]) -> Tensor:
        """``target`` at the spatial size ``size`` (label map ``[B, *S]`` / ``[B, 1, *S]``, or float ``[B, C, *S]``)."""
        nd = len(size)
        squeeze = target.dim() == nd + 1
        t = target.unsqueeze(1) if squeeze else target
        if tuple(t.shape[2:]) == tuple(size):
            return target
        if t.is_floating_point():
            out = F.interpolate(t, size=tuple(size), mode="area")  # = adaptive average pooling
        elif self.label_resize == "max":
            ignore = _ignore_index(self.loss)
            src = t.to(torch.float64)
            if ignore is not None:
                src = torch.where(t == ignore, torch.full_like(src, -1.0), src)
            pool = F.adaptive_max_pool2d if nd == 2 else F.adaptive_max_pool3d
            out = pool(src, tuple(size))
            if ignore is not None:
                out = torch.where(out < 0, torch.full_like(out, float(ignore)), out)
            out = out.to(target.dtype)
        else:
            out = F.interpolate(t.to(torch.float64), size=tuple(size), mode=self.label_resize).to(target.dtype)
        return out.squeeze(1) if squeeze else out

    def forward(self, outputs: Union[Tensor, Sequence[Tensor]],  # noqa: D102
                target: Union[Tensor, Sequence[Tensor]]) -> Tensor:
        if isinstance(outputs, Tensor):
            return self.loss(outputs, target)
        if not isinstance(outputs, (list, tuple)) or not outputs:
            raise TypeError(f"`outputs` must be a tensor or a non-empty list/tuple of tensors; got "
                            f"{type(outputs).__name__}{' (empty)' if isinstance(outputs, (list, tuple)) else ''}")
        if isinstance(target, Tensor):
            targets = [self.resize_target(target, out.shape[2:]) for out in outputs]
        elif isinstance(target, (list, tuple)) and len(target) == len(outputs):
            targets = list(target)
        else:
            got = f"{len(target)} targets" if isinstance(target, (list, tuple)) else type(target).__name__
            raise ValueError(f"`target` must be a tensor or one target per output ({len(outputs)}); got {got}")
        total: Optional[Tensor] = None
        for w, out, t in zip(self.weights(len(outputs)), outputs, targets):
            if w == 0:
                continue
            v = w * self.loss(out, t)
            total = v if total is None else total + v
        if total is None:  # every weight 0
            total = outputs[0].sum() * 0.0
        return total

    def extra_repr(self) -> str:
        return f"weights={self.scheme if self.fixed is None else self.fixed!r}, label_resize={self.label_resize!r}"
