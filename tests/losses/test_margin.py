"""Margin calibration (seed 003): offsets of Corollary 1.1 / eq. 23, loss of eqs. 4, 27-29."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as TF

import seglosses as sl
from seglosses import functional as F
from seglosses.functional import margin_offsets


def _offsets_by_hand(counts, tau, v, norm):
    """Corollary 1.1 written out in plain Python floats."""
    n = sum(counts)
    r = [math.sqrt(n - nk) / nk for nk in counts]
    scale = tau / sum(r) if norm == "sum" else tau
    rho_0k = [scale * rk for rk in r]
    rho_k0 = []
    for nk, r0 in zip(counts, rho_0k):
        p = nk / n
        mu = p * math.sqrt(nk) / (v * (n - nk) - p * math.sqrt(n - nk))
        rho_k0.append(mu * r0)
    return rho_k0, rho_0k


@pytest.mark.parametrize("norm", ["sum", "none"])
def test_offsets_hand_computation_and_eq23_proportions(norm):
    counts = [700.0, 200.0, 90.0, 10.0]
    tau, v = 2.5, 0.1
    off = margin_offsets(counts, tau, v, offset_norm=norm)
    ref_k0, ref_0k = _offsets_by_hand(counts, tau, v, norm)
    torch.testing.assert_close(off.rho_0k.double(), torch.tensor(ref_0k, dtype=torch.float64), rtol=1e-6, atol=0)
    torch.testing.assert_close(off.rho_k0.double(), torch.tensor(ref_k0, dtype=torch.float64), rtol=1e-6, atol=0)
    # eq. 23: rho_0i / rho_0j = n_j sqrt(n - n_i) / (n_i sqrt(n - n_j)) for every pair
    n = sum(counts)
    for i in range(4):
        for j in range(4):
            want = counts[j] * math.sqrt(n - counts[i]) / (counts[i] * math.sqrt(n - counts[j]))
            assert float(off.rho_0k[i] / off.rho_0k[j]) == pytest.approx(want, rel=1e-6)
    # rarer class, larger offset; mu_k = rho_k0 / rho_0k as in Corollary 1.1
    assert off.rho_0k.argsort().tolist() == [0, 1, 2, 3]
    if norm == "sum":
        assert float(off.rho_0k.sum()) == pytest.approx(tau, rel=1e-6)


def test_offsets_sum_norm_is_scale_free_none_is_literal():
    a = margin_offsets([30.0, 10.0], 1.0, offset_norm="sum").rho_0k
    b = margin_offsets([3e6, 1e6], 1.0, offset_norm="sum").rho_0k
    torch.testing.assert_close(a, b)
    # the literal form shrinks like 1/sqrt(n): 1e5 times the pixels, 1/316 the offsets
    a = margin_offsets([30.0, 10.0], 1.0, offset_norm="none").rho_0k
    b = margin_offsets([3e6, 1e6], 1.0, offset_norm="none").rho_0k
    torch.testing.assert_close(a / b, torch.full((2,), math.sqrt(1e5)))


def test_offsets_conventions():
    # absent class: the largest rho_0k, rho_k0 = 0
    off = margin_offsets([5.0, 0.0, 3.0], 1.0)
    assert float(off.rho_0k[1]) == pytest.approx(float(off.rho_0k.max()))
    assert float(off.rho_k0[1]) == 0.0
    # one class covers every pixel: r = 0, mu's denominator 0 -> both offsets 0, finite
    off = margin_offsets([6.0, 0.0], 1.0)
    assert torch.isfinite(off.rho_0k).all() and torch.isfinite(off.rho_k0).all()
    assert float(off.rho_k0[0]) == 0.0
    # v <= p_k / sqrt(n - n_k) makes mu's denominator <= 0 -> mu = 0, offsets stay >= 0:
    # class 0: 0.5 * 1 - 0.999 * 1 < 0; class 1: 0.5 * 999 - 0.001 * sqrt(999) > 0
    off = margin_offsets([999.0, 1.0], 1.0, v=0.5)
    assert float(off.rho_k0[0]) == 0.0 and float(off.rho_k0[1]) > 0
    # nothing counted
    off = margin_offsets(torch.zeros(3), 1.0)
    assert float(off.rho_0k.abs().sum() + off.rho_k0.abs().sum()) == 0.0


def test_offsets_errors():
    with pytest.raises(ValueError, match="`tau` must be a finite number > 0; got 0.0"):
        margin_offsets([1.0, 2.0], 0.0)
    with pytest.raises(ValueError, match="`v` must be a finite number > 0; got -1.0"):
        margin_offsets([1.0, 2.0], 1.0, v=-1.0)
    with pytest.raises(ValueError, match=r"`class_counts` must be finite and >= 0; got \[1.0, -2.0\]"):
        margin_offsets([1.0, -2.0])
    with pytest.raises(ValueError, match="`offset_norm` must be one of 'sum', 'none'; got 'max'"):
        margin_offsets([1.0, 2.0], offset_norm="max")


def _loss_by_hand(scores, labels, rho_k0, rho_0k):
    """Eq. 27 with eqs. 28-29 and eq. 4, looping over pixels and classes in float64."""
    n, c = len(labels), len(scores[0])
    total = 0.0
    for s, y in zip(scores, labels):
        for k in range(c):
            lam = s[k] - max(s[j] for j in range(c) if j != k)  # eq. 4
            if y == k:
                total += math.log2(1 + 2 ** (-lam + rho_k0[k]))  # eq. 28
            else:
                total += math.log2(1 + 2 ** (lam + rho_0k[k]))  # eq. 29
    return total / n


def test_loss_equals_eq27_on_a_hand_case():
    # 3 classes, 5 pixels in a 1 x 5 image
    scores = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.2], [0.3, 0.3, 2.0], [-1.0, 3.0, 0.0], [1.0, 0.0, 0.0]]
    labels = [0, 1, 2, 1, 2]
    x = torch.tensor(scores, dtype=torch.float64).t().reshape(1, 3, 1, 5)
    y = torch.tensor(labels).reshape(1, 1, 5)
    # batch counts (1, 2, 2): offsets from Corollary 1.1
    rk0, r0k = _offsets_by_hand([1, 2, 2], 1.0, 1.0, "sum")
    ours = F.margin_calibration_loss(x, y, mode="multiclass")
    assert float(ours) == pytest.approx(_loss_by_hand(scores, labels, rk0, r0k), rel=1e-12)
    # fixed class counts and the literal offsets
    rk0, r0k = _offsets_by_hand([50, 30, 20], 3.0, 0.5, "none")
    ours = F.margin_calibration_loss(x, y, mode="multiclass", class_counts=[50, 30, 20], tau=3.0, v=0.5,
                                     offset_norm="none")
    assert float(ours) == pytest.approx(_loss_by_hand(scores, labels, rk0, r0k), rel=1e-12)
    # one hand-checkable term: pixel 1 (scores 0, 1, 0.2), class 1: lambda = 1 - 0.2 = 0.8
    none = F.margin_calibration_loss(x, y, mode="multiclass", reduction="none")
    rk0, r0k = _offsets_by_hand([1, 2, 2], 1.0, 1.0, "sum")
    pix1 = (math.log2(1 + 2 ** (-0.8 + rk0[1])) + math.log2(1 + 2 ** (-1.0 + r0k[0]))
            + math.log2(1 + 2 ** (-0.8 + r0k[2])))
    assert float(none[0, 0, 1]) == pytest.approx(pix1, rel=1e-12)


def test_binary_is_two_class_with_scores_zero_x_and_probabilities_match_logits():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 5, 7, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (2, 5, 7), generator=g)
    two = torch.cat([torch.zeros_like(x), x], 1)
    torch.testing.assert_close(F.margin_calibration_loss(x, y), F.margin_calibration_loss(two, y, mode="multiclass"))
    torch.testing.assert_close(F.margin_calibration_loss(torch.sigmoid(x), y, from_logits=False),
                               F.margin_calibration_loss(x, y))
    xm = torch.randn(2, 4, 3, 5, 6, generator=g, dtype=torch.float64)
    ym = torch.randint(0, 4, (2, 3, 5, 6), generator=g)
    torch.testing.assert_close(F.margin_calibration_loss(torch.softmax(xm, 1), ym, mode="multiclass",
                                                         from_logits=False),
                               F.margin_calibration_loss(xm, ym, mode="multiclass"))
    # one-hot target == label map
    onehot = TF.one_hot(ym, 4).movedim(-1, 1).double()
    torch.testing.assert_close(F.margin_calibration_loss(xm, onehot, mode="multiclass"),
                               F.margin_calibration_loss(xm, ym, mode="multiclass"))


def test_ignore_index_and_counts():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 3, 4, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (3, 4, 5), generator=g)
    y2 = y.clone()
    y2[-1] = 255
    # ignored pixels leave the loss and the batch counts: equal to cropping them away
    torch.testing.assert_close(F.margin_calibration_loss(x, y2, mode="multiclass", ignore_index=255),
                               F.margin_calibration_loss(x[:-1], y[:-1], mode="multiclass"))
    counts = F.count_classes([(None, y2[:2]), (None, y2[2:])], 3, ignore_index=255)
    torch.testing.assert_close(counts, torch.bincount(y[:-1].reshape(-1), minlength=3).double())
    torch.testing.assert_close(F.margin_calibration_loss(x[:-1], y[:-1], mode="multiclass",
                                                         class_counts=counts.tolist()),
                               F.margin_calibration_loss(x[:-1], y[:-1], mode="multiclass"))
    # all ignored: 0 with zero gradient
    z = x.clone().requires_grad_(True)
    v = F.margin_calibration_loss(z, torch.full_like(y, 255), mode="multiclass", ignore_index=255)
    v.backward()
    assert float(v.detach()) == 0.0 and float(z.grad.abs().sum()) == 0.0


def test_gradients_finite_at_huge_logits_and_gradcheck():
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 3, (2, 4, 5), generator=g)
    for scale in (1e4, -1e4):
        for dtype in (torch.float32, torch.float64):
            x = (scale * torch.randn(2, 3, 4, 5, generator=g)).to(dtype).requires_grad_(True)
            v = F.margin_calibration_loss(x, y, mode="multiclass")
            v.backward()
            assert torch.isfinite(v) and torch.isfinite(x.grad).all()
    # ties at the maximum (lambda = 0 for both) are fine too
    x = torch.zeros(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    F.margin_calibration_loss(x, y[:1, :2, :2], mode="multiclass").backward()
    assert torch.isfinite(x.grad).all()
    x = torch.randn(2, 3, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda z: F.margin_calibration_loss(z, y[:, :2, :3], mode="multiclass", check_values=False), (x,))


def test_value_range_minimum_and_reductions_3d():
    g = torch.Generator().manual_seed(4)
    y = torch.randint(0, 3, (2, 3, 4, 5), generator=g)
    onehot = TF.one_hot(y, 3).movedim(-1, 1).double()
    big = F.margin_calibration_loss(50 * (2 * onehot - 1), y, mode="multiclass")
    assert 0.0 <= float(big) < 1e-6  # infimum 0 as the margins grow
    rand = F.margin_calibration_loss(torch.randn(2, 3, 3, 4, 5, generator=g, dtype=torch.float64), y,
                                     mode="multiclass", reduction="none")
    assert rand.shape == (2, 3, 4, 5) and float(rand.min()) > 0
    x = torch.randn(2, 3, 3, 4, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(F.margin_calibration_loss(x, y, mode="multiclass"),
                               F.margin_calibration_loss(x, y, mode="multiclass", reduction="none").mean())
    # class weights multiply each class's terms
    w = [1.0, 0.0, 0.0]
    only0 = F.margin_calibration_loss(x, y, mode="multiclass", class_weights=w)
    assert 0 < float(only0) < float(F.margin_calibration_loss(x, y, mode="multiclass"))


def test_module_and_errors():
    x = torch.randn(1, 3, 2, 3)
    y = torch.randint(0, 3, (1, 2, 3))
    m = sl.MarginCalibrationLoss(mode="multiclass", tau=2.0, class_counts=torch.tensor([3, 2, 1]))
    assert m.config["class_counts"] == (3.0, 2.0, 1.0)
    torch.testing.assert_close(m(x, y), F.margin_calibration_loss(x, y, mode="multiclass", tau=2.0,
                                                                  class_counts=[3, 2, 1]))
    with pytest.raises(ValueError, match="`mode` must be one of 'binary', 'multiclass'; got 'multilabel'"):
        F.margin_calibration_loss(x, y, mode="multilabel")
    with pytest.raises(ValueError, match=r"`class_counts` must hold one count per class \(3\); got shape \(2,\)"):
        F.margin_calibration_loss(x, y, mode="multiclass", class_counts=[1, 2])
    with pytest.raises(ValueError, match="`tau` must be a finite number >=? 0"):
        F.margin_calibration_loss(x, y, mode="multiclass", tau=-1)
    with pytest.raises(ValueError, match=r"`targets` labels must lie in \[0, 1\]"):
        F.count_classes([torch.tensor([0, 2])], 2)
