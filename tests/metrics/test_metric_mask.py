"""The spatial ``mask=`` of the surface metrics, the score metrics, the soft confusion and the
streaming ``SegmentationMetrics.update``.

A bool mask leaves pixels out exactly as ``ignore_index`` does (surface metrics: the
pixel holds no surface point of either mask, and the target counts as background there);
a float mask weighs the counts, histograms and bins (not the surface metrics, which only
keep or drop pixels); the errors name ``mask``.
"""
from __future__ import annotations

import pytest
import torch

import seglosses.functional as F
from seglosses import metrics
from seglosses.metrics import SegmentationMetrics

SURFACE = [metrics.hausdorff, metrics.hd95, metrics.assd, metrics.surface_dice, metrics.modified_hausdorff]
SCORES = [metrics.average_precision, metrics.roc_auc, metrics.expected_calibration_error,
          metrics.maximum_calibration_error]


def _data(spatial=(9, 11), c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, *spatial, generator=g, dtype=torch.float64)
    t = torch.randint(0, c, (2, *spatial), generator=g)
    keep = torch.rand(2, *spatial, generator=g) > 0.3
    w = torch.rand(2, *spatial, generator=g, dtype=torch.float64) * 2
    return x, t, keep, w


def _ignored(t, keep):
    return torch.where(keep, t, torch.full_like(t, 255))


# ----------------------------------------------------------------------------- surface metrics


def test_surface_hand_case():
    # 1D: prediction 1 1 0 0 0 0 1 1, target 1 1 1 1 0 0 0 0; the mask leaves out pixels 5..7
    p = torch.tensor([[[1.0, 1, 0, 0, 0, 0, 1, 1]]])
    g = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0]])
    keep = torch.tensor([[True] * 5 + [False] * 3])
    # surfaces {0, 1, 6, 7} and {0, 3}: distances 0, 1, 3, 4 and 0, 2
    assert float(metrics.hausdorff(p, g)) == 4.0
    # masked: the predicted points 6, 7 are dropped: 0, 1 and 0, 2
    assert float(metrics.hausdorff(p, g, mask=keep)) == 2.0
    assert float(metrics.assd(p, g, mask=keep)) == pytest.approx(0.75)
    assert float(metrics.surface_dice(p, g, mask=keep, tolerance=1.0)) == pytest.approx(0.75)
    # foreground point sets: X = {0, 1}, Y = {0, 1, 2, 3}; pct_50 interpolates
    # h(0, Y) = 1.5, h(1, Y) = 1 (distances 1, 0, 1, 2); h(y, X) = 0.5, 0.5, 1.5, 2.5
    got = metrics.modified_hausdorff(p, g, mask=keep, percentile=50)
    assert float(got) == pytest.approx(0.5 * ((1.5 + 1.0) / 2 + (0.5 + 0.5 + 1.5 + 2.5) / 4))
    # a mask that cuts the target: the true surface runs along the mask's edge (pixel 1)
    cut = torch.tensor([[True, True, False, False, True, True, True, True]])
    # predicted surface {0, 1, 6, 7}, true surface {0, 1}: 0, 0, 5, 6 and 0, 0
    assert float(metrics.hausdorff(p, g, mask=cut)) == 6.0


@pytest.mark.parametrize("metric", SURFACE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("pred_kind", ["probs", "labels"])
def test_surface_bool_mask_equals_ignore_index(metric, pred_kind):
    x, t, keep, _ = _data(seed=1)
    pred = x.softmax(1) if pred_kind == "probs" else x.argmax(1)
    kw = dict(mode="multiclass", num_classes=3, reduction="none")
    if metric is not metrics.surface_dice:
        kw.update(missing=7.5)
    want = metric(pred, _ignored(t, keep), ignore_index=255, **kw)
    for mask in (keep, keep.unsqueeze(1), keep.double()):
        torch.testing.assert_close(metric(pred, t, mask=mask, **kw), want, equal_nan=True)
    torch.testing.assert_close(metric(pred, t, mask=torch.ones_like(keep), **kw), metric(pred, t, **kw))
    # both combine: left out where either says so
    half = torch.ones_like(keep)
    half[:, :4] = False
    both = _ignored(t, keep & half)
    torch.testing.assert_close(metric(pred, _ignored(t, keep), ignore_index=255, mask=half, **kw),
                               metric(pred, both, ignore_index=255, **kw), equal_nan=True)


def test_surface_mask_3d_binary_and_batch_of_one():
    g = torch.Generator().manual_seed(4)
    p = torch.rand(2, 1, 5, 6, 7, generator=g)
    t = (torch.rand(2, 5, 6, 7, generator=g) > 0.5).long()
    keep = torch.rand(1, 5, 6, 7, generator=g) > 0.2
    want = metrics.hd95(p, _ignored(t, keep.expand_as(t)), ignore_index=255, reduction="none")
    torch.testing.assert_close(metrics.hd95(p, t, mask=keep, reduction="none"), want)
    out = metrics.surface_metrics(p, t, mask=keep, metrics=["hausdorff", "assd"], reduction="none")
    torch.testing.assert_close(out["hausdorff"], metrics.hausdorff(p, _ignored(t, keep.expand_as(t)),
                                                                  ignore_index=255, reduction="none"))


def test_surface_mask_errors_name_mask():
    x, t, keep, w = _data()
    p = x.softmax(1)
    kw = dict(mode="multiclass")
    with pytest.raises(ValueError, match=r"`mask` must be boolean \(or hold only 0 and 1\) here"):
        metrics.hausdorff(p, t, mask=w, **kw)
    with pytest.raises(ValueError, match=r"`mask` must have shape"):
        metrics.assd(p, t, mask=keep[:, :4], **kw)
    with pytest.raises(TypeError, match=r"`mask` must be a bool or floating-point tensor"):
        metrics.hd95(p, t, mask=keep.long(), **kw)
    with pytest.raises(TypeError, match=r"`mask` must be a torch.Tensor"):
        metrics.surface_metrics(p, t, mask=keep.tolist(), **kw)


# ----------------------------------------------------------------------------- score metrics


@pytest.mark.parametrize("metric", SCORES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("domain", ["image", "batch"])
def test_score_metric_bool_mask_equals_ignore_index(metric, domain):
    x, t, keep, _ = _data(seed=2)
    kw = dict(mode="multiclass", from_logits=True, reduction="none", domain=domain)
    want = metric(x, _ignored(t, keep), ignore_index=255, **kw)
    torch.testing.assert_close(metric(x, t, mask=keep, **kw), want, equal_nan=True)
    torch.testing.assert_close(metric(x, t, mask=keep.unsqueeze(1).double(), **kw), want, equal_nan=True)


@pytest.mark.parametrize("metric", SCORES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bins", [None, 7])
def test_score_metric_weight_counts_as_copies(metric, bins):
    # a pixel of weight 2 counts as two pixels of its score and target; weight 0 leaves it out
    g = torch.Generator().manual_seed(5)
    s = torch.rand(1, 1, 12, generator=g, dtype=torch.float64)
    t = (torch.rand(1, 12, generator=g) > 0.5).long()
    w = torch.tensor([[2.0, 1, 0, 1, 2, 1, 1, 0, 2, 1, 1, 1]], dtype=torch.float64)
    copies = torch.repeat_interleave(torch.arange(12), w[0].long())
    if bins is None and metric in (metrics.expected_calibration_error, metrics.maximum_calibration_error):
        bins = 15
    got = metric(s, t, mask=w, bins=bins)
    torch.testing.assert_close(got, metric(s[..., copies], t[..., copies], bins=bins))


def test_score_metric_hand_case_and_errors():
    s = torch.tensor([[[0.9, 0.8, 0.3, 0.1]]])
    g = torch.tensor([[1, 0, 1, 0]])
    # without pixel 1 (score 0.8, negative): ranks +, +, -: AP 1, AUC 1
    keep = torch.tensor([[True, False, True, True]])
    assert float(metrics.average_precision(s, g, mask=keep)) == pytest.approx(1.0)
    assert float(metrics.roc_auc(s, g, mask=keep)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"`mask` weights must be >= 0"):
        metrics.average_precision(s, g, mask=torch.tensor([[1.0, -1.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"`mask` must have shape"):
        metrics.roc_auc(s, g, mask=keep[:, :3])
    with pytest.raises(TypeError, match=r"`mask` must be a bool or floating-point tensor"):
        metrics.expected_calibration_error(s, g, mask=keep.int())


def test_soft_confusion_weighted_mask():
    x, t, keep, w = _data(seed=3)
    p = x.softmax(1)
    c = F.soft_confusion(p, t, mode="multiclass", mask=w, with_tn=True)
    onehot = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).double()
    ww = w.unsqueeze(1)
    torch.testing.assert_close(c.tp, (ww * p * onehot).sum((2, 3)))
    torch.testing.assert_close(c.fp, (ww * p * (1 - onehot)).sum((2, 3)))
    torch.testing.assert_close(c.tn, (ww * (1 - p) * (1 - onehot)).sum((2, 3)))
    b = F.soft_confusion(p, t, mode="multiclass", mask=keep)
    want = F.soft_confusion(p, _ignored(t, keep), mode="multiclass", ignore_index=255)
    torch.testing.assert_close(b.as_tuple(), want.as_tuple())


# ----------------------------------------------------------------------------- streaming


NAMES = ["dice", "jaccard", "pixel_accuracy", "ap", "auc", "ece", "hd95", "assd", "nsd"]


def _results(m):
    return {k: v for k, v in m.compute().items()}


@pytest.mark.parametrize("pred_kind", ["probs", "labels"])
def test_streaming_bool_mask_equals_ignore_index(pred_kind):
    x, t, keep, _ = _data(seed=6)
    names = NAMES if pred_kind == "probs" else [n for n in NAMES if n not in ("ap", "auc", "ece")]
    pred = x.softmax(1) if pred_kind == "probs" else x.argmax(1)
    kw = dict(mode="multiclass", per_class=True)
    masked = SegmentationMetrics([(n, {"missing": 9.0}) if n in ("hd95", "assd") else n for n in names], 3, **kw)
    ignored = SegmentationMetrics([(n, {"missing": 9.0}) if n in ("hd95", "assd") else n for n in names], 3,
                                  ignore_index=255, **kw)
    for i in range(2):  # two batches, the mask given as [B, 1, *S] for the second
        mask = keep[i:i + 1] if i == 0 else keep[i:i + 1].unsqueeze(1)
        masked.update(pred[i:i + 1], t[i:i + 1], mask=mask)
        ignored.update(pred[i:i + 1], _ignored(t, keep)[i:i + 1])
    got, want = _results(masked), _results(ignored)
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], equal_nan=True, msg=k)
    # the mask changes the result (the case is not trivial)
    plain = SegmentationMetrics(["dice"], 3, **kw)
    plain.update(pred, t)
    assert not torch.allclose(plain.compute()["dice_dataset"], got["dice_dataset"])


def test_streaming_weighted_mask_weighs_counts_and_refuses_weights_for_surfaces():
    x, t, _, w = _data(seed=7)
    p = x.softmax(1)
    m = SegmentationMetrics(["dice", "ece"], 3, mode="multiclass", per_class=True)
    m.update(p, t, mask=w)
    out = m.compute()
    torch.testing.assert_close(out["dice_dataset"], metrics.dice(p, t, mode="multiclass", mask=w, domain="batch",
                                                                 reduction="none").to(out["dice_dataset"].dtype))
    torch.testing.assert_close(
        out["expected_calibration_error_dataset"],
        metrics.expected_calibration_error(p, t, mode="multiclass", mask=w, domain="batch", reduction="none")
        .to(out["expected_calibration_error_dataset"].dtype))
    s = SegmentationMetrics(["dice", "hausdorff"], 3, mode="multiclass")
    with pytest.raises(ValueError, match=r"`mask` must be boolean \(or hold only 0 and 1\) here"):
        s.update(p, t, mask=w)
    with pytest.raises(ValueError, match=r"`mask` must have shape"):
        m.update(p, t, mask=w[:, :3])
    with pytest.raises(TypeError, match=r"`mask` must be a bool or floating-point tensor"):
        m.update(p, t, mask=(w > 1).long())


def test_torchmetrics_adapter_takes_mask():
    pytest.importorskip("torchmetrics")
    from seglosses.metrics import TorchmetricsSegmentationMetrics

    x, t, keep, _ = _data(seed=8)
    a = TorchmetricsSegmentationMetrics(["dice"], 3, mode="multiclass", aggregation="dataset")
    a.update(x.softmax(1), t, mask=keep)
    b = SegmentationMetrics(["dice"], 3, mode="multiclass", aggregation="dataset", ignore_index=255)
    b.update(x.softmax(1), _ignored(t, keep))
    torch.testing.assert_close(a.compute()["dice_dataset"], b.compute()["dice_dataset"])
