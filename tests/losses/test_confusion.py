"""MCC loss (Abhishek & Hamarneh 2021) and generalised Wasserstein Dice loss (Fidon et al. 2017).

Oracles: hand-computed confusion values, a direct per-pixel reference for the Wasserstein
distance map, the batchwise accumulator against the whole batch, and (marker ``peers``)
MONAI's ``MCCLoss`` and ``GeneralizedWassersteinDiceLoss``.
"""
from __future__ import annotations

import math

import pytest
import torch

import seglosses as sl
from seglosses import functional as F

from tests.test_accumulate import accumulated, full_batch, make_batch, max_diff, small_net, splits


def _onehot(t, c):
    return torch.nn.functional.one_hot(t, c).movedim(-1, 1).double()


# --------------------------------------------------------------------------- MCC


def test_mcc_hand_values():
    # TP = 2, FP = 0, FN = 1, TN = 3: MCC = (2 * 3 - 0) / sqrt(2 * 3 * 3 * 4) = 1 / sqrt(2)
    p = torch.tensor([[[[1.0, 0.5, 0.0], [0.5, 0.0, 0.0]]]], dtype=torch.float64)
    g = torch.tensor([[[1, 1, 0], [1, 0, 0]]])
    v = F.mcc_loss(p, g, from_logits=False, smooth=0.0)
    assert float(v) == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-12)
    # the same case with the tensors' 1 - p, 1 - g roles swapped gives the same MCC (symmetry)
    v2 = F.mcc_loss(1 - p, 1 - g, from_logits=False, smooth=0.0)
    assert float(v2) == pytest.approx(float(v), abs=1e-12)
    # a perfect prediction: 0; the exact opposite: MCC = -1, loss 2
    gf = g.double().unsqueeze(1)
    assert float(F.mcc_loss(gf, g, from_logits=False, smooth=0.0)) == 0.0
    assert float(F.mcc_loss(1 - gf, g, from_logits=False, smooth=0.0)) == pytest.approx(2.0)


def test_mcc_empty_target_gives_one_and_no_gradient():
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    v = F.mcc_loss(x, torch.zeros(1, 4, 4, dtype=torch.long))
    v.backward()
    assert float(v) == pytest.approx(1.0)
    assert float(x.grad.abs().max()) == 0.0


@pytest.mark.peers
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("spatial", [(6, 7), (3, 4, 5)])
def test_mcc_agrees_with_monai(mode, batch, spatial):
    monai = pytest.importorskip("monai.losses")
    torch.manual_seed(0)
    c = 1 if mode == "binary" else 3
    x = torch.randn(3, c, *spatial, dtype=torch.float64)
    if mode == "multiclass":
        t = torch.randint(0, c, (3, *spatial))
        dense = _onehot(t, c)
    elif mode == "binary":
        t = torch.randint(0, 2, (3, *spatial))
        dense = t.unsqueeze(1).double()
    else:
        t = torch.randint(0, 2, (3, c, *spatial))
        dense = t.double()
    ref = monai.MCCLoss(sigmoid=mode != "multiclass", softmax=mode == "multiclass", batch=batch,
                        reduction="none")(x, dense)
    ours = F.mcc_loss(x, t, mode=mode, domain="batch" if batch else "image", reduction="none")
    torch.testing.assert_close(ours.reshape(-1), ref.reshape(-1), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- GWDL


def _gwdl_reference(x, t, m, mode, smooth):
    """Per-pixel loop over the paper's definition (eqs. 5-7), per image."""
    p = torch.softmax(x, 1).flatten(2)
    t = t.flatten(1)
    m = torch.as_tensor(m, dtype=torch.float64)
    m = m / m.max()
    out = []
    for b in range(p.shape[0]):
        w = torch.stack([(m[t[b, i]] * p[b, :, i]).sum() for i in range(p.shape[2])])
        if mode == "default":
            alpha = torch.ones(p.shape[1], dtype=torch.float64)
            alpha[0] = 0
        else:
            alpha = 1.0 / (torch.bincount(t[b], minlength=p.shape[1]).double() + 1)
        tp = sum(alpha[t[b, i]] * (1 - w[i]) for i in range(len(w)))
        den = 2 * tp + w.sum() if mode == "default" else sum(alpha[t[b, i]] * (2 - w[i]) for i in range(len(w)))
        out.append(1 - (2 * tp + smooth) / (den + smooth))
    return torch.stack(out)


M3 = [[0.0, 1.0, 0.5], [1.0, 0.0, 0.75], [0.5, 0.75, 0.0]]


@pytest.mark.parametrize("weighting_mode", ["default", "gdl"])
def test_gwdl_equals_per_pixel_reference(weighting_mode):
    torch.manual_seed(1)
    x, t = torch.randn(2, 3, 4, 5, dtype=torch.float64), torch.randint(0, 3, (2, 4, 5))
    ours = F.generalized_wasserstein_dice_loss(x, t, dist_matrix=[[2 * v for v in r] for r in M3],
                                               weighting_mode=weighting_mode, reduction="none")
    torch.testing.assert_close(ours, _gwdl_reference(x, t, M3, weighting_mode, 1e-5))


@pytest.mark.parametrize("weighting_mode", ["default", "gdl"])
@pytest.mark.parametrize("spatial", [(5, 70), (8, 256), (4, 8, 64)], ids=["2d", "2d-pieces", "3d-pieces"])
@pytest.mark.parametrize("kind", ["plain", "ignore", "mask"])
def test_gwdl_label_map_equals_one_hot_target(weighting_mode, spatial, kind):
    # the label-map form (a scatter of p into label bins, pixel rows split in pieces when
    # long enough) against the one-hot target's batched product: values and gradients
    g = torch.Generator().manual_seed(4)
    x = torch.randn((2, 3) + spatial, dtype=torch.float64, generator=g)
    t = torch.randint(0, 3, (2,) + spatial, generator=g)
    kw = dict(dist_matrix=M3, weighting_mode=weighting_mode, reduction="none")
    dense_t = _onehot(t, 3)
    if kind == "ignore":
        t = t.clone()
        t[0, 0] = 255
        kw["ignore_index"] = 255
        dense_t = dense_t * (t != 255).unsqueeze(1)  # the ignored pixels count for no class
    if kind == "mask":
        kw["mask"] = torch.rand((2,) + spatial, dtype=torch.float64, generator=g)
    grads = []
    values = []
    for target in (t, dense_t):
        xi = x.clone().requires_grad_()
        v = F.generalized_wasserstein_dice_loss(xi, target, **kw)
        values.append(v.detach())
        grads.append(torch.autograd.grad(v.sum(), xi)[0])
    torch.testing.assert_close(values[0], values[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_gwdl_default_matrix_and_perfect_prediction():
    t = torch.tensor([[[0, 1, 2, 2]]])
    perfect = (_onehot(t, 3) * 40 - 20)
    assert float(F.generalized_wasserstein_dice_loss(perfect, t)) == pytest.approx(0.0, abs=1e-6)
    # confusing class 1 with class 2 costs M[1, 2]: with M = 1 - I the worst case is 1
    wrong = torch.tensor([[[0, 2, 1, 1]]])
    v = F.generalized_wasserstein_dice_loss(_onehot(wrong, 3), t, from_logits=False, smooth=0.0)
    assert float(v) == pytest.approx(1.0)
    # a cheaper confusion (M[1, 2] = 0.25 after scaling) gives a smaller loss
    near = [[0.0, 1.0, 1.0], [1.0, 0.0, 0.25], [1.0, 0.25, 0.0]]
    v2 = F.generalized_wasserstein_dice_loss(_onehot(wrong, 3), t, from_logits=False, smooth=0.0, dist_matrix=near)
    assert float(v2) < float(v)


def test_gwdl_bad_arguments_named():
    x, t = torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"`dist_matrix` must have shape \(3, 3\)"):
        F.generalized_wasserstein_dice_loss(x, t, dist_matrix=[[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="`dist_matrix` must be finite, non-negative, with a zero diagonal"):
        F.generalized_wasserstein_dice_loss(x, t, dist_matrix=[[1, 1, 1], [1, 0, 1], [1, 1, 0]])
    with pytest.raises(ValueError, match="`weighting_mode` must be one of"):
        F.generalized_wasserstein_dice_loss(x, t, weighting_mode="sudre")
    with pytest.raises(ValueError, match="`mode` must be one of 'multiclass'; got 'binary'"):
        F.generalized_wasserstein_dice_loss(torch.randn(1, 1, 2, 2), t, mode="binary")
    # the module round-trips through a spec (nested lists are literals)
    loss = sl.GeneralizedWassersteinDiceLoss(dist_matrix=M3, weighting_mode="gdl")
    assert sl.build_loss(loss.spec()).config == loss.config


@pytest.mark.peers
@pytest.mark.parametrize("weighting_mode", ["default", "GDL"])
@pytest.mark.parametrize("spatial", [(6, 7), (3, 4, 5)])
def test_gwdl_agrees_with_monai(weighting_mode, spatial):
    monai = pytest.importorskip("monai.losses")
    torch.manual_seed(2)
    x, t = torch.randn(3, 3, *spatial, dtype=torch.float64), torch.randint(0, 3, (3, *spatial))
    t[0][t[0] == 2] = 1  # a class absent from one image
    ref = monai.GeneralizedWassersteinDiceLoss(torch.tensor(M3, dtype=torch.float64), weighting_mode=weighting_mode,
                                               reduction="none")(x, t)
    ours = F.generalized_wasserstein_dice_loss(x, t, dist_matrix=M3, weighting_mode=weighting_mode, reduction="none")
    # MONAI computes the GDL-mode weights in float32
    torch.testing.assert_close(ours, ref.reshape(-1), rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- exact batch domain


@pytest.mark.parametrize("name, mode", [("MCCLoss", "binary"), ("MCCLoss", "multiclass"),
                                        ("GeneralizedWassersteinDiceLoss", "multiclass")])
@pytest.mark.parametrize("domain", ["batch", "image"])
def test_accumulator_is_exact(name, mode, domain):
    c = 3 if mode == "multiclass" else 1
    torch.manual_seed(0)
    model = small_net(c)
    x, y = make_batch(c=c, ignore=255 if mode == "multiclass" else None)
    kw = {"dist_matrix": M3} if name.startswith("Generalized") else {}
    loss = getattr(sl, name)(mode=mode, domain=domain, ignore_index=255 if mode == "multiclass" else None, **kw)
    v_full, g_full = full_batch(model, loss, x, y)
    for label, mbs in splits(x, y).items():
        v, g = accumulated(model, loss, mbs)
        assert max_diff(g, g_full) < 1e-6, label
        assert abs(float(v - v_full)) < 1e-6, label


def test_value_ranges_declared():
    assert sl.MCCLoss.info.value_range == (0.0, 2.0)
    assert sl.GeneralizedWassersteinDiceLoss.info.modes == ("multiclass",)
    assert math.isclose(sl.LogCoshDiceLoss.info.value_range[1], math.log(math.cosh(1.0)))
