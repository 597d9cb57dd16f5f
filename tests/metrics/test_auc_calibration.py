"""ROC AUC (exact and binned with its bound) and the calibration errors (ECE, MCE, reliability bins).

Hand values, ties, empty classes, ignore_index, 2D/3D, bad input, streaming and DDP-style
sums; agreement with scikit-learn's ``roc_auc_score``, MONAI's ``CalibrationErrorMetric``
and ``compute_roc_auc``, torchmetrics' ``binary_calibration_error``.
"""
from __future__ import annotations

import math

import pytest
import torch

import seglosses.metrics as M
from seglosses.metrics.ranking import auc_from_histograms, auc_histograms, exact_auc_rows


def _pairs_auc(s, g):
    """AUC by counting every (positive, negative) pair."""
    pos = [a for a, y in zip(s, g) if y]
    neg = [a for a, y in zip(s, g) if not y]
    total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return total / (len(pos) * len(neg))


def test_auc_hand_and_ties():
    s = torch.tensor([[[0.9, 0.8, 0.3, 0.1]]])
    g = torch.tensor([[1, 0, 1, 0]])
    assert float(M.roc_auc(s, g)) == pytest.approx(0.75)
    assert float(M.roc_auc(s, g, bins=2)) == pytest.approx(0.5)
    # ties count one half
    s = torch.tensor([[[0.5, 0.5, 0.5, 0.2]]])
    g = torch.tensor([[1, 0, 1, 0]])
    assert float(M.roc_auc(s, g)) == pytest.approx(_pairs_auc([0.5, 0.5, 0.5, 0.2], [1, 0, 1, 0]))


def test_auc_rows_equal_pair_counting_with_weights():
    gen = torch.Generator().manual_seed(0)
    s = (torch.rand(5, 40, generator=gen, dtype=torch.float64) * 8).round() / 8  # many ties
    g = (torch.rand(5, 40, generator=gen) > 0.5).double()
    w = (torch.rand(5, 40, generator=gen) > 0.2).double()
    got = exact_auc_rows(s, g, w, math.nan)
    for r in range(5):
        keep = w[r] > 0
        ref = _pairs_auc(s[r][keep].tolist(), g[r][keep].tolist())
        assert float(got[r]) == pytest.approx(ref, abs=1e-12)


def test_auc_binned_within_bound_and_exact_without_shared_bins():
    gen = torch.Generator().manual_seed(1)
    s = torch.rand(3, 200, generator=gen, dtype=torch.float64)
    g = (torch.rand(3, 200, generator=gen) < s).double()
    w = torch.ones_like(s)
    exact = exact_auc_rows(s, g, w, math.nan)
    for bins in (2, 10, 100):
        pos, neg = auc_histograms(s, g, w, bins)
        binned = auc_from_histograms(pos, neg, math.nan)
        bound = M.roc_auc_error_bound(pos, neg)
        assert ((exact - binned).abs() <= bound + 1e-12).all()
    # scores at distinct bins: no error, bound 0
    s = torch.tensor([[0.05, 0.15, 0.25, 0.35]], dtype=torch.float64)
    g = torch.tensor([[0.0, 1.0, 0.0, 1.0]], dtype=torch.float64)
    pos, neg = auc_histograms(s, g, torch.ones_like(s), 10)
    assert float(M.roc_auc_error_bound(pos, neg)[0]) == 0.0
    assert float(auc_from_histograms(pos, neg, math.nan)[0]) == pytest.approx(float(exact_auc_rows(
        s, g, torch.ones_like(s), math.nan)[0]))


def test_auc_empty_classes_and_ignore_index():
    s = torch.tensor([[[0.9, 0.1, 0.4]]])
    assert math.isnan(float(M.roc_auc(s, torch.tensor([[1, 1, 1]]))))
    assert math.isnan(float(M.roc_auc(s, torch.tensor([[0, 0, 0]]))))
    assert float(M.roc_auc(s, torch.tensor([[0, 0, 0]]), empty=0.5)) == 0.5
    # ignored pixels leave the ranking
    g = torch.tensor([[1, 0, 5]])
    assert float(M.roc_auc(s, g, ignore_index=5)) == 1.0
    assert float(M.roc_auc(s[..., :2], g[..., :2])) == 1.0


@pytest.mark.parametrize("shape", [(2, 3, 6, 7), (2, 3, 3, 4, 5)])
def test_auc_matches_sklearn_per_class(shape):
    skm = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(len(shape))
    x = torch.randn(*shape, generator=gen)
    t = torch.randint(0, shape[1], (shape[0],) + shape[2:], generator=gen)
    got = M.roc_auc(x, t, mode="multiclass", from_logits=True, reduction="none")
    probs = x.softmax(1)
    for b in range(shape[0]):
        for c in range(shape[1]):
            ref = skm.roc_auc_score((t[b] == c).flatten().numpy(), probs[b, c].flatten().numpy())
            assert float(got[b, c]) == pytest.approx(ref, abs=1e-6)
    got_batch = M.roc_auc(x, t, mode="multiclass", from_logits=True, domain="batch", reduction="none")
    for c in range(shape[1]):
        ref = skm.roc_auc_score((t == c).flatten().numpy(), probs[:, c].flatten().numpy())
        assert float(got_batch[c]) == pytest.approx(ref, abs=1e-6)


def test_score_metrics_bad_input():
    s = torch.tensor([[[0.9, 0.1]]])
    g = torch.tensor([[1, 0]])
    with pytest.raises(ValueError, match=r"`bins` must be None or an int >= 1; got 0"):
        M.roc_auc(s, g, bins=0)
    with pytest.raises(ValueError, match=r"`bins` must be an int >= 1; got 0"):
        M.expected_calibration_error(s, g, bins=0)
    with pytest.raises(ValueError, match=r"`domain` must be one of"):
        M.maximum_calibration_error(s, g, domain="dataset")
    with pytest.raises(ValueError, match=r"`empty` must be a number or one of 'nan'"):
        M.roc_auc(s, g, empty="none")
    with pytest.raises(ValueError, match=r"probabilities|\[0, 1\]"):
        M.expected_calibration_error(s * 3, g)


# ----------------------------------------------------------------------------- calibration


def test_calibration_hand():
    q = torch.tensor([[[0.9, 0.9, 0.2, 0.2]]])
    g = torch.tensor([[1, 0, 0, 0]])
    assert float(M.expected_calibration_error(q, g, bins=5)) == pytest.approx(0.3)
    assert float(M.maximum_calibration_error(q, g, bins=5)) == pytest.approx(0.4)
    # one bin: |mean q - mean g| = |0.55 - 0.25|
    assert float(M.expected_calibration_error(q, g, bins=1)) == pytest.approx(0.3)
    rel = M.calibration_bins(q, g, bins=5)
    assert rel["count"].tolist() == [[0.0, 2.0, 0.0, 0.0, 2.0]]
    assert math.isnan(float(rel["confidence"][0, 0]))
    assert float(rel["confidence"][0, 4]) == pytest.approx(0.9) and float(rel["accuracy"][0, 4]) == 0.5
    # calibrated scores: 0
    q = torch.tensor([[[0.5, 0.5, 0.0, 1.0]]])
    g = torch.tensor([[1, 0, 0, 1]])
    assert float(M.expected_calibration_error(q, g, bins=4)) == 0.0
    assert float(M.maximum_calibration_error(q, g, bins=4)) == 0.0


def test_calibration_empty_ignore_3d():
    q = torch.tensor([[[0.7, 0.2]]])
    g = torch.tensor([[9, 9]])
    assert math.isnan(float(M.expected_calibration_error(q, g, ignore_index=9)))
    assert float(M.maximum_calibration_error(q, g, ignore_index=9, empty=0.0)) == 0.0
    g = torch.tensor([[1, 9]])
    assert float(M.expected_calibration_error(q, g, ignore_index=9, bins=10)) == pytest.approx(0.3)
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 3, 4, 5, generator=gen).softmax(1)
    t = torch.randint(0, 3, (2, 3, 4, 5), generator=gen)
    v = M.expected_calibration_error(x, t, mode="multiclass", reduction="none")
    assert v.shape == (2, 3) and ((v >= 0) & (v <= 1)).all()
    assert (M.maximum_calibration_error(x, t, mode="multiclass", reduction="none") >= v - 1e-7).all()


@pytest.mark.peers
@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (2, 4, 5, 6, 7)])
@pytest.mark.parametrize("norm", ["expected", "maximum"])
def test_calibration_agrees_with_monai(shape, norm):
    monai_metrics = pytest.importorskip("monai.metrics")
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(*shape, generator=gen).softmax(1)
    t = torch.randint(0, shape[1], (shape[0],) + shape[2:], generator=gen)
    oh = torch.nn.functional.one_hot(t, shape[1]).movedim(-1, 1).float()
    fn = M.expected_calibration_error if norm == "expected" else M.maximum_calibration_error
    for bins in (5, 20):
        got = fn(x, t, mode="multiclass", bins=bins, reduction="none")
        ref = monai_metrics.CalibrationErrorMetric(num_bins=bins, calibration_reduction=norm,
                                                   metric_reduction="none")(x, oh)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.peers
@pytest.mark.parametrize("norm", ["l1", "max"])
def test_calibration_agrees_with_torchmetrics_binary(norm):
    tmc = pytest.importorskip("torchmetrics.functional.classification")
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(3, 1, 20, 20, generator=gen)
    t = (torch.rand(3, 20, 20, generator=gen) < x[:, 0]).long()
    fn = M.expected_calibration_error if norm == "l1" else M.maximum_calibration_error
    got = fn(x, t, bins=10, domain="batch")
    ref = tmc.binary_calibration_error(x.flatten(), t.flatten(), n_bins=10, norm=norm)
    assert float(got) == pytest.approx(float(ref), abs=1e-6)


@pytest.mark.peers
def test_auc_agrees_with_monai():
    monai_metrics = pytest.importorskip("monai.metrics")
    gen = torch.Generator().manual_seed(5)
    s = torch.rand(200, generator=gen)
    g = (torch.rand(200, generator=gen) < s).long()
    ref = monai_metrics.compute_roc_auc(s, g)
    assert float(M.roc_auc(s.view(1, 1, -1), g.view(1, -1))) == pytest.approx(float(ref), abs=1e-6)


# ----------------------------------------------------------------------------- streaming


def test_streaming_auc_and_calibration():
    gen = torch.Generator().manual_seed(6)
    x = torch.rand(5, 3, 8, 9, generator=gen).softmax(1)
    t = torch.randint(0, 3, (5, 8, 9), generator=gen)
    m = M.SegmentationMetrics([("auc", {"bins": 50}), ("ece", {"bins": 7}), "mce"], 3, mode="multiclass",
                              per_class=True)
    for i in range(0, 5, 2):
        m.update(x[i:i + 2], t[i:i + 2])
    out = m.compute()
    kw = dict(mode="multiclass", reduction="none")
    torch.testing.assert_close(out["roc_auc_dataset"].float(), M.roc_auc(x, t, domain="batch", bins=50, **kw))
    torch.testing.assert_close(out["roc_auc_image_mean"].float(), M.roc_auc(x, t, **kw).nanmean(0))
    torch.testing.assert_close(out["expected_calibration_error_dataset"].float(),
                               M.expected_calibration_error(x, t, domain="batch", bins=7, **kw))
    torch.testing.assert_close(out["maximum_calibration_error_image_mean"].float(),
                               M.maximum_calibration_error(x, t, **kw).mean(0))
    exact = M.roc_auc(x, t, domain="batch", **kw)
    assert ((exact - out["roc_auc_dataset"].float()).abs() <= m.roc_auc_error_bound().float() + 1e-6).all()
    rel = m.reliability()
    ref = M.calibration_bins(x, t, mode="multiclass", bins=7)
    for k in ("count", "confidence", "accuracy"):
        torch.testing.assert_close(rel[k], ref[k], equal_nan=True)
    with pytest.raises(ValueError, match=r"`metrics` must include 'roc_auc'"):
        M.SegmentationMetrics(["dice"]).roc_auc_error_bound()
    with pytest.raises(ValueError, match=r"`metrics` must include 'expected_calibration_error'"):
        M.SegmentationMetrics(["dice"]).reliability()
    with pytest.raises(ValueError, match=r"`update` must be called before `reliability`"):
        M.SegmentationMetrics(["ece"]).reliability()
