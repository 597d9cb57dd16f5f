"""Asymmetric unified focal loss (Yeung et al. 2022).

Oracles: a hand-computed value, a direct reference of the paper's multiclass form
(eqs. 13-16, class means), and (marker ``peers``) MONAI's binary
``AsymmetricUnifiedFocalLoss``.
"""
from __future__ import annotations

import math

import pytest
import torch

import seglosses as sl
from seglosses import functional as F


def test_hand_value():
    x = torch.tensor([[[0.0, 0.0]]])
    y = torch.tensor([[1, 0]])
    focal = (0.4 * 0.5 ** 0.5 * math.log(2) + 0.6 * math.log(2)) / 4
    tversky = (0.5 + 0.5 ** 0.5) / 2
    assert float(F.unified_focal_loss(x, y, smooth=0.0)) == pytest.approx(0.5 * focal + 0.5 * tversky, rel=1e-6)
    # weight 1: the focal part only; weight 0: the Tversky part only
    assert float(F.unified_focal_loss(x, y, smooth=0.0, weight=1.0)) == pytest.approx(focal, rel=1e-6)
    assert float(F.unified_focal_loss(x, y, smooth=0.0, weight=0.0)) == pytest.approx(tversky, rel=1e-6)


def _reference(x, t, lam, delta, gamma, smooth):
    p = torch.softmax(x, 1)
    g = torch.nn.functional.one_hot(t, x.shape[1]).movedim(-1, 1).double()
    k = x.shape[1]
    ce = -g * torch.log(p)
    per = ((1 - delta) * (1 - p[:, 0]) ** gamma * ce[:, 0] + delta * ce[:, 1:].sum(1)) / k
    focal = per.flatten(1).mean(1)
    dims = tuple(range(2, x.dim()))
    tp, fn, fp = (p * g).sum(dims), ((1 - p) * g).sum(dims), (p * (1 - g)).sum(dims)
    mti = (tp + smooth) / (tp + delta * fn + (1 - delta) * fp + smooth)
    tv = torch.cat([1 - mti[:, :1], (1 - mti[:, 1:]) ** (1 - gamma)], 1).mean(1)
    return (lam * focal + (1 - lam) * tv).mean()


@pytest.mark.parametrize("spatial", [(5, 6), (3, 4, 5)])
def test_multiclass_equals_reference(spatial):
    torch.manual_seed(0)
    x, t = torch.randn(2, 4, *spatial, dtype=torch.float64), torch.randint(0, 4, (2, *spatial))
    ours = F.unified_focal_loss(x, t, mode="multiclass", weight=0.3, delta=0.7, gamma=0.4, smooth=1e-6)
    torch.testing.assert_close(ours, _reference(x, t, 0.3, 0.7, 0.4, 1e-6))


def test_bad_parameters_named():
    x, t = torch.randn(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"`gamma` must lie in \[0, 1\)"):
        F.unified_focal_loss(x, t, gamma=1.0)
    with pytest.raises(ValueError, match="`delta` must lie in"):
        F.unified_focal_loss(x, t, delta=1.5)
    with pytest.raises(ValueError, match="`mode` must be one of 'binary', 'multiclass'"):
        F.unified_focal_loss(torch.randn(1, 2, 2, 2), torch.zeros(1, 2, 2, 2), mode="multilabel")
    with pytest.raises(ValueError, match="must be a function of summed statistics"):
        sl.BatchwiseAccumulator(sl.UnifiedFocalLoss(domain="batch"))


@pytest.mark.peers
@pytest.mark.parametrize("spatial", [(8, 9), (4, 5, 6)])
@pytest.mark.parametrize("params", [(0.5, 0.6, 0.5), (0.2, 0.7, 0.75), (0.8, 0.4, 0.1)])
def test_binary_agrees_with_monai(spatial, params):
    monai = pytest.importorskip("monai.losses")
    lam, delta, gamma = params
    torch.manual_seed(1)
    x, t = torch.randn(3, 1, *spatial, dtype=torch.float64), torch.randint(0, 2, (3, *spatial))
    ref = monai.AsymmetricUnifiedFocalLoss(weight=lam, delta=delta, gamma=gamma)(torch.sigmoid(x), t[:, None].double())
    ours = F.unified_focal_loss(x, t, weight=lam, delta=delta, gamma=gamma, smooth=1e-7)
    # MONAI clamps p to [1e-7, 1 - 1e-7]; the logits here are moderate, so the clamp never acts
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
