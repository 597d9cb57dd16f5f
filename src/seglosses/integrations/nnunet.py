"""seglosses in nnU-Net v2: a trainer that trains with any :func:`seglosses.build_loss` spec.

nnU-Net picks its trainer by class name (``nnUNetv2_train ... -tr nnUNetTrainerSeglosses``)
among the names of the modules in its trainer folders. Make the class visible with a
one-line module, ``seglosses_trainer.py``::

    from seglosses.integrations.nnunet import nnUNetTrainerSeglosses  # noqa: F401

in a folder named by nnU-Net's ``nnUNet_extTrainer`` environment variable (nnU-Net 2.8), or
in ``nnunetv2/training/nnUNetTrainer/`` of older versions.

and choose the loss with the environment variable ``SEGLOSSES_NNUNET_LOSS`` (a
:func:`~seglosses.build_loss` spec; default ``"dice + ce"``), or subclass it with another
:attr:`~nnUNetTrainerSeglosses.loss_spec`. Everything else (data, augmentation, network,
schedule, deep supervision) stays nnU-Net's.

The loss gets nnU-Net's formats: a ``[B, 1, *spatial]`` label map (``mode="multiclass"``,
with nnU-Net's ignore label as ``ignore_index``), or ``[B, R, *spatial]`` region targets
(``mode="multilabel"``, sigmoid outputs). With deep supervision, the network returns one
output per scale and nnU-Net one target per scale; the losses are weighted as nnU-Net
weights them (:func:`deep_supervision_weights`, with its DDP variant). Outside nnU-Net,
:class:`seglosses.DeepSupervisionLoss` is the general wrapper (one full-resolution target
resized to every output, several weighting schemes).

The loss wiring (:func:`build_nnunet_loss`, :class:`DeepSupervisedLoss`) needs no nnU-Net;
the trainer class exists when ``nnunetv2`` is importable.
"""
from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Union

import torch  # noqa: F401 - the doctests use the module namespace
import torch.nn.functional as F
from torch import Tensor, nn

from .. import build_loss
from . import squeeze_channel_label

__all__ = ["deep_supervision_weights", "DeepSupervisedLoss", "NnUNetTargetLoss", "build_nnunet_loss",
           "DEFAULT_LOSS", "ENV_LOSS"]

#: The loss of :class:`nnUNetTrainerSeglosses` when neither the environment nor a subclass sets one.
DEFAULT_LOSS = "dice + ce"
#: The environment variable that sets the trainer's loss spec.
ENV_LOSS = "SEGLOSSES_NNUNET_LOSS"


def deep_supervision_weights(num_outputs: int, *, ddp: bool = False) -> List[float]:
    """nnU-Net v2's weights of the deep-supervision outputs, highest resolution first.

    Output i gets :math:`2^{-i}`, the lowest-resolution output gets 0 (under DDP
    :math:`10^{-6}`, so that every parameter receives a gradient), and the weights are
    normalised to sum to 1.

    Example:
        >>> [round(w, 4) for w in deep_supervision_weights(4)]
        [0.5714, 0.2857, 0.1429, 0.0]
        >>> deep_supervision_weights(1)
        [1.0]
    """
    if not isinstance(num_outputs, int) or isinstance(num_outputs, bool) or num_outputs < 1:
        raise ValueError(f"`num_outputs` must be an int >= 1; got {num_outputs!r}")
    weights = [2.0 ** -i for i in range(num_outputs)]
    if num_outputs > 1:
        weights[-1] = 1e-6 if ddp else 0.0
    total = sum(weights)
    return [w / total for w in weights]


class NnUNetTargetLoss(nn.Module):
    """A seglosses loss called with nnU-Net's target layout.

    A ``[B, 1, *spatial]`` label map (float, as nnU-Net's loaders give it) becomes a
    ``[B, *spatial]`` integer label map; region targets ``[B, R, *spatial]`` pass as they are.

    Args:
        loss: a seglosses loss module (or any ``loss(input, target)`` callable).
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return self.loss(output, squeeze_channel_label(target))


class DeepSupervisedLoss(nn.Module):
    """The weighted sum of one loss over the outputs of several scales.

    .. math::
        L = \\sum_i w_i\\, \\ell(x_i, y_i)

    with outputs :math:`x_i` highest resolution first and their targets :math:`y_i` (a list
    from nnU-Net, or one full-resolution label map, resized to each output by nearest
    neighbour). Terms of weight 0 are not computed.

    Args:
        loss: the loss of one scale.
        weights: one weight per output; default :func:`deep_supervision_weights`.

    Example:
        >>> import seglosses as sl
        >>> ds = DeepSupervisedLoss(NnUNetTargetLoss(sl.DiceLoss(mode="multiclass")), [0.75, 0.25])
        >>> outputs = [torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 4, 4)]
        >>> targets = [torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)]
        >>> float(ds(outputs, targets)) == float(0.75 * ds.loss(outputs[0], targets[0]) + 0.25 * ds.loss(outputs[1], targets[1]))
        True
    """

    def __init__(self, loss: nn.Module, weights: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        self.loss = loss
        self.weights = None if weights is None else [float(w) for w in weights]

    def forward(self, outputs: Union[Tensor, Sequence[Tensor]], targets: Union[Tensor, Sequence[Tensor]]) -> Tensor:
        if isinstance(outputs, Tensor):
            outputs = [outputs]
        outputs = list(outputs)
        if isinstance(targets, Tensor):
            targets = [targets if t.shape[2:] == targets.shape[2:] else _resize_label(targets, t.shape[2:])
                       for t in outputs]
        targets = list(targets)
        if len(targets) != len(outputs):
            raise ValueError(f"`targets` must have one entry per output ({len(outputs)}); got {len(targets)}")
        weights = self.weights if self.weights is not None else deep_supervision_weights(len(outputs))
        if len(weights) != len(outputs):
            raise ValueError(f"`weights` must have one entry per output ({len(outputs)}); got {len(weights)}")
        total: Any = 0.0
        for w, x, y in zip(weights, outputs, targets):
            if w != 0.0:
                total = total + w * self.loss(x, y)
        return total


def _resize_label(target: Tensor, size: Sequence[int]) -> Tensor:
    """A label target resized to ``size`` by nearest neighbour (kept in its dtype)."""
    squeeze = target.dim() == len(size) + 1  # [B, *S] label map
    t = target[:, None] if squeeze else target
    out = F.interpolate(t.float(), size=tuple(size), mode="nearest-exact").to(target.dtype)
    return out[:, 0] if squeeze else out


def build_nnunet_loss(spec: Any = None, *, has_regions: bool = False, ignore_label: Optional[int] = None,
                      num_outputs: Optional[int] = None, ddp: bool = False) -> nn.Module:
    """The loss module of :class:`nnUNetTrainerSeglosses`, from nnU-Net's settings.

    Args:
        spec: a :func:`seglosses.build_loss` spec; default: ``$SEGLOSSES_NNUNET_LOSS``, else
            :data:`DEFAULT_LOSS`.
        has_regions: nnU-Net's ``label_manager.has_regions`` (region training: sigmoid
            outputs, ``mode="multilabel"``); otherwise softmax, ``mode="multiclass"``.
        ignore_label: nnU-Net's ``label_manager.ignore_label`` (becomes ``ignore_index``).
        num_outputs: the number of deep-supervision outputs; ``None`` without deep supervision.
        ddp: nnU-Net's ``is_ddp`` (the lowest output then keeps a tiny weight).

    Returns:
        A module called as ``loss(output, target)`` with nnU-Net's output and target (lists
        of them with deep supervision).

    Raises:
        ValueError: regions together with an ignore label (nnU-Net stores the ignore mask as
            an extra target channel there; not supported), or a spec ``build_loss`` rejects.

    Example:
        >>> loss = build_nnunet_loss("dice + ce", num_outputs=3)
        >>> outputs = [torch.randn(2, 3, 16, 16), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)]
        >>> targets = [torch.randint(0, 3, (2, 1, s, s)).float() for s in (16, 8, 4)]
        >>> loss(outputs, targets).shape
        torch.Size([])
    """
    if spec is None:
        spec = os.environ.get(ENV_LOSS) or DEFAULT_LOSS
    if has_regions and ignore_label is not None:
        raise ValueError("`ignore_label` must be None with region training; got "
                         f"{ignore_label!r} (nnU-Net's region targets with an ignore label are not supported)")
    mode = "multilabel" if has_regions else "multiclass"
    base = build_loss(spec, mode=mode, ignore_index=ignore_label)
    loss: nn.Module = NnUNetTargetLoss(base)
    if num_outputs is not None:
        loss = DeepSupervisedLoss(loss, deep_supervision_weights(num_outputs, ddp=ddp))
    return loss


def _trainer_loss(trainer: Any, spec: Any) -> nn.Module:
    """``_build_loss`` of the trainer, reading nnU-Net's attributes of ``trainer``."""
    num_outputs = len(trainer._get_deep_supervision_scales()) if trainer.enable_deep_supervision else None
    return build_nnunet_loss(spec, has_regions=bool(trainer.label_manager.has_regions),
                             ignore_label=trainer.label_manager.ignore_label, num_outputs=num_outputs,
                             ddp=bool(getattr(trainer, "is_ddp", False)))


try:  # nnU-Net is optional: the trainer exists only where it is installed
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer as _NnUNetTrainer
except ImportError:  # pragma: no cover - depends on the environment
    _NnUNetTrainer = None

if _NnUNetTrainer is not None:
    class nnUNetTrainerSeglosses(_NnUNetTrainer):  # noqa: N801 - nnU-Net's naming
        """nnU-Net v2's trainer with a seglosses loss (any :func:`seglosses.build_loss` spec).

        The spec is :attr:`loss_spec` of the class when a subclass sets one, else
        ``$SEGLOSSES_NNUNET_LOSS``, else ``"dice + ce"``.
        """

        #: the loss spec; ``None``: ``$SEGLOSSES_NNUNET_LOSS`` or ``"dice + ce"``
        loss_spec: Any = None

        def _build_loss(self):  # noqa: D102 - nnU-Net's hook
            return _trainer_loss(self, self.loss_spec)

    __all__.append("nnUNetTrainerSeglosses")
else:
    def __getattr__(name: str):
        if name == "nnUNetTrainerSeglosses":
            raise ImportError(
                "nnUNetTrainerSeglosses needs nnU-Net v2 (`import nnunetv2` failed); install nnunetv2 "
                "in an environment whose torch it may change, then import this module again")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
