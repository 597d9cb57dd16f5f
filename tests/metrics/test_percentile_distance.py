"""Seed 000 eq. 7 without all pairs (metrics._percentile_distance): equal to the brute force on many
random small masks (1D/2D/3D, odd and non-square sizes, empty sets, single points, isotropic,
integer-ratio and irrational spacing, every percentile), on the paths that only rare inputs take
(missed windows, ties, sorting instead of a histogram), and through ``modified_hausdorff``."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from seglosses import metrics as M
from seglosses.metrics import _percentile_distance as PD
from seglosses.metrics import surface as S

from . import _ref as R


def brute(x: torch.Tensor, y: torch.Tensor, spacing, q: float) -> np.ndarray:
    """h(x, Y) of every true pixel of x (mask by mask, in flat order): all pairs, numpy.percentile."""
    out = []
    for b in range(x.shape[0]):
        cx = np.argwhere(x[b].numpy()) * np.asarray(spacing, float)
        cy = np.argwhere(y[b].numpy()) * np.asarray(spacing, float)
        if len(cy) == 0:
            out.extend([math.nan] * len(cx))
        elif len(cx):
            out.extend(np.percentile(cdist(cx, cy), 100 * q, axis=1))
    return np.asarray(out, float)


def check(x, y, spacing, q):
    got, pair = PD.percentile_distances(x, y, spacing, q)
    ref = brute(x, y, spacing, q)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(pair.numpy(), np.repeat(np.arange(x.shape[0]), x.flatten(1).sum(1).numpy()))


SPACINGS = {1: [(1.0,), (0.7,)], 2: [(1.0, 1.0), (2.0, 2.0), (1.0, 0.6), (0.7, 1.3)],
            3: [(1.0, 1.0, 1.0), (2.0, 1.0, 0.5), (1.1, 0.9, 1.7)]}


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_equals_brute_force_on_random_small_masks(dims):
    gen = torch.Generator().manual_seed(10 + dims)
    top = {1: 40, 2: 17, 3: 8}[dims]
    for trial in range(30):
        shape = tuple(int(v) for v in torch.randint(1, top, (dims,), generator=gen))
        p = int(torch.randint(1, 4, (1,), generator=gen))
        fx, fy = torch.rand(2, generator=gen).tolist()
        x = torch.rand((p,) + shape, generator=gen) < fx
        y = torch.rand((p,) + shape, generator=gen) < fy
        spacing = SPACINGS[dims][trial % len(SPACINGS[dims])]
        q = (0.95, 0.5, 0.0, 1.0, 0.3, 0.05)[trial % 6]
        check(x, y, spacing, q)


def test_empty_sets_and_single_points():
    x = torch.zeros(4, 5, 7, dtype=torch.bool)
    y = torch.zeros(4, 5, 7, dtype=torch.bool)
    x[1, 2, 3] = True  # a point against an empty set: nan
    y[2, 0, 0] = True  # an empty set against a point: nothing
    x[3, 4, 6] = y[3, 0, 0] = True  # one point each: their distance
    got, pair = PD.percentile_distances(x, y, (1.0, 1.0), 0.95)
    assert pair.tolist() == [1, 3]
    assert math.isnan(got[0].item())
    assert got[1].item() == pytest.approx(math.hypot(4, 6), abs=0)
    assert PD.percentile_distance_sums(x, y, (1.0, 1.0), 0.95).tolist() == [0.0, 0.0, 0.0, math.hypot(4, 6)]


def test_hand_computed_line():
    # x = {0}, Y = {3, 4}: pct95 {3, 4} = 3.95; x = {3, 4} against {0}: 3 and 4
    a = torch.zeros(1, 6, dtype=torch.bool)
    b = torch.zeros(1, 6, dtype=torch.bool)
    a[0, 0] = True
    b[0, 3:5] = True
    assert PD.percentile_distances(a, b, (1.0,), 0.95)[0].tolist() == [pytest.approx(3.95, abs=1e-15)]
    assert PD.percentile_distances(b, a, (2.0,), 0.95)[0].tolist() == [6.0, 8.0]


def test_large_masks_take_every_path():
    # discs, blobs and noise in 61x50: anchors, interpolated windows, misses and retries
    gen = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.arange(61), torch.arange(50), indexing="ij")
    disc = lambda cy, cx, r: ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r  # noqa: E731
    field = torch.nn.functional.interpolate(torch.randn(2, 1, 5, 4, generator=gen), size=(61, 50),
                                            mode="bilinear")[:, 0]
    x = torch.stack([disc(25, 22, 16), field[0] > 0.2, torch.rand(61, 50, generator=gen) < 0.3])
    y = torch.stack([disc(32, 28, 18), field[1] > 0.4, torch.rand(61, 50, generator=gen) < 0.05])
    for spacing in [(1.0, 1.0), (0.8, 1.1)]:
        check(x, y, spacing, 0.95)
        check(y, x, spacing, 0.95)


def test_exact_when_every_window_misses(monkeypatch):
    # tiny first windows and tiny listing bounds: every point is solved by bracketing
    monkeypatch.setattr(PD, "_DELTA_MIN", 1e-3)
    monkeypatch.setattr(PD, "_DELTA_MAX", 1e-3)
    monkeypatch.setattr(PD, "_TARGET", 1)
    monkeypatch.setattr(PD, "_LIST_MAX", 2)
    monkeypatch.setattr(PD, "_CHUNK", 1 << 9)
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(2, 17, 23, generator=gen) < 0.4
    y = torch.rand(2, 17, 23, generator=gen) < 0.4
    for spacing in [(1.0, 1.0), (1.0, 0.6), (0.7, 1.3)]:
        for q in (0.95, 0.5):
            check(x, y, spacing, q)


def test_ties_beyond_the_listing_bound(monkeypatch):
    # a full ring of pixels at one squared distance (25: (3,4), (5,0), ...) around the query
    monkeypatch.setattr(PD, "_LIST_MAX", 1)
    y = torch.zeros(1, 11, 11, dtype=torch.bool)
    for dy in range(-5, 6):
        for dx in range(-5, 6):
            if dy * dy + dx * dx == 25:
                y[0, 5 + dy, 5 + dx] = True
    x = torch.zeros_like(y)
    x[0, 5, 5] = True
    got = PD.percentile_distances(x, y, (1.0, 1.0), 0.95)[0]
    assert got.tolist() == [5.0]
    check(y, x | y, (1.0, 1.0), 0.5)


def test_histogram_and_sort_selection_agree(monkeypatch):
    gen = torch.Generator().manual_seed(6)
    x = torch.rand(2, 19, 27, generator=gen) < 0.5
    y = torch.rand(2, 19, 27, generator=gen) < 0.5
    fast, _ = PD.percentile_distances(x, y, (1.0, 1.0), 0.9)
    monkeypatch.setattr(PD._Metric, "__init__", _general_metric)
    slow, _ = PD.percentile_distances(x, y, (1.0, 1.0), 0.9)
    torch.testing.assert_close(fast, slow, rtol=0, atol=0)


def _general_metric(self, spacing, spatial):
    self.integer, self.fast, self.unit = False, False, 1.0
    self.c = tuple(float(s) ** 2 for s in spacing)
    self.tmax = sum(c * (n - 1) ** 2 for c, n in zip(self.c, spatial))
    self.dtype = torch.float64


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), p=st.integers(1, 3), fx=st.floats(0, 1), fy=st.floats(0, 1),
       q=st.sampled_from([0.0, 0.25, 0.5, 0.9, 0.95, 1.0]), seed=st.integers(0, 2**16),
       spacing=st.sampled_from([(1.0, 1.0), (1.0, 0.6), (0.7, 1.3), (3.0, 1.0)]))
def test_hypothesis_equals_brute_force(h, w, p, fx, fy, q, seed, spacing):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(p, h, w, generator=gen) < fx
    y = torch.rand(p, h, w, generator=gen) < fy
    check(x, y, spacing, q)


# ---------------------------------------------------------------- through the metric
@pytest.mark.parametrize("points", ["foreground", "surface"])
def test_modified_hausdorff_without_pairs_equals_brute_force(points, monkeypatch):
    monkeypatch.setattr(S, "_ALL_PAIRS_MAX", 0)  # always the path that forms no pairs
    gen = torch.Generator().manual_seed(7)
    for shape, spacing in [((2, 23, 31), (1.0, 0.6)), ((2, 7, 9, 6), (2.0, 1.0, 0.5)), ((1, 40, 33), None)]:
        x = torch.rand((shape[0], 1) + shape[1:], generator=gen, dtype=torch.float64)
        t = (torch.rand(shape, generator=gen) > 0.6).long()
        got = M.modified_hausdorff(x, t, spacing=spacing, reduction="none", points=points)[:, 0]
        sp = spacing or (1.0,) * (len(shape) - 1)
        for b in range(shape[0]):
            xm, ym = x[b, 0].numpy() >= 0.5, t[b].numpy() > 0
            if points == "surface":
                xm, ym = R.surface(xm), R.surface(ym)
            assert got[b].item() == pytest.approx(R.modified_hausdorff(xm, ym, sp), rel=1e-9)


def test_both_paths_of_the_metric_agree(monkeypatch):
    gen = torch.Generator().manual_seed(8)
    x = torch.rand(3, 2, 21, 18, generator=gen, dtype=torch.float64)
    t = torch.randint(0, 2, (3, 21, 18), generator=gen)
    kw = dict(mode="multiclass", reduction="none", ignore_index=None)
    x[2, :, :, :] = torch.tensor([1.0, 0.0], dtype=torch.float64).view(2, 1, 1)  # image 2: no foreground predicted
    monkeypatch.setattr(S, "_ALL_PAIRS_MAX", 1 << 40)
    pairs = M.modified_hausdorff(x, t, **kw)
    monkeypatch.setattr(S, "_ALL_PAIRS_MAX", 0)
    none = M.modified_hausdorff(x, t, **kw)
    torch.testing.assert_close(none, pairs, rtol=1e-12, atol=1e-12, equal_nan=True)
    assert math.isinf(none[2, 1].item())  # one set empty: `missing`


@pytest.mark.slow
def test_tile_of_two_discs_matches_the_known_value():
    # two discs of about 20,000 pixels in 256x256 (the benchmark tile), both paths' value
    yy, xx = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
    c = 127.5
    a = ((yy - c + 12) ** 2 + (xx - c + 12) ** 2) <= 6400
    b = ((yy - c - 12) ** 2 + (xx - c - 12) ** 2) <= 6400
    v = M.modified_hausdorff(a[None, None].float(), b[None].long())
    assert v.item() == pytest.approx(128.96144, abs=1e-4)
