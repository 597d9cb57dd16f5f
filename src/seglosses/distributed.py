r"""Batch statistics summed across processes, with autograd (``sync`` of the region losses).

A batchwise region loss (``domain="batch"``, seed 000 section 2.1) is a formula over
sums that run over the whole batch, e.g. the Tversky index

.. math::
    \mathcal{T} = \frac{TP + δ}{TP + α\,FP + β\,FN + δ},\qquad
    TP = \sum_{r} \sum_{i \in \text{rank } r} p_i g_i

Under ``torch.distributed`` each process (rank ``r``) sees only its share of the
global batch, so the loss each rank computes from its own sums is not the loss of
the global batch, and averaging the ranks' gradients (what
:class:`~torch.nn.parallel.DistributedDataParallel` does) does not give its gradient.
With ``sync="distributed"`` (or a process group) every region loss sums its batch
statistics (TP, FP, FN, and whatever else it sums over the batch, e.g. the class
volumes of the generalised Dice loss) over the ranks *before* the formula, through an
all-reduce that is differentiable. Then:

* every rank's loss value is the loss of the global batch;
* the gradient: the all-reduce's backward sums the ranks' gradients with respect to
  the global statistics, so rank ``r`` back-propagates
  :math:`W\,\partial L/\partial S \cdot \partial s_r/\partial θ` (``W`` = world size, the
  same ``L`` on every rank). DDP divides the sum over ranks by ``W``, which gives
  exactly :math:`\partial L/\partial θ` of the concatenated global batch. Nothing has
  to be rescaled by hand. (Summing gradients over ranks *without* dividing by ``W``,
  i.e. not using DDP's averaging, gives ``W`` times the gradient.)

The all-reduce is a collective in the forward *and* in the backward pass: every rank
must compute the loss and call ``backward`` (DDP requires that anyway).

This module holds the hook protocol (:class:`StatisticsSync`) that the region losses
call, its all-reduce implementation (:class:`AllReduceSync`), and the differentiable
all-reduce (:func:`all_reduce_sum`). :class:`seglosses.BatchwiseAccumulator` plugs into
the same hook to split a batch into micro-batches exactly.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.distributed as dist
from torch import Tensor

from ._options import did_you_mean

__all__ = [
    "StatisticsSync",
    "AllReduceSync",
    "all_reduce_sum",
    "is_distributed",
    "world_size",
    "resolve_sync",
]

SYNC_OPTIONS = ("distributed",)


def is_distributed() -> bool:
    """Whether ``torch.distributed`` is available and a default process group is initialised.

    Example:
        >>> is_distributed()  # a single process
        False
    """
    return dist.is_available() and dist.is_initialized()


def world_size(group: Any = None) -> int:
    """Number of processes in ``group`` (the default group for ``None``); 1 without a process group.

    Example:
        >>> world_size()
        1
    """
    if group is None and not is_distributed():
        return 1
    return dist.get_world_size(group=group)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks; the backward sums the upstream gradients over the ranks."""

    @staticmethod
    def forward(ctx, tensor, group):  # type: ignore[override]
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return _AllReduceSum.apply(grad, ctx.group), None


def all_reduce_sum(tensor: Tensor, group: Any = None) -> Tensor:
    r"""Differentiable sum of ``tensor`` over the processes of ``group``.

    .. math::
        y = \sum_{r=1}^{W} x_r,\qquad
        \frac{\partial \mathcal{L}}{\partial x_r} = \sum_{r'=1}^{W} \frac{\partial \mathcal{L}_{r'}}{\partial y}

    The backward is again a sum over the ranks: the gradient of
    :math:`\sum_{r'} \mathcal{L}_{r'}` (each rank's loss a separate term), as for
    ``torch.distributed.nn.functional.all_reduce`` (which torch 2.13 deprecates); the
    input is not modified.

    Convention:
        With ``group=None`` and no initialised process group (a single process) the
        sum runs over one rank: the result equals ``tensor`` (a copy).

    Args:
        tensor: any tensor, same shape and dtype on every rank.
        group: a ``torch.distributed`` process group, or ``None`` for the default one.

    Returns:
        The sum over the ranks, a new tensor on every rank.

    Example:
        >>> all_reduce_sum(torch.tensor([1.0, 2.0]))  # a single process
        tensor([1., 2.])
    """
    if group is None and not is_distributed():
        return tensor.clone()
    return _AllReduceSum.apply(tensor, group)


class StatisticsSync:
    r"""The hook a loss applies to its summed statistics before the formula.

    A region loss computes its moments (sums such as :math:`\sum p g`, see
    :mod:`seglosses._stats`) per item, sums them over the domain, then calls
    ``sync(moments, domain)`` and applies its formula to what the hook returns. The
    identity hook gives the plain loss; :class:`AllReduceSync` sums over processes;
    :class:`seglosses.BatchwiseAccumulator` uses the hook to record the statistics of a
    micro-batch and to substitute the statistics of the whole batch.

    Subclasses override :meth:`__call__`.

    Example:
        >>> s = StatisticsSync()
        >>> s({"pg": torch.tensor([[2.0]])}, "batch")
        {'pg': tensor([[2.]])}
    """

    def check(self, domain: str) -> None:
        """Raise ``ValueError`` if the hook cannot serve ``domain``; called before any statistics."""

    def __call__(self, moments: Dict[str, Tensor], domain: str) -> Dict[str, Tensor]:
        """Return the moments the formula uses.

        Args:
            moments: ``name -> [I, C]`` sums (``I = 1`` in the batch domain).
            domain: ``"image"`` or ``"batch"``.
        """
        return moments


class AllReduceSync(StatisticsSync):
    r"""Sum the batch-domain moments over the processes of a group, differentiably.

    .. math::
        S_k = \sum_{r=1}^{W} s_{k,r}\quad\text{for every moment } k

    packed into one all-reduce (:func:`all_reduce_sum`). Only the batch domain is
    allowed: in the image domain every image is its own item and needs nothing from
    the other ranks.

    Convention:
        ``group=None`` means the default process group; when no process group is
        initialised (a single process) the hook is the identity, so one training script
        runs with and without ``torchrun``.

    Args:
        group: a ``torch.distributed`` process group, or ``None`` for the default one.

    Raises:
        ValueError: when applied in the image domain.

    Example:
        >>> sync = AllReduceSync()
        >>> sync({"pg": torch.tensor([[1.5, 2.0]])}, "batch")  # a single process
        {'pg': tensor([[1.5000, 2.0000]])}
    """

    def __init__(self, group: Any = None) -> None:
        self.group = group

    def check(self, domain: str) -> None:
        if domain != "batch":
            raise ValueError(
                "`sync` must be None for domain='image' (each image is its own item and DDP's averaging "
                "of equal-sized per-rank batches is already exact; use domain='batch' to sum the "
                f"statistics over processes); got {self!r} with domain={domain!r}"
            )

    def __call__(self, moments: Dict[str, Tensor], domain: str) -> Dict[str, Tensor]:
        self.check(domain)
        if self.group is None and not is_distributed():
            return moments
        names = list(moments)
        packed = all_reduce_sum(torch.stack([moments[k] for k in names]), self.group)
        return dict(zip(names, packed.unbind(0)))

    def __repr__(self) -> str:
        return "AllReduceSync()" if self.group is None else f"AllReduceSync(group={self.group!r})"


def _is_process_group(value: object) -> bool:
    return dist.is_available() and isinstance(value, dist.ProcessGroup)


def resolve_sync(sync: object, domain: Optional[str] = None) -> Optional[StatisticsSync]:
    """Turn the ``sync`` argument of a loss into a hook, checked against ``domain``.

    Args:
        sync: ``None`` (no synchronisation), ``"distributed"`` (the default process
            group, the identity without one), a ``torch.distributed.ProcessGroup``, or a
            :class:`StatisticsSync`.
        domain: the loss' domain, checked by the hook (:meth:`StatisticsSync.check`).

    Returns:
        ``None`` or a :class:`StatisticsSync`.

    Raises:
        ValueError: an unknown string, or a hook that cannot serve ``domain``
            (all-reduce in the image domain).
        TypeError: any other type.

    Example:
        >>> resolve_sync("distributed")
        AllReduceSync()
        >>> resolve_sync(None) is None
        True
    """
    if sync is None:
        return None
    if isinstance(sync, StatisticsSync):
        hook = sync
    elif isinstance(sync, str):
        if sync not in SYNC_OPTIONS:
            raise ValueError(
                f"`sync` must be None, 'distributed', a torch.distributed ProcessGroup or a StatisticsSync; "
                f"got {sync!r}{did_you_mean(sync, SYNC_OPTIONS)}"
            )
        hook = AllReduceSync()
    elif _is_process_group(sync):
        hook = AllReduceSync(sync)
    else:
        raise TypeError(
            "`sync` must be None, 'distributed', a torch.distributed ProcessGroup or a StatisticsSync; "
            f"got {type(sync).__name__}"
        )
    if domain is not None:
        hook.check(domain)
    return hook
