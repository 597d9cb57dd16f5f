r"""Surfaces and the distances between them: surface extraction, the exact point search, lattice metrics.

The machinery of :mod:`seglosses.metrics.surface` (definitions there): :func:`surface_mask`
extracts the surfaces, :class:`Surfaces` holds the masks and surfaces of one call and
computes, once per distance metric, the distance of every surface point to the other
surface: Euclidean by the exact point search of :func:`mutual_distances` (or a distance
transform with an explicit backend), chessboard and taxicab by :func:`lattice_distance`.
"""
from __future__ import annotations

import itertools
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .._options import lookup_option
from ..distance import BACKENDS, _check_spacing, edt, lattice_passes

__all__ = ["surface_mask", "Surfaces", "mutual_distances", "lattice_distance", "DISTANCES"]

#: The point-to-point distances of the surface metrics.
DISTANCES = ("euclidean", "chessboard", "taxicab")

def surface_mask(mask: Tensor) -> Tensor:
    r"""Surface pixels of a batch of masks: foreground with a background face neighbour.

    .. math::
        \partial Y = Y \setminus \operatorname{erode}(Y),\quad
        \operatorname{erode}(Y) = \{x \in Y : x \pm e_d \in Y\ \forall d\}

    Pixels outside the image count as background (foreground on the image border is
    surface). Works for any number of spatial dims, without a loop over images.

    Args:
        mask: bool ``[P, *S]`` (``P`` masks).

    Returns:
        bool ``[P, *S]``.

    Example:
        >>> m = torch.zeros(1, 3, 4, dtype=torch.bool); m[0, :, 1:] = True
        >>> surface_mask(m).int()
        tensor([[[0, 1, 1, 1],
                 [0, 1, 0, 1],
                 [0, 1, 1, 1]]], dtype=torch.int32)
    """
    inner = mask.clone()
    for d in range(1, mask.dim()):
        n = mask.shape[d]
        if n == 1:
            inner.zero_()
            break
        inner.narrow(d, 1, n - 1).logical_and_(mask.narrow(d, 0, n - 1))
        inner.narrow(d, 0, n - 1).logical_and_(mask.narrow(d, 1, n - 1))
        inner.narrow(d, 0, 1).zero_()
        inner.narrow(d, n - 1, 1).zero_()
    return mask & ~inner


class Surfaces:
    """Masks and surfaces of every (image, class) pair of a call, extracted once.

    ``pred`` / ``target``: foreground ``[P, N]``; ``sp`` / ``sg``: surface points
    ``[P, N]`` (ignored pixels removed), ``n_p`` / ``n_g`` their counts ``[P]``. The
    distances are computed on first use (:meth:`distances`), for the surface points
    only: of every predicted surface point to the true surface and of every true
    surface point to the predicted one.

    The pixels are first cropped to the bounding box of every mask of the call, grown by
    one pixel (as MONAI's ``get_mask_edges(crop=True)``): every surface point lies inside
    it, a pixel just outside is background in the full image too, and distances do not
    depend on the origin, so every value is unchanged while the work shrinks. The crop
    needs a device sync; it is taken on the CPU, and on other devices when the default
    ``backend="auto"`` (whose point search synchronises anyway) is used. With
    ``backend="auto"`` the cropped masks also get an empty pixel on both sides of every
    axis but the last (the point search steps to the adjacent lines without bounds
    checks), and the surface points are indexed once for the counts and the search.
    ``N`` is the number of pixels after the crop (and that margin).
    """

    def __init__(self, pred: Tensor, target: Tensor, valid: Optional[Tensor], spacing, backend: str,
                 out_dtype: torch.dtype) -> None:
        b, c = pred.shape[:2]
        self.shape = (b, c)
        self.image_shape = tuple(pred.shape[2:])
        self.spacing = _check_spacing(spacing, len(self.image_shape))
        self.backend = lookup_option("backend", backend, BACKENDS)
        p = b * c
        pred = pred.reshape((p,) + self.image_shape)
        target = target.reshape((p,) + self.image_shape)
        if valid is not None:
            valid = valid.unsqueeze(1).expand((b, c) + self.image_shape).reshape((p,) + self.image_shape)
        if pred.device.type == "cpu" or self.backend == "auto":
            box = _bounding_box(pred | target)
            pred, target = pred[box], target[box]
            valid = None if valid is None else valid[box]
        if self.backend == "auto":  # an empty margin on the axes the point search steps across
            pred, target = _pad_lines(pred), _pad_lines(target)
            valid = None if valid is None else _pad_lines(valid)
        self.spatial = tuple(pred.shape[1:])
        sp, sg = surface_mask(pred), surface_mask(target)
        self.valid = None
        if valid is not None:
            sp, sg = sp & valid, sg & valid
            self.valid = valid.reshape(p, -1)
        self.pred, self.target = pred.reshape(p, -1), target.reshape(p, -1)
        self.sp, self.sg = sp.reshape(p, -1), sg.reshape(p, -1)
        self._sets: Optional[Tuple[_PointSet, _PointSet]] = None
        if self.backend == "auto":
            self._sets = (_PointSet(sp), _PointSet(sg))
            n = math.prod(self.spatial)
            self.n_p, self.n_g = (torch.bincount(q.keys // n, minlength=p) for q in self._sets)
        else:
            self.n_p, self.n_g = _count(self.sp), _count(self.sg)
        self.out_dtype = out_dtype
        self._d: Dict[str, Tuple[Tensor, Tensor, Tensor, Tensor]] = {}

    @property
    def diagonal(self) -> float:
        """Length of the image diagonal between the centres of two corner pixels."""
        return math.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(self.image_shape, self.spacing)))

    def distances(self, metric: str = "euclidean") -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(dp, pair_p, dg, pair_g)``: float64 distances of the surface points and their pair.

        ``dp`` holds :math:`d(x, \\partial Y)` for every predicted surface point ``x`` (in
        the order of ``sp.nonzero()``, so grouped by pair), ``pair_p`` its pair index in
        ``[0, P)``; ``dg`` / ``pair_g`` the same for the true surface points. A distance
        to an empty surface is ``inf``. ``metric``: one of :data:`DISTANCES` (computed
        once per metric and call).
        """
        if metric not in self._d:
            p = self.sp.shape[0]
            shape = (p,) + self.spatial
            sp, sg = self.sp.view(shape), self.sg.view(shape)
            if metric != "euclidean":  # one lattice transform for both directions
                d = lattice_distance(torch.cat([sg, sp]), self.spacing, metric).view(2, -1)
                dp = d[0][self.sp.view(-1)]
                dg = d[1][self.sg.view(-1)]
            elif self.backend == "auto":
                pa, pg = self._sets
                dp = _nearest_sq(pa, pg, sg, self.spacing, "auto", _SEARCH_BUDGET).sqrt_()
                dg = _nearest_sq(pg, pa, sp, self.spacing, "auto", _SEARCH_BUDGET).sqrt_()
            else:  # one distance transform call for both directions, read at the surface points
                # background of each transform = the other surface: edt gives the distance to it
                d = edt(torch.cat([~sg, ~sp]), self.spacing, backend=self.backend).view(2, -1)
                dp = d[0][self.sp.view(-1)].double()
                dg = d[1][self.sg.view(-1)].double()
                empty_g, empty_p = self.n_g == 0, self.n_p == 0
                dp = torch.where(empty_g.repeat_interleave(self.n_p), math.inf, dp)
                dg = torch.where(empty_p.repeat_interleave(self.n_g), math.inf, dg)
            pairs = torch.arange(p, device=self.sp.device)
            self._d[metric] = (dp, pairs.repeat_interleave(self.n_p), dg, pairs.repeat_interleave(self.n_g))
        return self._d[metric]

    def apply_empty(self, values: Tensor, empty: float, missing: Union[float, str],
                    counts: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
        """``empty`` where both point sets are empty, ``missing`` where one is (surfaces by default)."""
        n_p, n_g = (self.n_p, self.n_g) if counts is None else counts
        both = (n_p == 0) & (n_g == 0)
        one = (n_p == 0) ^ (n_g == 0)
        if missing == "inf":
            miss = math.inf
        elif missing == "diagonal":
            miss = self.diagonal
        else:
            miss = float(missing)
        values = torch.where(one, torch.full_like(values, miss), values)
        return torch.where(both, torch.full_like(values, empty), values)


def _count(mask: Tensor) -> Tensor:
    """True pixels per row of a bool ``[P, N]`` (int64), summed as uint8 into int32 (a bool sum makes an
    int64 copy of the mask first)."""
    return mask.view(torch.uint8).sum(1, dtype=torch.int32).long()


def _bounding_box(union: Tensor) -> Tuple[slice, ...]:
    """Index of ``[P, *S]`` masks cropped to the bounding box of all their pixels, plus one pixel."""
    flags = union.view(torch.uint8)  # max over uint8: much faster than any() over bool on the CPU
    box = [slice(None)]
    for d in range(1, union.dim()):
        n = union.shape[d]
        idx = flags.amax(dim=tuple(a for a in range(union.dim()) if a != d)).nonzero().flatten()
        if idx.numel() == 0:  # nothing anywhere: one pixel is enough
            box.append(slice(0, 1))
        else:
            box.append(slice(max(int(idx[0]) - 1, 0), min(int(idx[-1]) + 2, n)))
    return tuple(box)


# ----------------------------------------------------------------------------- nearest surface points

_FAR = 1 << 62  # sentinel flat index, farther than any pixel
# A mask whose search would look at more than this many lines per pixel (counted as
# the bounding box of each point's disc of lines) gets a distance transform instead:
# on the CPU a line lookup costs about as much as 4 pixels of the `edt` package.
_SEARCH_BUDGET = 0.25


def _numpy_scans(t: Tensor) -> bool:
    """Whether the scans of a CPU mask run in numpy (``flatnonzero`` and ``cumsum`` are about twice
    as fast as torch's there); elsewhere they stay in torch, on the mask's device."""
    return t.device.type == "cpu"


class _PointSet:
    """The true pixels of a batch of masks ``[P, *S]``, for lookups along the last axis.

    ``keys``: their flat (row-major) indices, sorted; ``rank[k]``: how many lie before
    flat index ``k``. Lookups use *spread* indices, ``k + (k // L) L`` for lines of
    ``L`` pixels, which leave a gap of ``L`` between consecutive lines: two points are
    on the same line exactly when their spread indices differ by less than ``L``.
    ``before[rank[k]]`` and ``after[rank[k]]`` are the spread indices of the points just
    before ``k`` and from ``k`` on (far sentinels past the ends).
    """

    def __init__(self, mask: Tensor) -> None:
        flat = mask.reshape(-1)
        self.line = mask.shape[-1]
        rank = torch.empty(flat.numel() + 1, dtype=torch.int32 if flat.numel() < 2**31 else torch.int64,
                           device=flat.device)
        rank[:1] = 0
        if _numpy_scans(flat):
            bits = flat.numpy()
            self.keys = torch.from_numpy(np.flatnonzero(bits))
            np.cumsum(bits, dtype=rank.numpy().dtype, out=rank.numpy()[1:])
        else:
            self.keys = flat.nonzero().squeeze(1)
            torch.cumsum(flat, 0, dtype=rank.dtype, out=rank[1:])
        self.rank = rank
        self.spread = self.keys + self.keys // self.line * self.line
        far = torch.full((1,), _FAR, dtype=torch.long, device=flat.device)
        self.before = torch.cat([-far, self.spread])
        self.after = torch.cat([self.spread, far])

    def line_distance(self, k: Tensor, spread: Tensor) -> Tensor:
        """Pixels from flat index ``k`` (spread index ``spread``) to the nearest point on its line.

        ``>= L`` where the line has none.
        """
        r = self.rank.index_select(0, k)
        return torch.minimum(spread - self.before.index_select(0, r), self.after.index_select(0, r) - spread)


def _expand(counts: Tensor) -> Tuple[Tensor, Tensor]:
    """Ragged ``arange``: for groups of ``counts`` (>= 0) items, each item's group and rank in it."""
    total = int(counts.sum())
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts,
                                    output_size=total)
    start = counts.cumsum(0) - counts
    return owner, torch.arange(total, device=counts.device) - start.index_select(0, owner)


def _window(u: Tensor, s: float) -> Tensor:
    """Largest offset ``o`` along an axis of spacing ``s`` with ``(s o)^2 <= u`` (rounded up a hair)."""
    return torch.floor(torch.sqrt(u) / s * (1 + 1e-12)).clamp_max(2**62).long()


def _nearest_sq(query: _PointSet, ref: _PointSet, ref_mask: Tensor, spacing: Tuple[float, ...], backend: str,
                budget: float) -> Tensor:
    """Squared distances of the points of ``query`` to the nearest point of ``ref`` (same mask).

    The masks ``[P, *S]`` have an empty border along every axis but the last, so the
    adjacent lines of a point are inside its mask. See :func:`mutual_distances`.
    """
    p, spatial = ref_mask.shape[0], tuple(ref_mask.shape[1:])
    dims, line = len(spatial), spatial[-1]
    n = math.prod(spatial)
    strides = [math.prod(spatial[a + 1:]) for a in range(dims)]
    device = ref_mask.device
    k, spread = query.keys, query.spread
    inf = torch.full((), math.inf, dtype=torch.float64, device=device)
    absent = torch.full((), 2**31, dtype=torch.long, device=device)
    # farther than any two pixels of a mask: no point found
    none = sum((m * s) ** 2 for m, s in zip(spatial, spacing)) + 1.0

    def sq(h: Tensor, extra: float) -> Tensor:
        d2 = torch.where(h < line, h, absent).double().square_()
        if spacing[-1] != 1.0:
            d2.mul_(spacing[-1] ** 2)
        return d2.add_(extra) if extra else d2

    # Own line, then the adjacent lines in groups of equal offset cost, each group only for
    # the points it can still bring closer.
    best = sq(ref.line_distance(k, spread), 0.0)
    groups: Dict[float, list] = {}
    for offset in itertools.product((-1, 0, 1), repeat=dims - 1):
        if any(offset):
            cost = sum((o * spacing[a]) ** 2 for a, o in enumerate(offset))
            groups.setdefault(cost, []).append(sum(o * strides[a] for a, o in enumerate(offset)))
    for cost in sorted(groups):
        idx = (best > cost).nonzero().squeeze(1)
        if not idx.numel():
            break
        k_i, spread_i = k.index_select(0, idx), spread.index_select(0, idx)
        near = best.index_select(0, idx)
        for shift in groups[cost]:
            near = torch.minimum(near, sq(ref.line_distance(k_i + shift, spread_i + 2 * shift), cost))
        best.index_copy_(0, idx, near)
    best = torch.where(best > none, inf, best)
    if dims == 1:
        return best

    # No point on those lines: a bound from the points just before and after in memory order.
    idx = torch.isinf(best).nonzero().squeeze(1)
    if idx.numel() and ref.keys.numel():
        ks = k.index_select(0, idx)
        r = ref.rank.index_select(0, ks).long()
        bound = torch.full(idx.shape, math.inf, dtype=torch.float64, device=device)
        for i, ok in ((r - 1, r > 0), (r, r < ref.keys.numel())):
            nb = ref.keys.index_select(0, i.clamp(0, ref.keys.numel() - 1))
            d2 = sum(((nb // strides[a]) % spatial[a] - (ks // strides[a]) % spatial[a]).double()
                     .mul_(spacing[a]).square_() for a in range(dims))
            bound = torch.minimum(bound, torch.where(ok & (nb // n == ks // n), d2, inf))
        best[idx] = bound

    # Points whose bound reaches past the adjacent lines: every line within the bound.
    windows = [_window(best, spacing[a]) for a in range(dims - 1)]
    idx = (torch.isfinite(best) & torch.stack(windows).gt(1).any(0)).nonzero().squeeze(1)
    if not idx.numel():
        return best
    k_i = k.index_select(0, idx)
    pair = k_i // n
    lines = torch.ones(idx.shape, dtype=torch.float64, device=device)
    for a in range(dims - 1):
        lines *= (2 * windows[a].index_select(0, idx) + 1).clamp_max(spatial[a]).double()
    line_cost = torch.zeros(p, dtype=torch.float64, device=device).index_add_(0, pair, lines)
    heavy = line_cost > budget * n
    if bool(heavy.any()):
        rows = heavy.nonzero().squeeze(1)
        by_edt = heavy.index_select(0, pair)
        row_of = torch.full((p,), -1, dtype=torch.long, device=device)
        row_of[rows] = torch.arange(rows.numel(), device=device)
        # float64 from scipy; the `edt` package (the CPU default) works in float32
        dtype = torch.float64 if backend == "scipy" else torch.float32
        d = edt(~ref_mask.index_select(0, rows), spacing, backend=backend, dtype=dtype).reshape(-1)
        ks = k_i[by_edt]
        best[idx[by_edt]] = d.index_select(0, row_of.index_select(0, ks // n) * n + ks % n).double().square_()
        keep = ~by_edt
        idx, k_i = idx[keep], k_i[keep]
    owner = torch.arange(idx.numel(), device=device)
    acc = torch.zeros(idx.shape, dtype=torch.float64, device=device)
    key, key_spread = k_i, spread.index_select(0, idx)
    bound = best.index_select(0, idx)
    for a in range(dims - 1):
        w = _window((bound.index_select(0, owner) - acc).clamp_min_(0), spacing[a])
        c = (key // strides[a]) % spatial[a]
        lo = torch.maximum(-w, -c)
        hi = torch.minimum(w, spatial[a] - 1 - c)
        grp, rank = _expand(hi - lo + 1)
        o = lo.index_select(0, grp) + rank
        owner = owner.index_select(0, grp)
        acc = acc.index_select(0, grp) + (o.double() * spacing[a]).square_()
        shift = o * strides[a]
        key = key.index_select(0, grp) + shift
        key_spread = key_spread.index_select(0, grp) + 2 * shift
    d2 = acc + sq(ref.line_distance(key, key_spread), 0.0)
    found = torch.full(idx.shape, math.inf, dtype=torch.float64, device=device)
    found.scatter_reduce_(0, owner, torch.where(d2 > none, inf, d2), "amin")
    best[idx] = torch.minimum(bound, found)
    return best


def _pad_lines(mask: Tensor) -> Tensor:
    """``[P, *S]`` with one empty pixel added on both sides of every spatial axis but the last."""
    if mask.dim() <= 2:
        return mask
    shape = (mask.shape[0],) + tuple(m + 2 for m in mask.shape[1:-1]) + (mask.shape[-1],)
    out = torch.zeros(shape, dtype=torch.bool, device=mask.device)
    out[(slice(None),) + (slice(1, -1),) * (mask.dim() - 2)] = mask
    return out


def mutual_distances(a: Tensor, b: Tensor, spacing: Sequence[float], *, backend: str = "auto",
                     budget: float = _SEARCH_BUDGET) -> Tuple[Tensor, Tensor]:
    r"""Distances of every true pixel of ``a`` to the nearest of ``b``, and of ``b`` to ``a``, per mask.

    Exact, with the work spent on the points rather than on every pixel. With
    :math:`h(y)` the distance along the last axis from pixel ``y`` to the nearest point
    of the other set on its line, the squared distance of a point ``x`` is

    .. math::
        d^2(x) = \min_{o} \Big( \sum_{a < D-1} (s_a o_a)^2 + s_{D-1}^2\, h(x + o)^2 \Big)

    over offsets ``o`` of the other axes (the first pass of the separable distance
    transform, read at the needed lines only). Any value found bounds the answer, so
    only offsets with :math:`\sum_a (s_a o_a)^2 < d^2` need a look: first every point
    looks at its own and the adjacent lines, which settles the points near the other
    set; the rest (with a bound from the points next to them in memory order where
    those lines are empty) look at every line within their bound, all of them batched
    as one ragged list. A mask whose remaining lines would outnumber ``budget`` times
    its pixels gets a distance transform (:func:`seglosses.distance.edt` with
    ``backend``; float64 from scipy, float32 from the ``edt`` package, the CPU
    default) for that direction instead. ``h`` comes from the sorted flat indices
    of the points and a running count of them: no loop over masks, no per-pixel pass
    other than that count.

    Args:
        a, b: bool ``[P, *S]``, one or more spatial dims.
        spacing: one pixel size per spatial dim.
        backend: the :func:`~seglosses.distance.edt` backend of the fallback.
        budget: lines per pixel before the fallback (``inf``: never; ``0``: for every
            mask with points that the adjacent lines do not settle).

    Returns:
        float64 ``[M_a]`` and ``[M_b]``: one distance per true pixel, in the order of
        ``a.reshape(-1).nonzero()`` (resp. ``b``); ``inf`` where the other mask is empty.
    """
    a, b = _pad_lines(a), _pad_lines(b)
    pa, pb = _PointSet(a), _PointSet(b)
    spacing = tuple(float(s) for s in spacing)
    return (_nearest_sq(pa, pb, b, spacing, backend, budget).sqrt_(),
            _nearest_sq(pb, pa, a, spacing, backend, budget).sqrt_())


# ----------------------------------------------------------------------------- lattice distances

def lattice_distance(features: Tensor, spacing: Sequence[float], metric: str) -> Tensor:
    r"""Distance of every pixel to the nearest true pixel of its mask, chessboard or taxicab, with spacing.

    .. math::
        d_{\text{taxicab}}(x) = \min_{y} \sum_a s_a |x_a - y_a|,\qquad
        d_{\text{chessboard}}(x) = \min_{y} \max_a s_a |x_a - y_a|

    over the true pixels ``y`` of the mask, with the pixel spacing ``s`` (scipy's
    ``distance_transform_cdt`` with ``metric="taxicab"`` / ``"chessboard"`` for unit
    spacing; torchmetrics' definitions with spacing). Exact and separable: one pass per
    axis, :math:`g(x) = \min_{y_a} f(\dots y_a \dots) + s_a|x_a - y_a|` (two running
    minima) for taxicab, :math:`\min_{y_a} \max(f(\dots y_a \dots), s_a|x_a - y_a|)`
    for chessboard.

    Args:
        features: bool ``[P, *S]``.
        spacing: one pixel size per spatial dim.
        metric: ``"taxicab"`` or ``"chessboard"``.

    Returns:
        float64 ``[P, *S]``; ``inf`` everywhere in a mask without true pixels.
    """
    metric = lookup_option("distance", metric, DISTANCES[1:])
    return lattice_passes(torch.where(features, 0.0, math.inf).to(torch.float64), spacing, metric)
