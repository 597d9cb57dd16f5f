"""seglosses inside other training stacks.

* :mod:`seglosses.integrations.nnunet`: an nnU-Net v2 trainer that trains with any
  :func:`seglosses.build_loss` spec, with nnU-Net's deep-supervision weighting; its loss
  wiring (:func:`~seglosses.integrations.nnunet.build_nnunet_loss`) needs no nnU-Net.
* :mod:`seglosses.integrations.lightning`: a ``LightningModule`` that trains with a seglosses
  loss and logs :class:`~seglosses.metrics.TorchmetricsSegmentationMetrics` (needs the
  ``lightning`` extra).
* MONAI needs no adapter: a seglosses loss or metric is called on MONAI's tensors directly
  (``examples/integrations/monai_loop.py``); :func:`squeeze_channel_label` turns MONAI's
  ``[B, 1, *spatial]`` label maps into the ``[B, *spatial]`` label maps seglosses takes.

Each submodule imports its framework, so importing :mod:`seglosses.integrations` needs none.
"""
from __future__ import annotations

from torch import Tensor

__all__ = ["squeeze_channel_label"]


def squeeze_channel_label(target: Tensor) -> Tensor:
    """A ``[B, 1, *spatial]`` label map (MONAI's and nnU-Net's layout) as ``[B, *spatial]`` integers.

    Float label maps (as MONAI's transforms and nnU-Net's loaders produce them) are
    rounded to integers; any other shape is returned unchanged, so one-hot targets
    ``[B, C, *spatial]`` with C > 1 pass through.

    Example:
        >>> import torch
        >>> squeeze_channel_label(torch.tensor([[[[0.0, 2.0]]]])).tolist()
        [[[0, 2]]]
    """
    if target.dim() >= 3 and target.shape[1] == 1:
        target = target[:, 0]
        if target.is_floating_point():
            target = target.round().long()
    return target
