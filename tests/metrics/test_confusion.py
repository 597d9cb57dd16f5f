"""The confusion-matrix family, class averaging, generalised Dice score and volume difference.

Hand-computed counts, 0/0 conventions, ignore_index, 2D/3D, bad input; agreement with
scikit-learn (flattened masks) and MONAI's ``ConfusionMatrixMetric`` / ``GeneralizedDiceScore`` /
``AbsoluteVolumeDifferenceMetric`` and torchmetrics' ``generalized_dice_score``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import seglosses.metrics as M
from seglosses.metrics.confusion import CONFUSION_ALIASES, FORMULAS

from ._ref import counts

FAMILY = ["matthews_correlation", "fbeta_score", "negative_predictive_value", "miss_rate", "fall_out",
          "false_discovery_rate", "false_omission_rate", "threat_score", "informedness", "markedness",
          "fowlkes_mallows", "prevalence_threshold"]


def _by_hand(name, tp, fp, fn, tn, beta=1.0):
    """The textbook formulas, written from the counts without the package."""
    tpr, tnr = tp / (tp + fn), tn / (tn + fp)
    ppv, npv = tp / (tp + fp), tn / (tn + fn)
    fpr = 1 - tnr
    return {
        "matthews_correlation": (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)),
        "fbeta_score": (1 + beta**2) * tp / ((1 + beta**2) * tp + beta**2 * fn + fp),
        "negative_predictive_value": npv, "miss_rate": fn / (tp + fn), "fall_out": fp / (fp + tn),
        "false_discovery_rate": fp / (fp + tp), "false_omission_rate": fn / (fn + tn),
        "threat_score": tp / (tp + fp + fn), "informedness": tpr + tnr - 1, "markedness": ppv + npv - 1,
        "fowlkes_mallows": math.sqrt(ppv * tpr),
        "prevalence_threshold": (math.sqrt(tpr * fpr) - fpr) / (tpr - fpr),
    }[name]


def _binary_case():
    # TP = 3, FP = 2, FN = 1, TN = 4 on a 2 x 5 image
    p = torch.tensor([[[[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]]], dtype=torch.float32)
    g = torch.tensor([[[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]])
    return p, g, (3, 2, 1, 4)


@pytest.mark.parametrize("name", FAMILY)
def test_hand_computed_binary(name):
    p, g, (tp, fp, fn, tn) = _binary_case()
    assert counts(p.bool().numpy(), g.bool().numpy()) == (tp, fp, fn, tn)
    fn_ = getattr(M, name)
    kw = {"beta": 2.0} if name == "fbeta_score" else {}
    expected = _by_hand(name, tp, fp, fn, tn, **kw)
    assert float(fn_(p, g, **kw)) == pytest.approx(expected, abs=1e-6)
    # by name, MONAI-style spelling included
    assert float(M.confusion_metric(p, g, metric=name.replace("_", " ").upper(), **kw)) == pytest.approx(
        expected, abs=1e-6)


def test_complements_and_identities():
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(3, 4, 6, 7, generator=gen)
    t = torch.randint(0, 4, (3, 6, 7), generator=gen)
    kw = dict(mode="multiclass", reduction="none")
    for rate, comp in (("sensitivity", "miss_rate"), ("specificity", "fall_out"), ("precision", "false_discovery_rate"),
                       ("negative_predictive_value", "false_omission_rate")):
        torch.testing.assert_close(getattr(M, rate)(x, t, **kw) + getattr(M, comp)(x, t, **kw),
                                   torch.ones(3, 4))
    torch.testing.assert_close(M.threat_score(x, t, **kw), M.jaccard(x, t, **kw))
    torch.testing.assert_close(M.fbeta_score(x, t, beta=1.0, **kw), M.dice(x, t, **kw))
    torch.testing.assert_close(M.fbeta_score(x, t, beta=0.0, **kw), M.precision(x, t, **kw))
    torch.testing.assert_close(M.informedness(x, t, **kw), 2 * M.balanced_accuracy(x, t, **kw) - 1)


def test_empty_masks_conventions():
    z = torch.zeros(1, 1, 4, 4)
    g = torch.zeros(1, 4, 4, dtype=torch.long)
    # nothing anywhere: rates 1 (empty), complements 0, MCC = empty (a right prediction)
    assert float(M.matthews_correlation(z, g)) == 1.0
    assert float(M.miss_rate(z, g)) == 0.0 and float(M.false_discovery_rate(z, g)) == 0.0
    assert float(M.fall_out(z, g)) == 0.0 and float(M.negative_predictive_value(z, g)) == 1.0
    assert math.isnan(float(M.matthews_correlation(z, g, empty="nan")))
    assert math.isnan(float(M.miss_rate(z, g, empty="nan")))
    # a false positive on an empty target: MCC 0 (zero denominator, not right), PT undefined -> NaN
    p = z.clone()
    p[..., 0, 0] = 1
    assert float(M.matthews_correlation(p, g)) == 0.0
    assert float(M.false_discovery_rate(p, g)) == 1.0
    # no negative pixel: FPR = 1 - empty = 0, so PT = 0 / TPR = 0
    assert float(M.prevalence_threshold(torch.tensor([[[1.0, 0.0]]]), torch.tensor([[1, 1]]))) == 0.0


def test_prevalence_threshold_nan_left_out_of_mean():
    # image 0: TPR = FPR = 1/2 (undefined); image 1: perfect (PT 0)
    p = torch.tensor([[[1.0, 1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0, 0.0]]])
    g = torch.tensor([[1, 0, 1, 0], [1, 0, 0, 0]])
    v = M.prevalence_threshold(p, g, reduction="none")
    assert math.isnan(float(v[0, 0])) and float(v[1, 0]) == 0.0
    assert float(M.prevalence_threshold(p, g)) == 0.0


def test_ignore_index_removes_pixels():
    p = torch.tensor([[0, 1, 1, 2, 2, 0]])
    g = torch.tensor([[0, 1, 2, 2, 9, 9]])
    kw = dict(mode="multiclass", num_classes=3, reduction="none")
    got = M.matthews_correlation(p, g, ignore_index=9, **kw)
    ref = M.matthews_correlation(p[:, :4], g[:, :4], **kw)
    torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (2, 3, 4, 5, 6)])
@pytest.mark.parametrize("name", FAMILY)
def test_2d_3d_against_counts(name, shape):
    gen = torch.Generator().manual_seed(len(shape))
    x = torch.rand(*shape, generator=gen)
    t = torch.randint(0, shape[1], (shape[0],) + shape[2:], generator=gen)
    got = getattr(M, name)(x, t, mode="multiclass", reduction="none", empty="nan")
    hard = x.argmax(1)
    for b in range(shape[0]):
        for c in range(shape[1]):
            tp, fp, fn, tn = counts((hard[b] == c).numpy(), (t[b] == c).numpy())
            try:
                ref = _by_hand(name, tp, fp, fn, tn)
            except ZeroDivisionError:
                continue
            assert float(got[b, c]) == pytest.approx(ref, abs=1e-5), (b, c)


def test_bad_input():
    p, g, _ = _binary_case()
    with pytest.raises(ValueError, match=r"`metric` must be a confusion-matrix metric .*got 'mcd' \(did you mean 'mcc'\?\)"):
        M.confusion_metric(p, g, metric="mcd")
    with pytest.raises(ValueError, match=r"`beta` must be"):
        M.fbeta_score(p, g, beta=-1.0)
    with pytest.raises(ValueError, match=r"`average` must be one of 'macro', 'micro', 'weighted'; got 'mikro'"):
        M.matthews_correlation(p, g, average="mikro")
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'average'"):
        M.pixel_accuracy(p, g, average="micro")
    with pytest.raises(ValueError, match=r"`weight_type` must be one of"):
        M.generalized_dice_score(p, g, weight_type="cubic")
    with pytest.raises(ValueError, match=r"`spacing` must have one value per spatial dim \(2\)"):
        M.volume_difference(p, g, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(TypeError, match=r"`relative` must be a bool; got str"):
        M.volume_difference(p, g, relative="yes")
    with pytest.raises(ValueError, match=r"`input` and `target`|shape"):
        M.markedness(p, g[..., :3])


def test_every_monai_name_resolves():
    names = ["sensitivity", "recall", "hit_rate", "true_positive_rate", "tpr", "specificity", "selectivity",
             "true_negative_rate", "tnr", "precision", "positive_predictive_value", "ppv",
             "negative_predictive_value", "npv", "miss_rate", "false_negative_rate", "fnr", "fall_out",
             "false_positive_rate", "fpr", "false_discovery_rate", "fdr", "false_omission_rate", "for",
             "prevalence_threshold", "pt", "threat_score", "critical_success_index", "ts", "csi", "accuracy", "acc",
             "balanced_accuracy", "ba", "f1_score", "f1", "matthews_correlation_coefficient", "mcc",
             "fowlkes_mallows_index", "fm", "informedness", "bookmaker_informedness", "bm", "youden_index",
             "youden", "markedness", "deltap", "mk"]
    for n in names:
        assert n in FORMULAS or n in CONFUSION_ALIASES, n
        M.SegmentationMetrics([n] if n not in ("accuracy", "acc") else ["dice"])


# ----------------------------------------------------------------------------- averaging


def test_average_by_hand():
    p = torch.tensor([[0, 1, 1, 2, 2, 0]])
    g = torch.tensor([[0, 1, 2, 2, 1, 0]])
    kw = dict(mode="multiclass", num_classes=3, domain="batch")
    # precision per class: 2/2, 1/2, 1/2; support (TP + FN): 2, 2, 2
    assert float(M.precision(p, g, average="macro", **kw)) == pytest.approx(2 / 3)
    assert float(M.precision(p, g, average="micro", **kw)) == pytest.approx(4 / 6)
    assert float(M.precision(p, g, average="weighted", **kw)) == pytest.approx(2 / 3)
    # reduction="none" with an average: one value per item
    assert M.dice(p, g, average="micro", mode="multiclass", num_classes=3, reduction="none").shape == (1,)
    assert M.dice(p, g, average="micro", reduction="none", **kw).dim() == 0
    # weighted without any positive pixel: NaN, left out of the mean
    z = torch.zeros(1, 1, 3)
    assert math.isnan(float(M.dice(z, torch.zeros(1, 3, dtype=torch.long), average="weighted")))


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
@pytest.mark.parametrize("name,sk", [("precision", "precision_score"), ("sensitivity", "recall_score"),
                                      ("dice", "f1_score"), ("jaccard", "jaccard_score"),
                                      ("fbeta_score", "fbeta_score")])
def test_average_matches_sklearn(name, sk, average):
    skm = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(2, 4, 9, 8, generator=gen)
    t = torch.randint(0, 4, (2, 9, 8), generator=gen)
    kw = {"beta": 2.0} if name == "fbeta_score" else {}
    got = getattr(M, name)(x, t, mode="multiclass", domain="batch", average=average, **kw)
    ref = getattr(skm, sk)(t.flatten().numpy(), x.argmax(1).flatten().numpy(), average=average, **kw)
    assert float(got) == pytest.approx(ref, abs=1e-6)


def test_mcc_matches_sklearn_binary():
    skm = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(8)
    for _ in range(5):
        p = (torch.rand(1, 1, 10, 10, generator=gen) > 0.5).float()
        g = (torch.rand(1, 10, 10, generator=gen) > 0.6).long()
        ref = skm.matthews_corrcoef(g.flatten().numpy(), p.flatten().numpy())
        assert float(M.matthews_correlation(p, g)) == pytest.approx(ref, abs=1e-6)
    # a zero denominator that is not a right prediction: scikit-learn's 0
    p = torch.ones(1, 1, 4)
    g = torch.tensor([[1, 0, 1, 0]])
    assert float(M.matthews_correlation(p, g)) == skm.matthews_corrcoef(g.flatten().numpy(), p.flatten().numpy())


# ----------------------------------------------------------------------------- generalized Dice score


def test_generalized_dice_hand_and_weights():
    p = torch.tensor([[0, 0, 0, 1]])
    g = torch.tensor([[0, 0, 1, 1]])
    assert float(M.generalized_dice_score(p, g, num_classes=2)) == pytest.approx(0.75)
    # uniform weights: pooled Dice of all classes, 2 * (2 + 1) / (5 + 3)
    assert float(M.generalized_dice_score(p, g, num_classes=2, weight_type="uniform")) == pytest.approx(0.75)
    # simple weights 1/2, 1/2: the same here; square with volumes 1 and 3
    g2 = torch.tensor([[0, 1, 1, 1]])
    # w = (1, 1/9); TP = (1, 1); 2TP+FP+FN = (1*2+2+0, 2+0+2) = (4, 4): 2(1 + 1/9) / (4 + 4/9)
    assert float(M.generalized_dice_score(p, g2, num_classes=2)) == pytest.approx(2 * (1 + 1 / 9) / (4 + 4 / 9))


def test_generalized_dice_absent_class_and_empty():
    # class 1 absent from the target: weight = the largest finite weight (class 0's)
    p = torch.tensor([[0, 0, 1, 1]])
    g = torch.tensor([[0, 0, 0, 0]])
    # w = (1/16, 1/16); TP = (2, 0); 2TP+FP+FN: (4 + 0 + 2, 0 + 2 + 0): 4 / 8
    assert float(M.generalized_dice_score(p, g, num_classes=2)) == pytest.approx(0.5)
    # nothing of the kept class anywhere: empty
    p = torch.tensor([[0, 0]])
    g = torch.tensor([[0, 0]])
    assert float(M.generalized_dice_score(p, g, num_classes=2, include_background=False)) == 1.0
    v = M.generalized_dice_score(p, g, num_classes=2, include_background=False, empty="nan", reduction="none")
    assert v.shape == (1,) and math.isnan(float(v[0]))


def test_generalized_dice_ignore_index_and_3d():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 4, 5, 6, generator=gen)
    t = torch.randint(0, 3, (2, 4, 5, 6), generator=gen)
    t_ign = t.clone()
    t_ign[:, 0] = 255
    got = M.generalized_dice_score(x, t_ign, ignore_index=255, reduction="none")
    ref = M.generalized_dice_score(x[:, :, 1:], t[:, 1:], reduction="none")
    torch.testing.assert_close(got, ref)


# ----------------------------------------------------------------------------- volume difference


def test_volume_difference_hand():
    p = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    g = torch.tensor([[[1, 0], [0, 0]]])
    assert float(M.volume_difference(p, g)) == 2.0
    assert float(M.volume_difference(p, g, spacing=(0.5, 2.0))) == 2.0
    assert float(M.volume_difference(p, g, spacing=3.0)) == 18.0
    assert float(M.volume_difference(p, g, relative=True)) == 2.0
    assert float(M.volume_difference(g.unsqueeze(1).float(), torch.tensor([[[1, 1], [1, 0]]]), signed=True)) == -2.0
    # empty target: absolute defined, relative `empty`
    z = torch.zeros(1, 2, 2, dtype=torch.long)
    assert float(M.volume_difference(p, z)) == 3.0
    assert math.isnan(float(M.volume_difference(p, z, relative=True)))
    assert float(M.volume_difference(p, z, relative=True, empty=0.0)) == 0.0
    # ignored pixels count in neither volume
    g_ign = torch.tensor([[[1, 7], [7, 0]]])
    assert float(M.volume_difference(p, g_ign, ignore_index=7)) == 0.0


def test_volume_difference_3d_multiclass_batch_domain():
    gen = torch.Generator().manual_seed(4)
    p = torch.randint(0, 3, (2, 4, 5, 6), generator=gen)
    g = torch.randint(0, 3, (2, 4, 5, 6), generator=gen)
    got = M.volume_difference(p, g, mode="multiclass", num_classes=3, domain="batch", reduction="none")
    ref = torch.tensor([abs(float((p == c).sum() - (g == c).sum())) for c in range(3)])
    torch.testing.assert_close(got, ref)


# ----------------------------------------------------------------------------- streaming


def test_streaming_new_metrics_equal_functional_batch_domain():
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(4, 3, 6, 7, generator=gen).softmax(1)
    t = torch.randint(0, 3, (4, 6, 7), generator=gen)
    names = {"mcc": {}, ("fbeta_score"): {"beta": 0.5}, "npv": {}, "fnr": {}, "fpr": {}, "fdr": {}, "for": {},
             "csi": {}, "youden": {}, "deltap": {}, "fm": {}, "pt": {}, "gds": {}, "avd": {},
             "dice": {"average": "micro"}}
    m = M.SegmentationMetrics(names, 3, mode="multiclass", per_class=True, spacing=(0.5, 2.0))
    m.update(x[:1], t[:1])
    m.update(x[1:], t[1:])
    out = m.compute()
    kw = dict(mode="multiclass", domain="batch", reduction="none")
    for name, fn in [("matthews_correlation", M.matthews_correlation), ("negative_predictive_value",
                     M.negative_predictive_value), ("miss_rate", M.miss_rate), ("fall_out", M.fall_out),
                     ("false_discovery_rate", M.false_discovery_rate), ("false_omission_rate",
                     M.false_omission_rate), ("threat_score", M.threat_score), ("informedness", M.informedness),
                     ("markedness", M.markedness), ("fowlkes_mallows", M.fowlkes_mallows),
                     ("prevalence_threshold", M.prevalence_threshold)]:
        torch.testing.assert_close(out[f"{name}_dataset"].float(), fn(x, t, **kw), msg=name)
        torch.testing.assert_close(out[f"{name}_image_mean"].float(),
                                   fn(x, t, mode="multiclass", reduction="none").nanmean(0), msg=name)
    torch.testing.assert_close(out["fbeta_score_dataset"].float(), M.fbeta_score(x, t, beta=0.5, **kw))
    torch.testing.assert_close(out["generalized_dice_score_dataset"].float().squeeze(),
                               M.generalized_dice_score(x, t, domain="batch"))
    torch.testing.assert_close(out["volume_difference_image_mean"].float(),
                               M.volume_difference(x, t, mode="multiclass", reduction="none", spacing=(0.5, 2.0))
                               .mean(0))
    torch.testing.assert_close(out["dice_dataset"].float().squeeze(), M.dice(x, t, average="micro", **kw))


def test_streaming_options_checked():
    with pytest.raises(ValueError, match=r"`average` must be one of"):
        M.SegmentationMetrics([("mcc", {"average": "mean"})])
    with pytest.raises(ValueError, match=r"`beta` must be"):
        M.SegmentationMetrics([("fbeta_score", {"beta": -2})])
    with pytest.raises(ValueError, match=r"`average` must be an option of 'pixel_accuracy'"):
        M.SegmentationMetrics([("pixel_accuracy", {"average": "micro"})])


# ----------------------------------------------------------------------------- peers


@pytest.mark.peers
@pytest.mark.parametrize("mode,shape", [("binary", (3, 1, 9, 8)), ("multiclass", (3, 4, 9, 8)),
                                        ("multiclass", (2, 3, 4, 5, 6)), ("multilabel", (2, 3, 7, 7))])
def test_agrees_with_monai_confusion_matrix(mode, shape):
    monai_metrics = pytest.importorskip("monai.metrics")
    gen = torch.Generator().manual_seed(11)
    x = torch.rand(*shape, generator=gen, dtype=torch.float64)  # float64: PT is ill-conditioned near J = 0
    b, c = shape[:2]
    if mode == "multiclass":
        x = x.softmax(1)
        t = torch.randint(0, c, (b,) + shape[2:], generator=gen)
        pred = torch.nn.functional.one_hot(x.argmax(1), c).movedim(-1, 1).double()
        y = torch.nn.functional.one_hot(t, c).movedim(-1, 1).double()
    else:
        t = torch.randint(0, 2, (b, c) + shape[2:], generator=gen) if mode == "multilabel" else \
            torch.randint(0, 2, (b,) + shape[2:], generator=gen)
        pred = (x >= 0.5).double()
        y = t.double() if mode == "multilabel" else t.unsqueeze(1).double()
    cm = monai_metrics.get_confusion_matrix(pred, y).double()  # counts: exact in float32 too
    worst = 0.0
    for monai_name in ["sensitivity", "specificity", "precision", "negative predictive value", "miss rate",
                       "fall out", "false discovery rate", "false omission rate", "prevalence threshold",
                       "threat score", "accuracy", "balanced accuracy", "f1 score",
                       "matthews correlation coefficient", "fowlkes mallows index", "informedness", "markedness"]:
        ref = monai_metrics.compute_confusion_matrix_metric(monai_name, cm)
        got = M.confusion_metric(x, t, metric=monai_name, mode=mode, reduction="none", empty="nan")
        defined = ~torch.isnan(ref)
        # MONAI gives NaN at every zero denominator; there ours is the documented convention
        torch.testing.assert_close(got[defined], ref[defined], rtol=1e-10, atol=1e-12, msg=monai_name)
        worst = max(worst, float((got[defined] - ref[defined]).abs().max()) if defined.any() else 0.0)
    assert worst < 1e-10


@pytest.mark.peers
def test_fbeta_agrees_with_monai_and_sklearn():
    monai_metrics = pytest.importorskip("monai.metrics")
    skm = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(12)
    x = torch.rand(1, 1, 20, 20, generator=gen)
    t = (torch.rand(1, 20, 20, generator=gen) > 0.5).long()
    for beta in (0.5, 1.0, 2.0, 3.5):
        got = float(M.fbeta_score(x, t, beta=beta))
        cm = monai_metrics.get_confusion_matrix((x >= 0.5).float(), t.unsqueeze(1).float())
        ref = float(monai_metrics.f_beta_score.compute_f_beta_score(cm, beta))
        sk = skm.fbeta_score(t.flatten().numpy(), (x >= 0.5).long().flatten().numpy(), beta=beta)
        assert got == pytest.approx(ref, abs=1e-6) and got == pytest.approx(sk, abs=1e-6)


@pytest.mark.peers
@pytest.mark.parametrize("shape", [(4, 3, 10, 10), (2, 4, 5, 6, 7)])
def test_generalized_dice_agrees_with_monai_and_torchmetrics(shape):
    monai_metrics = pytest.importorskip("monai.metrics")
    tm_seg = pytest.importorskip("torchmetrics.functional.segmentation")
    gen = torch.Generator().manual_seed(13)
    b, c = shape[:2]
    x = torch.rand(*shape, generator=gen)
    t = torch.randint(0, c, (b,) + shape[2:], generator=gen)
    p_oh = torch.nn.functional.one_hot(x.argmax(1), c).movedim(-1, 1)
    t_oh = torch.nn.functional.one_hot(t, c).movedim(-1, 1)
    got = M.generalized_dice_score(x, t, reduction="none")
    ref = monai_metrics.compute_generalized_dice(p_oh.float(), t_oh.float(), sum_over_classes=True).flatten()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    ref_tm = tm_seg.generalized_dice_score(p_oh, t_oh, num_classes=c)
    torch.testing.assert_close(got, ref_tm.float(), rtol=1e-5, atol=1e-6)
    # an absent class: MONAI's guard (the largest weight of the item) is ours
    t2 = t.clone()
    t2[0][t2[0] == c - 1] = 0
    t2_oh = torch.nn.functional.one_hot(t2, c).movedim(-1, 1)
    got2 = M.generalized_dice_score(x, t2, reduction="none")
    ref2 = monai_metrics.compute_generalized_dice(p_oh.float(), t2_oh.float(), sum_over_classes=True).flatten()
    torch.testing.assert_close(got2, ref2, rtol=1e-5, atol=1e-6)


@pytest.mark.peers
@pytest.mark.parametrize("include_background", [True, False])
def test_volume_difference_agrees_with_monai(include_background):
    monai_metrics = pytest.importorskip("monai.metrics")
    gen = torch.Generator().manual_seed(14)
    p = torch.randint(0, 3, (2, 6, 5, 4), generator=gen)
    g = torch.randint(0, 3, (2, 6, 5, 4), generator=gen)
    oh = lambda v: torch.nn.functional.one_hot(v, 3).movedim(-1, 1).float()  # noqa: E731
    got = M.volume_difference(p, g, mode="multiclass", num_classes=3, include_background=include_background,
                              reduction="none")
    ref = monai_metrics.compute_absolute_volume_difference(oh(p), oh(g), include_background=include_background,
                                                           ignore_empty=False)
    torch.testing.assert_close(got, ref)
    assert np.isfinite(got.numpy()).all()
