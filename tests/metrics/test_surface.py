"""Surface metrics: geometric hand cases with anisotropic spacing, conventions, the brute-force
reference, seed 000 eq. 7, bad input, and agreement with MONAI and medpy."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from seglosses import metrics as M
from seglosses.metrics import _surface_points as SP
from seglosses.metrics import surface as S

from . import _ref as R

DISTANCE_METRICS = (M.hausdorff, M.hd95, M.assd, M.modified_hausdorff)


def _binary(pred_points, true_points, shape):
    """Float prediction [1, 1, *S] and label target [1, *S] from lists of pixel coordinates."""
    p = torch.zeros((1, 1) + shape)
    g = torch.zeros((1,) + shape, dtype=torch.long)
    for pt in pred_points:
        p[(0, 0) + pt] = 1.0
    for pt in true_points:
        g[(0,) + pt] = 1
    return p, g


# ---------------------------------------------------------------- surfaces
def test_surface_extraction_2d_3d_matches_erosion():
    gen = torch.Generator().manual_seed(0)
    for shape in [(2, 7, 9), (2, 5, 6, 7), (3, 1, 5)]:
        m = torch.rand(shape, generator=gen) > 0.4
        got = S.surface_mask(m)
        for i in range(shape[0]):
            np.testing.assert_array_equal(got[i].numpy(), R.surface(m[i].numpy()))
    # a filled 3x4 block in a 5x6 image: its 2x... interior is (1..1, 1..2) -> 10 surface pixels of 12
    block = torch.zeros(1, 5, 6, dtype=torch.bool)
    block[0, 1:4, 1:5] = True
    assert int(S.surface_mask(block).sum()) == 10


# ---------------------------------------------------------------- hand-computed values
def test_two_points_2d_anisotropic():
    # pred {(0, 0)}, target {(3, 4)} with spacing (2, 0.5): d = sqrt(6^2 + 2^2) = sqrt(40)
    p, g = _binary([(0, 0)], [(3, 4)], (5, 7))
    sp = (2.0, 0.5)
    d = math.sqrt(40.0)
    for fn in (M.hausdorff, M.hd95, M.assd, M.modified_hausdorff):
        assert fn(p, g, spacing=sp).item() == pytest.approx(d, rel=1e-6)
    assert M.surface_dice(p, g, spacing=sp, tolerance=6.5).item() == 1.0
    assert M.surface_dice(p, g, spacing=sp, tolerance=6.0).item() == 0.0
    # normalised by the diagonal between corner pixel centres: sqrt((4*2)^2 + (6*0.5)^2)
    assert M.modified_hausdorff(p, g, spacing=sp, normalize=True).item() == pytest.approx(d / math.sqrt(64 + 9))


def test_hand_case_3d_anisotropic():
    # pred {(0,0,0)}; target {(0,0,0), (2,0,0)}; spacing (1.5, 1, 1): target point 2 is 3.0 away
    # D_pred = {0}, D_true = {0, 3}
    p, g = _binary([(0, 0, 0)], [(0, 0, 0), (2, 0, 0)], (3, 2, 4))
    sp = (1.5, 1.0, 1.0)
    assert M.hausdorff(p, g, spacing=sp).item() == pytest.approx(3.0)
    assert M.assd(p, g, spacing=sp).item() == pytest.approx(1.0)  # (0 + 0 + 3) / 3
    # 50th percentile: max(pct50{0}, pct50{0, 3}) = 1.5 ; pooled pct50{0, 0, 3} = 0
    assert M.hd95(p, g, spacing=sp, percentile=50).item() == pytest.approx(1.5)
    assert M.hd95(p, g, spacing=sp, percentile=50, convention="pooled").item() == pytest.approx(0.0)
    # 95th: max(0, 0 + 0.95 * 3) = 2.85 ; pooled: position 0.95 * 2 = 1.9 -> 0 + 0.9 * 3 = 2.7
    assert M.hd95(p, g, spacing=sp).item() == pytest.approx(2.85)
    assert M.hd95(p, g, spacing=sp, convention="pooled").item() == pytest.approx(2.7)
    assert M.surface_dice(p, g, spacing=sp, tolerance=1.0).item() == pytest.approx(2 / 3)
    # eq. 7: h(x, Y) = pct95{0, 3} = 2.85; h(y1, X) = 0, h(y2, X) = 3 -> (2.85 + 1.5) / 2
    assert M.modified_hausdorff(p, g, spacing=sp).item() == pytest.approx(2.175)


def test_squares_2d_surface_and_interior():
    # target: 4x4 square at rows 1-4, cols 1-4 of 7x8; pred: the same square shifted right by 2
    p = torch.zeros(1, 1, 7, 8)
    p[..., 1:5, 3:7] = 1
    g = torch.zeros(1, 7, 8, dtype=torch.long)
    g[..., 1:5, 1:5] = 1
    # every surface point of one square lies within 2 of the other's surface; the far column
    # (col 6 for pred, col 1 for target) is exactly 2 away from the other's nearest surface column
    assert M.hausdorff(p, g).item() == pytest.approx(2.0)
    # brute force for the rest
    dp, dg = R.surface_distances(p[0, 0].numpy() > 0, g[0].numpy() > 0, (1.0, 1.0))
    pooled = np.concatenate([dp, dg])
    assert M.assd(p, g).item() == pytest.approx(pooled.mean())
    assert M.hd95(p, g, convention="pooled").item() == pytest.approx(np.percentile(pooled, 95))
    assert M.hd95(p, g).item() == pytest.approx(max(np.percentile(dp, 95), np.percentile(dg, 95)))
    assert M.surface_dice(p, g, tolerance=1.0).item() == pytest.approx((pooled <= 1.0).mean())
    assert M.hd95(p, g, percentile=100).item() == M.hausdorff(p, g).item()


def test_perfect_prediction_gives_zero_distance_and_unit_surface_dice():
    gen = torch.Generator().manual_seed(0)
    t = (torch.rand(2, 6, 9, generator=gen) > 0.5).long()
    p = t.unsqueeze(1).float()
    for fn in (M.hausdorff, M.hd95, M.assd):
        assert fn(p, t).item() == 0.0
    assert M.surface_dice(p, t, tolerance=0.0).item() == 1.0
    # eq. 7 does not vanish at a perfect prediction (percentile over all points of the other set)
    assert M.modified_hausdorff(p, t).item() > 0


# ---------------------------------------------------------------- conventions
def test_empty_conventions():
    p = torch.zeros(3, 1, 4, 5)
    g = torch.zeros(3, 4, 5, dtype=torch.long)
    g[1, 2, 2] = 1  # image 1: empty prediction
    p[2, 0, 1, 1] = 1  # image 2: empty target
    diag = math.hypot(3, 4)
    for fn in DISTANCE_METRICS:
        v = fn(p, g, reduction="none")[:, 0]
        assert v[0] == 0 and math.isinf(v[1]) and math.isinf(v[2]), fn.__name__
        v = fn(p, g, reduction="none", empty="nan", missing="nan")[:, 0]
        assert bool(torch.isnan(v).all()), fn.__name__
        v = fn(p, g, reduction="none", empty=-1.0, missing="diagonal")[:, 0]
        torch.testing.assert_close(v, torch.tensor([-1.0, diag, diag]))
        v = fn(p, g, reduction="none", missing=100.0)[:, 0]
        torch.testing.assert_close(v, torch.tensor([0.0, 100.0, 100.0]))
        assert math.isinf(fn(p, g).item())  # an inf value makes the mean inf
        assert fn(p, g, missing="nan").item() == 0.0  # NaN left out of the mean
    v = M.surface_dice(p, g, reduction="none")[:, 0]
    torch.testing.assert_close(v, torch.tensor([1.0, 0.0, 0.0]))
    assert math.isnan(M.surface_dice(p, g, reduction="none", empty="nan")[0, 0].item())


def test_multiclass_include_background_and_label_map_prediction():
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 6, 7, generator=gen).softmax(1)
    t = torch.randint(0, 3, (2, 6, 7), generator=gen)
    full = M.hd95(x, t, mode="multiclass", reduction="none")
    assert full.shape == (2, 3)
    torch.testing.assert_close(M.hd95(x, t, mode="multiclass", reduction="none", include_background=False),
                               full[:, 1:])
    torch.testing.assert_close(M.hd95(x.argmax(1), t, mode="multiclass", num_classes=3, reduction="none"), full)
    for b in range(2):
        for k in range(3):
            dp, dg = R.surface_distances((x[b].argmax(0) == k).numpy(), (t[b] == k).numpy(), (1.0, 1.0))
            assert full[b, k].item() == pytest.approx(max(np.percentile(dp, 95), np.percentile(dg, 95)), rel=1e-5)


def test_ignore_index_drops_surface_points():
    # target: columns 0-1 foreground, columns 4-5 ignored; pred: columns 0-1 and a blob in the ignored part
    g = torch.zeros(1, 4, 6, dtype=torch.long)
    g[..., :, :2] = 1
    g[..., :, 4:] = 255
    p = g.eq(1).unsqueeze(1).float()
    p[..., 1:3, 5] = 1.0
    assert math.isinf(0 * M.hausdorff(p, g.clamp_max(1)).item()) is False  # without ignore: the blob counts
    assert M.hausdorff(p, g.clamp_max(1)).item() > 0
    assert M.hausdorff(p, g, ignore_index=255).item() == 0.0
    assert M.assd(p, g, ignore_index=255).item() == 0.0


@pytest.mark.parametrize("backend", ["auto", "scipy"])
def test_surface_metrics_extracts_once(monkeypatch, backend):
    # "auto": the surface points of all pairs indexed once per surface and searched once per
    # direction; an EDT backend: one distance transform call for both directions of all pairs
    calls = []
    names = ["_PointSet", "_nearest_sq"] if backend == "auto" else ["edt"]
    for name in names:
        real = getattr(SP, name)

        def counting(*args, real=real, name=name, **kwargs):
            calls.append((name, tuple(args[0].shape) if name != "_nearest_sq" else None))
            return real(*args, **kwargs)

        monkeypatch.setattr(SP, name, counting)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 5, 6, 7, generator=gen).softmax(1)
    t = torch.randint(0, 3, (2, 5, 6, 7), generator=gen)
    sp = (1.0, 0.7, 1.3)
    out = M.surface_metrics(
        x, t, mode="multiclass", spacing=sp, reduction="none", backend=backend,
        metrics={"hausdorff": {}, "hd95": {"percentile": 90}, "assd": {}, "surface_dice": {"tolerance": [1, 2, 3]},
                 "modified_hausdorff": {"points": "surface"}},
    )
    if backend == "auto":  # both surfaces of the 6 pairs, with an empty margin on the first two axes
        assert calls == [("_PointSet", (6, 7, 8, 7))] * 2 + [("_nearest_sq", None)] * 2
    else:
        assert calls == [("edt", (2 * 2 * 3, 5, 6, 7))]
    torch.testing.assert_close(out["hausdorff"], M.hausdorff(x, t, mode="multiclass", spacing=sp, reduction="none"))
    torch.testing.assert_close(out["hd95"], M.hd95(x, t, mode="multiclass", spacing=sp, reduction="none",
                                                   percentile=90))
    torch.testing.assert_close(out["assd"], M.assd(x, t, mode="multiclass", spacing=sp, reduction="none"))
    torch.testing.assert_close(out["modified_hausdorff"], M.modified_hausdorff(
        x, t, mode="multiclass", spacing=sp, reduction="none", points="surface"))
    for k, tol in enumerate([1, 2, 3]):
        torch.testing.assert_close(out["surface_dice"][:, k], M.surface_dice(
            x, t, mode="multiclass", spacing=sp, reduction="none", tolerance=tol)[:, k])


def test_crop_to_bounding_box_changes_nothing(monkeypatch):
    # on the CPU the masks are cropped to their common bounding box (+1 pixel); compare with the full image
    gen = torch.Generator().manual_seed(6)
    x = torch.zeros(4, 1, 13, 17, 6)
    x[0, 0, 3:6, 4:9, 2:4] = torch.rand(3, 5, 2, generator=gen)
    x[1, 0, 0:3, 14:17, 0:2] = 1.0  # touching the image border
    t = torch.zeros(4, 13, 17, 6, dtype=torch.long)
    t[0, 4:8, 5:7, 1:5] = 1
    t[1, 1:2, 15:17, 0:1] = 1
    t[2, 6, 6, 3] = 1  # image 2: empty prediction; image 3: both empty
    metrics = {"hausdorff": {"missing": "diagonal"}, "hd95": {}, "assd": {}, "surface_dice": {},
               "modified_hausdorff": {"missing": "diagonal"}}
    kw = dict(metrics=metrics, spacing=(1.0, 0.5, 2.0), reduction="none")
    cropped = M.surface_metrics(x, t, **kw)
    monkeypatch.setattr(SP, "_bounding_box", lambda union: (slice(None),) * union.dim())
    full = M.surface_metrics(x, t, **kw)
    for k in metrics:
        torch.testing.assert_close(cropped[k], full[k], msg=k)


def test_torch_backend_equals_cpu_backend():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(3, 1, 9, 14, generator=gen)
    t = (torch.rand(3, 9, 14, generator=gen) > 0.5).long()
    for fn in (M.hausdorff, M.hd95, M.assd):
        torch.testing.assert_close(fn(x, t, spacing=(0.8, 1.1), backend="torch", reduction="none"),
                                   fn(x, t, spacing=(0.8, 1.1), backend="scipy", reduction="none"))


# ---------------------------------------------------------------- the point search
def _nearest_brute(q, r, spacing):
    """Distances of every true pixel of q[i] to the nearest of r[i], by all pairs (inf: r[i] empty)."""
    from scipy.spatial.distance import cdist

    out = []
    for i in range(q.shape[0]):
        a = np.argwhere(q[i].numpy()) * np.asarray(spacing, float)
        b = np.argwhere(r[i].numpy()) * np.asarray(spacing, float)
        if len(a):
            out.append(cdist(a, b).min(1) if len(b) else np.full(len(a), np.inf))
    return np.concatenate(out) if out else np.zeros(0)


@pytest.mark.parametrize("shape", [(9,), (1, 6), (7, 1), (5, 9), (13, 4), (4, 5, 6), (3, 1, 7), (2, 3, 4, 5)])
@pytest.mark.parametrize("budget", [0.0, S._SEARCH_BUDGET, math.inf])
def test_mutual_distances_against_brute_force(shape, budget):
    # every density mix (near points, far points, empty lines), a mask with no points in the
    # other set, isotropic and anisotropic spacing; budget 0 sends the far points to a
    # distance transform, inf keeps them in the search
    gen = torch.Generator().manual_seed(len(shape) * 10 + shape[0])
    for dens_a, dens_b in [(0.3, 0.3), (0.05, 0.02), (0.5, 0.01), (0.01, 0.5)]:
        for spacing in [(1.0,) * len(shape), tuple(0.3 + 2 * torch.rand(len(shape), generator=gen).tolist()[i]
                                                  for i in range(len(shape)))]:
            a = torch.rand((3,) + shape, generator=gen) < dens_a
            b = torch.rand((3,) + shape, generator=gen) < dens_b
            b[1] = False
            da, db = S.mutual_distances(a, b, spacing, budget=budget, backend="scipy")
            for got, ref in ((da, _nearest_brute(a, b, spacing)), (db, _nearest_brute(b, a, spacing))):
                assert got.dtype == torch.float64 and got.shape == ref.shape
                np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_mutual_distances_torch_scans_equal_numpy_scans(monkeypatch):
    # off the CPU the point sets come from torch's nonzero and cumsum: the same values
    gen = torch.Generator().manual_seed(12)
    for shape in [(5, 9), (4, 5, 6)]:
        a = torch.rand((3,) + shape, generator=gen) < 0.2
        b = torch.rand((3,) + shape, generator=gen) < 0.05
        spacing = (0.7,) + (1.2,) * (len(shape) - 1)
        ref = S.mutual_distances(a, b, spacing)
        monkeypatch.setattr(SP, "_numpy_scans", lambda t: False)
        got = S.mutual_distances(a, b, spacing)
        monkeypatch.undo()
        for g, r in zip(got, ref):
            torch.testing.assert_close(g, r, rtol=0, atol=0)


def test_mutual_distances_far_and_border_cases():
    # a point with no other point on its own or the adjacent lines (the bound from the
    # points next to it in memory order), points on the image border, one point per mask
    a = torch.zeros(3, 12, 9, dtype=torch.bool)
    b = torch.zeros(3, 12, 9, dtype=torch.bool)
    a[0, 11, 8] = True
    b[0, 0, 0] = True  # opposite corners
    a[1, 5, 0] = a[1, 5, 8] = True
    b[1, 0, 4] = b[1, 11, 4] = True
    a[2, 6, 3] = True
    b[2, 2:10, 7] = True  # a vertical line: nearest at (6, 7)
    for spacing in [(1.0, 1.0), (0.5, 2.0)]:
        for budget in (0.0, math.inf):
            # exact in float64 (the fallback transform from scipy here; the CPU default, the
            # `edt` package, rounds to float32)
            da, db = S.mutual_distances(a, b, spacing, budget=budget, backend="scipy")
            np.testing.assert_allclose(da.numpy(), _nearest_brute(a, b, spacing), rtol=1e-12)
            np.testing.assert_allclose(db.numpy(), _nearest_brute(b, a, spacing), rtol=1e-12)
        da, db = S.mutual_distances(a, b, spacing)
        np.testing.assert_allclose(da.numpy(), _nearest_brute(a, b, spacing), rtol=1e-6)
        np.testing.assert_allclose(db.numpy(), _nearest_brute(b, a, spacing), rtol=1e-6)
    assert S.mutual_distances(a, b, (1.0, 1.0))[0][0].item() == pytest.approx(math.hypot(11, 8))


@pytest.mark.parametrize("q", [0.0, 0.03, 0.3, 0.5, 0.77, 0.95, 1.0])
def test_segment_quantile_equals_numpy(q):
    gen = torch.Generator().manual_seed(int(q * 100))
    counts = torch.tensor([0, 1, 2, 7, 40, 3])
    pair = torch.repeat_interleave(torch.arange(6), counts)
    for values in (torch.rand(int(counts.sum()), generator=gen, dtype=torch.float64),
                   torch.randint(0, 4, (int(counts.sum()),), generator=gen).double().sqrt()):  # ties
        got = S._segment_quantile(values, pair, counts, q)
        for i in range(1, 6):
            assert got[i].item() == pytest.approx(np.quantile(values[pair == i].numpy(), q), abs=1e-12)


def test_bounding_box_edge_cases():
    m = torch.zeros(2, 5, 6, 4, dtype=torch.bool)
    assert S._bounding_box(m) == (slice(None), slice(0, 1), slice(0, 1), slice(0, 1))  # nothing anywhere
    m[1, 0, 5, 2] = True  # on the border: the box cannot grow past it
    assert S._bounding_box(m) == (slice(None), slice(0, 2), slice(4, 6), slice(1, 4))
    m[0, 3, 1, 0] = True
    assert S._bounding_box(m) == (slice(None), slice(0, 5), slice(0, 6), slice(0, 4))


def _metric_cases():
    gen = torch.Generator().manual_seed(11)
    for shape, spacing in [((17, 23), None), ((17, 23), (0.6, 1.7)), ((7, 9, 11), (1.0, 0.5, 2.0))]:
        x = torch.rand((5, 3) + shape, generator=gen).softmax(1)
        t = torch.randint(0, 3, (5,) + shape, generator=gen)
        x[0, 2] = 0.0  # class 2 absent from image 0 (prediction and target)
        t[0][t[0] == 2] = 0
        x[1, 1] = 0.0  # class 1 predicted nowhere in image 1
        t[2, :2] = 255  # ignored rows (one on the border)
        yield x, t, spacing


def test_point_search_equals_distance_transform_backends():
    # backend="auto" (the point search) gives the values of the distance transform route
    for x, t, spacing in _metric_cases():
        kw = dict(mode="multiclass", spacing=spacing, reduction="none", ignore_index=255)
        spec = {"hausdorff": {}, "hd95": {"percentile": 90}, "assd": {}, "surface_dice": {"tolerance": 1.5}}
        auto = M.surface_metrics(x, t, metrics=spec, backend="auto", **kw)
        for backend in ("scipy", "torch"):
            other = M.surface_metrics(x, t, metrics=spec, backend=backend, **kw)
            for k in spec:
                torch.testing.assert_close(auto[k], other[k], msg=f"{k} {backend}")
        pooled = M.hd95(x, t, convention="pooled", **kw)
        torch.testing.assert_close(pooled, M.hd95(x, t, convention="pooled", backend="scipy", **kw))


def test_point_search_against_brute_force_metrics():
    # hausdorff, hd95 (both conventions), assd and surface dice from brute-force surface distances
    for x, t, spacing in _metric_cases():
        sp = spacing or (1.0,) * (x.dim() - 2)
        kw = dict(mode="multiclass", spacing=spacing, reduction="none")
        t = t.clamp_max(2)
        got = M.surface_metrics(x, t, metrics={"hausdorff": {}, "hd95": {}, "assd": {},
                                               "surface_dice": {"tolerance": 1.25}}, **kw)
        pooled = M.hd95(x, t, convention="pooled", **kw)
        pred = x.argmax(1)
        for b in range(x.shape[0]):
            for c in range(3):
                pm, tm = (pred[b] == c).numpy(), (t[b] == c).numpy()
                if not (R.surface(pm).any() and R.surface(tm).any()):
                    continue
                dp, dg = R.surface_distances(pm, tm, sp)
                both = np.concatenate([dp, dg])
                assert got["hausdorff"][b, c].item() == pytest.approx(both.max(), rel=1e-6)
                assert got["hd95"][b, c].item() == pytest.approx(
                    max(np.percentile(dp, 95), np.percentile(dg, 95)), rel=1e-6)
                assert pooled[b, c].item() == pytest.approx(np.percentile(both, 95), rel=1e-6)
                assert got["assd"][b, c].item() == pytest.approx(both.mean(), rel=1e-6)
                assert got["surface_dice"][b, c].item() == pytest.approx((both <= 1.25).mean(), rel=1e-6)


# ---------------------------------------------------------------- seed 000 eq. 7
@pytest.mark.parametrize("points", ["foreground", "surface"])
@pytest.mark.parametrize("shape, spacing", [((6, 9), (1.0, 0.6)), ((4, 5, 6), (2.0, 1.0, 0.5))])
def test_modified_hausdorff_against_brute_force(points, shape, spacing):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand((3, 1) + shape, generator=gen)
    t = (torch.rand((3,) + shape, generator=gen) > 0.7).long()
    for q in (95.0, 30.0):
        got = M.modified_hausdorff(x, t, spacing=spacing, reduction="none", percentile=q, points=points)[:, 0]
        for b in range(3):
            xm, ym = x[b, 0].numpy() >= 0.5, t[b].numpy() > 0
            if points == "surface":
                xm, ym = R.surface(xm), R.surface(ym)
            assert got[b].item() == pytest.approx(R.modified_hausdorff(xm, ym, spacing, q), rel=1e-6)


def test_modified_hausdorff_chunking_is_exact():
    gen = torch.Generator().manual_seed(5)
    x = (torch.rand(2, 30, 40, generator=gen) > 0.5)
    y = (torch.rand(2, 30, 40, generator=gen) > 0.5)
    coords = lambda m, k: S._coordinates(m.reshape(2, -1), k, (30, 40), (1.0, 1.0))  # noqa: E731
    nx, ny = x.reshape(2, -1).sum(1), y.reshape(2, -1).sum(1)
    cx, cy = coords(x, int(nx.max())), coords(y, int(ny.max()))
    big = S._directed_percentile_mean(cx, nx, cy, ny, 0.95)
    small = S._directed_percentile_mean(cx, nx, cy, ny, 0.95, budget=3000)
    torch.testing.assert_close(big, small)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda p, g: M.hausdorff(p, g, spacing=(1.0, 2.0, 3.0)), ValueError,
         r"`spacing` must have one value per spatial dim \(2\)"),
        (lambda p, g: M.hausdorff(p, g, spacing=(1.0, -2.0)), ValueError, r"`spacing` must be positive"),
        (lambda p, g: M.hausdorff(p, g, spacing="1"), TypeError, r"`spacing` must be None, a number"),
        (lambda p, g: M.hd95(p, g, percentile=101), ValueError, r"`percentile` must lie in \[0, 100\]"),
        (lambda p, g: M.hd95(p, g, convention="medpy"), ValueError,
         r"`convention` must be one of 'max_of_directed', 'pooled'"),
        (lambda p, g: M.modified_hausdorff(p, g, points="edges"), ValueError, r"`points` must be one of"),
        (lambda p, g: M.hausdorff(p, g, missing="infinity"), ValueError,
         r"`missing` must be a number or one of 'nan', 'inf', 'diagonal'; got 'infinity'"),
        (lambda p, g: M.surface_dice(p, g, tolerance=-1.0), ValueError, r"`tolerance` must be a finite number >= 0"),
        (lambda p, g: M.surface_dice(p, g, tolerance=[1.0, 2.0]), ValueError,
         r"`tolerance` must be a number >= 0 or one per kept class \(1\)"),
        (lambda p, g: M.surface_metrics(p, g, metrics=["hd96"]), ValueError,
         r"`metrics` must be one of .*got 'hd96' \(did you mean 'hd95'\?\)"),
        (lambda p, g: M.surface_metrics(p, g, metrics={"hd95": {"tolerance": 1}}), ValueError,
         r"`tolerance` must be an option of 'hd95'"),
        (lambda p, g: M.hausdorff(p, g[:, :3]), ValueError, r"`target` must have shape"),
        (lambda p, g: M.hausdorff(p * float("nan"), g), ValueError, r"`input` must be finite"),
        (lambda p, g: M.hausdorff(p[:0], g[:0]), ValueError, r"`input` must hold at least one image"),
        (lambda p, g: M.hausdorff(p, g + 2), ValueError, r"`target` labels must lie in \[0, 1\]"),
    ],
)
def test_bad_input(call, exc, match):
    p = torch.zeros(2, 1, 4, 5)
    g = torch.zeros(2, 4, 5, dtype=torch.long)
    with pytest.raises(exc, match=match):
        call(p, g)


# ---------------------------------------------------------------- peers
def _blobs(b, shape, seed, empty=()):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((b, 1) + shape, generator=gen)
    pool = torch.nn.functional.avg_pool2d if len(shape) == 2 else torch.nn.functional.avg_pool3d
    m = (pool(x, 5, 1, 2) > 0.5)[:, 0]
    for i in empty:
        m[i] = False
    return m


CASES = [((23, 31), None), ((23, 31), (0.7, 1.3)), ((9, 11, 13), (1.0, 0.5, 2.0))]


@pytest.mark.peers
@pytest.mark.parametrize("shape, spacing", CASES)
def test_monai_agreement(shape, spacing):
    pytest.importorskip("monai")
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    pred = _blobs(6, shape, 0, empty=(0, 1))  # image 0: both empty; image 1: empty prediction
    true = _blobs(6, shape, 1, empty=(0, 2))  # image 2: empty target
    p, t = pred.unsqueeze(1).float(), true.unsqueeze(1).float()
    kw = dict(include_background=True, spacing=spacing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m_hd = compute_hausdorff_distance(p, t, **kw)
        m_95 = compute_hausdorff_distance(p, t, percentile=95, **kw)
        m_as = compute_average_surface_distance(p, t, symmetric=True, **kw)
        m_nsd = compute_surface_dice(p, t, [1.5], **kw)
    ours = dict(spacing=spacing, reduction="none", empty="nan")
    torch.testing.assert_close(M.hausdorff(p, true.long(), **ours), m_hd, equal_nan=True, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(M.assd(p, true.long(), **ours), m_as, equal_nan=True, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(M.surface_dice(p, true.long(), tolerance=1.5, **ours), m_nsd, equal_nan=True,
                               rtol=1e-5, atol=1e-5)
    # HD95: MONAI gives NaN (not inf) when one mask is empty; compare where both are non-empty
    h95 = M.hd95(p, true.long(), **ours)
    torch.testing.assert_close(h95[3:], m_95[3:], rtol=1e-5, atol=1e-5)
    assert math.isnan(m_95[1, 0]) and math.isinf(h95[1, 0])


@pytest.mark.peers
@pytest.mark.parametrize("shape, spacing", CASES)
def test_medpy_agreement(shape, spacing):
    mb = pytest.importorskip("medpy.metric.binary")
    pred = _blobs(5, shape, 2)
    true = _blobs(5, shape, 3)
    p = pred.unsqueeze(1).float()
    h95 = M.hd95(p, true.long(), spacing=spacing, convention="pooled", reduction="none")[:, 0]
    asd = M.assd(p, true.long(), spacing=spacing, reduction="none")[:, 0]
    hd = M.hausdorff(p, true.long(), spacing=spacing, reduction="none")[:, 0]
    for b in range(5):
        a, r = pred[b].numpy(), true[b].numpy()
        assert h95[b].item() == pytest.approx(mb.hd95(a, r, voxelspacing=spacing), rel=1e-5, abs=1e-5)
        assert asd[b].item() == pytest.approx(mb.assd(a, r, voxelspacing=spacing), rel=1e-5, abs=1e-5)
        assert hd[b].item() == pytest.approx(mb.hd(a, r, voxelspacing=spacing), rel=1e-5, abs=1e-5)
    # medpy raises on an empty mask; our documented conventions apply instead
    with pytest.raises(RuntimeError):
        mb.hd95(np.zeros(shape, bool), true[0].numpy())
    assert math.isinf(M.hd95(torch.zeros_like(p[:1]), true[:1].long(), spacing=spacing).item())
