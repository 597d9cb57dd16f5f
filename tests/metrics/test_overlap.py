"""Overlap metrics: hand-computed values, the naive reference, conventions, bad input, peers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import seglosses as sl
from seglosses import metrics as M
from seglosses._inputs import canonicalize
from seglosses._stats import label_moments, moments

from . import _ref as R

RATIO_METRICS = {
    "dice": (M.dice, R.dice),
    "jaccard": (M.jaccard, R.jaccard),
    "sensitivity": (M.sensitivity, lambda tp, fp, fn, tn, empty=1.0: R.ratio(tp, tp + fn, empty)),
    "specificity": (M.specificity, lambda tp, fp, fn, tn, empty=1.0: R.ratio(tn, tn + fp, empty)),
    "precision": (M.precision, lambda tp, fp, fn, tn, empty=1.0: R.ratio(tp, tp + fp, empty)),
    "balanced_accuracy": (M.balanced_accuracy, R.balanced_accuracy),
    "tversky_index": (M.tversky_index, lambda tp, fp, fn, tn, empty=1.0: R.ratio(tp, tp + 0.3 * fp + 0.7 * fn, empty)),
}


# ---------------------------------------------------------------- hand-computed values
# prediction (thresholded at 0.5)   target
#   1 1 0                            1 0 0
#   0 1 0                            1 1 0
# TP = 2 (top left, centre), FP = 1 (top middle), FN = 1 (bottom left), TN = 2, N = 6
P_BIN = torch.tensor([[[[0.9, 0.6, 0.4], [0.1, 0.5, 0.0]]]])
G_BIN = torch.tensor([[[1, 0, 0], [1, 1, 0]]])


@pytest.mark.parametrize(
    "fn, expected",
    [
        (M.dice, 4 / 6),  # 2TP / (2TP + FP + FN)
        (M.jaccard, 2 / 4),  # TP / (TP + FP + FN)
        (M.tversky_index, 2 / (2 + 0.3 * 1 + 0.7 * 1)),
        (M.sensitivity, 2 / 3),  # TP / (TP + FN)
        (M.specificity, 2 / 3),  # TN / (TN + FP)
        (M.precision, 2 / 3),  # TP / (TP + FP)
        (M.balanced_accuracy, (2 / 3 + 2 / 3) / 2),
        (M.pixel_accuracy, 4 / 6),  # TP + TN of N
    ],
)
def test_hand_values_binary(fn, expected):
    assert fn(P_BIN, G_BIN).item() == pytest.approx(expected, abs=1e-6)


def test_tversky_alpha_beta_and_special_cases():
    # alpha = 0.5, beta = 1: 2 / (2 + 0.5 + 1)
    assert M.tversky_index(P_BIN, G_BIN, alpha=0.5, beta=1.0).item() == pytest.approx(4 / 7, abs=1e-6)
    assert M.tversky_index(P_BIN, G_BIN, alpha=0.5, beta=0.5).item() == pytest.approx(M.dice(P_BIN, G_BIN).item())
    assert M.tversky_index(P_BIN, G_BIN, alpha=1.0, beta=1.0).item() == pytest.approx(M.jaccard(P_BIN, G_BIN).item())


def test_threshold_and_logits():
    # p = 0.5 is positive (p >= threshold); with threshold 0.55 the centre pixel turns negative:
    # TP = 1, FP = 1, FN = 2: Dice = 2 / 5
    assert M.dice(P_BIN, G_BIN, threshold=0.55).item() == pytest.approx(2 / 5)
    logits = torch.logit(P_BIN.clamp(1e-6, 1 - 1e-6).double())
    assert M.dice(logits, G_BIN, from_logits=True).item() == pytest.approx(4 / 6)
    hard = (P_BIN >= 0.5).long()
    for form in (hard, hard[:, 0], hard.bool()):
        assert M.dice(form, G_BIN).item() == pytest.approx(4 / 6)


# multiclass: prediction 0 1 1 2 2 0, target 0 1 2 2 0 0
#   class 0: pred {0, 5}, target {0, 4, 5}: TP 2, FP 0, FN 1 -> Dice 4/5, IoU 2/3
#   class 1: pred {1, 2}, target {1}:       TP 1, FP 1, FN 0 -> Dice 2/3, IoU 1/2
#   class 2: pred {3, 4}, target {2, 3}:    TP 1, FP 1, FN 1 -> Dice 1/2, IoU 1/3
#   pixel accuracy: 4 of 6
MC_PRED = torch.tensor([[0, 1, 1, 2, 2, 0]])
MC_TRUE = torch.tensor([[0, 1, 2, 2, 0, 0]])
MC_DICE = [4 / 5, 2 / 3, 1 / 2]
MC_IOU = [2 / 3, 1 / 2, 1 / 3]


def _mc_forms():
    onehot = torch.nn.functional.one_hot(MC_PRED, 3).movedim(-1, 1).float()  # [1, 3, 6]
    probs = onehot * 0.8 + 0.1  # arg-max unchanged, sums to 1.1 (probabilities, not a distribution)
    logits = onehot * 3.0
    return [
        dict(input=MC_PRED, num_classes=3),
        dict(input=probs),
        dict(input=logits, from_logits=True),
    ]


@pytest.mark.parametrize("form", range(3))
@pytest.mark.parametrize("onehot_target", [False, True])
def test_hand_values_multiclass(form, onehot_target):
    kw = dict(_mc_forms()[form])
    inp = kw.pop("input")
    target = MC_TRUE if not onehot_target else torch.nn.functional.one_hot(MC_TRUE, 3).movedim(-1, 1).float()
    d = M.dice(inp, target, mode="multiclass", reduction="none", **kw)
    assert d.shape == (1, 3)
    torch.testing.assert_close(d[0], torch.tensor(MC_DICE))
    torch.testing.assert_close(M.jaccard(inp, target, mode="multiclass", reduction="none", **kw)[0],
                               torch.tensor(MC_IOU))
    torch.testing.assert_close(M.iou_per_class(inp, target, **kw), torch.tensor(MC_IOU))
    assert M.mean_iou(inp, target, **kw).item() == pytest.approx(sum(MC_IOU) / 3)
    assert M.pixel_accuracy(inp, target, mode="multiclass", **kw).item() == pytest.approx(4 / 6)
    # include_background=False drops class 0 (pixel accuracy still counts every class)
    d2 = M.dice(inp, target, mode="multiclass", include_background=False, reduction="none", **kw)
    torch.testing.assert_close(d2[0], torch.tensor(MC_DICE[1:]))
    assert M.pixel_accuracy(inp, target, mode="multiclass", include_background=False, **kw).item() == pytest.approx(4 / 6)


def test_hand_values_multilabel():
    # label 0: pred 1 1 0 0, true 1 0 0 0: TP 1 FP 1 FN 0 TN 2 -> Dice 2/3, PA 3/4
    # label 1: pred 0 0 0 0, true 0 0 0 0: empty -> Dice 1 (0/0), PA 1
    p = torch.tensor([[[0.9, 0.7, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4]]])
    g = torch.tensor([[[1, 0, 0, 0], [0, 0, 0, 0]]])
    torch.testing.assert_close(M.dice(p, g, mode="multilabel", reduction="none"), torch.tensor([[2 / 3, 1.0]]))
    torch.testing.assert_close(M.pixel_accuracy(p, g, mode="multilabel", reduction="none"),
                               torch.tensor([[3 / 4, 1.0]]))
    assert torch.isnan(M.dice(p, g, mode="multilabel", reduction="none", empty="nan")[0, 1])
    # NaN left out of the mean
    assert M.dice(p, g, mode="multilabel", empty="nan").item() == pytest.approx(2 / 3)


# ---------------------------------------------------------------- conventions
def test_empty_conventions():
    empty_pred = torch.zeros(2, 1, 3, 4)
    target = torch.zeros(2, 3, 4, dtype=torch.long)
    target[1, 0, 0] = 1
    # image 0: both empty (0/0 -> 1); image 1: a missed pixel (Dice 0)
    torch.testing.assert_close(M.dice(empty_pred, target, reduction="none"), torch.tensor([[1.0], [0.0]]))
    v = M.dice(empty_pred, target, reduction="none", empty="nan")
    assert torch.isnan(v[0, 0]) and v[1, 0] == 0
    assert M.dice(empty_pred, target, empty="nan").item() == 0.0
    assert M.dice(empty_pred, target, empty=0.0).item() == 0.0
    # a false positive on an empty target scores 0, not a silent 1
    fp = torch.zeros(1, 1, 3, 4)
    fp[..., 0, 0] = 1
    assert M.dice(fp, torch.zeros(1, 3, 4, dtype=torch.long)).item() == 0.0
    # sensitivity 0/0 (no positives) and specificity 0/0 (all positive)
    assert M.sensitivity(empty_pred[:1], target[:1]).item() == 1.0
    assert M.specificity(torch.ones(1, 1, 2, 2), torch.ones(1, 2, 2, dtype=torch.long)).item() == 1.0
    # all pixels ignored: pixel accuracy 0/0
    t = torch.full((1, 2, 2), 255)
    assert M.pixel_accuracy(torch.zeros(1, 1, 2, 2), t, ignore_index=255).item() == 1.0
    assert math.isnan(M.pixel_accuracy(torch.zeros(1, 1, 2, 2), t, ignore_index=255, empty="nan").item())


def _rand_case(mode, spatial, b=3, c=4, gen=None):
    if mode == "binary":
        x = torch.rand(b, 1, *spatial, generator=gen)
        t = torch.randint(0, 2, (b, *spatial), generator=gen)
    elif mode == "multiclass":
        x = torch.rand(b, c, *spatial, generator=gen).softmax(1)
        t = torch.randint(0, c, (b, *spatial), generator=gen)
    else:
        x = torch.rand(b, c, *spatial, generator=gen)
        t = torch.randint(0, 2, (b, c, *spatial), generator=gen)
    return x, t


def _hard_masks(mode, x, t, c=4):
    """Per image and class boolean masks by plain torch ops (the oracle's input)."""
    if mode == "multiclass":
        pred = torch.stack([x.argmax(1) == k for k in range(x.shape[1])], 1)
        true = torch.stack([t == k for k in range(x.shape[1])], 1)
    elif mode == "binary":
        pred, true = x >= 0.5, t.unsqueeze(1).bool()
    else:
        pred, true = x >= 0.5, t.bool()
    return pred.numpy(), true.numpy()


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("spatial", [(5, 7), (3, 5, 6)])
@pytest.mark.parametrize("name", sorted(RATIO_METRICS))
def test_against_naive_reference(mode, spatial, name):
    gen = torch.Generator().manual_seed(7)
    x, t = _rand_case(mode, spatial, gen=gen)
    if mode == "multiclass":  # an empty class in image 0 (none predicted, none true)
        x[0, 3] = 0.0
        t[0][t[0] == 3] = 0
    fn, ref = RATIO_METRICS[name]
    got = fn(x, t, mode=mode, reduction="none")
    pred, true = _hard_masks(mode, x, t)
    expected = torch.tensor([[ref(*R.counts(pred[b, k], true[b, k])) for k in range(pred.shape[1])]
                             for b in range(pred.shape[0])], dtype=torch.float32)
    torch.testing.assert_close(got, expected)
    # batch domain: the counts of all images pooled
    got_b = fn(x, t, mode=mode, domain="batch", reduction="none")
    expected_b = torch.tensor([ref(*R.counts(pred[:, k], true[:, k])) for k in range(pred.shape[1])],
                              dtype=torch.float32)
    torch.testing.assert_close(got_b, expected_b)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_ignore_index_equals_removing_the_pixels(mode):
    gen = torch.Generator().manual_seed(3)
    x, t = _rand_case(mode, (4, 7), b=2, gen=gen)
    if mode == "multilabel":
        t = t.clone()
        t[:, :, :, :2] = 255  # the first two columns ignored (all channels)
    else:
        t = t.clone()
        t[:, :, :2] = 255
    for fn in (M.dice, M.jaccard, M.specificity, M.pixel_accuracy):
        full = fn(x, t, mode=mode, ignore_index=255, reduction="none")
        cropped = fn(x[..., 2:].contiguous(), t[..., 2:].contiguous(), mode=mode, reduction="none")
        torch.testing.assert_close(full, cropped)


def test_label_moments_equal_one_hot_moments():
    # the label-map helper gives the kernel's moments of the one-hot prediction
    gen = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 4, (3, 5, 6), generator=gen)
    t = torch.randint(0, 4, (3, 5, 6), generator=gen)
    t[0, 0] = 255
    onehot = torch.nn.functional.one_hot(pred, 4).movedim(-1, 1).double()
    for target in (t, torch.nn.functional.one_hot(t.clamp_max(3), 4).movedim(-1, 1).double()):
        for bg in (True, False):
            ii = 255 if target.dim() == 3 else None
            canon = canonicalize(onehot, target, mode="multiclass", from_logits=False, include_background=bg,
                                 ignore_index=ii)
            ref = moments(canon, ("p", "g", "pg", "n"))
            got = label_moments(pred.reshape(3, -1), canon)
            for k in ref:
                torch.testing.assert_close(got[k], ref[k])


def _layouts(x):
    """The same tensor as [B, C, *S] contiguous and as channels-last (class axis innermost in memory)."""
    cl = x.movedim(1, -1).contiguous().movedim(-1, 1)
    assert cl.stride(1) == 1 and torch.equal(cl, x)
    return {"contiguous": x.contiguous(), "channels_last": cl}


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_argmax_classes_equals_argmax(layout):
    from seglosses.metrics._hard import argmax_classes

    gen = torch.Generator().manual_seed(4)
    x = torch.randint(0, 3, (3, 5, 7, 6), generator=gen).float()  # many ties: the first class wins
    x = _layouts(x)[layout].reshape(3, 5, -1)
    torch.testing.assert_close(argmax_classes(x), x.argmax(1), rtol=0, atol=0)
    y = x.clone()
    y[1, 2, 4] = float("nan")  # NaN counts as the maximum, as in torch.argmax
    torch.testing.assert_close(argmax_classes(y), y.argmax(1), rtol=0, atol=0)


def _label_reference(x, target, valid=None):
    """The moments of the arg-max label map through the label-map helper (float64)."""
    canon = canonicalize(x, target, mode="multiclass", from_logits=False)
    if valid is not None:
        from dataclasses import replace

        canon = replace(canon, valid=valid)
    return label_moments(x.reshape(x.shape[0], x.shape[1], -1).argmax(1), canon)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_dense_moments_equal_label_moments(monkeypatch, layout, dtype):
    # scores against a dense target without a label map: the moments of the arg-max label map,
    # with the pixels split into several chunks
    from seglosses.metrics import _hard as H

    monkeypatch.setattr(H, "_CHUNK_ELEMENTS", 50)
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(3, 4, 6, 7, generator=gen).to(dtype)
    x = x + torch.arange(4).view(1, 4, 1, 1).to(dtype) * 1e-3  # no tied maxima, even in half precision
    labels = torch.randint(0, 4, (3, 6, 7), generator=gen)
    onehot = torch.nn.functional.one_hot(labels, 4).movedim(-1, 1).to(dtype)
    soft = torch.rand(3, 4, 6, 7, generator=gen).softmax(1).to(dtype)
    valid = torch.rand(3, 42, generator=gen) > 0.3
    for target in (onehot, soft):
        for v in (None, valid):
            xs, ts = _layouts(x)[layout], _layouts(target)[layout]
            got = H.dense_moments(xs.reshape(3, 4, -1), ts.reshape(3, 4, -1), v)
            ref = _label_reference(x.float(), target.float(), v)
            exact = target is onehot
            for k in ("p", "g", "pg", "n"):
                assert got[k].dtype == torch.float64
                tol = dict(rtol=0, atol=0) if exact else dict(rtol=1e-6, atol=1e-6)
                torch.testing.assert_close(got[k], ref[k], **tol, msg=k)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_dense_moments_leave_ties_to_the_argmax(layout):
    from seglosses.metrics import _hard as H

    x = torch.zeros(2, 3, 5)
    x[0, 1, :] = 1.0
    x[1, :, 2] = 0.5  # a pixel of image 1 with three tied maxima (the rest picks class 0)
    t = torch.nn.functional.one_hot(torch.tensor([[1, 1, 0, 2, 1], [0, 2, 1, 1, 0]]), 3).movedim(-1, 1).float()
    x, t = _layouts(x)[layout], _layouts(t)[layout]
    assert H.dense_moments(x, t, None) is None
    # the metric then counts with the arg-max label map (ties to the first class)
    expected = M.dice(x.argmax(1), t, mode="multiclass", reduction="none")
    torch.testing.assert_close(M.dice(x, t, mode="multiclass", reduction="none"), expected)
    nan = x.clone()
    nan[0, 0, 0] = float("nan")
    assert H.dense_moments(nan, t, None) is None
    assert H.dense_moments(nan[:1], t[:1], None) is None  # the only irregular pixel


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_multiclass_scores_in_any_layout(layout):
    # one-hot and soft-score predictions, one-hot / label targets, in both memory layouts:
    # the values of the label-map prediction
    gen = torch.Generator().manual_seed(8)
    scores = torch.rand(2, 4, 9, 5, generator=gen).softmax(1)
    labels = torch.randint(0, 4, (2, 9, 5), generator=gen)
    labels[1, :, :2] = 255
    onehot_t = torch.nn.functional.one_hot(labels.clamp_max(3), 4).movedim(-1, 1).float()
    for pred in (scores, torch.nn.functional.one_hot(scores.argmax(1), 4).movedim(-1, 1).float()):
        p = _layouts(pred)[layout]
        for fn in (M.dice, M.jaccard, M.specificity, M.pixel_accuracy):
            for t, ii in ((_layouts(onehot_t)[layout], None), (labels, 255)):
                got = fn(p, t, mode="multiclass", ignore_index=ii, reduction="none")
                ref = fn(pred.argmax(1), t, mode="multiclass", num_classes=4, ignore_index=ii, reduction="none")
                torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_value_checks_read_channels_last_inputs():
    # the bounds are taken in memory order; the checks and their messages are unchanged
    p = _layouts(torch.rand(2, 3, 4, 5).softmax(1))["channels_last"]
    t = _layouts(torch.nn.functional.one_hot(torch.randint(0, 3, (2, 4, 5)), 3).movedim(-1, 1).float())[
        "channels_last"]
    M.dice(p, t, mode="multiclass")
    with pytest.raises(ValueError, match=r"`input` must hold probabilities in \[0, 1\]"):
        M.dice(p * 2, t, mode="multiclass")
    with pytest.raises(ValueError, match=r"`input` must be finite"):
        M.dice(p * float("nan"), t, mode="multiclass")
    with pytest.raises(ValueError, match=r"`target` must hold probabilities in \[0, 1\]"):
        M.dice(p, t - 1, mode="multiclass")
    with pytest.raises(ValueError, match=r"`target` labels must lie in \[0, 2\]"):
        M.dice(p.argmax(1), t.argmax(1) + 1, mode="multiclass", num_classes=3)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_range_and_maximum_at_truth(mode):
    gen = torch.Generator().manual_seed(9)
    x, t = _rand_case(mode, (6, 5), gen=gen)
    if mode == "multiclass":
        perfect = torch.nn.functional.one_hot(t, 4).movedim(-1, 1).float()
    elif mode == "binary":
        perfect = t.unsqueeze(1).float()
    else:
        perfect = t.float()
    fns = [f for f, _ in RATIO_METRICS.values()] + [M.pixel_accuracy]
    for fn in fns:
        v = fn(x, t, mode=mode, reduction="none")
        assert bool(((v >= 0) & (v <= 1)).all()), fn.__name__
        assert bool((fn(perfect, t, mode=mode, reduction="none") == 1).all()), fn.__name__
    assert bool((M.average_precision(perfect, t, mode=mode, reduction="none") == 1).all())


def test_reduction_shapes_and_dtypes():
    x, t = _rand_case("multiclass", (4, 5), b=2, c=3)
    assert M.dice(x, t, mode="multiclass", reduction="none").shape == (2, 3)
    assert M.dice(x, t, mode="multiclass", reduction="none", domain="batch").shape == (3,)
    assert M.dice(x, t, mode="multiclass").shape == ()
    s = M.dice(x, t, mode="multiclass", reduction="sum")
    assert s.item() == pytest.approx(M.dice(x, t, mode="multiclass", reduction="none").sum().item())
    assert M.pixel_accuracy(x, t, mode="multiclass", reduction="none").shape == (2,)
    assert M.pixel_accuracy(x, t, mode="multiclass", reduction="none", domain="batch").shape == ()
    assert M.dice(x.double(), t, mode="multiclass").dtype == torch.float64
    assert M.dice(x.half(), t, mode="multiclass").dtype == torch.float32


def test_counts_are_exact_past_float32_integers():
    # counts are accumulated in float64: with n = 2**24 + 1 pixels, one positive (found) and one
    # false positive, specificity = (n - 2) / (n - 1); float32 counts could not tell n - 2 from n - 1
    n = (1 << 24) + 1
    t = torch.zeros(1, n, dtype=torch.long)
    t[0, 0] = 1
    x = t.unsqueeze(1).double()
    x[0, 0, 1] = 1.0
    assert M.specificity(x, t).item() == (n - 2) / (n - 1)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: M.dice(torch.rand(2, 1, 4, 5), torch.randint(0, 2, (2, 4, 6))), ValueError,
         r"`target` must have shape \(2, 4, 5\) or \(2, 1, 4, 5\)"),
        # probabilities where labels were expected (float label map)
        (lambda: M.dice(torch.rand(2, 3, 4, 5), torch.rand(2, 4, 5), mode="multiclass"), TypeError,
         r"`target` label map \[B, \*spatial\] must be an integer tensor"),
        # labels where probabilities were expected (class indices as floats)
        (lambda: M.dice(torch.randint(0, 3, (2, 3, 4, 5)).float(), torch.randint(0, 3, (2, 4, 5)),
                        mode="multiclass"), ValueError, r"`input` must hold probabilities in \[0, 1\]"),
        (lambda: M.dice(torch.randint(0, 3, (2, 4, 5)), torch.randint(0, 2, (2, 4, 5))), ValueError,
         r"`input` labels must lie in \[0, 1\]"),
        (lambda: M.dice(torch.randint(0, 5, (2, 4, 5)), torch.randint(0, 3, (2, 4, 5)), mode="multiclass",
                        num_classes=3), ValueError, r"`input` labels must lie in \[0, 2\] for 3 classes"),
        (lambda: M.dice(torch.rand(2, 3, 4, 5).softmax(1), torch.full((2, 4, 5), 3), mode="multiclass"),
         ValueError, r"`target` labels must lie in \[0, 2\]"),
        (lambda: M.dice(torch.full((1, 1, 2, 2), math.nan), torch.zeros(1, 2, 2, dtype=torch.long)),
         ValueError, r"`input` must be finite; got 4 NaN"),
        (lambda: M.dice(torch.rand(0, 1, 4, 5), torch.zeros(0, 4, 5, dtype=torch.long)), ValueError,
         r"`input` must hold at least one image; got batch size 0"),
        (lambda: M.dice(torch.zeros(0, 4, 5, dtype=torch.long), torch.zeros(0, 4, 5, dtype=torch.long),
                        mode="multiclass", num_classes=3), ValueError, r"`input` must hold at least one image"),
        (lambda: M.dice(torch.randint(0, 2, (2, 4, 5)), torch.randint(0, 2, (2, 4, 5)), from_logits=True),
         ValueError, r"`from_logits` must be False for a hard \(integer or bool\) prediction"),
        (lambda: M.dice(torch.randint(0, 3, (2, 4, 5)), torch.randint(0, 3, (2, 4, 5)), mode="multiclass"),
         ValueError, r"`num_classes` must be given for a multiclass label-map prediction"),
        (lambda: M.dice(torch.randint(0, 2, (2, 3, 4, 5)), torch.randint(0, 3, (2, 4, 5)), mode="multiclass",
                        num_classes=3), ValueError, r"`input` must be a label map \[B, \*spatial\]"),
        (lambda: M.dice(torch.rand(2, 3, 4, 5).softmax(1), torch.randint(0, 3, (2, 4, 5)), mode="multiclass",
                        num_classes=4), ValueError, r"`num_classes` must equal the prediction's 3 channels; got 4"),
        (lambda: M.dice(torch.rand(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), empty="none"),
         ValueError, r"`empty` must be a number or one of 'nan'; got 'none'"),
        (lambda: M.dice(torch.rand(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), threshold=1.5),
         ValueError, r"`threshold` must lie in \[0, 1\]; got 1.5"),
        (lambda: M.dice(torch.rand(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), reduction="avg"),
         ValueError, r"`reduction` must be one of"),
        (lambda: M.dice(torch.rand(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), domain="global"),
         ValueError, r"`domain` must be one of 'image', 'batch'"),
        (lambda: M.tversky_index(torch.rand(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), alpha=-1.0),
         ValueError, r"`alpha` must be a finite number >= 0"),
        (lambda: M.dice([[0.1]], torch.zeros(1, 2, 2, dtype=torch.long)), TypeError,
         r"`input` must be a torch.Tensor; got list"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_exported():
    assert sl.metrics.dice is M.dice
    for name in ("dice", "jaccard", "tversky_index", "sensitivity", "specificity", "precision",
                 "balanced_accuracy", "pixel_accuracy", "iou_per_class", "mean_iou"):
        assert callable(getattr(sl.metrics, name))


# ---------------------------------------------------------------- peers
def _random_masks(b, shape, p_empty=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, *shape, generator=gen)
    t = (torch.rand(b, *shape, generator=gen) > 0.6).long()
    empty = torch.rand(b, generator=gen) < p_empty
    t[empty] = 0
    x[torch.rand(b, generator=gen) < p_empty] = 0.0
    x[0] = 0.0  # image 0: both empty
    t[0] = 0
    return x, t


@pytest.mark.peers
def test_sklearn_binary_agreement():
    skm = pytest.importorskip("sklearn.metrics")
    x, t = _random_masks(6, (9, 13))
    hard = (x >= 0.5).long()[:, 0]
    d = M.dice(x, t, reduction="none")[:, 0]
    j = M.jaccard(x, t, reduction="none")[:, 0]
    ba = M.balanced_accuracy(x, t, reduction="none")[:, 0]
    for b in range(6):
        yt, yp = t[b].flatten().numpy(), hard[b].flatten().numpy()
        assert d[b].item() == pytest.approx(skm.f1_score(yt, yp, zero_division=1.0), abs=1e-6)
        assert j[b].item() == pytest.approx(skm.jaccard_score(yt, yp, zero_division=1.0), abs=1e-6)
        if 0 < yt.sum() < yt.size:  # scikit-learn's balanced accuracy needs both classes in y_true
            assert ba[b].item() == pytest.approx(skm.balanced_accuracy_score(yt, yp), abs=1e-6)


@pytest.mark.peers
def test_sklearn_multiclass_agreement():
    skm = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 4, 7, 11, generator=gen).softmax(1)
    t = torch.randint(0, 4, (3, 7, 11), generator=gen)
    yp, yt = x.argmax(1).flatten().numpy(), t.flatten().numpy()
    labels = list(range(4))
    np.testing.assert_allclose(M.dice(x, t, mode="multiclass", domain="batch", reduction="none").numpy(),
                               skm.f1_score(yt, yp, labels=labels, average=None, zero_division=1.0), atol=1e-6)
    np.testing.assert_allclose(M.iou_per_class(x, t).numpy(),
                               skm.jaccard_score(yt, yp, labels=labels, average=None, zero_division=1.0), atol=1e-6)
    # scikit-learn's multiclass balanced accuracy is the mean recall over classes
    assert M.sensitivity(x, t, mode="multiclass", domain="batch").item() == pytest.approx(
        skm.balanced_accuracy_score(yt, yp), abs=1e-6)
    assert M.pixel_accuracy(x, t, mode="multiclass", domain="batch").item() == pytest.approx(
        skm.accuracy_score(yt, yp), abs=1e-6)


@pytest.mark.peers
def test_monai_dice_and_mean_iou_agreement():
    pytest.importorskip("monai")
    from monai.metrics import DiceMetric, MeanIoU

    gen = torch.Generator().manual_seed(2)
    x = torch.rand(4, 3, 8, 9, 5, generator=gen).softmax(1)
    t = torch.randint(0, 3, (4, 8, 9, 5), generator=gen)
    t[0][t[0] == 2] = 1  # class 2 absent from image 0's target
    x[0, 2] = 0.0  # ... and from its prediction
    x[1, 1] = 0.0  # class 1 not predicted in image 1 (but present in its target)
    yp = torch.nn.functional.one_hot(x.argmax(1), 3).movedim(-1, 1).float()
    yt = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).float()
    for bg in (True, False):
        ours_d = M.dice(x, t, mode="multiclass", include_background=bg, reduction="none")
        ours_i = M.jaccard(x, t, mode="multiclass", include_background=bg, reduction="none")
        # MONAI ignore_empty=False: an empty target scores 1 if the prediction is empty too, else 0
        md = DiceMetric(include_background=bg, reduction="none", ignore_empty=False)(yp, yt)
        mi = MeanIoU(include_background=bg, reduction="none", ignore_empty=False)(yp, yt)
        torch.testing.assert_close(ours_d, md.float(), atol=1e-6, rtol=0)
        torch.testing.assert_close(ours_i, mi.float(), atol=1e-6, rtol=0)
        # MONAI ignore_empty=True: NaN where the target is empty == our empty="nan" only when
        # the prediction is empty too, so compare where the target is not empty
        md_nan = DiceMetric(include_background=bg, reduction="none", ignore_empty=True)(yp, yt)
        defined = ~torch.isnan(md_nan)
        torch.testing.assert_close(ours_d[defined], md_nan[defined].float(), atol=1e-6, rtol=0)
