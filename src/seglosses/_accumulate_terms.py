"""What :class:`~seglosses.accumulate.BatchwiseAccumulator` splits and what it carries between
its passes: the terms of a loss (each with how it splits over micro-batches, from the loss's
declared contract) and :class:`BatchStatistics`, the batch's summed statistics.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ._inputs import canonicalize
from .distributed import AllReduceSync, StatisticsSync, resolve_sync
from .losses._base import SegLoss
from .losses.compound import WeightedSum

__all__ = ["BatchStatistics"]


@dataclass(frozen=True)
class _Term:
    weight: float
    loss: SegLoss
    kind: str  # "statistics" (batch domain), "items" (image domain), "pixels"
    config: Dict[str, Any]
    name: str

    @property
    def mean(self) -> bool:
        return self.config.get("reduction", "mean") == "mean"

    def call(self, output: Tensor, target: Tensor, **override: Any) -> Tensor:
        return type(self.loss).function(output, target, **{**self.config, **override})


def _flatten(loss: nn.Module, weight: float, out: List[Tuple[float, nn.Module]]) -> None:
    if isinstance(loss, WeightedSum):
        for w, term in zip(loss.weights(), loss.losses):
            _flatten(term, weight * w, out)
    else:
        out.append((weight, loss))


def _plan(loss: nn.Module) -> Tuple[List[_Term], Optional[AllReduceSync]]:
    """Split ``loss`` into terms the accumulator can decompose; the terms' common sync."""
    if not isinstance(loss, SegLoss):
        raise TypeError(
            f"`loss` must be a seglosses loss module (a SegLoss or a WeightedSum of them); got {type(loss).__name__}"
        )
    flat: List[Tuple[float, nn.Module]] = []
    _flatten(loss, 1.0, flat)
    terms: List[_Term] = []
    syncs: List[AllReduceSync] = []
    for weight, term in flat:
        name = term.name if isinstance(term, SegLoss) else type(term).__name__
        info = getattr(type(term), "info", None)
        if not isinstance(term, SegLoss) or not hasattr(type(term), "function") or info is None:
            raise TypeError(f"`loss` term {name!r} must be a seglosses loss module; got {type(term).__name__}")
        cfg = dict(term.config)
        if cfg.get("reduction", "mean") == "none":
            raise ValueError(
                f"`loss` term {name!r} must reduce to a scalar (reduction 'mean' or 'sum') to be accumulated; "
                f"got reduction='none'"
            )
        if info.batching == "statistics" and cfg.get("domain") in ("image", "batch"):
            kind = "statistics" if cfg["domain"] == "batch" else "items"
            hook = resolve_sync(cfg.get("sync"), cfg["domain"])
            if hook is not None:
                if not isinstance(hook, AllReduceSync):
                    raise ValueError(
                        f"`loss` term {name!r} must have sync None, 'distributed' or a process group to be "
                        f"accumulated (the accumulator installs its own statistics hook); got {hook!r}"
                    )
                syncs.append(hook)
            cfg["sync"] = None
        elif info.batching == "pixel_mean":
            reason = info.batch_dependence(cfg)
            if reason is not None:
                raise ValueError(
                    f"`loss` term {name!r} must not depend on the whole batch to be split exactly over "
                    f"micro-batches; got {type(term).__name__}, where {reason}"
                )
            kind = "pixels"
        else:
            domain = cfg.get("domain")
            where = f" with domain={domain!r}" if domain is not None else ""
            raise ValueError(
                f"`loss` term {name!r}{where} must be a function of summed statistics (a region loss), a region "
                f"loss in the image domain, or a mean over pixels to be split exactly over micro-batches; "
                f"got {type(term).__name__}, whose batch form is none of these (e.g. Lovász or TopK over the batch "
                f"sort the pixels of the whole batch): train it on whole batches instead"
            )
        terms.append(_Term(float(weight), term, kind, cfg, name))
    groups = {id(s.group): s for s in syncs}
    if len(groups) > 1:
        raise ValueError(f"`loss` terms must all use the same `sync` process group; got {len(groups)} different ones")
    return terms, (next(iter(groups.values())) if groups else None)


class _Record(StatisticsSync):
    """Pass 1: keep the domain moments (detached) and leave them unchanged."""

    def __init__(self) -> None:
        self.moments: Optional[Dict[str, Tensor]] = None

    def __call__(self, moments: Dict[str, Tensor], domain: str) -> Dict[str, Tensor]:
        self.moments = {k: v.detach() for k, v in moments.items()}
        return moments


class _Substitute(StatisticsSync):
    """Pass 2: the value of the whole batch's moments with the gradient of the micro-batch's."""

    def __init__(self, total: Dict[str, Tensor]) -> None:
        self.total = total
        self.local: Optional[Dict[str, Tensor]] = None

    def __call__(self, moments: Dict[str, Tensor], domain: str) -> Dict[str, Tensor]:
        self.local = {k: v.detach() for k, v in moments.items()}
        return {k: self.total[k].to(v.dtype) + (v - v.detach()) for k, v in moments.items()}


def _count_dtype(device: torch.device) -> torch.dtype:
    """Counts are float64 (exact up to 2**53) where the device has it."""
    return torch.float32 if device.type == "mps" else torch.float64


def _pixel_count(term: _Term, output: Tensor, target: Tensor) -> Tensor:
    """The denominator of a pixel-mean term's ``"mean"``: the number of valid pixels."""
    cfg = term.config
    canon = canonicalize(output, target, mode=cfg.get("mode", "binary"), from_logits=cfg.get("from_logits", True),
                         ignore_index=cfg.get("ignore_index"), check_values=False)
    if canon.valid is None:
        return torch.full((), float(canon.x.shape[0] * canon.x.shape[2]), device=output.device)
    return canon.valid.sum()


def _nonzero(count: Tensor) -> Tensor:
    """A mean's denominator: 0 (nothing to average) becomes 1, so the mean is 0 (``reduce_pixels``)."""
    return torch.where(count > 0, count, torch.ones_like(count))


def _signature(output: Tensor, target: Tensor) -> Tuple[int, int, str]:
    fmt = "dense" if target.dim() == output.dim() else "label map"
    kind = "float" if target.is_floating_point() else "integer"
    return (output.shape[1] if output.dim() > 1 else 0, output.dim(), f"{fmt} ({kind})")


def _describe(sig: Tuple[int, int, str]) -> str:
    return f"{sig[0]} channels, {sig[1] - 2} spatial dims, {sig[2]} target"


@dataclass
class BatchStatistics:
    r"""The statistics the accumulator sums over micro-batches (and processes).

    One record per loss term: the summed domain moments of a batch-domain region term
    (``moments[k]``, each ``[1, C]``), or the sum of the values and their count for an
    image-domain or pixel-mean term (``sums[k]``, ``counts[k]``), plus the number of
    images. Statistics add with ``+``. Built by :meth:`BatchwiseAccumulator.statistics`
    and :meth:`BatchwiseAccumulator.collect`; all tensors are detached.

    .. math::
        S = \sum_m s_m,\qquad n = \sum_m n_m

    Example:
        >>> import seglosses as sl
        >>> acc = sl.BatchwiseAccumulator(sl.DiceLoss(domain="batch", from_logits=False))
        >>> p, g = torch.tensor([[[0.5, 1.0]]]), torch.tensor([[1, 0]])
        >>> s = acc.statistics(p, g) + acc.statistics(p, g)
        >>> {k: v.tolist() for k, v in s.moments[0].items()}, int(s.images)
        ({'p': [[3.0]], 'g': [[2.0]], 'pg': [[1.0]]}, 2)

    Attributes:
        moments: per term, ``name -> [1, C]`` sums, or ``None``.
        sums: per term, a 0-dim sum of values, or ``None``.
        counts: ``[K]`` float counts (items or valid pixels; 0 for moment terms).
        images: 0-dim float number of images.
        signature: (channels, tensor dims, target format) shared by every micro-batch.
        world_size: processes the statistics were summed over (1 without ``sync``).
        parts: the statistics of each micro-batch (kept by :meth:`BatchwiseAccumulator.collect`
            for the check of pass 2).
        rng_states: the generator states before each forward pass of pass 1.
        sizes: the number of images of each micro-batch of pass 1.
    """

    moments: Tuple[Optional[Dict[str, Tensor]], ...]
    sums: Tuple[Optional[Tensor], ...]
    counts: Tensor
    images: Tensor
    signature: Tuple[int, int, str]
    world_size: int = 1
    parts: List["BatchStatistics"] = field(default_factory=list, repr=False)
    rng_states: List[Any] = field(default_factory=list, repr=False)
    sizes: List[int] = field(default_factory=list, repr=False)

    def __add__(self, other: "BatchStatistics") -> "BatchStatistics":
        if not isinstance(other, BatchStatistics):
            return NotImplemented
        if other.signature != self.signature:
            raise ValueError(
                f"`micro_batches` must agree in channels (classes), dimensionality and target format; got "
                f"{_describe(other.signature)} after {_describe(self.signature)}"
            )
        moments = tuple(
            None if a is None else {k: a[k] + b[k] for k in a} for a, b in zip(self.moments, other.moments)
        )
        sums = tuple(None if a is None else a + b for a, b in zip(self.sums, other.sums))
        return BatchStatistics(moments, sums, self.counts + other.counts, self.images + other.images, self.signature)

    def _flat_floats(self) -> List[Tensor]:
        out: List[Tensor] = []
        for m in self.moments:
            if m is not None:
                out.extend(m[k].reshape(-1) for k in m)
        out.extend(s.reshape(1) for s in self.sums if s is not None)
        return out

    def _unflatten(self, flat: Tensor) -> Tuple[Tuple[Optional[Dict[str, Tensor]], ...], Tuple[Optional[Tensor], ...]]:
        i = 0
        moments: List[Optional[Dict[str, Tensor]]] = []
        for m in self.moments:
            if m is None:
                moments.append(None)
                continue
            d = {}
            for k, v in m.items():
                d[k] = flat[i:i + v.numel()].reshape(v.shape).to(v.dtype)
                i += v.numel()
            moments.append(d)
        sums: List[Optional[Tensor]] = []
        for s in self.sums:
            if s is None:
                sums.append(None)
            else:
                sums.append(flat[i].to(s.dtype))
                i += 1
        return tuple(moments), tuple(sums)


def _max_deviation(a: BatchStatistics, b: BatchStatistics) -> Tensor:
    """max |a - b| / (|b| + 1) over every statistic (on the statistics' device)."""
    fa, fb = a._flat_floats(), b._flat_floats()
    device = a.images.device
    dtype = torch.float32 if device.type == "mps" else torch.float64
    if not fa:
        return torch.zeros((), dtype=dtype, device=device)
    x = torch.cat([t.to(dtype) for t in fa])
    y = torch.cat([t.to(dtype) for t in fb])
    return ((x - y).abs() / (y.abs() + 1)).max()
