"""Surface metrics: directed distances and the chessboard / taxicab distances.

Brute force over all point pairs (numpy, with spacing), hand values, empty masks,
ignore_index, 2D/3D, bad options; agreement with MONAI (``distance_metric``,
``directed``, ``symmetric``) and torchmetrics' ``hausdorff_distance``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import seglosses.metrics as M
from seglosses.metrics._surface_points import lattice_distance

from ._ref import surface


def _norm(diff, spacing, distance):
    d = np.abs(diff) * np.asarray(spacing)
    if distance == "euclidean":
        return np.sqrt((d**2).sum(-1))
    if distance == "taxicab":
        return d.sum(-1)
    return d.max(-1)


def _directed(a, b, spacing, distance):
    """Distances of the surface points of ``a`` to the surface of ``b`` (all pairs)."""
    pa, pb = np.argwhere(surface(a)), np.argwhere(surface(b))
    return _norm(pa[:, None, :] - pb[None, :, :], spacing, distance).min(1)


def _masks(seed, shape):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=gen) > 0.7
    b = torch.rand(shape, generator=gen) > 0.7
    return a, b


@pytest.mark.parametrize("distance", ["euclidean", "chessboard", "taxicab"])
@pytest.mark.parametrize("shape,spacing", [((9, 11), (1.0, 1.0)), ((9, 11), (0.7, 1.9)), ((5, 6, 7), (1.0, 0.5, 2.0))])
def test_against_brute_force(distance, shape, spacing):
    a, b = _masks(len(shape) + int(spacing[0] * 10), shape)
    p = a.float()[None, None]
    g = b.long()[None]
    an, bn = a.numpy(), b.numpy()
    d_ab, d_ba = _directed(an, bn, spacing, distance), _directed(bn, an, spacing, distance)
    kw = dict(spacing=spacing, distance=distance)
    assert float(M.hausdorff(p, g, **kw)) == pytest.approx(max(d_ab.max(), d_ba.max()), abs=1e-5)
    assert float(M.hausdorff(p, g, directed=True, **kw)) == pytest.approx(d_ab.max(), abs=1e-5)
    assert float(M.hd95(p, g, directed=True, **kw)) == pytest.approx(np.percentile(d_ab, 95), abs=1e-6)
    assert float(M.hd95(p, g, **kw)) == pytest.approx(
        max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)), abs=1e-6)
    assert float(M.assd(p, g, directed=True, **kw)) == pytest.approx(d_ab.mean(), abs=1e-6)
    assert float(M.assd(p, g, **kw)) == pytest.approx(
        (d_ab.sum() + d_ba.sum()) / (len(d_ab) + len(d_ba)), abs=1e-6)
    tol = 1.5
    nsd = ((d_ab <= tol).sum() + (d_ba <= tol).sum()) / (len(d_ab) + len(d_ba))
    assert float(M.surface_dice(p, g, tolerance=tol, **kw)) == pytest.approx(nsd, abs=1e-6)


def test_hand_values():
    # surfaces {(0,0)} and {(2,3)}: euclidean sqrt(13), chessboard 3, taxicab 5
    p = torch.zeros(1, 1, 4, 4)
    p[0, 0, 0, 0] = 1
    g = torch.zeros(1, 4, 4, dtype=torch.long)
    g[0, 2, 3] = 1
    assert float(M.hausdorff(p, g)) == pytest.approx(math.sqrt(13))
    assert float(M.hausdorff(p, g, distance="chessboard")) == 3.0
    assert float(M.hausdorff(p, g, distance="taxicab")) == 5.0
    assert float(M.hausdorff(p, g, distance="taxicab", spacing=(2.0, 0.5))) == 5.5
    assert float(M.hausdorff(p, g, distance="chessboard", spacing=(2.0, 0.5))) == 4.0
    # directed: prediction {0, 1} inside the truth {0..3} (1D): 0 from the prediction, 2 back
    p = torch.zeros(1, 1, 1, 6)
    p[..., 0:2] = 1
    g = torch.zeros(1, 1, 6, dtype=torch.long)
    g[..., 0:4] = 1
    assert float(M.hausdorff(p, g, directed=True)) == 0.0
    assert float(M.hausdorff(g.unsqueeze(1).float(), p[:, 0].long(), directed=True)) == 2.0


def test_empty_masks_directed():
    z = torch.zeros(1, 1, 5, 5)
    g = torch.zeros(1, 5, 5, dtype=torch.long)
    g[0, 2, 2] = 1
    for fn in (M.hausdorff, M.hd95, M.assd):
        assert float(fn(z, torch.zeros_like(g), directed=True, distance="taxicab")) == 0.0  # both empty
        assert math.isinf(float(fn(z, g, directed=True)))  # no predicted surface
        assert math.isinf(float(fn(g.unsqueeze(1).float(), torch.zeros_like(g), directed=True)))  # no true surface
        assert float(fn(z, g, directed=True, missing="diagonal", distance="chessboard")) == pytest.approx(
            math.sqrt(32))


def test_ignore_index_and_multiclass_3d():
    gen = torch.Generator().manual_seed(9)
    x = torch.rand(2, 3, 5, 6, 7, generator=gen)
    t = torch.randint(0, 3, (2, 5, 6, 7), generator=gen)
    t_ign = t.clone()
    t_ign[:, :, :, 0] = 7
    out = M.hausdorff(x, t_ign, mode="multiclass", ignore_index=7, distance="taxicab", directed=True,
                      reduction="none")
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    # every distance is at least the euclidean one and chessboard at most it
    e = M.hausdorff(x, t, mode="multiclass", reduction="none")
    assert (M.hausdorff(x, t, mode="multiclass", distance="taxicab", reduction="none") >= e - 1e-6).all()
    assert (M.hausdorff(x, t, mode="multiclass", distance="chessboard", reduction="none") <= e + 1e-6).all()


def test_lattice_distance_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    gen = torch.Generator().manual_seed(10)
    m = torch.rand(3, 9, 11, 7, generator=gen) < 0.05
    for metric in ("taxicab", "chessboard"):
        d = lattice_distance(m, (1.0, 1.0, 1.0), metric)
        ref = np.stack([ndimage.distance_transform_cdt(~m[i].numpy(), metric=metric) for i in range(3)])
        np.testing.assert_array_equal(d.numpy(), ref.astype(np.float64))
    assert torch.isinf(lattice_distance(torch.zeros(1, 3, 3, dtype=torch.bool), (1.0, 1.0), "taxicab")).all()


def test_bad_options():
    p = torch.zeros(1, 1, 4, 4)
    g = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"`distance` must be one of 'euclidean', 'chessboard', 'taxicab'; "
                                         r"got 'manhattan'"):
        M.hausdorff(p, g, distance="manhattan")
    with pytest.raises(TypeError, match=r"`directed` must be a bool; got str"):
        M.assd(p, g, directed="yes")
    with pytest.raises(ValueError, match=r"`directed` must be an option of 'surface_dice'"):
        M.surface_metrics(p, g, metrics={"surface_dice": {"directed": True}})
    with pytest.raises(ValueError, match=r"`distance` must be an option of 'modified_hausdorff'"):
        M.SegmentationMetrics([("mhd", {"distance": "taxicab"})])


def test_surface_metrics_share_and_streaming():
    a, b = _masks(3, (2, 1, 10, 12))
    p, g = a.float(), b[:, 0].long()
    opts = {"hausdorff": {"distance": "chessboard", "directed": True}, "assd": {"distance": "taxicab"},
            "hd95": {}}
    out = M.surface_metrics(p, g, metrics=opts, reduction="none")
    torch.testing.assert_close(out["hausdorff"], M.hausdorff(p, g, distance="chessboard", directed=True,
                                                             reduction="none"))
    torch.testing.assert_close(out["assd"], M.assd(p, g, distance="taxicab", reduction="none"))
    m = M.SegmentationMetrics(opts, per_class=True)
    m.update(p, g)
    res = m.compute()
    torch.testing.assert_close(res["hausdorff_image_mean"].float(), out["hausdorff"].mean(0))


@pytest.mark.peers
@pytest.mark.parametrize("distance", ["euclidean", "chessboard", "taxicab"])
@pytest.mark.parametrize("directed", [False, True])
def test_agrees_with_monai(distance, directed):
    monai_metrics = pytest.importorskip("monai.metrics")
    gen = torch.Generator().manual_seed(12)
    for shape in [(2, 1, 20, 24), (2, 1, 8, 9, 10)]:
        p = (torch.rand(shape, generator=gen) > 0.6).float()
        g = (torch.rand(shape, generator=gen) > 0.6).float()
        kw = dict(distance_metric=distance)
        ref_hd = monai_metrics.compute_hausdorff_distance(p, g, directed=directed, **kw)
        ref_95 = monai_metrics.compute_hausdorff_distance(p, g, directed=directed, percentile=95, **kw)
        ref_asd = monai_metrics.compute_average_surface_distance(p, g, symmetric=not directed, **kw)
        ours = dict(distance=distance, directed=directed, reduction="none")
        torch.testing.assert_close(M.hausdorff(p, g[:, 0].long(), **ours), ref_hd, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(M.hd95(p, g[:, 0].long(), **ours), ref_95, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(M.assd(p, g[:, 0].long(), **ours), ref_asd, rtol=1e-5, atol=1e-5)


@pytest.mark.peers
@pytest.mark.parametrize("distance", ["euclidean", "chessboard", "taxicab"])
@pytest.mark.parametrize("directed", [False, True])
def test_agrees_with_torchmetrics_inside_the_image(distance, directed):
    # torchmetrics counts the image border differently (foreground on it is not surface
    # there); with the masks away from the border the surfaces are the same
    tm_seg = pytest.importorskip("torchmetrics.functional.segmentation")
    p = torch.zeros(2, 1, 24, 24, dtype=torch.long)
    g = torch.zeros(2, 1, 24, 24, dtype=torch.long)
    p[0, 0, 5:12, 6:15] = 1
    g[0, 0, 7:16, 4:11] = 1
    p[1, 0, 3:9, 3:20] = 1
    g[1, 0, 10:20, 8:12] = 1
    for spacing in (None, [1.0, 1.0]):
        ref = tm_seg.hausdorff_distance(p, g, num_classes=1, distance_metric=distance, directed=directed,
                                        input_format="one-hot", spacing=spacing)
        got = M.hausdorff(p.float(), g[:, 0], distance=distance, directed=directed, reduction="none",
                          spacing=spacing)
        torch.testing.assert_close(got.flatten(), ref.flatten().float(), rtol=1e-5, atol=1e-5)
