"""Seed 000 regularisers: label smoothing, label-noise penalty KL(u||y), confidence penalty KL(y||u)."""
from __future__ import annotations

import math

import pytest
import torch

import seglosses as sl
from seglosses.regularizers import (
    ConfidencePenalty,
    LabelNoisePenalty,
    confidence_penalty,
    label_noise_penalty,
    label_smoothing,
)


def test_label_smoothing_values():
    t = torch.tensor([[0, 2, 1]])
    out = label_smoothing(t, 0.3, 3)
    # (1 - 0.3) * onehot + 0.1
    expected = torch.tensor([[[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 3))
    # binary: Bernoulli smoothing towards 1/2
    b = label_smoothing(torch.tensor([[1, 0]]), 0.2, 1)
    torch.testing.assert_close(b, torch.tensor([[[0.9, 0.1]]]))
    # dense input
    d = label_smoothing(torch.tensor([[[1.0], [0.0]]]), 0.5, 2)
    torch.testing.assert_close(d, torch.tensor([[[0.75], [0.25]]]))
    # ignore index survives as a marker the losses recognise
    ti = torch.tensor([[0, 255]])
    s = label_smoothing(ti, 0.1, 2, ignore_index=255)
    assert s[0, :, 1].tolist() == [255.0, 255.0]
    x = torch.randn(1, 2, 2)
    torch.testing.assert_close(
        sl.functional.dice_loss(x, s, mode="multiclass", ignore_index=255),
        sl.functional.dice_loss(x[..., :1], label_smoothing(ti[:, :1], 0.1, 2), mode="multiclass"),
    )


def test_label_smoothing_errors():
    with pytest.raises(ValueError, match=r"`eps` must lie in \[0, 1\); got 1.0"):
        label_smoothing(torch.tensor([[0, 1]]), 1.0, 2)
    with pytest.raises(ValueError, match=r"`target` labels must lie in \[0, 1\]"):
        label_smoothing(torch.tensor([[0, 2]]), 0.1, 2)
    with pytest.raises(ValueError, match="`num_classes` must be an int >= 1"):
        label_smoothing(torch.tensor([[0, 1]]), 0.1, 0)


def test_kl_hand_values():
    # binary p = 0.5 -> both penalties 0; p = sigmoid(x)
    x = torch.zeros(1, 1, 2)
    t = torch.zeros(1, 2, dtype=torch.long)
    assert label_noise_penalty(x, t).item() == pytest.approx(0.0, abs=1e-7)
    assert confidence_penalty(x, t).item() == pytest.approx(0.0, abs=1e-7)
    # p = 0.9: KL(u||p) = -log 2 - (log .9 + log .1)/2 ; KL(p||u) = log 2 + .9 log .9 + .1 log .1
    p = torch.full((1, 1, 2), 0.9)
    lnp = -math.log(2) - 0.5 * (math.log(0.9) + math.log(0.1))
    cp = math.log(2) + 0.9 * math.log(0.9) + 0.1 * math.log(0.1)
    assert label_noise_penalty(p, t, from_logits=False).item() == pytest.approx(lnp, rel=1e-6)
    assert confidence_penalty(p, t, from_logits=False).item() == pytest.approx(cp, rel=1e-6)
    # multiclass: p = (0.5, 0.25, 0.25); KL(p||u) = log 3 - H(p)
    pm = torch.tensor([0.5, 0.25, 0.25]).reshape(1, 3, 1)
    tm = torch.zeros(1, 1, dtype=torch.long)
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert confidence_penalty(pm, tm, mode="multiclass", from_logits=False).item() == pytest.approx(math.log(3) - h)
    lnp3 = -math.log(3) - (math.log(0.5) + 2 * math.log(0.25)) / 3
    assert label_noise_penalty(pm, tm, mode="multiclass", from_logits=False).item() == pytest.approx(lnp3)


def test_claim2_label_smoothing_with_ce_is_ce_plus_label_noise_penalty():
    # seed 000 Claim 2: CE(y~, p) = (1 - eps) CE(y, p) + eps KL(u || p) + eps log n
    eps, n = 0.2, 4
    x = torch.randn(3, n, 5, 6, dtype=torch.float64)
    t = torch.randint(0, n, (3, 5, 6))
    logp = torch.log_softmax(x, 1)
    ce = lambda y: -(y * logp).sum(1).mean()  # noqa: E731
    onehot = torch.nn.functional.one_hot(t, n).movedim(-1, 1).double()
    lhs = ce(label_smoothing(t, eps, n).double())
    rhs = (1 - eps) * ce(onehot) + eps * label_noise_penalty(x, t, mode="multiclass") + eps * math.log(n)
    torch.testing.assert_close(lhs, rhs)
    # binary analogue with Bernoulli distributions
    xb = torch.randn(3, 1, 5, 6, dtype=torch.float64)
    tb = torch.randint(0, 2, (3, 5, 6))
    yb = label_smoothing(tb, eps, 1).double()
    bce = lambda y: torch.nn.functional.binary_cross_entropy_with_logits(xb, y)  # noqa: E731
    rhs_b = (1 - eps) * bce(tb[:, None].double()) + eps * label_noise_penalty(xb, tb) + eps * math.log(2)
    torch.testing.assert_close(bce(yb), rhs_b)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("penalty", [label_noise_penalty, confidence_penalty])
def test_penalties_gradcheck_range_minimum_3d_ignore(mode, penalty):
    c = 1 if mode == "binary" else 3
    x = torch.randn(2, c, 3, 4, 2, dtype=torch.float64, requires_grad=True)
    if mode == "multiclass":
        t = torch.randint(0, 3, (2, 3, 4, 2))
    elif mode == "binary":
        t = torch.randint(0, 2, (2, 3, 4, 2))
    else:
        t = torch.randint(0, 2, (2, 3, 3, 4, 2))
    assert torch.autograd.gradcheck(lambda z: penalty(z, t, mode=mode), (x,))
    v = penalty(x, t, mode=mode, reduction="none")
    assert v.shape == (2, 3, 4, 2) and bool((v >= 0).all())
    assert penalty(torch.zeros_like(x), t, mode=mode).item() == pytest.approx(0.0, abs=1e-12)
    if mode != "multilabel":
        ti = t.clone()
        ti[0] = 255
        keep = penalty(x[1:], t[1:], mode=mode)
        torch.testing.assert_close(penalty(x, ti, mode=mode, ignore_index=255), keep)
        assert penalty(x, ti, mode=mode, ignore_index=255, reduction="none")[0].abs().sum() == 0
    # extreme logits stay finite
    big = torch.full_like(x, 1e4).requires_grad_(True)
    out = penalty(big, t, mode=mode)
    out.backward()
    assert torch.isfinite(out) and bool(torch.isfinite(big.grad).all())


def test_confidence_penalty_bounded_by_log_n():
    x = torch.randn(2, 4, 8, 8) * 20
    t = torch.randint(0, 4, (2, 8, 8))
    v = confidence_penalty(x, t, mode="multiclass", reduction="none")
    assert bool((v <= math.log(4) + 1e-5).all())


def test_composition_with_any_loss():
    x = torch.randn(2, 1, 5, 6, requires_grad=True)
    t = torch.randint(0, 2, (2, 5, 6))
    loss = sl.TverskyLoss(alpha=0.3, beta=0.7) + 0.1 * ConfidencePenalty()
    total, terms = loss(x, t, return_terms=True)
    expected = sl.functional.tversky_loss(x, t) + 0.1 * confidence_penalty(x, t)
    torch.testing.assert_close(total, expected)
    assert set(terms) == {"tversky", "confidence_penalty"}
    torch.testing.assert_close(terms["confidence_penalty"], confidence_penalty(x, t).detach())
    total.backward()
    assert x.grad is not None
    both = sl.DiceLoss() + 0.05 * LabelNoisePenalty() + ConfidencePenalty() * 0.05
    assert [round(w, 3) for w in both.weights()] == [1.0, 0.05, 0.05]
