"""Streaming metrics: batch splits equal one shot, both aggregations equal the functional metrics,
no averages of averages, configuration errors (DDP: test_distributed.py; torchmetrics: test_adapters.py)."""
from __future__ import annotations

import math

import pytest
import torch

from seglosses import metrics as M

ALL = ["dice", "jaccard", ("tversky", {"alpha": 0.2, "beta": 0.8}), "sensitivity", "specificity", "precision",
       "balanced_accuracy", "pixel_accuracy", "mean_iou", "iou_per_class", ("ap", {"bins": 32}),
       ("hausdorff", {"missing": "diagonal"}), ("hd95", {"missing": "diagonal", "convention": "pooled"}),
       ("assd", {"missing": "diagonal"}), ("surface_dice", {"tolerance": 1.5}),
       ("modified_hausdorff", {"missing": "diagonal", "points": "surface"})]


def _data(mode, n=7, spatial=(9, 11), c=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    if mode == "binary":
        x = torch.rand(n, 1, *spatial, generator=gen)
        t = (torch.rand(n, *spatial, generator=gen) > 0.6).long()
        t[1] = 0  # an empty target
        x[2] = 0.0  # an empty prediction
        return x, t, 1
    x = torch.rand(n, c, *spatial, generator=gen)
    if mode == "multiclass":
        x = x.softmax(1)
        t = torch.randint(0, c, (n, *spatial), generator=gen)
        t[1][t[1] == 2] = 0
    else:
        t = (torch.rand(n, c, *spatial, generator=gen) > 0.7).long()
        t[1, 2] = 0
    return x, t, c


def _close(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k].double(), b[k].double(), equal_nan=True, msg=k)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_random_batch_splits_equal_one_shot(mode):
    x, t, c = _data(mode)
    one = M.SegmentationMetrics(ALL, num_classes=c, mode=mode, spacing=(1.0, 0.6), per_class=True)
    one.update(x, t)
    ref = one.compute()
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        cuts = sorted(torch.randperm(x.shape[0] - 1, generator=gen)[:3].add(1).tolist())
        m = M.SegmentationMetrics(ALL, num_classes=c, mode=mode, spacing=(1.0, 0.6), per_class=True)
        for a, b in zip([0] + cuts, cuts + [x.shape[0]]):
            m.update(x[a:b], t[a:b])
        _close(m.compute(), ref)
    m.reset()
    assert all(float(v.abs().sum()) == 0 for v in m.state().values())


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_aggregations_equal_the_functional_metrics(mode):
    x, t, c = _data(mode)
    kw = dict(mode=mode)
    m = M.SegmentationMetrics(ALL, num_classes=c, mode=mode, spacing=(1.0, 0.6), per_class=True)
    for a in range(0, x.shape[0], 3):
        m.update(x[a:a + 3], t[a:a + 3])
    r = m.compute()
    pairs = {"dice": M.dice, "jaccard": M.jaccard, "sensitivity": M.sensitivity, "specificity": M.specificity,
             "precision": M.precision, "balanced_accuracy": M.balanced_accuracy}
    for name, fn in pairs.items():
        # dataset level = the counts of all images pooled; image mean = mean of the per-image values
        torch.testing.assert_close(r[f"{name}_dataset"].float(), fn(x, t, domain="batch", reduction="none", **kw))
        torch.testing.assert_close(r[f"{name}_image_mean"].float(), fn(x, t, reduction="none", **kw).mean(0))
    tv = M.tversky_index(x, t, alpha=0.2, beta=0.8, domain="batch", reduction="none", **kw)
    torch.testing.assert_close(r["tversky_index_dataset"].float(), tv)
    pa = M.pixel_accuracy(x, t, domain="batch", reduction="none", **kw)
    torch.testing.assert_close(r["pixel_accuracy_dataset"].float(), pa.reshape(-1))
    torch.testing.assert_close(r["iou_per_class_dataset"].float(), M.iou_per_class(x, t, **kw))
    assert r["mean_iou_dataset"].item() == pytest.approx(M.mean_iou(x, t, **kw).item(), abs=1e-6)
    torch.testing.assert_close(r["average_precision_dataset"].float(),
                               M.average_precision(x, t, domain="batch", bins=32, reduction="none", **kw))
    torch.testing.assert_close(r["average_precision_image_mean"].float(),
                               M.average_precision(x, t, reduction="none", **kw).mean(0))
    sk = dict(spacing=(1.0, 0.6), reduction="none", missing="diagonal", **kw)
    torch.testing.assert_close(r["hd95_image_mean"].float(), M.hd95(x, t, convention="pooled", **sk).mean(0))
    torch.testing.assert_close(r["assd_image_mean"].float(), M.assd(x, t, **sk).mean(0))
    torch.testing.assert_close(r["modified_hausdorff_image_mean"].float(),
                               M.modified_hausdorff(x, t, points="surface", **sk).mean(0))
    sd = M.surface_dice(x, t, tolerance=1.5, spacing=(1.0, 0.6), reduction="none", **kw)
    torch.testing.assert_close(r["surface_dice_image_mean"].float(), sd.mean(0))


def test_no_average_of_averages():
    # batch 1: one image with TP 1, FP 1 (Dice 2/3); batch 2: three images TP 1 each (Dice 1)
    # dataset Dice = 2*4 / (2*4 + 1) = 8/9; image mean = (2/3 + 3) / 4 = 11/12
    # (the mean of the two batch means would be (2/3 + 1) / 2 = 5/6: neither)
    m = M.SegmentationMetrics(["dice"])
    m.update(torch.tensor([[[1.0, 1.0, 0.0]]]), torch.tensor([[1, 0, 0]]))
    m.update(torch.tensor([[[1.0, 0.0, 0.0]]] * 3), torch.tensor([[1, 0, 0]] * 3))
    r = m.compute()
    assert r["dice_dataset"].item() == pytest.approx(8 / 9)
    assert r["dice_image_mean"].item() == pytest.approx(11 / 12)


def test_nan_values_are_not_counted():
    m = M.SegmentationMetrics([("dice", {"empty": "nan"}), ("hd95", {"empty": "nan"})], aggregation="image")
    m.update(torch.zeros(1, 1, 3, 4), torch.zeros(1, 3, 4, dtype=torch.long))  # both empty: NaN
    p = torch.zeros(1, 1, 3, 4)
    p[..., 0, 0:2] = 1
    g = torch.zeros(1, 3, 4, dtype=torch.long)
    g[..., 0, 0] = 1
    m.update(p, g)  # Dice 2/3, HD95 = max(pct95{0, 1}, pct95{0}) = 0.95
    r = m.compute()
    assert r["dice_image_mean"].item() == pytest.approx(2 / 3)
    assert r["hd95_image_mean"].item() == pytest.approx(0.95)
    assert set(r) == {"dice_image_mean", "hd95_image_mean"}


def test_outputs_and_shapes():
    x, t, c = _data("multiclass")
    m = M.SegmentationMetrics(["dice", "iou_per_class", "mean_iou", "hd95"], num_classes=3, mode="multiclass",
                              include_background=False, aggregation=["dataset", "image"])
    m.update(x, t)
    r = m.compute()
    assert set(r) == {"dice_dataset", "dice_image_mean", "iou_per_class_dataset", "iou_per_class_image_mean",
                      "mean_iou_dataset", "mean_iou_image_mean", "hd95_image_mean"}
    assert r["dice_dataset"].shape == () and r["iou_per_class_dataset"].shape == (2,)
    assert r["mean_iou_dataset"].item() == pytest.approx(r["iou_per_class_dataset"].mean().item())
    assert "SegmentationMetrics([dice" in repr(m)
    bound = M.SegmentationMetrics(["ap"], num_classes=3, mode="multiclass")
    bound.update(x, t)
    assert bound.ap_error_bound().shape == (3,)


def test_integer_predictions_and_device_state():
    x, t, c = _data("multiclass")
    a = M.SegmentationMetrics(["dice", "assd"], num_classes=3, mode="multiclass")
    b = M.SegmentationMetrics(["dice", "assd"], num_classes=3, mode="multiclass")
    a.update(x, t)
    b.update(x.argmax(1), t)
    _close(a.compute(), b.compute())
    assert all(v.dtype == torch.float64 for v in a.state().values())


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(metrics=["dic"]), ValueError, r"`metrics` must name metrics among .*got 'dic' \(did you mean 'dice'\?\)"),
        (dict(metrics=["dice", "f_2", "dice"]), ValueError, r"`metrics` must name metrics among"),
        (dict(metrics=["iou", "jaccard"]), ValueError, r"`metrics` must name each metric once; got 'jaccard' twice"),
        (dict(metrics=[]), ValueError, r"`metrics` must name at least one metric"),
        (dict(metrics=["dice"], mode="multiclass"), TypeError, r"`num_classes` must be an int; got NoneType"),
        (dict(metrics=["dice"], mode="multiclass", num_classes=1), ValueError,
         r"`num_classes` must be >= 2 in multiclass mode; got 1"),
        (dict(metrics=["dice"], num_classes=2), ValueError, r"`num_classes` must be 1 in binary mode; got 2"),
        (dict(metrics=["hd95"], aggregation="dataset"), ValueError, r"`aggregation` must include 'image'"),
        (dict(metrics=["dice"], aggregation="global"), ValueError, r"`aggregation` must be one of 'dataset', 'image'"),
        (dict(metrics=[("dice", {"alpha": 1})]), ValueError, r"`alpha` must be an option of 'dice' \('empty', 'average'\)"),
        (dict(metrics=[("ap", {"bins": 0})]), ValueError, r"`bins` must be an int >= 1; got 0"),
        (dict(metrics=[("hd95", {"percentile": 200})]), ValueError, r"`percentile` must lie in \[0, 100\]"),
        (dict(metrics=[("dice", 3)]), TypeError, r"`metrics` options of 'dice' must be a mapping"),
    ],
)
def test_bad_configuration(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        M.SegmentationMetrics(**kwargs)


def test_bad_update():
    m = M.SegmentationMetrics(["dice", "ap"], num_classes=3, mode="multiclass")
    with pytest.raises(ValueError, match=r"`num_classes` must equal the prediction's 4 channels; got 3"):
        m.update(torch.rand(2, 4, 5, 6).softmax(1), torch.randint(0, 4, (2, 5, 6)))
    with pytest.raises(ValueError, match=r"`input` must hold at least one image"):
        m.update(torch.rand(0, 3, 5, 6), torch.zeros(0, 5, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`input` must be finite"):
        m.update(torch.full((1, 3, 5, 6), math.nan), torch.zeros(1, 5, 6, dtype=torch.long))
    only_ap = M.SegmentationMetrics(["ap"], num_classes=3, mode="multiclass")
    with pytest.raises(ValueError, match=r"`pred` must have 3 classes \(num_classes\); got 4"):
        only_ap.update(torch.rand(2, 4, 5, 6).softmax(1), torch.randint(0, 4, (2, 5, 6)))
    assert all(float(v.abs().sum()) == 0 for v in m.state().values())  # failed updates change nothing
