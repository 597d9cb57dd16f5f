"""Agreement of the region losses with MONAI (DiceLoss, TverskyLoss, GeneralizedDiceLoss).

Like for like: MONAI's ``batch=True`` is our ``domain="batch"``; its
``smooth_nr = smooth_dr = δ`` is our ``smooth = δ``; its ``alpha`` weighs FP and
``beta`` FN as ours do. MONAI takes a one-hot target, we pass the label map.
"""
from __future__ import annotations

import pytest
import torch

from seglosses import functional as F

monai_losses = pytest.importorskip("monai.losses")
pytestmark = pytest.mark.peers

TOL = dict(rtol=1e-5, atol=1e-5)
CASES = [
    ("binary", (3, 1, 17, 11)),
    ("multiclass", (3, 4, 17, 11)),
    ("multiclass", (2, 3, 5, 7, 9)),
    ("multilabel", (2, 3, 9, 13)),
]


def _data(mode, shape):
    x = torch.randn(*shape) * 2
    b, c = shape[:2]
    if mode == "binary":
        t = torch.randint(0, 2, (b, *shape[2:]))
        t[0] = 0  # one empty image
        oh = t[:, None].float()
    elif mode == "multiclass":
        t = torch.randint(0, c, (b, *shape[2:]))
        t[0][t[0] == c - 1] = 0  # class c-1 absent from image 0
        oh = torch.nn.functional.one_hot(t, c).movedim(-1, 1).float()
    else:
        oh = (torch.rand(*shape) > 0.7).float()
        oh[0, 0] = 0
        t = oh
    act = dict(softmax=True) if mode == "multiclass" else dict(sigmoid=True)
    return x, t, oh, act


def _dev(a, b):
    return float((a - b).abs().max())


@pytest.mark.parametrize("mode, shape", CASES)
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
def test_dice_tversky_gdl_agree(mode, shape, batch, include_background):
    if mode == "binary" and not include_background:
        pytest.skip("binary mode scores its single foreground channel")
    x, t, oh, act = _data(mode, shape)
    domain = "batch" if batch else "image"
    kw = dict(mode=mode, domain=domain, include_background=include_background)
    mk = dict(batch=batch, include_background=include_background, **act)
    for smooth in (1e-5, 1.0):
        ours = F.dice_loss(x, t, smooth=smooth, **kw)
        theirs = monai_losses.DiceLoss(smooth_nr=smooth, smooth_dr=smooth, **mk)(x, oh)
        torch.testing.assert_close(ours, theirs, **TOL)
        ours = F.dice_loss(x, t, smooth=smooth, squared_denominator=True, **kw)
        theirs = monai_losses.DiceLoss(smooth_nr=smooth, smooth_dr=smooth, squared_pred=True, **mk)(x, oh)
        torch.testing.assert_close(ours, theirs, **TOL)
        # MONAI's Jaccard is (2I + s)/(2(Σg + Σp - I) + s): our δ = s/2
        ours = F.iou_loss(x, t, smooth=smooth / 2, **kw)
        theirs = monai_losses.DiceLoss(smooth_nr=smooth, smooth_dr=smooth, jaccard=True, **mk)(x, oh)
        torch.testing.assert_close(ours, theirs, **TOL)
        for a, b in ((0.3, 0.7), (0.5, 0.5), (0.9, 0.1)):
            ours = F.tversky_loss(x, t, alpha=a, beta=b, smooth=smooth, **kw)
            theirs = monai_losses.TverskyLoss(alpha=a, beta=b, smooth_nr=smooth, smooth_dr=smooth, **mk)(x, oh)
            torch.testing.assert_close(ours, theirs, **TOL)
        if mode != "binary" or include_background:
            for wt in ("square", "simple", "uniform"):
                ours = F.generalized_dice_loss(x, t, smooth=smooth, weight_type=wt, **kw)
                theirs = monai_losses.GeneralizedDiceLoss(smooth_nr=smooth, smooth_dr=smooth, w_type=wt, **mk)(x, oh)
                if mode == "binary" and not batch:
                    # image 0 is empty: every class is absent there. MONAI gives that image weight 0
                    # (loss 0); we give weight 1 so false positives keep a loss and a gradient.
                    ours_none = F.generalized_dice_loss(x, t, smooth=smooth, weight_type=wt, reduction="none", **kw)
                    th_none = monai_losses.GeneralizedDiceLoss(
                        smooth_nr=smooth, smooth_dr=smooth, w_type=wt, reduction="none", **mk)(x, oh).reshape(-1)
                    torch.testing.assert_close(ours_none[1:], th_none[1:], **TOL)
                    if wt != "uniform":
                        assert th_none[0].item() == pytest.approx(0.0, abs=1e-4) and ours_none[0].item() > 0.5
                else:
                    torch.testing.assert_close(ours, theirs, **TOL)


def test_reduction_none_per_class_matches():
    x, t, oh, act = _data("multiclass", (3, 4, 17, 11))
    ours = F.dice_loss(x, t, mode="multiclass", reduction="none")
    theirs = monai_losses.DiceLoss(softmax=True, reduction="none")(x, oh).reshape(3, 4)
    torch.testing.assert_close(ours, theirs, **TOL)


def test_gradients_agree():
    x, t, oh, act = _data("multiclass", (3, 4, 17, 11))
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    F.tversky_loss(xa, t, mode="multiclass", alpha=0.3, beta=0.7).backward()
    monai_losses.TverskyLoss(softmax=True, alpha=0.3, beta=0.7)(xb, oh).backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-7)
