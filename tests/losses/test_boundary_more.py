"""Hausdorff loss by erosion (Karimi & Salcudean 2019) and the log Hausdorff-DT loss.

Oracles: hand-computed erosions, and (marker ``peers``) kornia's ``HausdorffERLoss`` /
``HausdorffERLoss3D`` and MONAI's ``LogHausdorffDTLoss``.
"""
from __future__ import annotations

import math

import pytest
import torch

import seglosses as sl
from seglosses import functional as F


def test_erosion_hand_values():
    # a 3x3 error of 1, zero padding, cross of weight 1/5: erosion 1 gives the centre 5/5 - 0.5,
    # the edge centres 4/5 - 0.5 and the corners 3/5 - 0.5, min-max normalised to 1, 0.5, 0:
    # mean (1 + 4 * 0.5) / 9 = 1/3
    p = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    g = torch.zeros(1, 3, 3, dtype=torch.long)
    assert float(F.hausdorff_er_loss(p, g, from_logits=False, erosions=1)) == pytest.approx(1 / 3)
    # erosion 2 of that map: centre (1 + 4 * 0.5) / 5 - 0.5 = 0.1, edges 1.5/5 and corners 1/5 < 0.5
    # give 0; normalised, the centre is 1 with weight 2^2: mean (3 + 4) / 9
    assert float(F.hausdorff_er_loss(p, g, from_logits=False, erosions=2)) == pytest.approx(7 / 9)
    # alpha = 0 weighs every erosion 1
    assert float(F.hausdorff_er_loss(p, g, from_logits=False, erosions=2, alpha=0.0)) == pytest.approx(4 / 9)
    # a perfect prediction: 0
    assert float(F.hausdorff_er_loss(torch.zeros_like(p), g, from_logits=False)) == 0.0


def test_erosion_arguments_named():
    p = torch.rand(1, 1, 3, 3)
    g = torch.zeros(1, 3, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="`erosions` must be an int >= 1"):
        F.hausdorff_er_loss(p, g, from_logits=False, erosions=0)
    with pytest.raises(TypeError, match="`erosions` must be an int"):
        F.hausdorff_er_loss(p, g, from_logits=False, erosions=2.5)
    with pytest.raises(ValueError, match="`input` must have 2 or 3 spatial dims"):
        F.hausdorff_er_loss(torch.rand(1, 1, 5), torch.zeros(1, 5, dtype=torch.long), from_logits=False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'spacing'"):
        F.hausdorff_er_loss(p, g, spacing=2.0)


def test_erosion_target_gradient_is_exact():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 5, 6, dtype=torch.float64)
    t = torch.rand(1, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: F.hausdorff_er_loss(x, z, erosions=3), (t,))


def test_log_hausdorff_dt_is_log1p_of_the_reduced_loss():
    torch.manual_seed(0)
    x, t = torch.randn(2, 3, 6, 7, dtype=torch.float64), torch.randint(0, 3, (2, 6, 7))
    for red in ("mean", "sum", "none"):
        hd = F.hausdorff_dt_loss(x, t, mode="multiclass", reduction=red)
        torch.testing.assert_close(F.log_hausdorff_dt_loss(x, t, mode="multiclass", reduction=red), torch.log1p(hd))
    assert sl.LogHausdorffDTLoss.info.value_range == (0.0, math.inf)


@pytest.mark.peers
@pytest.mark.parametrize("spatial", [(12, 13), (6, 7, 8)])
@pytest.mark.parametrize("alpha, k", [(2.0, 10), (1.0, 4)])
def test_erosion_agrees_with_kornia(spatial, alpha, k):
    kornia = pytest.importorskip("kornia.losses")
    torch.manual_seed(4)
    x, t = torch.randn(2, 3, *spatial, dtype=torch.float64), torch.randint(0, 3, (2, *spatial))
    cls = kornia.HausdorffERLoss if len(spatial) == 2 else kornia.HausdorffERLoss3D
    ref = cls(alpha=alpha, k=k)(torch.softmax(x, 1), t[:, None])
    ours = F.hausdorff_er_loss(x, t, mode="multiclass", include_background=True, alpha=alpha, erosions=k)
    # kornia's kernel is a float32 buffer
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-9)


@pytest.mark.peers
@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize("batch", [False, True])
def test_log_hausdorff_dt_agrees_with_monai(mode, batch):
    monai = pytest.importorskip("monai.losses")
    torch.manual_seed(5)
    c = 1 if mode == "binary" else 3
    x, t = torch.randn(2, c, 7, 8, dtype=torch.float64), torch.randint(0, max(c, 2), (2, 7, 8))
    dense = t[:, None].double() if mode == "binary" else torch.nn.functional.one_hot(t, c).movedim(-1, 1).double()
    ref = monai.LogHausdorffDTLoss(sigmoid=mode == "binary", softmax=mode == "multiclass", batch=batch)(x, dense)
    ours = F.log_hausdorff_dt_loss(x, t, mode=mode, domain="batch" if batch else "image")
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-8)
