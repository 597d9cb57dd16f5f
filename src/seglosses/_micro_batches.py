"""Micro-batches and the model for :class:`~seglosses.accumulate.BatchwiseAccumulator`: splitting a
batch (:func:`split_batch`, :class:`MicroBatches`), BatchNorm in eval mode (:func:`freeze_bn`),
the random state replayed between the two passes, and the model's forward pass.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, List, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ._inputs import check_tensor

__all__ = ["MicroBatches", "split_batch", "freeze_bn"]


def freeze_bn(module: nn.Module) -> None:
    """Put a BatchNorm module in eval mode: it uses and keeps its running statistics.

    Meant for ``model.apply(freeze_bn)`` after ``model.train()``: a BatchNorm in train
    mode normalises every micro-batch with that micro-batch's own statistics, so the
    model's outputs depend on how the batch is split; frozen, every image is
    normalised by the same running statistics, as a GroupNorm or InstanceNorm model
    normalises every image by itself. ``model.train()`` sets BatchNorm back to train
    mode: apply ``freeze_bn`` again after it. The affine parameters still train.

    Args:
        module: any module; only BatchNorm modules (including ``SyncBatchNorm``) change.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).train()
        >>> _ = net.apply(freeze_bn)
        >>> [m.training for m in net]
        [True, False]
    """
    if isinstance(module, _BatchNorm):
        module.eval()


def _batchnorms_in_train_mode(model: Any) -> List[str]:
    if not isinstance(model, nn.Module):
        return []
    return [name or type(m).__name__ for name, m in model.named_modules() if isinstance(m, _BatchNorm) and m.training]


class MicroBatches(Sequence):
    """A batch ``(input, target)`` split into micro-batches along dim 0: a re-iterable sequence.

    Each item is a pair of views (slices) of the batch, moved to ``device`` when it is
    read, so the whole batch can stay on the host while the model sees one micro-batch
    at a time. See :func:`split_batch`.

    Example:
        >>> mb = MicroBatches(torch.arange(3.0), torch.arange(3), 2)
        >>> len(mb), mb[1]
        (2, (tensor([2.]), tensor([2])))
    """

    def __init__(self, input: Tensor, target: Tensor, batch_size: int, device: Any = None,
                 non_blocking: bool = False) -> None:
        self.input, self.target = input, target
        self.batch_size, self.device, self.non_blocking = batch_size, device, non_blocking

    def __len__(self) -> int:
        return (self.input.shape[0] + self.batch_size - 1) // self.batch_size

    def __getitem__(self, i: int) -> Tuple[Tensor, Tensor]:  # type: ignore[override]
        if not isinstance(i, int):
            raise TypeError(f"`index` must be an int; got {type(i).__name__}")
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"micro-batch index out of range [0, {n}); got {i}")
        sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
        x, y = self.input[sl], self.target[sl]
        if self.device is not None:
            x = x.to(self.device, non_blocking=self.non_blocking)
            y = y.to(self.device, non_blocking=self.non_blocking)
        return x, y

    def __repr__(self) -> str:
        return f"MicroBatches(images={self.input.shape[0]}, batch_size={self.batch_size}, micro_batches={len(self)})"


def split_batch(input: Tensor, target: Tensor, batch_size: int, *, device: Any = None,
                non_blocking: bool = False) -> MicroBatches:
    """Split a batch into micro-batches of at most ``batch_size`` images (the last may be smaller).

    The form the training loop uses for an ``effective_batch_size`` larger than the
    ``batch_size`` that fits in memory: load ``effective_batch_size`` images, split them
    with ``batch_size``, and give the result to :meth:`BatchwiseAccumulator.step`.

    Args:
        input: the batch's input ``[B, ...]``.
        target: the batch's target ``[B, ...]``.
        batch_size: images per micro-batch, an int >= 1.
        device: where each micro-batch is moved when read (``None``: left where it is).
        non_blocking: passed to ``Tensor.to``.

    Returns:
        :class:`MicroBatches`, a sequence of ``ceil(B / batch_size)`` pairs.

    Raises:
        TypeError: non-tensor input or target, a non-int ``batch_size``.
        ValueError: ``batch_size < 1`` or input and target of different batch sizes.

    Example:
        >>> mb = split_batch(torch.zeros(5, 1, 2, 2), torch.zeros(5, 2, 2), 2)
        >>> [tuple(x.shape) for x, _ in mb]
        [(2, 1, 2, 2), (2, 1, 2, 2), (1, 1, 2, 2)]
    """
    input = check_tensor("input", input)
    target = check_tensor("target", target)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"`batch_size` must be an int; got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {batch_size}")
    if input.dim() == 0 or target.dim() == 0 or input.shape[0] != target.shape[0]:
        raise ValueError(
            f"`target` must have the input's batch size {input.shape[0] if input.dim() else None}; "
            f"got shape {tuple(target.shape)}"
        )
    return MicroBatches(input, target, batch_size, device, non_blocking)


class _RngState:
    """The host and (initialised) CUDA generator states, to replay a forward pass."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def _check_micro_batches(micro_batches: Any) -> None:
    if isinstance(micro_batches, (str, bytes)) or not isinstance(micro_batches, Iterable):
        raise TypeError(f"`micro_batches` must be a re-iterable of (input, target) pairs; got "
                        f"{type(micro_batches).__name__}")
    if iter(micro_batches) is micro_batches:
        raise TypeError(
            "`micro_batches` must be re-iterable (a list of (input, target) pairs, split_batch(...), a DataLoader "
            f"over a fixed dataset): the accumulator reads it twice; got a one-shot {type(micro_batches).__name__}"
        )


def _pair(item: Any, index: int) -> Tuple[Tensor, Tensor]:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(f"`micro_batches` must yield (input, target) pairs; item {index} is {type(item).__name__}")
    return item[0], item[1]


def _forward(model: Callable, x: Tensor) -> Tensor:
    out = model(x)
    if not isinstance(out, Tensor):
        raise TypeError(
            f"`model` must return the logits tensor [B, C, *S]; got {type(out).__name__} (pass a callable that "
            f"returns it, e.g. lambda x: net(x)['out'])"
        )
    return out
