"""``mask=`` on every registered loss.

Over the whole registry: every loss takes ``mask``; a mask of ones (bool or float) changes
nothing; a bool mask equals ``ignore_index`` on the same pixels (value and gradient), 2D
and 3D; a float mask of 0 and 1 equals the bool one; float weights either weigh the loss
(finite values, gradcheck in float64) or, for a loss where a weight has no meaning, are
refused with an error naming ``mask``. Then hand-computed values of the weighted (or
masked) forms of the losses that took ``mask`` last.
"""
from __future__ import annotations

import inspect
import math

import pytest
import torch

from seglosses import registry
from seglosses import functional as SF
from seglosses.functional.topology import tubed_skeleton

ENTRIES = registry.ENTRIES
#: losses that only keep or drop pixels (the sorted hinge counts pixels)
BOOL_ONLY = {"lovasz"}


def _mode(entry):
    modes = entry.cls.info.modes
    return "multiclass" if "multiclass" in modes else modes[0]


def _data(mode, spatial, seed=0, c=3):
    g = torch.Generator().manual_seed(seed)
    b = 2
    if mode == "multiclass":
        x = torch.randn(b, c, *spatial, generator=g, dtype=torch.float64)
        t = torch.randint(0, c, (b, *spatial), generator=g)
        t.view(b, -1)[:, :c] = torch.arange(c)
    else:
        x = torch.randn(b, 1, *spatial, generator=g, dtype=torch.float64)
        t = torch.randint(0, 2, (b, *spatial), generator=g)
        t.view(b, -1)[:, 0], t.view(b, -1)[:, 1] = 1, 0
    keep = torch.rand(b, *spatial, generator=g) > 0.25
    keep.view(b, -1)[:, :c] = True  # every class keeps a pixel
    w = torch.rand(b, *spatial, generator=g, dtype=torch.float64) * 2 + 0.05
    return x * 0.8, t, keep, w


def _value_grad(fn, x, t, **kw):
    x = x.detach().clone().requires_grad_()
    v = fn(x, t, **kw)
    v.sum().backward()
    return v.detach(), x.grad


IDS = [e.name for e in ENTRIES]


def test_every_registered_loss_has_a_mask_argument():
    for e in ENTRIES:
        assert "mask" in inspect.signature(e.cls.function).parameters, e.name
        assert "mask" not in inspect.signature(e.cls).parameters, e.name  # per call, not configuration


@pytest.mark.parametrize("spatial", [(6, 7), (3, 4, 5)], ids=["2d", "3d"])
@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_mask_of_ones_changes_nothing(entry, spatial):
    mode = _mode(entry)
    fn = entry.cls.function
    x, t, keep, _ = _data(mode, spatial, seed=1)
    want = _value_grad(fn, x, t, mode=mode)
    for ones in (torch.ones_like(keep), torch.ones(2, 1, *spatial, dtype=torch.float64)):
        torch.testing.assert_close(_value_grad(fn, x, t, mode=mode, mask=ones), want)
    # the module form takes it per call
    torch.testing.assert_close(entry.cls(mode=mode)(x, t, mask=torch.ones_like(keep)), want[0])


@pytest.mark.parametrize("spatial", [(6, 7), (3, 4, 5)], ids=["2d", "3d"])
@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_bool_mask_equals_ignore_index(entry, spatial):
    assert "ignore_index" in inspect.signature(entry.cls.function).parameters, entry.name
    mode = _mode(entry)
    fn = entry.cls.function
    x, t, keep, _ = _data(mode, spatial, seed=2)
    ignored = torch.where(keep, t, torch.full_like(t, 255))
    want = _value_grad(fn, x, ignored, mode=mode, ignore_index=255)
    for mask in (keep, keep.unsqueeze(1), keep.double()):
        torch.testing.assert_close(_value_grad(fn, x, t, mode=mode, mask=mask), want)
    # with ignore_index too: a pixel left out by either is left out
    t2 = t.clone()
    t2[0, 0] = 255
    both = torch.where(keep, t2, torch.full_like(t2, 255))
    torch.testing.assert_close(_value_grad(fn, x, t2, mode=mode, ignore_index=255, mask=keep),
                               _value_grad(fn, x, both, mode=mode, ignore_index=255))
    # and a mask that leaves something out changes the value
    assert not torch.allclose(want[0], fn(x, t, mode=mode)), entry.name


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_float_weights_weigh_or_are_refused(entry):
    mode = _mode(entry)
    fn = entry.cls.function
    x, t, keep, w = _data(mode, (5, 6), seed=3)
    if entry.name in BOOL_ONLY:
        with pytest.raises(ValueError, match=r"`mask` must be boolean \(or hold only 0 and 1\) here"):
            fn(x, t, mode=mode, mask=w)
        return
    v = fn(x, t, mode=mode, mask=w)
    assert torch.isfinite(v) and not torch.allclose(v, fn(x, t, mode=mode))
    # scaling every weight by the same factor changes nothing (weighted means and ratios
    # of weighted sums; up to the smoothing constants of the ratios)
    params = inspect.signature(fn).parameters
    kw = {k: 0.0 for k in ("smooth", "harmonic_smooth") if k in params}
    if entry.name == "margin_calibration":  # its offsets read the (weighted) class counts
        kw["class_counts"] = [3.0, 5.0, 4.0]
    torch.testing.assert_close(fn(x, t, mode=mode, mask=3 * w, **kw), fn(x, t, mode=mode, mask=w, **kw),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("spatial", [(3, 4), (2, 3, 3)], ids=["2d", "3d"])
@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_gradcheck_with_mask(entry, spatial):
    mode = _mode(entry)
    fn = entry.cls.function
    x, t, keep, w = _data(mode, spatial, seed=4)
    mask = (keep if entry.name in BOOL_ONLY else w * keep)[:1]
    x = x[:1].clone().requires_grad_()
    t = t[:1]
    assert torch.autograd.gradcheck(lambda z: fn(z, t, mode=mode, mask=mask), (x,), atol=1e-6, rtol=1e-4,
                                    fast_mode=True)


def test_bad_mask_named_for_every_family():
    for name in ("topk", "boundary", "lovasz", "margin_calibration", "hausdorff_er"):
        fn = registry.resolve(name).cls.function
        x, t, _, _ = _data("multiclass", (5, 6))
        with pytest.raises(ValueError, match=r"`mask` must have shape \(2, 1, 5, 6\) or \(2, 5, 6\)"):
            fn(x, t, mode="multiclass", mask=torch.ones(2, 5, 5, dtype=torch.bool))
        with pytest.raises(ValueError, match=r"`mask` weights must be >= 0"):
            fn(x, t, mode="multiclass", mask=-torch.ones(2, 5, 6))


# --------------------------------------------------------------------------- by hand


def _sp(z):
    return math.log1p(math.exp(z))


def test_topk_weighted_by_hand():
    x = torch.tensor([[[2.0, -1.0, -1.0, 3.0]]], dtype=torch.float64)
    y = torch.tensor([[1, 1, 0, 0]])
    w = torch.tensor([[1.0, 0.0, 2.0, 0.5]], dtype=torch.float64)
    # per-pixel BCE softplus(-2), softplus(1), softplus(-1), softplus(3); weight 0 leaves
    # pixel 1 out; top 50 % of the 3 kept pixels = 2 pixels: pixel 3 (w .5), pixel 2 (w 2)
    want = (0.5 * _sp(3) + 2 * _sp(-1)) / 2.5
    assert float(SF.topk_loss(x, y, k=50, mask=w)) == pytest.approx(want, rel=1e-12)
    assert float(SF.topk_loss(x, y, k=50, mask=w, domain="image")) == pytest.approx(want, rel=1e-12)
    # threshold 0.5: p_true < 0.5 at pixels 1 (weight 0) and 3
    assert float(SF.topk_loss(x, y, threshold=0.5, mask=w)) == pytest.approx(_sp(3), rel=1e-12)
    assert float(SF.topk_loss(x, y, k=50, mask=w, reduction="sum")) == pytest.approx(0.5 * _sp(3) + 2 * _sp(-1))


def test_dpce_weighted_by_hand():
    x = torch.zeros(1, 1, 5, dtype=torch.float64)
    y = torch.tensor([[0, 1, 1, 1, 0]])
    w = torch.tensor([[1.0, 2.0, 1.0, 1.0, 0.5]], dtype=torch.float64)
    # 1 + D = (1, 1.5, 1, 1.5, 1) (no weight 0: the map is the unmasked one); BCE ln 2
    want = (1 + 2 * 1.5 + 1 + 1.5 + 0.5) / 5.5 * math.log(2)
    assert float(SF.distance_penalized_ce_loss(x, y, mask=w)) == pytest.approx(want, rel=1e-12)
    # a weight of 0 is an ignored pixel: it belongs to every region, so pixel 4 is no
    # boundary for pixel 3 (fg distances 1, 2, 3 -> D = 2/3, 1/3, 0; bg: pixel 0 only, D 0)
    w0 = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    want0 = (1 + (1 + 2 / 3) + (1 + 1 / 3) + 1) / 4 * math.log(2)
    assert float(SF.distance_penalized_ce_loss(x, y, mask=w0)) == pytest.approx(want0, rel=1e-12)


def test_boundary_family_weighted_by_hand():
    g = torch.tensor([[[0, 1, 1, 0]]])
    # boundary: φ = (1, -1, -1, 1); weights (2, 1, 1, 0): pixel 3 left out (outside every
    # class already); Σ w φ p / Σ w = (2 * .5 - 1 - .5) / 4
    p = torch.tensor([[[[0.5, 1.0, 0.5, 0.0]]]], dtype=torch.float64)
    w = torch.tensor([[[2.0, 1.0, 1.0, 0.0]]], dtype=torch.float64)
    assert float(SF.boundary_loss(p, g, from_logits=False, mask=w)) == pytest.approx(-0.125, rel=1e-12)
    # Hausdorff-DT: per pixel (s - g)^2 (d_G^2 + d_S^2) = (0.5, 0, 2, 0) for p = (.5, 1, 0, 0)
    p = torch.tensor([[[[0.5, 1.0, 0.0, 0.0]]]], dtype=torch.float64)
    w = torch.tensor([[[2.0, 1.0, 0.5, 3.0]]], dtype=torch.float64)
    want = (2 * 0.5 + 0.5 * 2) / 6.5
    assert float(SF.hausdorff_dt_loss(p, g, from_logits=False, mask=w)) == pytest.approx(want, rel=1e-12)
    assert float(SF.log_hausdorff_dt_loss(p, g, from_logits=False, mask=w)) == pytest.approx(math.log1p(want))
    # Hausdorff-ER: a 3x3 error of 1, one erosion: normalised map 1 (centre), 0.5 (edge
    # centres), 0 (corners); centre weight 3, the rest 1
    p = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    y = torch.zeros(1, 3, 3, dtype=torch.long)
    w = torch.ones(1, 3, 3, dtype=torch.float64)
    w[0, 1, 1] = 3
    got = SF.hausdorff_er_loss(p, y, from_logits=False, erosions=1, mask=w)
    assert float(got) == pytest.approx((3 * 1 + 4 * 0.5) / 11, rel=1e-12)


def test_lovasz_masked_by_hand():
    # logits (2, -1, 0.5, -3), target (1, 1, 0, 0); leaving pixel 1 out leaves the errors
    # -1(+), 1.5(-), -2(-): sorted 1.5(-) first, Δ_J({2}) = 1 - 1/2; the rest clip to 0
    x = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]], dtype=torch.float64)
    g = torch.tensor([[[1, 1], [0, 0]]])
    m = torch.tensor([[[True, False], [True, True]]])
    assert float(SF.lovasz_loss(x, g, mask=m)) == pytest.approx(0.75, rel=1e-12)
    assert float(SF.lovasz_loss(x, g, mask=m.double())) == pytest.approx(0.75, rel=1e-12)
    with pytest.raises(ValueError, match=r"`mask` must be boolean .* got values in \[0, 0.5\]"):
        SF.lovasz_loss(x, g, mask=m.double() * 0.5)


def test_margin_calibration_weighted_by_hand():
    x = torch.zeros(1, 1, 2, dtype=torch.float64)  # binary, logit 0: every margin is 0
    y = torch.tensor([[1, 0]])
    w = torch.tensor([[3.0, 1.0]], dtype=torch.float64)
    # weighted counts n_1 = 3, n_0 = 1, n = 4 (Corollary 1.1, "sum" norm, τ = v = 1)
    n0, n1, n = 1.0, 3.0, 4.0
    r0, r1 = math.sqrt(n - n0) / n0, math.sqrt(n - n1) / n1
    rho_00, rho_01 = r0 / (r0 + r1), r1 / (r0 + r1)  # ρ_0k
    mu0 = (n0 / n) * math.sqrt(n0) / ((n - n0) - (n0 / n) * math.sqrt(n - n0))
    mu1 = (n1 / n) * math.sqrt(n1) / ((n - n1) - (n1 / n) * math.sqrt(n - n1))
    rho_k0_0, rho_k0_1 = mu0 * rho_00, mu1 * rho_01

    def phi(z):
        return math.log2(1 + 2 ** z)

    pix1 = phi(rho_k0_1) + phi(rho_00)  # label 1: own class 1 (ρ_10), class 0 as "other" (ρ_00)
    pix0 = phi(rho_k0_0) + phi(rho_01)  # label 0: own class 0 (ρ_00 of k0), class 1 as "other"
    want = (3 * pix1 + 1 * pix0) / 4
    assert float(SF.margin_calibration_loss(x, y, mask=w)) == pytest.approx(want, rel=1e-12)
    # fixed class_counts: the weights weigh only the mean
    off = SF.margin_offsets([1.0, 1.0])
    per = phi(float(off.rho_k0[1])) + phi(float(off.rho_0k[0]))
    assert float(SF.margin_calibration_loss(x, y, mask=w, class_counts=[1.0, 1.0])) == pytest.approx(per)


def test_3d_weighted_mask_is_a_weighted_mean_of_pixel_losses():
    """Pixel-mean losses (TopK at k = 100, DPCE, margin): Σ w l / Σ w over the 3D map of
    ``reduction="none"``."""
    x, t, _, w = _data("multiclass", (3, 4, 5), seed=5)
    for fn, kw in [(SF.topk_loss, dict(k=100)), (SF.distance_penalized_ce_loss, {}),
                   (SF.margin_calibration_loss, dict(class_counts=[3.0, 2.0, 5.0]))]:
        per = fn(x, t, mode="multiclass", reduction="none", **kw)
        torch.testing.assert_close(fn(x, t, mode="multiclass", mask=w, **kw), (per * w).sum() / w.sum())


def test_topology_weights_weigh_the_sums_not_the_skeleton():
    """Skeleton recall with weights: Σ w p T / Σ w T with T the (unweighted) tubed skeleton
    of the target; a weight below 0.5 on the target no longer drops it from the skeleton."""
    g = torch.zeros(1, 5, 7, dtype=torch.long)
    g[:, 1:4, :] = 1  # skeleton = row 2; tubed once: rows 1-3
    p = torch.rand(1, 1, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    w = torch.full((1, 5, 7), 0.3, dtype=torch.float64)
    w[0, 2, :3] = 2.0
    t = tubed_skeleton(g[:, None].double(), 10, 1)
    want = 1 - (w[:, None] * p * t).sum() / (w[:, None] * t).sum()
    got = SF.skeleton_recall_loss(p, g, from_logits=False, smooth=0.0, tube=1, mask=w)
    assert float(got) == pytest.approx(float(want), rel=1e-12)
    # clDice: the same weights on every sum of the topology precision and sensitivity
    sp = SF.soft_skeleton(p, 3)
    sg = SF.soft_skeleton(g[:, None].double(), 3)
    ww = w[:, None]
    tprec = (ww * sp * g[:, None]).sum() / (ww * sp).sum()
    tsens = (ww * sg * p).sum() / (ww * sg).sum()
    want = 1 - 2 * tprec * tsens / (tprec + tsens)
    got = SF.cldice_loss(p, g, from_logits=False, smooth=0.0, harmonic_smooth=0.0, mask=w)
    assert float(got) == pytest.approx(float(want), rel=1e-10)
