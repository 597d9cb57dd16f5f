r"""Exact batchwise losses over micro-batches: two passes over the statistics.

A batchwise region loss (``domain="batch"``, seed 000 section 2.1) is a formula over
sums that run over the whole batch, :math:`L = f(S)`, :math:`S = \sum_m s_m`, where
:math:`s_m` are the sums (moments, :mod:`seglosses._stats`) of micro-batch ``m``. It is
not a mean over images, so ordinary gradient accumulation (one loss per micro-batch,
gradients added) optimises :math:`\sum_m f(s_m)`, another loss. The gradient of the
batch loss is

.. math::
    \frac{\partial L}{\partial θ} = \sum_m \frac{\partial f}{\partial S}\Big|_{S}
    \cdot \frac{\partial s_m}{\partial θ}

a sum over micro-batches once the partial derivatives :math:`\partial f/\partial S`
are fixed at the statistics of the whole batch. :class:`BatchwiseAccumulator` computes
it in two passes:

1. every micro-batch is run through the model without a graph and its statistics are
   summed into :math:`S` (:meth:`BatchwiseAccumulator.collect`);
2. every micro-batch is run again with a graph, and its *share*
   :math:`f(S + s_m - \bar{s}_m)` (:math:`\bar{s}_m` = :math:`s_m` detached: the value
   is :math:`f(S)`, the gradient :math:`\partial f/\partial S \cdot \partial s_m/\partial θ`)
   is back-propagated (:meth:`BatchwiseAccumulator.accumulate`).

The accumulated ``.grad`` equals the gradient of the loss of the whole batch at once,
at the memory cost of one micro-batch and the time of two forward passes (pass 1
runs without a graph, so it is cheaper than pass 2).

What the accumulator splits exactly, term by term of a
:class:`~seglosses.WeightedSum`:

* a loss declared ``batching="statistics"`` (its :class:`~seglosses._contract.LossInfo`;
  every region loss), in the batch domain: through the statistics, as above;
* the same losses in the image domain: every image is its own item and the ``"mean"``
  reduction is a mean over items, so micro-batch ``m`` contributes its sum over items
  divided by the item count of the whole batch;
* means over pixels (declared ``batching="pixel_mean"``: the regularisers, cross
  entropy, focal, distance-penalised CE, margin calibration), when their declared
  ``batch_dependence`` finds no per-batch rule in the configuration: the micro-batch's
  sum divided by the number of valid pixels of the whole batch (``ignore_index``
  excluded).

Anything else (Lovász or TopK over the batch, a loss module of another library) is
refused with an error rather than approximated.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ._inputs import check_tensor
from ._options import lookup_option
from .distributed import AllReduceSync, resolve_sync, world_size
from ._accumulate_terms import (
    BatchStatistics,
    _count_dtype,
    _describe,
    _max_deviation,
    _nonzero,
    _pixel_count,
    _plan,
    _Record,
    _signature,
    _Substitute,
    _Term,
)
from ._micro_batches import (
    MicroBatches,
    _batchnorms_in_train_mode,
    _check_micro_batches,
    _forward,
    _pair,
    _RngState,
    freeze_bn,
    split_batch,
)

__all__ = [
    "BatchwiseAccumulator",
    "BatchStatistics",
    "MicroBatches",
    "split_batch",
    "freeze_bn",
]


BATCHNORM_OPTIONS = ("raise", "allow")


class BatchwiseAccumulator:
    r"""Exact gradient of a batchwise loss of a batch too large for memory, by micro-batches.

    .. math::
        \frac{\partial L}{\partial θ} = \sum_{m} \frac{\partial f}{\partial S}\Big|_{S = \sum_{m'} s_{m'}}
        \cdot \frac{\partial s_m}{\partial θ}

    with :math:`L = f(S)` the loss over the batch statistics :math:`S` and :math:`s_m`
    those of micro-batch ``m`` (see the module docstring for the two passes, and for
    image-domain and pixel-mean terms). Seed 000 (section 2.1, batchwise Tversky) found
    the batchwise loss better than the imagewise one, with the batch size capped by GPU
    memory; this lifts the cap without changing the loss.

    ``value = acc.backward(model, micro_batches)`` adds the gradient of the loss of the
    concatenated micro-batches to the parameters' ``.grad`` and returns the loss value
    (detached); ``acc.step(model, optimizer, micro_batches)`` also zeroes the gradients
    first and steps the optimiser. The lower-level pieces (:meth:`statistics`,
    :meth:`reduce`, :meth:`share`, :meth:`collect`, :meth:`accumulate`) let a custom loop
    run the same two passes.

    Convention:
        *Same data on both passes*: ``micro_batches`` is read twice and must give the
        same pairs (no random augmentation inside it: augment the batch, then split it
        with :func:`split_batch`). Random layers (dropout) are replayed: the generator
        state of each forward pass of pass 1 is restored for pass 2
        (``preserve_rng_state``). With ``verify=True`` pass 2 checks that every
        micro-batch gives the statistics of pass 1 (relative deviation
        ``<= sqrt(eps)`` of the statistics' dtype) and raises otherwise, after the
        gradients are accumulated and before :meth:`step` steps.

        *BatchNorm*: a BatchNorm in train mode normalises each micro-batch by its own
        statistics, so the model's outputs, and their gradients, depend on the split:
        the accumulated gradient would be that of the batch loss of a differently
        normalised model, not of the whole batch at once. ``batchnorm="raise"`` (the
        default) refuses such a model; remedies: GroupNorm/InstanceNorm, or frozen
        statistics with ``model.apply(freeze_bn)``. ``batchnorm="allow"`` runs anyway
        (exact for the per-micro-batch normalisation, as in ordinary gradient
        accumulation) and restores the running statistics after pass 1, so that they
        are updated once per micro-batch.

        *Processes*: with ``sync`` (or a loss term with ``sync="distributed"``) the
        statistics are summed over the processes after pass 1 (one all-reduce per
        step), so the loss is that of all micro-batches of all ranks, and every share
        is multiplied by the world size ``W`` because DDP averages the gradients over
        the ranks; under DDP the gradient is synchronised only at the last micro-batch
        (``no_sync``). Image-domain and pixel-mean terms then also divide by the global
        counts: exact for unequal per-rank batch sizes or ``ignore_index`` counts.

        A single micro-batch (a sequence of length 1) is run once, with its graph: no
        second pass, and BatchNorm in train mode is allowed (it sees the whole batch).

    Args:
        loss: a seglosses loss module or a :class:`~seglosses.WeightedSum` of them. The
            weights of scheduled sums are read at every call.
        sync: ``None`` (take it from the loss terms' ``sync``), ``"distributed"`` or a
            ``torch.distributed`` process group: sum the statistics over processes.
        batchnorm: ``"raise"`` or ``"allow"`` a model with BatchNorm in train mode.
        verify: check that pass 2 reproduces pass 1's statistics (one device sync per
            step).
        preserve_rng_state: replay the random generators' states in pass 2.

    Raises:
        TypeError: a loss that is not a seglosses module.
        ValueError: a term the accumulator cannot split exactly (e.g. Lovász or TopK over
            the batch), a term with ``reduction="none"``, an unknown option.

    Example:
        >>> import seglosses as sl
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = nn.Conv2d(1, 1, 3, padding=1).double()
        >>> x, y = torch.randn(6, 1, 5, 7).double(), torch.randint(0, 2, (6, 5, 7))
        >>> loss = sl.DiceLoss(domain="batch")
        >>> loss(net(x), y).backward()  # the whole batch at once
        >>> full = net.weight.grad.clone()
        >>> net.zero_grad()
        >>> acc = sl.BatchwiseAccumulator(loss)
        >>> value = acc.backward(net, sl.split_batch(x, y, 2))  # three micro-batches of 2
        >>> torch.allclose(net.weight.grad, full, rtol=0, atol=1e-12)
        True
        >>> torch.allclose(value, loss(net(x), y).detach(), rtol=0, atol=1e-12)
        True
    """

    def __init__(self, loss: nn.Module, *, sync: Any = None, batchnorm: str = "raise", verify: bool = True,
                 preserve_rng_state: bool = True) -> None:
        _plan(loss)  # refuse early
        self.loss = loss
        hook = resolve_sync(sync)
        if hook is not None and not isinstance(hook, AllReduceSync):
            raise ValueError(f"`sync` must be None, 'distributed' or a process group; got {hook!r}")
        self.sync = hook
        self.batchnorm = lookup_option("batchnorm", batchnorm, BATCHNORM_OPTIONS)
        if not isinstance(verify, bool):
            raise TypeError(f"`verify` must be a bool; got {type(verify).__name__}")
        if not isinstance(preserve_rng_state, bool):
            raise TypeError(f"`preserve_rng_state` must be a bool; got {type(preserve_rng_state).__name__}")
        self.verify = verify
        self.preserve_rng_state = preserve_rng_state

    def __repr__(self) -> str:
        return f"BatchwiseAccumulator({self.loss!r}, sync={self.sync!r}, batchnorm={self.batchnorm!r})"

    # ---- planning ----
    def _terms(self) -> Tuple[List[_Term], Optional[AllReduceSync]]:
        terms, term_sync = _plan(self.loss)
        return terms, (self.sync if self.sync is not None else term_sync)

    # ---- lower-level pieces ----
    def statistics(self, output: Tensor, target: Tensor) -> BatchStatistics:
        """The statistics of one micro-batch (no graph is kept).

        Args:
            output: the model's output for the micro-batch, ``[b, C, *S]``.
            target: its target.

        Returns:
            :class:`BatchStatistics` of this micro-batch alone.
        """
        terms, _ = self._terms()
        return self._statistics(terms, output, target)

    def _statistics(self, terms: List[_Term], output: Tensor, target: Tensor) -> BatchStatistics:
        output = check_tensor("output", output)
        target = check_tensor("target", target)
        moments: List[Optional[Dict[str, Tensor]]] = []
        sums: List[Optional[Tensor]] = []
        counts: List[Tensor] = []
        device = output.device
        cdt = _count_dtype(device)
        with torch.no_grad():
            output = output.detach()
            for t in terms:
                if t.kind == "statistics":
                    rec = _Record()
                    t.call(output, target, sync=rec)
                    moments.append(rec.moments)
                    sums.append(None)
                    counts.append(torch.zeros((), dtype=cdt, device=device))
                elif t.kind == "items":
                    v = t.call(output, target, reduction="none")
                    moments.append(None)
                    sums.append(v.sum())
                    counts.append(torch.full((), float(v.numel()), dtype=cdt, device=device))
                else:
                    v = t.call(output, target, reduction="sum")
                    moments.append(None)
                    sums.append(v.detach())
                    counts.append(_pixel_count(t, output, target).to(cdt))
        return BatchStatistics(
            tuple(moments), tuple(sums), torch.stack(counts),
            torch.full((), float(output.shape[0]), dtype=cdt, device=device), _signature(output, target),
        )

    def reduce(self, stats: BatchStatistics) -> BatchStatistics:
        """Sum the statistics over the processes (``sync``); the identity without it.

        Two all-reduces (the statistics, the counts). Every rank must call
        it; the result's ``world_size`` is the number of processes.
        """
        _, sync = self._terms()
        return self._reduce(stats, sync)

    @staticmethod
    def _reduce(stats: BatchStatistics, sync: Optional[AllReduceSync]) -> BatchStatistics:
        if sync is None:
            return stats
        w = world_size(sync.group)
        if w == 1 and sync.group is None:
            return stats
        import torch.distributed as dist

        floats = stats._flat_floats()
        moments, sums = stats.moments, stats.sums
        if floats:
            dtype = torch.float64 if any(f.dtype == torch.float64 for f in floats) else torch.float32
            flat = torch.cat([f.to(dtype) for f in floats])
            dist.all_reduce(flat, group=sync.group)
            moments, sums = stats._unflatten(flat)
        counts = torch.cat([stats.counts, stats.images.reshape(1)])
        dist.all_reduce(counts, group=sync.group)
        return BatchStatistics(moments, sums, counts[:-1], counts[-1], stats.signature, w, stats.parts,
                               stats.rng_states, stats.sizes)

    def share(self, output: Tensor, target: Tensor, total: BatchStatistics) -> Tensor:
        r"""The part of the batch loss that one micro-batch back-propagates.

        Its gradient is the micro-batch's exact share of the gradient of the loss of
        the whole batch (``total``): :math:`\partial f/\partial S \cdot \partial s_m/\partial θ`
        for batch-domain terms, its sum over items or pixels divided by the whole batch's
        count for the others. Its value is the micro-batch's part of the loss (the
        batch-domain values split in proportion to the images), so the shares of all
        micro-batches sum to the loss. Under ``sync`` (``total.world_size = W > 1``)
        back-propagate ``W * share``, which DDP's averaging turns back into the share.

        Args:
            output: the model's output for the micro-batch, with its graph.
            target: its target.
            total: the statistics of the whole batch (:meth:`collect`, or the sum of
                :meth:`statistics` over the micro-batches, then :meth:`reduce`).
        """
        terms, _ = self._terms()
        share, _, _ = self._share(terms, output, target, total)
        return share

    def _share(self, terms: List[_Term], output: Tensor, target: Tensor,
               total: BatchStatistics) -> Tuple[Tensor, List[Optional[Tensor]], BatchStatistics]:
        """(share, per-term batch-domain values L_k(S), this micro-batch's statistics)."""
        sig = _signature(output, target)
        if sig != total.signature:
            raise ValueError(
                f"`micro_batches` must agree in channels (classes), dimensionality and target format; got "
                f"{_describe(sig)} for statistics of {_describe(total.signature)}"
            )
        frac = output.shape[0] / total.images
        share: Optional[Tensor] = None
        values: List[Optional[Tensor]] = []
        moments: List[Optional[Dict[str, Tensor]]] = []
        sums: List[Optional[Tensor]] = []
        for k, t in enumerate(terms):
            if t.kind == "statistics":
                if total.moments[k] is None:
                    raise ValueError("`total` must come from the same loss as the accumulator's; got other statistics")
                hook = _Substitute(total.moments[k])
                v = t.call(output, target, sync=hook)
                const = v.detach()
                part = v - const + const * frac.to(const.dtype)
                values.append(const)
                moments.append(hook.local)
                sums.append(None)
            else:
                v = t.call(output, target, reduction="sum")
                part = v / _nonzero(total.counts[k]).to(v.dtype) if t.mean else v
                values.append(None)
                moments.append(None)
                sums.append(v.detach())
            share = t.weight * part if share is None else share + t.weight * part
        local = BatchStatistics(tuple(moments), tuple(sums), total.counts, total.images, sig)
        return share, values, local

    def _value(self, terms: List[_Term], total: BatchStatistics, values: List[Optional[Tensor]]) -> Tensor:
        out: Optional[Tensor] = None
        for k, t in enumerate(terms):
            if t.kind == "statistics":
                v = values[k]
            else:
                s = total.sums[k]
                v = s / _nonzero(total.counts[k]).to(s.dtype) if t.mean else s
            out = t.weight * v if out is None else out + t.weight * v
        return out.detach()

    # ---- the two passes ----
    def _check_model(self, model: Any, split: bool = True) -> None:
        if not callable(model):
            raise TypeError(f"`model` must be callable (an nn.Module); got {type(model).__name__}")
        if split and self.batchnorm == "raise":
            bns = _batchnorms_in_train_mode(model)
            if bns:
                raise ValueError(
                    f"`model` must not have BatchNorm in train mode for exact batchwise accumulation; got {len(bns)} "
                    f"(e.g. {bns[0]!r}): it normalises each micro-batch by its own statistics, so the outputs depend "
                    f"on the split. Use GroupNorm/InstanceNorm, freeze the statistics with "
                    f"model.apply(seglosses.freeze_bn) after model.train(), or pass batchnorm='allow' to accept "
                    f"per-micro-batch normalisation"
                )

    def collect(self, model: Callable, micro_batches: Iterable) -> BatchStatistics:
        """Pass 1: the statistics of the whole batch, model run without a graph.

        Sums :meth:`statistics` over the micro-batches (checking that they agree in
        channels, dimensionality and target format) and over the processes under
        ``sync``. Keeps each micro-batch's statistics and generator state for
        :meth:`accumulate`.

        Raises:
            TypeError: a one-shot iterator, items that are not pairs, a model output
                that is not a tensor.
            ValueError: no micro-batch, micro-batches that disagree, BatchNorm in train
                mode (``batchnorm="raise"``).
        """
        self._check_model(model)
        _check_micro_batches(micro_batches)
        terms, sync = self._terms()
        return self._collect(terms, sync, model, micro_batches)

    def _collect(self, terms, sync, model, micro_batches) -> BatchStatistics:
        bn_state = self._save_bn(model)
        total: Optional[BatchStatistics] = None
        parts: List[BatchStatistics] = []
        rngs: List[Any] = []
        sizes: List[int] = []
        try:
            for i, item in enumerate(micro_batches):
                x, y = _pair(item, i)
                rngs.append(_RngState() if self.preserve_rng_state else None)
                with torch.no_grad():
                    out = _forward(model, x)
                s = self._statistics(terms, out, y)
                sizes.append(out.shape[0])
                del out
                if total is not None and s.signature != total.signature:
                    raise ValueError(
                        f"`micro_batches` must agree in channels (classes), dimensionality and target format; "
                        f"micro-batch {i} has {_describe(s.signature)}, micro-batch 0 has {_describe(total.signature)}"
                    )
                parts.append(s)
                total = s if total is None else total + s
        finally:
            self._restore_bn(bn_state)
        if total is None:
            raise ValueError("`micro_batches` must hold at least one (input, target) pair; got none")
        total = self._reduce(total, sync)
        total.parts, total.rng_states, total.sizes = parts, rngs, sizes
        return total

    def _save_bn(self, model: Any) -> List[Tuple[nn.Module, Dict[str, Tensor]]]:
        if self.batchnorm != "allow" or not isinstance(model, nn.Module):
            return []
        return [(m, {k: b.clone() for k, b in m.named_buffers(recurse=False)})
                for m in model.modules() if isinstance(m, _BatchNorm) and m.training]

    @staticmethod
    def _restore_bn(state: List[Tuple[nn.Module, Dict[str, Tensor]]]) -> None:
        with torch.no_grad():
            for m, bufs in state:
                for k, b in m.named_buffers(recurse=False):
                    b.copy_(bufs[k])

    def accumulate(self, model: Callable, micro_batches: Iterable, total: BatchStatistics, *,
                   scaler: Any = None) -> Tensor:
        """Pass 2: back-propagate every micro-batch's share; returns the loss value (detached).

        Args:
            model: the model of pass 1.
            micro_batches: the micro-batches of pass 1, in the same order.
            total: the statistics from :meth:`collect`.
            scaler: an optional ``torch.amp.GradScaler``; each share is back-propagated
                as ``scaler.scale(share)``.

        Raises:
            ValueError: a different number or size of micro-batches than in pass 1, or
                (``verify``) statistics that differ from pass 1.
        """
        self._check_model(model)
        _check_micro_batches(micro_batches)
        terms, _ = self._terms()
        return self._accumulate(terms, model, micro_batches, total, scaler)

    def _accumulate(self, terms, model, micro_batches, total: BatchStatistics, scaler) -> Tensor:
        if not total.parts:
            raise ValueError(
                "`total` must come from collect(), which keeps every micro-batch's statistics for pass 2; got "
                "statistics without them (back-propagate share() yourself for statistics summed by hand)"
            )
        parts = total.parts
        n = len(parts)
        ddp = isinstance(model, nn.parallel.DistributedDataParallel)
        deviation: Optional[Tensor] = None
        values: List[Optional[Tensor]] = []
        seen = 0
        for i, item in enumerate(micro_batches):
            x, y = _pair(item, i)
            if i >= n:
                raise ValueError(f"`micro_batches` must give the same micro-batches on both passes; pass 1 saw {n}, "
                                 f"pass 2 more")
            if self.preserve_rng_state and i < len(total.rng_states) and total.rng_states[i] is not None:
                total.rng_states[i].restore()
            ctx = model.no_sync() if ddp and i < n - 1 else contextlib.nullcontext()
            with ctx:
                out = _forward(model, x)
                if out.shape[0] != total.sizes[i]:
                    raise ValueError(
                        f"`micro_batches` must give the same micro-batches on both passes; micro-batch {i} has "
                        f"{out.shape[0]} images in pass 2, {total.sizes[i]} in pass 1"
                    )
                share, vals, local = self._share(terms, out, y, total)
                if total.world_size > 1:
                    share = share * total.world_size
                (share if scaler is None else scaler.scale(share)).backward()
            del out, share
            if not values:
                values = vals
            if self.verify:
                d = _max_deviation(local, parts[i])
                deviation = d if deviation is None else torch.maximum(deviation, d)
            seen += 1
        if seen != n:
            raise ValueError(f"`micro_batches` must give the same micro-batches on both passes; pass 1 saw {n}, "
                             f"pass 2 saw {seen}")
        if deviation is not None:
            self._raise_if_deviates(deviation, total)
        return self._value(terms, total, values)

    @staticmethod
    def _raise_if_deviates(deviation: Tensor, total: BatchStatistics) -> None:
        dtypes = [t.dtype for t in total._flat_floats()]
        eps = max((torch.finfo(d).eps for d in dtypes), default=torch.finfo(torch.float32).eps)
        tol = math.sqrt(eps)
        dev = float(deviation)
        if not dev <= tol:
            raise ValueError(
                f"`micro_batches` must give the same statistics on both passes (relative deviation <= {tol:.2g}); "
                f"got {dev:.3g}: random augmentation in the data, a non-deterministic model, or a model changed "
                f"between the passes. The accumulated gradient is not exact; zero it before the next step"
            )

    def backward(self, model: Callable, micro_batches: Iterable, *, scaler: Any = None) -> Tensor:
        """Add the gradient of the loss of the whole batch to the parameters' ``.grad``.

        Runs :meth:`collect` then :meth:`accumulate` (one pass with the graph when there
        is a single micro-batch). ``.grad`` is accumulated, not replaced: zero it before
        (or use :meth:`step`).

        Args:
            model: an ``nn.Module`` (or a callable) mapping a micro-batch's input to logits.
            micro_batches: a re-iterable of ``(input, target)`` pairs, read twice.
            scaler: an optional ``torch.amp.GradScaler``.

        Returns:
            The loss of the whole batch (0-dim, detached).
        """
        _check_micro_batches(micro_batches)
        single = isinstance(micro_batches, Sequence) and len(micro_batches) == 1
        self._check_model(model, split=not single)
        terms, sync = self._terms()
        if single:
            return self._single(terms, sync, model, list(micro_batches)[0], scaler)
        total = self._collect(terms, sync, model, micro_batches)
        return self._accumulate(terms, model, micro_batches, total, scaler)

    def _single(self, terms, sync, model, item, scaler) -> Tensor:
        x, y = _pair(item, 0)
        out = _forward(model, x)
        total = self._reduce(self._statistics(terms, out, y), sync)
        share, values, _ = self._share(terms, out, y, total)
        if total.world_size > 1:
            share = share * total.world_size
        (share if scaler is None else scaler.scale(share)).backward()
        return self._value(terms, total, values)

    def step(self, model: Callable, optimizer: Any, micro_batches: Iterable, *, scaler: Any = None,
             zero_grad: bool = True) -> Tensor:
        """One optimiser step on the whole batch: zero the gradients, :meth:`backward`, step.

        Args:
            model: the model.
            optimizer: a ``torch.optim`` optimiser over the model's parameters.
            micro_batches: a re-iterable of ``(input, target)`` pairs (e.g.
                :func:`split_batch` of a batch of ``effective_batch_size`` images).
            scaler: an optional ``torch.amp.GradScaler`` (``scaler.step`` and
                ``scaler.update`` are called).
            zero_grad: call ``optimizer.zero_grad()`` first.

        Returns:
            The loss of the whole batch (0-dim, detached).
        """
        if zero_grad:
            optimizer.zero_grad()
        value = self.backward(model, micro_batches, scaler=scaler)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        return value
