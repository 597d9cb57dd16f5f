"""Boundary loss (Kervadec et al. 2019) and Hausdorff-DT loss (Karimi & Salcudean 2019).

Oracles: hand derivations (in the comments), a per-image, per-class reference loop on
scipy's ``distance_transform_edt``, and (marker ``peers``) MONAI's ``HausdorffDTLoss``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

import seglosses as sl
from seglosses import functional as F
from seglosses.registry import resolve

SHAPES = [(2, 3, 5, 7), (2, 3, 4, 5, 6)]  # 2D and 3D, C != any spatial size, odd sizes
LOSSES = {"boundary": F.boundary_loss, "hausdorff_dt": F.hausdorff_dt_loss}


# --------------------------------------------------------------------------- reference (scipy, loops)


def _scipy_edt(mask, spacing):
    """scipy's EDT; a mask without background is padded with background (the package's convention)."""
    if mask.all():
        padded = np.pad(mask, 1, constant_values=False)
        return distance_transform_edt(padded, sampling=spacing)[tuple(slice(1, -1) for _ in mask.shape)]
    if not mask.any():
        return np.zeros(mask.shape)
    return distance_transform_edt(mask, sampling=spacing)


def reference(name, x, t, *, mode, from_logits=True, domain="image", include_background=None,
              ignore_index=None, spacing=None, alpha=2.0, class_weights=None):
    """Loops over images and classes; float64; scipy distance maps."""
    x = x.double()
    b, c = x.shape[:2]
    spatial = x.shape[2:]
    if mode == "multiclass":
        p = torch.softmax(x, 1) if from_logits else x
        lab = t
        valid = torch.ones_like(lab, dtype=torch.bool) if ignore_index is None else lab != ignore_index
        g = torch.stack([((lab == k) & valid).double() for k in range(c)], 1)
    else:
        p = torch.sigmoid(x) if from_logits else x
        tt = t.unsqueeze(1) if t.dim() == x.dim() - 1 else t
        if ignore_index is None:
            valid = torch.ones((b,) + tuple(spatial), dtype=torch.bool)
        else:
            valid = (tt != ignore_index).all(1)
        g = torch.where(tt == ignore_index, 0, tt).double() if ignore_index is not None else tt.double()
    if include_background is None:
        include_background = mode != "multiclass"
    first = 0 if (include_background or mode == "binary") else 1
    vals = np.zeros((b, c - first))
    sums = np.zeros((b, c - first))
    counts = np.zeros(b)
    for bi in range(b):
        v = valid[bi].numpy()
        counts[bi] = v.sum()
        for k in range(first, c):
            gk = g[bi, k].numpy() > 0.5
            pk = p[bi, k].detach().numpy()
            if name == "boundary":
                phi = _scipy_edt(~gk, spacing) - _scipy_edt(gk, spacing)
                s = (phi * pk * v).sum()
            else:
                sk = (pk > 0.5) & v  # ignored pixels are outside the prediction mask too

                def dist(m):
                    if not m.any() or m.all():
                        return np.zeros(m.shape)
                    return distance_transform_edt(m, sampling=spacing) + distance_transform_edt(~m, sampling=spacing)

                w = dist(gk) ** alpha + dist(sk) ** alpha
                s = ((pk - g[bi, k].numpy()) ** 2 * w * v).sum()
            sums[bi, k - first] = s
            vals[bi, k - first] = s / counts[bi] if counts[bi] else 0.0
    if domain == "batch":
        vals = sums.sum(0, keepdims=True) / max(counts.sum(), 1)
    out = torch.tensor(vals, dtype=torch.float64)
    if class_weights is not None:
        w = torch.tensor(class_weights, dtype=torch.float64)
        out = out * w * (w.numel() / w.sum())
    return out[0] if domain == "batch" else out


def _pair(shape, mode, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    b, c = shape[:2]
    s = shape[2:]
    if mode == "binary":
        return torch.randn((b, 1) + s, generator=gen, dtype=dtype), torch.randint(0, 2, (b,) + s, generator=gen)
    if mode == "multiclass":
        return torch.randn(shape, generator=gen, dtype=dtype), torch.randint(0, c, (b,) + s, generator=gen)
    return torch.randn(shape, generator=gen, dtype=dtype), torch.randint(0, 2, shape, generator=gen)


# --------------------------------------------------------------------------- hand values


def test_boundary_hand_values():
    # 1x4 image, target (0, 1, 1, 0): φ = (1, -1, -1, 1); p = (0.5, 1, 0, 0): (0.5 - 1) / 4
    p = torch.tensor([[[[0.5, 1.0, 0.0, 0.0]]]], dtype=torch.float64)
    t = torch.tensor([[[0, 1, 1, 0]]])
    assert float(F.boundary_loss(p, t, from_logits=False)) == pytest.approx(-0.125, abs=1e-15)
    # 2x2 image, object at (0,0), spacing (2, 1) (rows 2 apart): φ(0,0) = -1 (nearest outside
    # pixel (0,1) at 1), φ(0,1) = 1, φ(1,0) = 2, φ(1,1) = sqrt(2^2 + 1^2) = sqrt(5)
    # p = (0.5, 0.5; 0, 1): (-0.5 + 0.5 + 0 + sqrt(5)) / 4
    p = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]], dtype=torch.float64)
    t = torch.tensor([[[1, 0], [0, 0]]])
    out = F.boundary_loss(p, t, from_logits=False, spacing=(2.0, 1.0))
    assert float(out) == pytest.approx(math.sqrt(5) / 4, abs=1e-12)


def test_boundary_minimum_is_minus_the_mean_inside_distance():
    # 1x5 image, target (0, 1, 1, 1, 0): φ = (1, -1, -2, -1, 1); at p = g: (-1 - 2 - 1) / 5 = -0.8
    t = torch.tensor([[[0, 1, 1, 1, 0]]])
    g = t.double().unsqueeze(1)
    assert float(F.boundary_loss(g, t, from_logits=False)) == pytest.approx(-0.8, abs=1e-15)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        p = torch.rand(1, 1, 1, 5, generator=gen, dtype=torch.float64)
        assert float(F.boundary_loss(p, t, from_logits=False)) > -0.8


def test_boundary_empty_target_is_the_distance_to_the_border():
    # 3x5 image without object: φ = distance to the nearest point just outside the image,
    # min(row + 1, 3 - row, col + 1, 5 - col): 1 on the 12 rim pixels, 2 on the 3 inner ones
    # p = 1 everywhere: (12 * 1 + 3 * 2) / 15 = 1.2; p = 0 everywhere: 0 (the minimum)
    t = torch.zeros(1, 3, 5, dtype=torch.long)
    assert float(F.boundary_loss(torch.ones(1, 1, 3, 5), t, from_logits=False)) == pytest.approx(1.2)
    assert float(F.boundary_loss(torch.zeros(1, 1, 3, 5), t, from_logits=False)) == 0.0
    x = torch.zeros(1, 1, 3, 5, requires_grad=True)
    F.boundary_loss(x, t).backward()
    assert torch.isfinite(x.grad).all() and bool((x.grad > 0).all())


def test_boundary_multiclass_leaves_background_out_by_default():
    # 2 classes over 1x4, labels (0, 1, 1, 0): class 1 has φ = (1, -1, -1, 1);
    # p(class 1) = (0.5, 1, 0, 0): -0.125 as in the binary case; class 0 would add its own term
    p1 = torch.tensor([0.5, 1.0, 0.0, 0.0], dtype=torch.float64)
    p = torch.stack([1 - p1, p1]).view(1, 2, 1, 4)
    t = torch.tensor([[[0, 1, 1, 0]]])
    assert float(F.boundary_loss(p, t, mode="multiclass", from_logits=False)) == pytest.approx(-0.125)
    # class 0: φ = (-1, 1, 1, -1), p0 = (0.5, 0, 1, 1): (-0.5 + 0 + 1 - 1) / 4 = -0.125
    both = F.boundary_loss(p, t, mode="multiclass", from_logits=False, include_background=True, reduction="none")
    torch.testing.assert_close(both, torch.tensor([[-0.125, -0.125]], dtype=torch.float64))


def test_hausdorff_dt_hand_values():
    # 1x4 image, target (0, 1, 1, 0): d_G = edt(G) + edt(~G) = (1, 1, 1, 1)
    # p = (0.5, 1, 0, 0.2): S = {p > 0.5} = (0, 1, 0, 0): d_S = (1, 1, 1, 2)
    # (s - g)^2 = (0.25, 0, 1, 0.04)
    # alpha = 2: weights (2, 2, 2, 5): (0.5 + 0 + 2 + 0.2) / 4 = 0.675
    # alpha = 1: weights (2, 2, 2, 3): (0.5 + 0 + 2 + 0.12) / 4 = 0.655
    p = torch.tensor([[[[0.5, 1.0, 0.0, 0.2]]]], dtype=torch.float64)
    t = torch.tensor([[[0, 1, 1, 0]]])
    assert float(F.hausdorff_dt_loss(p, t, from_logits=False)) == pytest.approx(0.675, abs=1e-15)
    assert float(F.hausdorff_dt_loss(p, t, from_logits=False, alpha=1.0)) == pytest.approx(0.655, abs=1e-15)


def test_hausdorff_dt_masks_without_boundary():
    # empty target and every p <= 0.5: no boundary in either mask, d = 0: loss 0 (MONAI's convention)
    t = torch.zeros(1, 3, 5, dtype=torch.long)
    p = torch.full((1, 1, 3, 5), 0.3, dtype=torch.float64, requires_grad=True)
    out = F.hausdorff_dt_loss(p, t, from_logits=False)
    out.backward()
    assert float(out.detach()) == 0.0 and torch.equal(p.grad, torch.zeros_like(p))
    # one pixel above 0.5 at (1, 2): S has a boundary; d_S = 1 there (distance to the outside)
    # and the distance to that pixel elsewhere; the loss is mean p^2 d_S^2
    p2 = torch.full((1, 1, 3, 5), 0.3, dtype=torch.float64)
    p2[0, 0, 1, 2] = 0.8
    rows, cols = torch.meshgrid(torch.arange(3.0), torch.arange(5.0), indexing="ij")
    d2 = (rows - 1) ** 2 + (cols - 2) ** 2
    d2[1, 2] = 1.0
    expected = float((p2[0, 0] ** 2 * d2).mean())
    assert float(F.hausdorff_dt_loss(p2, t, from_logits=False)) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- against the reference loop


CONFIGS = [
    dict(mode="binary"),
    dict(mode="binary", domain="batch"),
    dict(mode="multiclass"),
    dict(mode="multiclass", include_background=True, class_weights=[1.0, 2.0, 0.5]),
    dict(mode="multiclass", domain="batch"),
    dict(mode="multilabel"),
    dict(mode="multilabel", spacing=(0.5, 2.0)),
]


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_matches_reference(name, shape, cfg):
    x, t = _pair(shape, cfg["mode"], seed=len(shape))
    cfg = dict(cfg)
    if "spacing" in cfg and len(shape) == 5:
        cfg["spacing"] = (0.5, 2.0, 1.5)
    if cfg["mode"] == "multiclass":
        t[1][t[1] == 2] = 0  # class 2 absent from the second image
    elif cfg["mode"] == "multilabel":
        t[0, 2] = 0          # channel 2 empty in the first image
        t[1, 1] = 1          # channel 1 full in the second image
    ours = LOSSES[name](x, t, reduction="none", **cfg)
    ref = reference(name, x, t, **cfg)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("domain", ["image", "batch"])
def test_ignore_index_matches_reference(name, mode, domain):
    x, t = _pair((2, 3, 5, 7), mode, seed=5)
    t = t.clone()
    if mode == "multilabel":
        t[0, :, 1, :] = 255
        t[1, :, :, 3:] = 255
    else:
        t[0, 1, :] = 255
        t[1, :, 3:] = 255
    ours = LOSSES[name](x, t, mode=mode, domain=domain, ignore_index=255, reduction="none")
    ref = reference(name, x, t, mode=mode, domain=domain, ignore_index=255)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_all_ignored_image_contributes_zero(name):
    x, t = _pair((2, 3, 5, 7), "multiclass", seed=6)
    t = t.clone()
    t[1] = 255
    x.requires_grad_(True)
    out = LOSSES[name](x, t, mode="multiclass", ignore_index=255, reduction="none")
    out.sum().backward()
    assert torch.equal(out.detach()[1], torch.zeros(2, dtype=torch.float64))
    assert torch.isfinite(x.grad).all() and torch.equal(x.grad[1], torch.zeros_like(x.grad[1]))


# --------------------------------------------------------------------------- gradients, empty masks, range


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cfg", [
    dict(mode="binary"),
    dict(mode="multiclass", domain="batch", ignore_index=255),
    dict(mode="multilabel", spacing=2.0),
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_gradcheck(name, shape, cfg):
    # the distance maps are constants; random float64 logits keep p away from the 0.5 threshold
    x, t = _pair(shape, cfg["mode"], seed=11)
    if cfg.get("ignore_index") is not None:
        t = t.clone()
        t[0, 0] = 255
    x.requires_grad_(True)
    fn = LOSSES[name]
    assert torch.autograd.gradcheck(lambda z: fn(z, t, check_values=False, **cfg), (x,), fast_mode=True)
    if len(shape) == 4:  # the full Jacobian on a 3x4 crop of the first image
        xs = x[:1, :, :3, :4].detach().clone().requires_grad_(True)
        ts = t[:1][..., :3, :4]
        assert torch.autograd.gradcheck(lambda z: fn(z, ts, check_values=False, **cfg), (xs,))


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("fill", [0, 1])
def test_empty_and_full_masks_are_finite(name, mode, fill):
    x, _ = _pair((2, 3, 4, 5, 6), mode, seed=2)
    x.requires_grad_(True)
    if mode == "multilabel":
        t = torch.full((2, 3, 4, 5, 6), fill, dtype=torch.long)
    else:
        t = torch.full((2, 4, 5, 6), fill, dtype=torch.long)
    for domain in ("image", "batch"):
        out = LOSSES[name](x, t, mode=mode, domain=domain)
        (g,) = torch.autograd.grad(out, x)
        assert torch.isfinite(out) and torch.isfinite(g).all()


@pytest.mark.parametrize("shape", SHAPES)
def test_range_and_minimum_at_truth(shape):
    for mode in ("binary", "multiclass", "multilabel"):
        x, t = _pair(shape, mode, seed=4)
        if mode == "multiclass":
            g = torch.nn.functional.one_hot(t, shape[1]).movedim(-1, 1).double()
        else:
            g = t.double() if mode == "multilabel" else t.double().unsqueeze(1)
        # Hausdorff-DT: [0, inf), 0 at the truth
        assert float(F.hausdorff_dt_loss(g, t, mode=mode, from_logits=False)) == 0.0
        assert float(F.hausdorff_dt_loss(x, t, mode=mode)) > 0.0
        # boundary: the truth is the minimum (negative: minus the mean inside distance)
        best = F.boundary_loss(g, t, mode=mode, from_logits=False, reduction="none")
        assert bool((best < 0).all())
        for scale in (0.5, 3.0):
            other = F.boundary_loss(x * scale, t, mode=mode, reduction="none")
            assert bool((other > best).all())


def test_reduction_shapes():
    x, t = _pair((3, 4, 5, 7), "multiclass", seed=8)
    for fn in LOSSES.values():
        none = fn(x, t, mode="multiclass", reduction="none")
        assert none.shape == (3, 3)  # background left out
        torch.testing.assert_close(fn(x, t, mode="multiclass"), none.mean())
        torch.testing.assert_close(fn(x, t, mode="multiclass", reduction="sum"), none.sum())
        assert fn(x, t, mode="multiclass", domain="batch", reduction="none").shape == (3,)


def test_half_precision_and_soft_targets():
    x, t = _pair((2, 3, 5, 7), "multilabel", dtype=torch.float32, seed=9)
    for fn in LOSSES.values():
        out = fn(x.half(), t, mode="multilabel")
        ref = fn(x.double(), t, mode="multilabel")
        assert out.dtype == torch.float32 and abs(float(out) - float(ref)) < 1e-2 * max(1.0, abs(float(ref)))
    # a soft target is thresholded at 0.5 for the maps (and enters the HD-DT error as given)
    soft = t.double() * 0.8 + 0.1
    torch.testing.assert_close(F.boundary_loss(x.double(), soft, mode="multilabel"),
                               F.boundary_loss(x.double(), t, mode="multilabel"))


# --------------------------------------------------------------------------- errors, module, registry


def test_bad_arguments():
    x, t = _pair((2, 3, 5, 7), "multiclass")
    with pytest.raises(ValueError, match="`alpha` must be a finite number > 0; got 0.0"):
        F.hausdorff_dt_loss(x, t, mode="multiclass", alpha=0.0)
    with pytest.raises(ValueError, match=r"`spacing` must have one value per spatial dim \(2\)"):
        F.boundary_loss(x, t, mode="multiclass", spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="`spacing` must be positive and finite"):
        F.hausdorff_dt_loss(x, t, mode="multiclass", spacing=-1.0)
    with pytest.raises(ValueError, match="`domain` must be one of 'image', 'batch'"):
        F.boundary_loss(x, t, mode="multiclass", domain="imag")
    with pytest.raises(ValueError, match="`class_weights` must hold one weight per class kept by the loss \\(2\\)"):
        F.boundary_loss(x, t, mode="multiclass", class_weights=[1.0, 1.0, 1.0])
    with pytest.raises(TypeError, match="`include_background` must be a bool"):
        F.boundary_loss(x, t, mode="multiclass", include_background="no")


def test_modules_registry_and_schedule():
    x, t = _pair((2, 3, 5, 7), "multiclass")
    torch.testing.assert_close(sl.BoundaryLoss(mode="multiclass")(x, t), F.boundary_loss(x, t, mode="multiclass"))
    torch.testing.assert_close(sl.HausdorffDTLoss(mode="multiclass", alpha=1.0)(x, t),
                               F.hausdorff_dt_loss(x, t, mode="multiclass", alpha=1.0))
    for alias in ("boundary", "bd", "boundary_loss"):
        assert resolve(alias).cls is sl.BoundaryLoss
    for alias in ("hausdorff_dt", "hd_dt", "hausdorff_dt_loss"):
        assert resolve(alias).cls is sl.HausdorffDTLoss
    assert resolve("bd").family == resolve("hd_dt").family == "boundary"
    assert sl.BoundaryLoss.info.value_range == (-math.inf, math.inf)
    assert sl.HausdorffDTLoss.info.value_range == (0.0, math.inf)
    # the weight ramp of Kervadec et al.: region loss + ramped boundary loss
    loss = sl.build_loss("generalized_dice(mode='multiclass') + ramp(0.0, 1.0, 4)*boundary(mode='multiclass')")
    gdl = F.generalized_dice_loss(x, t, mode="multiclass")
    bd = F.boundary_loss(x, t, mode="multiclass")
    torch.testing.assert_close(loss(x, t), gdl)
    loss.step(2)
    torch.testing.assert_close(loss(x, t), gdl + 0.5 * bd)


# --------------------------------------------------------------------------- peers


@pytest.mark.peers
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("batch", [False, True])
def test_monai_hausdorff_dt(shape, mode, batch):
    # MONAI HausdorffDTLoss: per channel, d = edt(m) + edt(~m) of the masks > 0.5 (0 for an
    # empty or full mask), mean over the pixels (and the batch with batch=True), then the mean.
    # It casts its distance maps to float32: agreement to float32 rounding.
    monai_losses = pytest.importorskip("monai.losses")
    x, t = _pair(shape, mode, seed=3)
    c = 1 if mode == "binary" else shape[1]
    if mode == "multiclass":
        onehot = torch.nn.functional.one_hot(t, c).movedim(-1, 1).double()
        t[0][t[0] == 2] = 0  # class 2 absent from one image
        onehot = torch.nn.functional.one_hot(t, c).movedim(-1, 1).double()
    elif mode == "binary":
        onehot = t.unsqueeze(1).double()
    else:
        onehot = t.double()
    for include_background in ([True] if mode == "binary" else [False, True]):
        ref = monai_losses.HausdorffDTLoss(
            alpha=2.0, include_background=include_background, sigmoid=mode != "multiclass",
            softmax=mode == "multiclass", batch=batch, reduction="none",
        )(x, onehot)
        ours = F.hausdorff_dt_loss(x, t, mode=mode, include_background=include_background,
                                   domain="batch" if batch else "image", reduction="none")
        torch.testing.assert_close(ours.reshape(-1), ref.reshape(-1), rtol=1e-6, atol=1e-8)
