"""Compound losses of seed 001 section 5: Combo (eq. 15) and exponential logarithmic loss (eq. 16)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as TF

import seglosses as sl
from seglosses import functional as F


def _pair(shape, mode, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    b, c = shape[:2]
    s = shape[2:]
    if mode == "binary":
        return torch.randn((b, 1) + s, generator=g, dtype=dtype), torch.randint(0, 2, (b,) + s, generator=g)
    if mode == "multiclass":
        return torch.randn(shape, generator=g, dtype=dtype), torch.randint(0, c, (b,) + s, generator=g)
    return torch.randn(shape, generator=g, dtype=dtype), torch.randint(0, 2, shape, generator=g)


def _probs_onehot(x, t, mode):
    b, c = x.shape[:2]
    if mode == "multiclass":
        p = torch.softmax(x, 1).reshape(b, c, -1)
        g = TF.one_hot(t.reshape(b, -1), c).movedim(-1, 1).double()
    else:
        p = torch.sigmoid(x).reshape(b, c, -1)
        g = t.double().reshape(b, c, -1)
    return p, g


# ------------------------------------------------------------------ Combo


def _combo_reference(x, t, mode, alpha, beta, smooth):
    """Per image, loops over channels and pixels: alpha * WCE(beta) + (1 - alpha)(1 - Dice)."""
    p, g = _probs_onehot(x, t, mode)
    b, c, n = p.shape
    out = []
    for bi in range(b):
        wce, dice = 0.0, 0.0
        for k in range(c):
            tp = sp = sg = 0.0
            for i in range(n):
                pv, gv = float(p[bi, k, i]), float(g[bi, k, i])
                wce += -(beta * gv * math.log(pv) + (1 - beta) * (1 - gv) * math.log(1 - pv)) / (n * c)
                tp, sp, sg = tp + pv * gv, sp + pv, sg + gv
            dice += (2 * tp + smooth) / (sp + sg + smooth) / c
        out.append(alpha * wce + (1 - alpha) * (1 - dice))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("mode,shape", [("binary", (2, 1, 5, 7)), ("multiclass", (2, 3, 4, 5)),
                                        ("multilabel", (2, 3, 3, 4, 5))])
def test_combo_equals_reference(mode, shape):
    x, t = _pair(shape, mode)
    for alpha, beta, smooth in [(0.5, 0.5, 1.0), (0.3, 0.8, 1e-5)]:
        ref = _combo_reference(x, t, mode, alpha, beta, smooth)
        ours = F.combo_loss(x, t, mode=mode, alpha=alpha, beta=beta, smooth=smooth, reduction="none")
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
        # the paper's form (-Dice) differs by the constant 1 - alpha
        score = F.combo_loss(x, t, mode=mode, alpha=alpha, beta=beta, smooth=smooth, dice_term="score")
        torch.testing.assert_close(score, ref.mean() - (1 - alpha))


def test_combo_hand_value_and_same_gradients():
    x = torch.zeros(1, 1, 2, dtype=torch.float64)
    y = torch.tensor([[1, 0]])
    # WCE = 1/2 * ln 2 at each pixel (beta = 1/2); Dice = (2 * 1/2 + 1)/(1 + 1 + 1) = 2/3
    assert float(F.combo_loss(x, y)) == pytest.approx(0.5 * 0.5 * math.log(2) + 0.5 / 3)
    assert float(F.combo_loss(x, y, dice_term="score")) == pytest.approx(0.5 * 0.5 * math.log(2) - 0.5 * 2 / 3)
    a, t = _pair((2, 3, 4, 5), "multiclass")
    grads = []
    for term in ("loss", "score"):
        z = a.clone().requires_grad_(True)
        F.combo_loss(z, t, mode="multiclass", dice_term=term).backward()
        grads.append(z.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_combo_domains_ignore_background_and_gradcheck():
    x, t = _pair((3, 3, 4, 5), "multiclass")
    # batch domain: WCE over all pixels, Dice over the batch
    v = F.combo_loss(x, t, mode="multiclass", domain="batch", reduction="none")
    assert v.shape == ()
    p, g = _probs_onehot(x, t, "multiclass")
    wce = -(0.5 * g * p.log() + 0.5 * (1 - g) * (1 - p).log()).mean()
    dice = ((2 * (p * g).sum((0, 2)) + 1) / (p.sum((0, 2)) + g.sum((0, 2)) + 1)).mean()
    torch.testing.assert_close(v, 0.5 * wce + 0.5 * (1 - dice))
    # include_background=False drops channel 0 from both terms
    nb = F.combo_loss(x, t, mode="multiclass", include_background=False, domain="batch")
    wce1 = -(0.5 * g * p.log() + 0.5 * (1 - g) * (1 - p).log())[:, 1:].mean()
    dice1 = ((2 * (p * g).sum((0, 2)) + 1) / (p.sum((0, 2)) + g.sum((0, 2)) + 1))[1:].mean()
    torch.testing.assert_close(nb, 0.5 * wce1 + 0.5 * (1 - dice1))
    # ignore_index == cropping (image domain, the ignored image drops out... as an item with WCE 0)
    t2 = t.clone()
    t2[:, 0, :] = 255
    torch.testing.assert_close(F.combo_loss(x, t2, mode="multiclass", ignore_index=255, reduction="none"),
                               F.combo_loss(x[:, :, 1:], t[:, 1:], mode="multiclass", reduction="none"))
    z = x[:2, :, :2, :3].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: F.combo_loss(a, t[:2, :2, :3], mode="multiclass", check_values=False,
                                                           class_weights=[1.0, 2.0, 0.5]), (z,))


# ------------------------------------------------------------------ ELL


def _ell_reference(x, t, mode, gd, gc, wd, wc, smooth):
    """Wong et al. eq. 16 with loops: per image Dice term and CE term, batch-level sqrt weights."""
    p, g = _probs_onehot(x, t, mode)
    b, c, n = p.shape
    if mode == "multiclass":
        f = [float(g[:, k].sum()) for k in range(c)]
        w = [math.sqrt(sum(f) / fk) for fk in f]
    else:
        pos = [float(g[:, k].sum()) for k in range(c)]
        tot = b * n
        w = [(math.sqrt(tot / (tot - pk)), math.sqrt(tot / pk)) for pk in pos]
    out = []
    for bi in range(b):
        ld = 0.0
        for k in range(c):
            tp = float((p[bi, k] * g[bi, k]).sum())
            dice = (2 * tp + smooth) / (float(p[bi, k].sum() + g[bi, k].sum()) + smooth)
            ld += (-math.log(dice)) ** gd / c
        lc = 0.0
        for i in range(n):
            if mode == "multiclass":
                y = int(g[bi, :, i].argmax())
                lc += w[y] * (-math.log(float(p[bi, y, i]))) ** gc / n
            else:
                for k in range(c):
                    pv, gv = float(p[bi, k, i]), float(g[bi, k, i])
                    lc += (gv * w[k][1] * (-math.log(pv)) ** gc + (1 - gv) * w[k][0] * (-math.log(1 - pv)) ** gc) / n
        out.append(wd * ld + wc * lc)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("mode,shape", [("multiclass", (2, 4, 5, 6)), ("binary", (2, 1, 4, 5)),
                                        ("multilabel", (2, 2, 3, 4, 3))])
def test_ell_equals_reference(mode, shape):
    x, t = _pair(shape, mode)
    for args in [(0.3, 0.3, 0.8, 0.2, 1.0), (1.0, 2.0, 0.5, 0.5, 1e-3)]:
        gd, gc, wd, wc, smooth = args
        ours = F.exp_log_loss(x, t, mode=mode, gamma_dice=gd, gamma_ce=gc, w_dice=wd, w_ce=wc, smooth=smooth,
                              reduction="none")
        torch.testing.assert_close(ours, _ell_reference(x, t, mode, *args), rtol=1e-10, atol=1e-12)


def test_ell_special_cases():
    x, t = _pair((2, 3, 4, 5), "multiclass")
    # gamma_ce = 1, unit weights, w_dice = 0: the cross entropy
    torch.testing.assert_close(
        F.exp_log_loss(x, t, mode="multiclass", gamma_ce=1.0, w_dice=0.0, w_ce=1.0, class_weights=None),
        F.cross_entropy_loss(x, t, mode="multiclass"))
    # gamma_dice = 1, w_ce = 0: mean of -ln Dice_c
    d = F.dice_loss(x, t, mode="multiclass", smooth=1.0, reduction="none")
    torch.testing.assert_close(F.exp_log_loss(x, t, mode="multiclass", gamma_dice=1.0, w_ce=0.0),
                               (-torch.log(1 - d)).mean() * 0.8)


def test_ell_finite_gradients_at_perfect_and_saturated_predictions():
    _, t = _pair((2, 3, 4, 5), "multiclass")
    onehot = TF.one_hot(t, 3).movedim(-1, 1).double()
    for x in (60 * (2 * onehot - 1), 1e4 * (2 * onehot - 1), -1e4 * (2 * onehot - 1)):
        for dtype in (torch.float32, torch.float64):
            z = x.to(dtype).requires_grad_(True)
            v = F.exp_log_loss(z, t, mode="multiclass")
            v.backward()
            assert torch.isfinite(v) and torch.isfinite(z.grad).all()
    perfect = F.exp_log_loss(60 * (2 * onehot - 1), t, mode="multiclass")
    assert 0 <= float(perfect) < 1e-2  # only the clamp floors (1e-12)^0.3 remain
    # smooth = 0 and no overlap: Dice 0 is clamped, the value stays finite
    z = (-60 * (2 * onehot - 1)).requires_grad_(True)
    v = F.exp_log_loss(z, t, mode="multiclass", smooth=0.0)
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(z.grad).all()


def test_ell_gradcheck_domains_and_ignore():
    x, t = _pair((2, 3, 3, 4), "multiclass")
    z = x[:, :, :2, :3].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: F.exp_log_loss(a, t[:, :2, :3], mode="multiclass",
                                                             check_values=False), (z,))
    assert F.exp_log_loss(x, t, mode="multiclass", domain="batch", reduction="none").shape == ()
    assert F.exp_log_loss(x, t, mode="multiclass", reduction="none").shape == (2,)
    # ignore_index == cropping (the weights come from the valid pixels)
    t2 = t.clone()
    t2[:, :, 0] = 255
    torch.testing.assert_close(F.exp_log_loss(x, t2, mode="multiclass", ignore_index=255),
                               F.exp_log_loss(x[..., 1:], t[..., 1:], mode="multiclass"))
    # all ignored: finite, zero gradient from the CE term
    z = x.clone().requires_grad_(True)
    v = F.exp_log_loss(z, torch.full_like(t, 255), mode="multiclass", ignore_index=255, w_dice=0.0)
    v.backward()
    assert float(v.detach()) == 0.0 and float(z.grad.abs().sum()) == 0.0


# ------------------------------------------------------------------ modules and errors


def test_modules_and_errors():
    x, t = _pair((2, 3, 4, 5), "multiclass")
    torch.testing.assert_close(sl.ComboLoss(mode="multiclass", alpha=0.7)(x, t),
                               F.combo_loss(x, t, mode="multiclass", alpha=0.7))
    torch.testing.assert_close(sl.ExpLogLoss(mode="multiclass", gamma_dice=1.0)(x, t),
                               F.exp_log_loss(x, t, mode="multiclass", gamma_dice=1.0))
    assert sl.ComboLoss.info.value_range[0] == -1.0 and sl.ExpLogLoss.info.value_range == (0.0, math.inf)
    with pytest.raises(ValueError, match=r"`alpha` must lie in \[0, 1\]; got 1.5"):
        F.combo_loss(x, t, mode="multiclass", alpha=1.5)
    with pytest.raises(ValueError, match=r"`beta` must lie in \[0, 1\]; got 2.0"):
        F.combo_loss(x, t, mode="multiclass", beta=2.0)
    with pytest.raises(ValueError, match="`dice_term` must be one of 'loss', 'score'; got 'los' "
                                         r"\(did you mean 'loss'\?\)"):
        F.combo_loss(x, t, mode="multiclass", dice_term="los")
    with pytest.raises(ValueError, match="`gamma_dice` must be a finite number >= 0; got -0.3"):
        F.exp_log_loss(x, t, mode="multiclass", gamma_dice=-0.3)
    with pytest.raises(ValueError, match=r"`class_weights` must hold one weight per class kept by the loss \(2\)"):
        F.combo_loss(x, t, mode="multiclass", include_background=False, class_weights=[1.0, 2.0, 3.0])
