r"""Exact per-point percentiles of the distances to a point set, without forming every pair.

Seed 000 eq. 7 needs, for every point :math:`x` of a set :math:`X` and the set :math:`Y`
(pixels of two masks of the same shape, pixel size :math:`s`),

.. math::
    h(x, Y) = \operatorname{pct}_q \{\lVert (x - y) \odot s \rVert : y \in Y\}
            = d_{(l)} + f\,(d_{(l+1)} - d_{(l)}),\qquad (|Y| - 1)\,q = l + f,

the percentile with linear interpolation (``numpy.percentile``), :math:`d_{(k)}` the
:math:`k`-th smallest distance (0-based). So each point needs two order statistics of its
squared distances :math:`T(x, y)`: the smallest :math:`t` with :math:`F_x(t) \ge k + 1`,
:math:`F_x(t) = |\{y : T(x, y) \le t\}|`. Brute force forms all :math:`|X|\,|Y|` distances.
This module forms none of them in bulk:

* **Counting along lines.** The points of :math:`Y` lie on lines along the last axis. On
  a line at partial squared distance :math:`a` (the other axes), the points with
  :math:`T \le t` are the columns within :math:`w = \lfloor\sqrt{(t - a)/s_{D-1}^2}\rfloor` of
  :math:`x`'s column: one difference of a running count. So :math:`F_x(t)` costs one step
  per line of :math:`Y` that holds points, not one per point, and the points of a window
  :math:`t < T \le t'` are listed from the column intervals between the two widths.
* **Windows instead of sorting.** A window that holds the wanted rank (``F(t) < k + 1 <=
  F(t')``) gives the order statistic from its few listed points; a window that misses it
  shrinks the bracket to one side, and the next window is placed by the density of points
  seen in the last one (by bisection when that is no help).
* **Anchors.** :math:`h(\cdot, Y)` is 1-Lipschitz and, as a high percentile over many
  points, smooth. It is solved exactly, by bracketing from a sampled estimate, at the
  corners of a grid of stride :data:`_GRID` over the cells that hold points of :math:`X`;
  every point of :math:`X` then starts from the corners' D-linear interpolation with one
  narrow window, which almost always holds its answer. A miss continues with bracketing.

Every returned value is an order statistic of counted points: the windows only steer the
work, so the result equals the brute force's. When every :math:`s_a^2` is an integer
multiple of one unit (isotropic spacing, or ratios such as 1 : 0.6) the squared distances
are integers times that unit and the work is integer-exact; other spacings use the same
steps in float64, with each column width checked against the squared distance it stands
for, so counting and listing agree point by point.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
from torch import Tensor

__all__ = ["percentile_distance_sums", "percentile_distances"]

#: Anchor grid stride (pixels).
_GRID = 8
#: Points a window is sized to hold (a point's first window: within the bounds below).
_TARGET = 24
#: A query whose bracket holds at most this many points lists it whole.
_LIST_MAX = 256
#: (query, line) entries per chunk of a pass (large: few multi-threaded ops, which stall on a busy
#: machine; measured 2^18 best at 1 and 2 threads); points listed per chunk.
_CHUNK = 1 << 18
_LIST_CHUNK = 1 << 22
#: Points of Y sampled to place the anchors' first windows.
_SAMPLE = 256
_MAX_PASSES = 64


# ----------------------------------------------------------------------------- geometry


class _Metric:
    """Squared distances ``T = sum_a c_a o_a^2`` in a unit ``u`` (distance ``sqrt(u T)``).

    ``integer``: every ``c_a`` is an integer (``s_a^2 = c_a u``), so every ``T`` is one.
    ``fast``: integer, ``c_last = 1`` and every ``T`` below 2^22: float32 holds every
    value exactly and its square root is exact enough for ``ceil(sqrt(v))`` (see
    :func:`_window_pass`); the pass then runs in float32 and int32.
    """

    def __init__(self, spacing: Sequence[float], spatial: Sequence[int]) -> None:
        s2 = [float(s) * float(s) for s in spacing]
        far = [n - 1 for n in spatial]
        self.integer = False
        self.c, self.unit = tuple(s2), 1.0
        low = min(s2)
        for den in range(1, 65):
            unit = low / den
            c = [v / unit for v in s2]
            k = [round(v) for v in c]
            if all(abs(v - r) <= 1e-9 * r for v, r in zip(c, k)) and max(k) <= 1 << 16:
                if sum(r * f * f for r, f in zip(k, far)) < 2.0 ** 48:
                    self.integer, self.c, self.unit = True, tuple(float(r) for r in k), unit
                break
        self.tmax = sum(c * f * f for c, f in zip(self.c, far))
        self.fast = self.integer and self.c[-1] == 1.0 and self.tmax < 2.0 ** 22
        self.dtype = torch.float32 if self.fast else torch.float64

    def reach(self, t: Tensor, a: Tensor) -> Tensor:
        """``e = w + 1`` with ``w`` the largest integer ``>= 0`` with ``a + c_last w^2 <= t`` (``e = 0``
        where ``a > t``), in ``a``'s float dtype.

        Fast metric: ``e = ceil(sqrt(t + 1 - a))`` for integers (the least ``e`` with
        ``e^2 > t - a``; ``0`` at ``t - a = -1``, clamped below). Float32 is exact there: a
        non-square ``v < 2^22`` lies more than ``1/(2 sqrt v)`` from the nearest square root
        of an integer, far more than the rounding of the root. Otherwise the width from
        the float root is corrected by one step either way against ``a + c w^2 <= t``
        itself, the form in which listed points get their ``T``.
        """
        if self.fast:
            return (t.unsqueeze(1) + 1.0).sub(a).clamp_min_(0).sqrt_().ceil_()
        c = self.c[-1]
        tt = t.unsqueeze(1)
        w = ((tt - a).clamp_min(0) / c).sqrt_().floor_()
        w = w + ((a + c * (w + 1).square()) <= tt).to(w.dtype)
        w = w - ((w >= 0) & ((a + c * w.square()) > tt)).to(w.dtype)
        return w.add_(1).clamp_min_(0)


class _Lines:
    """The true pixels of masks ``[P, *S]`` grouped by lines along the last axis.

    ``rank``: for every line that holds points (``j``, plus an empty one at the end), the
    number of points before each column position ``-m..L+m`` (``L`` the line length, ``m``
    more than the reach of any squared distance), so a column interval needs no bounds
    check; ``base[p, i]``: the
    offset of column 0 of pair ``p``'s ``i``-th line in ``rank`` (the empty line pads);
    ``coord[a][p, i]``: its coordinate on axis ``a < D-1`` (far away for the pads);
    ``col``: the column of every point, in the order of the ranks; ``count``: points per mask.
    """

    def __init__(self, mask: Tensor, metric: _Metric) -> None:
        p = mask.shape[0]
        spatial = tuple(mask.shape[1:])
        self.spatial = spatial
        length = spatial[-1]
        self.length = length
        per_pair = math.prod(spatial) // length
        device = mask.device
        keys = mask.reshape(-1).nonzero().squeeze(1)
        self.keys = keys
        self.count = torch.bincount(keys // (per_pair * length), minlength=p)
        self.first_key = torch.zeros(p + 1, dtype=torch.int64, device=device)
        self.first_key[1:] = self.count.cumsum(0)
        line_ids = torch.unique_consecutive(keys // length)
        nl = line_ids.numel()
        # pad every line so that any reach (at most sqrt(tmax) + 1 columns) stays on it
        pad = int(math.isqrt(int(metric.tmax / metric.c[-1]) + 1)) + 2
        self.pad = pad
        width = length + 2 * pad + 1
        small = keys.numel() < 2**31 and (nl + 1) * width < 2**31
        self.index_dtype = torch.int32 if small else torch.int64
        self.col = (keys % length).to(self.index_dtype)
        rows = mask.reshape(-1, length).index_select(0, line_ids)
        within = rows.to(torch.int64).cumsum(1)  # points at columns <= c
        total = within[:, -1] if nl else within.new_zeros(0)
        start = total.cumsum(0) - total
        table = torch.zeros(nl + 1, width, dtype=torch.int64, device=device)
        table[:nl, : pad + 1] = start.unsqueeze(1)
        table[:nl, pad + 1: pad + length + 1] = start.unsqueeze(1) + within
        table[:nl, pad + length + 1:] = (start + total).unsqueeze(1)
        self.rank = table.reshape(-1).to(self.index_dtype)
        pair = line_ids // per_pair
        per = torch.bincount(pair, minlength=p)
        self.lmax = max(int(per.max()), 1) if p else 1
        first = per.cumsum(0) - per
        pos = torch.arange(nl, device=device) - first.index_select(0, pair)
        slot = torch.full((p, self.lmax), nl, dtype=torch.int64, device=device)
        slot[pair, pos] = torch.arange(nl, device=device)
        self.base = (slot * width + pad).to(self.index_dtype)
        rest = line_ids % per_pair
        coords = []
        for n in reversed(spatial[:-1]):
            coords.append(rest % n)
            rest = rest // n
        coords.reverse()
        self.coord = []
        far = 2.0 ** 40 if metric.dtype == torch.float64 else 2.0 ** 20  # squared: beyond any T
        for c in coords:
            tab = torch.full((p, self.lmax), -far, dtype=metric.dtype, device=device)
            tab[pair, pos] = c.to(metric.dtype)
            self.coord.append(tab)


class _Queries:
    """Query points: pair ``p``, coordinates ``u[a]`` on the axes but the last, column ``c``."""

    def __init__(self, p: Tensor, u: Sequence[Tensor], c: Tensor) -> None:
        self.p, self.u, self.c = p, list(u), c

    def take(self, idx: Tensor) -> "_Queries":
        return _Queries(self.p.index_select(0, idx), [x.index_select(0, idx) for x in self.u],
                        self.c.index_select(0, idx))

    def __len__(self) -> int:
        return self.p.numel()


# ----------------------------------------------------------------------------- one pass


def _select(owner: Tensor, t: Tensor, groups: int, ranks: Sequence[Tensor]) -> Sequence[Tensor]:
    """The ``r``-th smallest (1-based) of the values ``t`` of each group ``owner`` (``[0, groups)``) for
    each ``r`` in ``ranks``, from a sort by group and value (every rank within its group's count)."""
    order = torch.argsort(t, stable=True)
    order = order.index_select(0, torch.argsort(owner.index_select(0, order), stable=True))
    counts = torch.bincount(owner, minlength=groups)
    start = counts.cumsum(0) - counts
    st = t.index_select(0, order)
    return [st.index_select(0, start + r - 1) for r in ranks]


def _window_pass(lines: _Lines, metric: _Metric, q: _Queries, lo: Tensor, hi: Tensor, k1: Tensor, k2: Tensor,
                 force: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Count the window ``(lo, hi]`` of every query and list the ones that hold a wanted rank.

    Returns ``F(lo)``, ``F(hi)``, the ``k1``-th and ``k2``-th smallest squared distance
    where known (``nan`` else) and whether the query was listed. A query is listed when
    its window holds ``k1`` or ``k2`` and at most :data:`_LIST_MAX` points, or ``force``.

    On a line, the columns with ``T <= t`` are ``[c + 1 - e, c + e)`` (``e`` from
    :meth:`_Metric.reach`; the left end is clamped to the right one where ``e = 0``), so
    ``F(t)`` sums differences of ``rank`` and the window's points lie in the two column
    intervals between the inner and the outer interval.
    """
    n = len(q)
    device = q.p.device
    f_lo = torch.zeros(n, dtype=torch.int64, device=device)
    f_hi = torch.zeros(n, dtype=torch.int64, device=device)
    t1 = torch.full((n,), math.nan, dtype=torch.float64, device=device)
    t2 = torch.full((n,), math.nan, dtype=torch.float64, device=device)
    listed = torch.zeros(n, dtype=torch.bool, device=device)
    lmax = lines.lmax
    step = max(1, _CHUNK // lmax)
    c_last = metric.c[-1]
    idt = lines.index_dtype
    qc = q.c.to(idt)
    u = [x.to(metric.dtype) for x in q.u]
    lo_f, hi_f = lo.to(metric.dtype), hi.to(metric.dtype)
    rank = lines.rank
    for s in range(0, n, step):
        e = min(n, s + step)
        m = e - s
        pp = q.p[s:e]
        a = None
        for axis, tab in enumerate(lines.coord):
            d = tab.index_select(0, pp).sub_(u[axis][s:e].unsqueeze(1)).square_()
            if metric.c[axis] != 1.0:
                d.mul_(metric.c[axis])
            a = d if a is None else a.add_(d)
        if a is None:  # one spatial axis: one line per pair
            a = torch.zeros(m, lmax, dtype=metric.dtype, device=device)
        centre = lines.base.index_select(0, pp).add_(qc[s:e].unsqueeze(1))
        centre1 = centre + 1
        ends = []
        for t in (lo_f[s:e], hi_f[s:e]):
            reach = metric.reach(t, a).to(idt)
            right = centre + reach
            left = torch.minimum(centre1.sub(reach), right)
            ends.append(rank.index_select(0, left.view(-1)).view(m, lmax))
            ends.append(rank.index_select(0, right.view(-1)).view(m, lmax))
        r_in_l, r_in_r, r_out_l, r_out_r = ends
        fl = (r_in_r - r_in_l).sum(1)
        fh = (r_out_r - r_out_l).sum(1)
        f_lo[s:e], f_hi[s:e] = fl, fh
        kk1, kk2 = k1[s:e], k2[s:e]
        holds = ((fl < kk1) & (kk1 <= fh)) | ((fl < kk2) & (kk2 <= fh))
        sel = holds & ((fh - fl <= _LIST_MAX) | force[s:e])
        if not bool(sel.any()):
            continue
        size = torch.where(sel, fh - fl, torch.zeros_like(fh))
        if int(size.sum()) > _LIST_CHUNK:  # bound the points listed at once; the rest stay unlisted
            sel = sel & (size.cumsum(0) <= max(_LIST_CHUNK, int(size[sel.nonzero()[0, 0]])))
        rows = sel.nonzero().squeeze(1)
        nr = rows.numel()
        # the window's points: columns [out_l, in_l) and [in_r, out_r) of the lines of listed rows
        renum = torch.full((m,), -1, dtype=torch.int64, device=device)
        renum[rows] = torch.arange(nr, device=device)
        parts = []
        for r_from, r_to in ((r_out_l, r_in_l), (r_in_r, r_out_r)):
            cell = (r_to != r_from).view(-1).nonzero().squeeze(1)
            grp = renum.index_select(0, cell // lmax)
            cell, grp = cell[grp >= 0], grp[grp >= 0]
            start = r_from.view(-1).index_select(0, cell)
            parts.append((cell, grp, start, r_to.view(-1).index_select(0, cell) - start))
        cell, grp_e, start, c_e = (torch.cat(v) for v in zip(*parts))
        total = int(c_e.sum())
        owner = torch.repeat_interleave(torch.arange(c_e.numel(), device=device), c_e, output_size=total)
        first = start.long().sub_(c_e.cumsum(0).sub_(c_e))
        point = first.index_select(0, owner).add_(torch.arange(total, device=device))
        a_e = a.view(-1).index_select(0, cell)
        qc_e = qc[s:e].index_select(0, cell // lmax)
        dx = lines.col.index_select(0, point).sub_(qc_e.index_select(0, owner))
        g_lo, g_hi = lo[s:e].index_select(0, rows), hi[s:e].index_select(0, rows)
        gl, gh = fl.index_select(0, rows), fh.index_select(0, rows)
        ks = [k.index_select(0, rows) for k in (kk1, kk2)]
        inside = [(gl < kr) & (kr <= gh) for kr in ks]
        ranks = [torch.where(ins, kr - gl, torch.ones_like(kr)) for ins, kr in zip(inside, ks)]
        span = (g_hi - g_lo).to(torch.int64)
        if metric.integer and int(span.sum()) <= 32 * total + (1 << 20):
            # histogram of each window's integer squared distances, one search per rank
            dx = dx.long().square_()
            if c_last != 1.0:
                dx.mul_(int(c_last))
            off = span.cumsum(0) - span
            shift = off - g_lo.to(torch.int64) - 1
            idx = (a_e.to(torch.int64) + shift.index_select(0, grp_e)).index_select(0, owner).add_(dx)
            cum = torch.bincount(idx, minlength=int(span.sum())).cumsum(0)
            before = torch.where(off > 0, cum.index_select(0, (off - 1).clamp_min(0)), torch.zeros_like(off))
            vals = [(torch.searchsorted(cum, before + r) - shift).to(torch.float64) for r in ranks]
        else:
            dx = dx.to(torch.float64)
            tval = a_e.to(torch.float64).index_select(0, owner).add_(dx.square_().mul_(c_last))
            vals = _select(grp_e.index_select(0, owner), tval, nr, ranks)  # type: ignore[assignment]
        for out, ins, val in zip((t1, t2), inside, vals):
            out[s + rows] = torch.where(ins, val, torch.full_like(val, math.nan))
        listed[s + rows] = True
    return f_lo, f_hi, t1, t2, listed


# ----------------------------------------------------------------------------- bracketing


def _solve(lines: _Lines, metric: _Metric, q: _Queries, k1: Tensor, k2: Tensor, lo: Tensor, hi: Tensor,
           n: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``T_{k1}``, ``T_{k2}`` (the ``k``-th smallest squared distance, 1-based) of every query.

    ``(lo, hi]``: first windows; ``n``: the size of each query's set (``F(tmax) = n``).
    Also returns the density of points per unit of ``T`` in the window that settled each
    query (for sizing later windows).
    """
    total = len(q)
    device = q.p.device
    out1 = torch.full((total,), math.nan, dtype=torch.float64, device=device)
    out2 = torch.full((total,), math.nan, dtype=torch.float64, device=device)
    dens_out = torch.zeros(total, dtype=torch.float64, device=device)
    pt = torch.arange(total, device=device)
    w1 = torch.ones(total, dtype=torch.bool, device=device)
    w2 = torch.ones(total, dtype=torch.bool, device=device)
    b_lo = torch.full((total,), -1.0, dtype=torch.float64, device=device)
    f_b_lo = torch.zeros(total, dtype=torch.int64, device=device)
    b_hi = torch.full((total,), metric.tmax, dtype=torch.float64, device=device)
    f_b_hi = n.clone()
    grow = torch.ones(total, dtype=torch.float64, device=device)
    for it in range(_MAX_PASSES):
        if not pt.numel():
            break
        if it == _MAX_PASSES - 1:  # last pass: list every remaining bracket whole
            lo, hi, force = b_lo, b_hi, torch.ones_like(w1)
        else:  # a window of one integer value, or the whole bracket, is listed however many points it holds
            minimal = (hi - lo <= 1) if metric.integer else torch.zeros_like(w1)
            force = minimal | ((lo == b_lo) & (hi == b_hi))
        f_lo, f_hi, t1, t2, listed = _window_pass(lines, metric, q.take(pt), lo, hi, k1, k2, force)
        got1 = listed & (f_lo < k1) & (k1 <= f_hi)
        got2 = listed & (f_lo < k2) & (k2 <= f_hi)
        dens = (f_hi - f_lo).clamp_min(1).to(torch.float64) / (hi - lo).clamp_min(1e-300)
        for got, want, val, out in ((got1, w1, t1, out1), (got2, w2, t2, out2)):
            m = got & want
            out[pt[m]] = val[m]
            dens_out[pt[m]] = dens[m]
        need1, need2 = w1 & ~got1, w2 & ~got2
        # each remaining rank's new bracket
        brackets = []
        for k in (k1, k2):
            below = f_lo >= k
            inside = ~below & (f_hi >= k)
            nlo = torch.where(below, b_lo, torch.where(inside, lo, hi))
            nflo = torch.where(below, f_b_lo, torch.where(inside, f_lo, f_hi))
            nhi = torch.where(below, lo, torch.where(inside, hi, b_hi))
            nfhi = torch.where(below, f_lo, torch.where(inside, f_hi, f_b_hi))
            brackets.append((nlo, nflo, nhi, nfhi))
        same = need1 & need2 & (brackets[0][0] == brackets[1][0]) & (brackets[0][2] == brackets[1][2])
        parts = [(same, k1, k2, True, True, brackets[0]),
                 (need1 & ~same, k1, k1, True, False, brackets[0]),
                 (need2 & ~same, k2, k2, False, True, brackets[1])]
        cols = {"pt": [], "k1": [], "k2": [], "w1": [], "w2": [], "blo": [], "fblo": [], "bhi": [], "fbhi": [],  # type: ignore[var-annotated]
                "dens": [], "grow": [], "wlo": [], "whi": []}
        for mask, ka, kb, wa, wb, (nlo, nflo, nhi, nfhi) in parts:
            idx = mask.nonzero().squeeze(1)
            if not idx.numel():
                continue
            cols["pt"].append(pt[idx])
            cols["k1"].append(ka[idx])
            cols["k2"].append(kb[idx])
            cols["w1"].append(torch.full((idx.numel(),), wa, dtype=torch.bool, device=device))
            cols["w2"].append(torch.full((idx.numel(),), wb, dtype=torch.bool, device=device))
            cols["blo"].append(nlo[idx])
            cols["fblo"].append(nflo[idx])
            cols["bhi"].append(nhi[idx])
            cols["fbhi"].append(nfhi[idx])
            cols["dens"].append(dens[idx])
            cols["grow"].append(grow[idx])
        if not cols["pt"]:
            break
        pt, k1, k2, w1, w2 = (torch.cat(cols[k]) for k in ("pt", "k1", "k2", "w1", "w2"))
        b_lo, f_b_lo, b_hi, f_b_hi = (torch.cat(cols[k]) for k in ("blo", "fblo", "bhi", "fbhi"))
        d, grow = torch.cat(cols["dens"]), torch.cat(cols["grow"]) * 2.0
        lo, hi = _next_window(metric, b_lo, f_b_lo, b_hi, f_b_hi, k1, k2, d, grow)
    return out1, out2, dens_out


def _next_window(metric: _Metric, b_lo: Tensor, f_lo: Tensor, b_hi: Tensor, f_hi: Tensor, k1: Tensor, k2: Tensor,
                 dens: Tensor, grow: Tensor) -> Tuple[Tensor, Tensor]:
    """The next window inside each bracket ``(b_lo, b_hi]``: sized to hold about ``_TARGET * grow`` points
    by the density ``dens`` and placed where that density puts the wanted ranks; the whole bracket
    when it holds few points; its lower half when the guess would be the whole bracket."""
    k_mid = 0.5 * (k1 + k2).to(torch.float64)
    from_lo = b_lo + (k_mid - f_lo.to(torch.float64)) / dens
    from_hi = b_hi - (f_hi.to(torch.float64) - k_mid) / dens
    centre = torch.where(k_mid - f_lo.to(torch.float64) <= f_hi.to(torch.float64) - k_mid, from_lo, from_hi)
    half = 0.5 * _TARGET * grow / dens
    lo = torch.maximum(b_lo, centre - half)
    hi = torch.minimum(b_hi, centre + half)
    if metric.integer:
        lo, hi = lo.floor(), hi.ceil()
        hi = torch.maximum(hi, lo + 1)
        lo = torch.minimum(lo, b_hi - 1).clamp_min(-1.0)
        hi = torch.minimum(hi, b_hi)
        lo = torch.maximum(lo, b_lo)
    else:
        hi = torch.maximum(hi, lo)
    whole = (f_hi - f_lo) <= _LIST_MAX
    lo = torch.where(whole, b_lo, lo)
    hi = torch.where(whole, b_hi, hi)
    mid = 0.5 * (b_lo + b_hi)
    if metric.integer:
        mid = mid.floor()
    # a window that would cover the bracket: its lower half (a bracket of one value stays whole)
    stuck = ~whole & (lo <= b_lo) & (hi >= b_hi) & (mid > b_lo) & (mid < b_hi)
    hi = torch.where(stuck, mid, hi)
    return lo, hi


# ----------------------------------------------------------------------------- driver


def _grid(n: int) -> Tensor:
    """Anchor positions on an axis of ``n`` pixels: every :data:`_GRID`-th and the last."""
    pos = list(range(0, n, _GRID))
    if pos[-1] != n - 1:
        pos.append(n - 1)
    return torch.tensor(pos, dtype=torch.int64)


def _sample_windows(lines: _Lines, metric: _Metric, q: _Queries, k1: Tensor, k2: Tensor
                    ) -> Tuple[Tensor, Tensor]:
    """First windows of the anchors: the ranks' positions among the squared distances to a
    sample of up to :data:`_SAMPLE` evenly spread points of Y, widened by 3 sampling sigmas."""
    device = q.p.device
    n = lines.count.index_select(0, q.p)
    size = n.clamp_max(_SAMPLE)
    i = torch.arange(_SAMPLE, device=device, dtype=torch.float64)
    pick = ((i.unsqueeze(0) + 0.5) * n.unsqueeze(1).to(torch.float64) / size.unsqueeze(1).to(torch.float64))
    pick = pick.floor().to(torch.int64).clamp_max((n - 1).clamp_min(0).unsqueeze(1))
    key = lines.keys.index_select(0, (lines.first_key.index_select(0, q.p).unsqueeze(1) + pick).reshape(-1))
    key = key.view(len(q), _SAMPLE)
    spatial = lines.spatial
    within = key % math.prod(spatial)
    t = metric.c[-1] * (within % spatial[-1] - q.c.unsqueeze(1)).to(torch.float64).square()
    rest = within // spatial[-1]
    for axis in reversed(range(len(spatial) - 1)):
        t = t + metric.c[axis] * ((rest % spatial[axis]).to(torch.float64) - q.u[axis].unsqueeze(1)).square()
        rest = rest // spatial[axis]
    t = torch.where(i.unsqueeze(0) < size.unsqueeze(1), t, torch.full_like(t, math.inf)).sort(1).values
    sz = size.to(torch.float64)
    bounds = []
    for k, sign in ((k1, -1.0), (k2, 1.0)):
        rho = (k.to(torch.float64) - 0.5) / n.to(torch.float64)
        margin = 3.0 * (sz * rho * (1 - rho)).sqrt() + 1.0
        at = (rho * sz + sign * margin)
        at = at.floor() - 1 if sign < 0 else at.ceil()
        inside = (at >= 0) & (at < sz)
        val = t.gather(1, at.clamp(0, _SAMPLE - 1).to(torch.int64).unsqueeze(1)).squeeze(1)
        edge = -1.0 if sign < 0 else metric.tmax
        bounds.append(torch.where(inside, val, torch.full_like(val, edge)))
    lo, hi = bounds
    return lo, torch.maximum(hi, lo + (1.0 if metric.integer else 0.0)).clamp_max(metric.tmax)


def _second_differences(h: Tensor, grids: Sequence[Tensor]) -> list:
    """Per axis, the second derivative of a function sampled on a grid ``h [P, *n]`` (nan where not
    sampled), by central differences over the (uneven) grid positions; nan at the grid's ends and
    where a neighbour is missing."""
    out = []
    for axis, g in enumerate(grids):
        dim = axis + 1
        n = g.numel()
        d2 = torch.full_like(h, math.nan)
        if n >= 3:
            gf = g.to(h.dtype)
            left, right = gf[1:-1] - gf[:-2], gf[2:] - gf[1:-1]
            shape = [1] * h.dim()
            shape[dim] = n - 2
            left, right = left.view(shape), right.view(shape)
            f0, fm, fp = h.narrow(dim, 1, n - 2), h.narrow(dim, 0, n - 2), h.narrow(dim, 2, n - 2)
            d2.narrow(dim, 1, n - 2).copy_(2 * ((fp - f0) / right - (f0 - fm) / left) / (left + right))
        out.append(d2)
    return out


def percentile_distances(x: Tensor, y: Tensor, spacing: Sequence[float], q: float) -> Tuple[Tensor, Tensor]:
    r""":math:`h(x, Y)` for every true pixel ``x`` of ``x``: the ``q``-quantile (``q`` in [0, 1], linear
    interpolation) of its distances to the true pixels of ``y`` of the same mask.

    Args:
        x, y: bool ``[P, *S]``.
        spacing: pixel size per spatial axis.
        q: the quantile.

    Returns:
        float64 ``[M]`` (the points of ``x`` in the order of ``x.reshape(-1).nonzero()``;
        ``nan`` where ``y``'s mask is empty) and each point's mask index ``[M]``.
    """
    p = x.shape[0]
    spatial = tuple(x.shape[1:])
    dims = len(spatial)
    device = x.device
    metric = _Metric(spacing, spatial)
    lines = _Lines(y, metric)
    n_all = math.prod(spatial)
    keys = x.reshape(-1).nonzero().squeeze(1)
    pair = keys // n_all
    out = torch.full((keys.numel(),), math.nan, dtype=torch.float64, device=device)
    ny = lines.count
    pos = (ny - 1).clamp_min(0).to(torch.float64) * q
    lo_i = pos.floor().to(torch.int64)
    hi_i = torch.minimum(lo_i + 1, (ny - 1).clamp_min(0))
    frac = pos - lo_i.to(torch.float64)
    k1_p, k2_p = lo_i + 1, hi_i + 1
    live = (ny.index_select(0, pair) > 0).nonzero().squeeze(1)
    if not live.numel():
        return out, pair
    pair_l = pair.index_select(0, live)
    within = keys.index_select(0, live) % n_all
    coord = []
    for n in reversed(spatial):
        coord.append(within % n)
        within = within // n
    coord.reverse()

    # anchors: a grid over the cells that hold points (their corners and those corners' axis
    # neighbours, for second differences), solved exactly by bracketing
    grids = [_grid(n).to(device) for n in spatial]
    sizes = [g.numel() for g in grids]
    cell = [(torch.searchsorted(g, v, right=True) - 1).clamp(0, max(g.numel() - 2, 0)) for g, v in zip(grids, coord)]
    want = torch.zeros((p,) + tuple(sizes), dtype=torch.bool, device=device)
    for bits in range(1 << dims):
        at = [pair_l] + [(c + ((bits >> (dims - 1 - a)) & 1)).clamp_max(sizes[a] - 1) for a, c in enumerate(cell)]
        want[tuple(at)] = True
    grown = want.clone()
    for a in range(dims):
        n = sizes[a]
        if n > 1:
            grown.narrow(a + 1, 1, n - 1).logical_or_(want.narrow(a + 1, 0, n - 1))
            grown.narrow(a + 1, 0, n - 1).logical_or_(want.narrow(a + 1, 1, n - 1))
    grown &= (ny > 0).view((p,) + (1,) * dims)
    at = grown.nonzero().unbind(1)  # type: ignore[assignment]
    a_pair = at[0]
    a_coord = [g.index_select(0, i) for g, i in zip(grids, at[1:])]
    aq = _Queries(a_pair, [c.to(torch.float64) for c in a_coord[:-1]], a_coord[-1])
    ak1, ak2 = k1_p.index_select(0, a_pair), k2_p.index_select(0, a_pair)
    lo, hi = _sample_windows(lines, metric, aq, ak1, ak2)
    t1a, t2a, dens_a = _solve(lines, metric, aq, ak1, ak2, lo, hi, ny.index_select(0, a_pair))
    dense = []
    for v in (t1a.sqrt(), t2a.sqrt(), dens_a):
        d = torch.full(grown.shape, math.nan, dtype=torch.float64, device=device)
        d[at] = v
        dense.append(d)
    h1_grid, h2_grid, dens_grid = dense
    curv = _second_differences(h1_grid, grids)

    # every point: one window around the anchors' interpolation, corrected by their curvature
    h1 = torch.zeros(live.numel(), dtype=torch.float64, device=device)
    h2 = torch.zeros_like(h1)
    dens = torch.full_like(h1, math.inf)
    curv_sum = [torch.zeros_like(h1) for _ in range(dims)]
    curv_n = [torch.zeros_like(h1) for _ in range(dims)]
    span = []
    for a, (g, v, c) in enumerate(zip(grids, coord, cell)):
        g0 = g.index_select(0, c)
        g1 = g.index_select(0, (c + 1).clamp_max(sizes[a] - 1))
        span.append((v - g0, g1 - v, (g1 - g0).clamp_min(1)))
    for bits in range(1 << dims):
        idx = [pair_l]
        wgt = torch.ones_like(h1)
        for a, c in enumerate(cell):
            up = (bits >> (dims - 1 - a)) & 1
            idx.append((c + up).clamp_max(sizes[a] - 1))
            below, above, width = span[a]
            wgt = wgt * ((below if up else above).to(torch.float64) / width.to(torch.float64))
        idx = tuple(idx)  # type: ignore[assignment]
        h1 += wgt * h1_grid[idx]
        h2 += wgt * h2_grid[idx]
        dens = torch.minimum(dens, dens_grid[idx])
        for a in range(dims):
            c2 = curv[a][idx]
            ok = ~torch.isnan(c2)
            curv_sum[a] += torch.where(ok, c2, torch.zeros_like(c2))
            curv_n[a] += ok.to(torch.float64)
    for a in range(dims):
        below, above, _ = span[a]
        f2 = curv_sum[a] / curv_n[a].clamp_min(1)
        corr = 0.5 * f2 * (below * above).to(torch.float64)
        h1 -= corr
        h2 -= corr
    delta = (_TARGET / (4.0 * dens.clamp_min(1e-12) * h2.clamp_min(1.0))).clamp(_DELTA_MIN, _DELTA_MAX)
    lo = (h1 - delta).clamp_min(0).square()
    lo = torch.where(h1 - delta > 0, lo, torch.full_like(lo, -1.0))
    hi = (h2 + delta).square().clamp_max(metric.tmax)
    if metric.integer:
        lo, hi = lo.floor(), hi.ceil().clamp_max(metric.tmax)
        hi = torch.maximum(hi, lo + 1)
    q_pts = _Queries(pair_l, [c.to(torch.float64) for c in coord[:-1]], coord[-1])
    k1, k2 = k1_p.index_select(0, pair_l), k2_p.index_select(0, pair_l)
    t1, t2, _ = _solve(lines, metric, q_pts, k1, k2, lo, hi, ny.index_select(0, pair_l))
    d1, d2 = (t1 * metric.unit).sqrt(), (t2 * metric.unit).sqrt()
    out[live] = d1 + (d2 - d1) * frac.index_select(0, pair_l)
    return out, pair


#: Bounds of the half-width (in units of sqrt(T)) of a point's first window.
_DELTA_MIN = 0.1
_DELTA_MAX = 0.25


def percentile_distance_sums(x: Tensor, y: Tensor, spacing: Sequence[float], q: float) -> Tensor:
    r""":math:`\sum_{x \in X} h(x, Y)` per mask ``[P]`` (float64; 0 where either set is empty)."""
    h, pair = percentile_distances(x, y, spacing, q)
    h = torch.where(torch.isnan(h), torch.zeros_like(h), h)
    return torch.zeros(x.shape[0], dtype=torch.float64, device=x.device).index_add_(0, pair, h)
