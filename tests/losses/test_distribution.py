"""Distribution losses (seed 001 section 2): CE / WCE, TopK, focal, DPCE.

The references here are independent: torch's own cross entropies, naive loops in
float64, scipy's distance transform, and (marker ``peers``) MONAI and kornia.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as TF

import seglosses as sl
from seglosses import functional as F
from seglosses.regularizers import label_smoothing

PIXELWISE = {
    "ce": F.cross_entropy_loss,
    "topk": F.topk_loss,
    "focal": F.focal_loss,
    "dpce": F.distance_penalized_ce_loss,
}
SHAPES = [(2, 3, 5, 7), (2, 3, 4, 5, 6)]  # 2D and 3D, C != any spatial size, odd sizes


def _pair(shape, mode, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    b, c = shape[:2]
    s = shape[2:]
    if mode == "binary":
        x = torch.randn((b, 1) + s, generator=g, dtype=dtype)
        t = torch.randint(0, 2, (b,) + s, generator=g)
    elif mode == "multiclass":
        x = torch.randn(shape, generator=g, dtype=dtype)
        t = torch.randint(0, c, (b,) + s, generator=g)
    else:
        x = torch.randn(shape, generator=g, dtype=dtype)
        t = torch.randint(0, 2, shape, generator=g)
    return x, t


# ------------------------------------------------------------------ cross entropy vs torch


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", [0.0, 0.15])
def test_ce_multiclass_equals_torch(shape, eps):
    x, t = _pair(shape, "multiclass")
    t[0].view(-1)[:4] = 255
    w = torch.tensor([0.5, 2.0, 1.3], dtype=torch.float64)
    # torch divides the weighted sum by sum_i w_{y_i}: weight_norm="weights"
    ours = F.cross_entropy_loss(x, t, mode="multiclass", ignore_index=255, class_weights=w, label_smoothing=eps,
                                weight_norm="weights")
    ref = TF.cross_entropy(x, t, weight=w, ignore_index=255, label_smoothing=eps)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    # unweighted: both normalisations are the plain mean over valid pixels
    torch.testing.assert_close(F.cross_entropy_loss(x, t, mode="multiclass", ignore_index=255, label_smoothing=eps),
                               TF.cross_entropy(x, t, ignore_index=255, label_smoothing=eps))
    # the paper's eq. 3 divides by N (valid pixels): sum of torch's per-pixel values / N
    per = TF.cross_entropy(x, t, weight=w, ignore_index=255, label_smoothing=eps, reduction="none")
    n_valid = (t != 255).sum()
    torch.testing.assert_close(
        F.cross_entropy_loss(x, t, mode="multiclass", ignore_index=255, class_weights=w, label_smoothing=eps),
        per.sum() / n_valid)
    # reduction="none" is torch's per-pixel map ([B, *S], 0 at ignored pixels)
    torch.testing.assert_close(
        F.cross_entropy_loss(x, t, mode="multiclass", ignore_index=255, class_weights=w, label_smoothing=eps,
                             reduction="none"), per)


def test_ce_dense_targets_equal_torch_probability_targets():
    x, t = _pair((2, 4, 3, 5), "multiclass")
    soft = torch.softmax(torch.randn(2, 4, 3, 5, dtype=torch.float64), 1)
    torch.testing.assert_close(F.cross_entropy_loss(x, soft, mode="multiclass"), TF.cross_entropy(x, soft))
    torch.testing.assert_close(F.cross_entropy_loss(x, soft, mode="multiclass", label_smoothing=0.2),
                               TF.cross_entropy(x, soft, label_smoothing=0.2))
    # one-hot dense == label map, with weights and either normalisation
    onehot = TF.one_hot(t, 4).movedim(-1, 1).double()
    for norm in ("pixels", "weights"):
        kw = dict(mode="multiclass", class_weights=[1.0, 2.0, 3.0, 0.5], weight_norm=norm, label_smoothing=0.1)
        torch.testing.assert_close(F.cross_entropy_loss(x, onehot, **kw), F.cross_entropy_loss(x, t, **kw))


def test_ce_binary_and_multilabel_equal_torch_bce():
    x, t = _pair((2, 1, 5, 7), "binary")
    g = t.double()
    torch.testing.assert_close(F.cross_entropy_loss(x, t), TF.binary_cross_entropy_with_logits(x[:, 0], g))
    # (negatives, positives) weights = torch's per-element weight
    elem = 0.3 * (1 - g) + 2.0 * g
    torch.testing.assert_close(F.cross_entropy_loss(x, t, class_weights=[0.3, 2.0]),
                               TF.binary_cross_entropy_with_logits(x[:, 0], g, weight=elem))
    # "weights" normalisation divides by the sum of the element weights
    torch.testing.assert_close(F.cross_entropy_loss(x, t, class_weights=[0.3, 2.0], weight_norm="weights"),
                               (TF.binary_cross_entropy_with_logits(x[:, 0], g, weight=elem, reduction="sum")
                                / elem.sum()))
    # probabilities in, soft targets
    p = torch.sigmoid(x)
    soft = torch.rand(2, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(F.cross_entropy_loss(p, soft, from_logits=False),
                               TF.binary_cross_entropy(p[:, 0], soft))
    # multilabel sums the channels: C times torch's mean
    xm, tm = _pair((2, 3, 5, 7), "multilabel")
    torch.testing.assert_close(F.cross_entropy_loss(xm, tm, mode="multilabel"),
                               3 * TF.binary_cross_entropy_with_logits(xm, tm.double()))
    wm = torch.tensor([1.0, 0.2, 4.0], dtype=torch.float64)
    torch.testing.assert_close(
        F.cross_entropy_loss(xm, tm, mode="multilabel", class_weights=wm),
        3 * TF.binary_cross_entropy_with_logits(xm, tm.double(), weight=wm.view(1, 3, 1, 1)))


def test_ce_hand_value():
    # pixel 0: p = (1/2, 1/2), y = 0 -> ln 2; pixel 1: p = (1/4, 3/4), y = 1 -> ln(4/3)
    x = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)]]])
    y = torch.tensor([[0, 1]])
    assert float(F.cross_entropy_loss(x, y, mode="multiclass")) == pytest.approx((math.log(2) + math.log(4 / 3)) / 2)
    # weights (2, 1): eq. 3 divides by N = 2, torch by w_0 + w_1 = 3
    v = F.cross_entropy_loss(x, y, mode="multiclass", class_weights=[2.0, 1.0])
    assert float(v) == pytest.approx((2 * math.log(2) + math.log(4 / 3)) / 2)
    v = F.cross_entropy_loss(x, y, mode="multiclass", class_weights=[2.0, 1.0], weight_norm="weights")
    assert float(v) == pytest.approx((2 * math.log(2) + math.log(4 / 3)) / 3)


# ------------------------------------------------------------------ seed 000 Claim 2


@pytest.mark.parametrize("mode,n", [("multiclass", 4), ("binary", 2)])
def test_claim2_label_smoothing_is_ce_plus_label_noise_penalty(mode, n):
    # L(y~) = (1 - eps) L(y) + eps D(u || y^) + eps log n. (The seed writes "+ log n"; the
    # derivation gives eps * log n, a constant either way.)
    x, t = _pair((2, 4, 5, 3), mode)
    eps = 0.3
    smoothed = F.cross_entropy_loss(x, t, mode=mode, label_smoothing=eps)
    ce = F.cross_entropy_loss(x, t, mode=mode)
    lnp = F.label_noise_penalty(x, t, mode=mode)
    torch.testing.assert_close(smoothed, (1 - eps) * ce + eps * lnp + eps * math.log(n))
    # label_smoothing (the target transform) gives the same loss as the built-in option
    c = x.shape[1]
    y_tilde = label_smoothing(t, eps, c if mode == "multiclass" else 1)
    torch.testing.assert_close(F.cross_entropy_loss(x, y_tilde.to(x.dtype), mode=mode), smoothed)
    # and it still has its minimum at y^ = y~ (multiclass): the gradient at log y~ vanishes
    if mode == "multiclass":
        z = torch.log(y_tilde.double()).requires_grad_(True)
        F.cross_entropy_loss(z, t, mode=mode, label_smoothing=eps).backward()
        assert float(z.grad.abs().max()) < 1e-7  # y~ is float32 from label_smoothing


# ------------------------------------------------------------------ inverse frequency


def test_inverse_frequency_matches_sklearn_and_both_normalisations():
    skl = pytest.importorskip("sklearn.utils.class_weight")
    import numpy as np

    x, t = _pair((2, 4, 6, 5), "multiclass")
    t[t == 3] = 2  # class 3 absent
    t[0, 0, :2] = 255
    valid = t[t != 255].numpy()
    present = np.unique(valid)
    balanced = skl.compute_class_weight("balanced", classes=present, y=valid)
    canon = sl._inputs.canonicalize(x, t, mode="multiclass", ignore_index=255)
    w = F.distribution._resolve_class_weights("inverse_frequency", canon, torch.float64)
    np.testing.assert_allclose(w[:3].numpy(), balanced, rtol=1e-12)
    assert float(w[3]) == pytest.approx(balanced.max())  # absent: the largest present weight
    a = F.cross_entropy_loss(x, t, mode="multiclass", ignore_index=255, class_weights="inverse_frequency")
    b = F.cross_entropy_loss(x, t, mode="multiclass", ignore_index=255, class_weights="inverse_frequency",
                             weight_norm="weights")
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, TF.cross_entropy(x, t, weight=w, ignore_index=255))
    # binary: (negatives, positives) balanced
    xb, tb = _pair((2, 1, 4, 5), "binary")
    n1 = float(tb.sum())
    n0 = tb.numel() - n1
    wb = torch.tensor([tb.numel() / (2 * n0), tb.numel() / (2 * n1)], dtype=torch.float64)
    torch.testing.assert_close(F.cross_entropy_loss(xb, tb, class_weights="inverse_frequency"),
                               F.cross_entropy_loss(xb, tb, class_weights=wb))


def test_class_frequency_weights_convention():
    torch.testing.assert_close(F.class_frequency_weights(torch.tensor([0.0, 0.0])), torch.ones(2))
    w = F.class_frequency_weights(torch.tensor([[1.0, 3.0], [4.0, 0.0]]))
    # row 1: N=4, K=2: (2, 2/3); row 2: only class 0 present, K=1: N/(1*4) = 1, absent -> 1
    torch.testing.assert_close(w, torch.tensor([[2.0, 2 / 3], [1.0, 1.0]]))


# ------------------------------------------------------------------ TopK


def test_topk_hand_values_and_forms():
    x = torch.tensor([[[2.0, -1.0, -1.0, 3.0]]])
    y = torch.tensor([[1, 1, 0, 0]])
    sp = [TF.softplus(torch.tensor(v)).item() for v in (-2.0, 1.0, -1.0, 3.0)]  # per-pixel BCE
    assert float(F.topk_loss(x, y, k=50)) == pytest.approx((sp[1] + sp[3]) / 2, rel=1e-6)
    assert float(F.topk_loss(x, y, k=25)) == pytest.approx(sp[3], rel=1e-6)
    assert float(F.topk_loss(x, y, k=100)) == pytest.approx(float(F.cross_entropy_loss(x, y)), rel=1e-6)
    # k = 30 % of 4 pixels -> ceil(1.2) = 2 pixels
    assert float(F.topk_loss(x, y, k=30)) == pytest.approx((sp[1] + sp[3]) / 2, rel=1e-6)
    # threshold form (eq. 4): p_true = sigmoid(2), sigmoid(-1), sigmoid(1), sigmoid(-3)
    assert float(F.topk_loss(x, y, threshold=0.5)) == pytest.approx((sp[1] + sp[3]) / 2, rel=1e-6)
    assert float(F.topk_loss(x, y, threshold=0.75)) == pytest.approx((sp[1] + sp[2] + sp[3]) / 3, rel=1e-6)
    none = F.topk_loss(x, y, k=50, reduction="none")
    torch.testing.assert_close(none, torch.tensor([[0.0, sp[1], 0.0, sp[3]]]))
    assert float(F.topk_loss(x, y, k=50, reduction="sum")) == pytest.approx(sp[1] + sp[3], rel=1e-6)


def test_topk_domains_and_ignore_against_loops():
    x, t = _pair((3, 4, 5, 7), "multiclass")
    t[1].view(-1)[:9] = 255
    k = 20.0
    ours_img = F.topk_loss(x, t, mode="multiclass", k=k, domain="image", ignore_index=255)
    ours_bat = F.topk_loss(x, t, mode="multiclass", k=k, domain="batch", ignore_index=255)
    ce = TF.cross_entropy(x, t, ignore_index=255, reduction="none")
    means, pool = [], []
    for b in range(3):
        v = ce[b][t[b] != 255]
        n = math.ceil(k * v.numel() / 100)
        means.append(v.sort(descending=True).values[:n].mean())
        pool.append(v)
    allv = torch.cat(pool)
    ref_bat = allv.sort(descending=True).values[: math.ceil(k * allv.numel() / 100)].mean()
    torch.testing.assert_close(ours_img, torch.stack(means).mean())
    torch.testing.assert_close(ours_bat, ref_bat)


def test_topk_nothing_selected_is_zero_with_zero_gradient():
    x = torch.full((2, 1, 3, 5), 8.0, requires_grad=True)  # p = 0.9997 everywhere, all labels 1
    y = torch.ones(2, 3, 5, dtype=torch.long)
    v = F.topk_loss(x, y, threshold=0.5)
    v.backward()
    assert float(v.detach()) == 0.0 and float(x.grad.abs().sum()) == 0.0
    x.grad = None
    v = F.topk_loss(x, torch.full((2, 3, 5), 255), ignore_index=255, k=10, domain="image")
    v.backward()
    assert float(v.detach()) == 0.0 and float(x.grad.abs().sum()) == 0.0


def test_topk_errors():
    x, t = _pair((1, 1, 2, 3), "binary")
    with pytest.raises(ValueError, match="`k` must be None when `threshold` is given"):
        F.topk_loss(x, t, k=10, threshold=0.5)
    with pytest.raises(ValueError, match=r"`k` must be a percentage in \(0, 100\]; got 120"):
        F.topk_loss(x, t, k=120)
    with pytest.raises(ValueError, match=r"`threshold` must lie in \(0, 1\]; got 0.0"):
        F.topk_loss(x, t, threshold=0.0)
    with pytest.raises(ValueError, match="`domain` must be one of 'image', 'batch'; got 'imgae'"):
        F.topk_loss(x, t, domain="imgae")


# ------------------------------------------------------------------ focal


def _focal_reference(x, t, gamma, alpha=None):
    """Loops: multiclass softmax focal, -(1-p)^g log p at the true class, mean over pixels."""
    b, c = x.shape[:2]
    p = torch.softmax(x.double(), 1).reshape(b, c, -1)
    tt = t.reshape(b, -1)
    total, n = 0.0, 0
    for bi in range(b):
        for i in range(tt.shape[1]):
            y = int(tt[bi, i])
            pt = float(p[bi, y, i])
            a = 1.0 if alpha is None else (1 - alpha if y == 0 else alpha)
            total += -a * (1 - pt) ** gamma * math.log(pt)
            n += 1
    return total / n


def test_focal_values():
    x, t = _pair((2, 3, 4, 5), "multiclass")
    for gamma, alpha in [(2.0, None), (0.5, 0.25), (0.0, None)]:
        assert float(F.focal_loss(x, t, mode="multiclass", gamma=gamma, alpha=alpha)) == pytest.approx(
            _focal_reference(x, t, gamma, alpha), rel=1e-10)
    torch.testing.assert_close(F.focal_loss(x, t, mode="multiclass", gamma=0.0),
                               F.cross_entropy_loss(x, t, mode="multiclass"))
    # dense one-hot == label map
    onehot = TF.one_hot(t, 3).movedim(-1, 1).double()
    torch.testing.assert_close(F.focal_loss(x, onehot, mode="multiclass", alpha=0.3),
                               F.focal_loss(x, t, mode="multiclass", alpha=0.3))
    # binary hand value: q = 1/2, (1/2)^2 ln 2, alpha 0.25 for the positive, 0.75 for the negative
    xb = torch.zeros(1, 1, 2)
    yb = torch.tensor([[1, 0]])
    assert float(F.focal_loss(xb, yb, alpha=0.25)) == pytest.approx((0.25 + 0.75) / 2 * 0.25 * math.log(2), rel=1e-6)


def test_focal_saturated_logits_finite_gradients():
    for gamma in (0.5, 2.0):
        for mode, shape in (("multiclass", (2, 3, 4, 5)), ("binary", (2, 1, 4, 5))):
            x, t = _pair(shape, mode, dtype=torch.float32)
            x = (torch.sign(x) * 1e4).requires_grad_(True)
            v = F.focal_loss(x, t, mode=mode, gamma=gamma)
            v.backward()
            assert torch.isfinite(v) and torch.isfinite(x.grad).all()


@pytest.mark.peers
def test_focal_agrees_with_monai():
    monai_losses = pytest.importorskip("monai.losses")
    worst = 0.0
    # sigmoid (binary / multilabel): MONAI averages over channels too -> ours / C
    xm, tm = _pair((2, 3, 5, 7), "multilabel")
    for alpha in (None, 0.25):
        ref = monai_losses.FocalLoss(gamma=2.0, alpha=alpha)(xm, tm.double())
        ours = F.focal_loss(xm, tm, mode="multilabel", gamma=2.0, alpha=alpha) / 3
        worst = max(worst, abs(float(ours - ref)))
    xb, tb = _pair((2, 1, 5, 7), "binary")
    ref = monai_losses.FocalLoss(gamma=1.5, alpha=0.8)(xb, tb.unsqueeze(1).double())
    worst = max(worst, abs(float(F.focal_loss(xb, tb, gamma=1.5, alpha=0.8) - ref)))
    # softmax (multiclass): 1 - alpha for class 0, alpha for the others, as ours
    x, t = _pair((2, 4, 5, 3, 3), "multiclass")
    for alpha in (None, 0.25):
        ref = monai_losses.FocalLoss(gamma=2.0, alpha=alpha, use_softmax=True, to_onehot_y=True)(x, t.unsqueeze(1))
        ours = F.focal_loss(x, t, mode="multiclass", gamma=2.0, alpha=alpha) / 4
        worst = max(worst, abs(float(ours - ref)))
    assert worst < 1e-6, worst


@pytest.mark.peers
def test_focal_agrees_with_kornia():
    kl = pytest.importorskip("kornia.losses")
    x, t = _pair((2, 4, 5, 7), "multiclass", dtype=torch.float32)
    # kornia: 1 - alpha for class 0 and alpha for the others (as ours), mean over pixels
    # and classes, i.e. ours / C
    for alpha in (0.25, None):
        ref = kl.focal_loss(x, t, alpha=alpha, gamma=2.0, reduction="mean")
        ours = F.focal_loss(x, t, mode="multiclass", gamma=2.0, alpha=alpha) / 4
        assert abs(float(ours - ref)) < 1e-6
    xb, tb = _pair((2, 1, 5, 7), "binary", dtype=torch.float32)
    ref = kl.binary_focal_loss_with_logits(xb, tb.unsqueeze(1).float(), alpha=0.25, gamma=2.0, reduction="mean")
    assert abs(float(F.focal_loss(xb, tb, alpha=0.25) - ref)) < 1e-6


# ------------------------------------------------------------------ DPCE


def _dpce_weights_reference(t, num_classes, spacing=None):
    """Loops + scipy: 1 + D per pixel, D = 1 - d / max over the pixel's region in its image."""
    nd = pytest.importorskip("scipy.ndimage")
    import numpy as np

    out = np.ones(t.shape)
    for b in range(t.shape[0]):
        lab = t[b].numpy()
        for c in range(num_classes):
            region = lab == c
            if not region.any() or region.all():
                continue
            d = nd.distance_transform_edt(region, sampling=spacing)
            out[b][region] = 1 + (1 - d[region] / d[region].max())
    return torch.from_numpy(out)


@pytest.mark.parametrize("shape,spacing", [((2, 3, 6, 9), None), ((2, 3, 6, 9), (0.5, 1.5)), ((1, 3, 4, 5, 7), None)])
def test_dpce_equals_weighted_ce_reference(shape, spacing):
    x, t = _pair(shape, "multiclass")
    w = _dpce_weights_reference(t, shape[1], spacing)
    ce = TF.cross_entropy(x, t, reduction="none")
    ours = F.distance_penalized_ce_loss(x, t, mode="multiclass", spacing=spacing, reduction="none")
    torch.testing.assert_close(ours, w * ce, rtol=1e-6, atol=1e-8)
    assert float(w.min()) >= 1.0 and float(w.max()) < 2.0


def test_dpce_hand_case_and_binary_equals_two_class():
    # 1D row 0 1 1 1 0: fg distances 1 2 1 (max 2) -> D .5 0 .5; bg distances 1 1 -> D 0
    x = torch.zeros(1, 1, 5, dtype=torch.float64)
    y = torch.tensor([[0, 1, 1, 1, 0]])
    v = F.distance_penalized_ce_loss(x, y, reduction="none")
    torch.testing.assert_close(v / math.log(2), torch.tensor([[1.0, 1.5, 1.0, 1.5, 1.0]], dtype=torch.float64))
    # binary logit x == two-class softmax with logits (0, x); the regions are the same
    xb, tb = _pair((2, 1, 5, 6), "binary")
    two = torch.cat([torch.zeros_like(xb), xb], 1)
    torch.testing.assert_close(F.distance_penalized_ce_loss(xb, tb),
                               F.distance_penalized_ce_loss(two, tb, mode="multiclass"))


def test_dpce_without_boundary_is_ce_and_ignore_is_not_a_boundary():
    x, _ = _pair((2, 3, 4, 5), "multiclass")
    t = torch.zeros(2, 4, 5, dtype=torch.long)
    torch.testing.assert_close(F.distance_penalized_ce_loss(x, t, mode="multiclass"),
                               F.cross_entropy_loss(x, t, mode="multiclass"))
    t2 = t.clone()
    t2[:, :, :2] = 255  # ignored stripe: still one region, no boundary
    torch.testing.assert_close(F.distance_penalized_ce_loss(x, t2, mode="multiclass", ignore_index=255),
                               F.cross_entropy_loss(x, t2, mode="multiclass", ignore_index=255))


# ------------------------------------------------------------------ fused Bernoulli kernel
# Binary/multilabel logits go through the fused kernel (_BernoulliNLL: closed-form gradient,
# in-place steps); with `_fused_bernoulli` patched to False the same call takes the autograd
# form. Every branch of the kernel (gamma = 0 with and without weights, gamma > 0, pixel
# weights of DPCE) is compared with it on values and gradients.

FUSED_CASES = {
    "ce": (F.cross_entropy_loss, "binary", {}),
    "ce-weights-smoothing": (F.cross_entropy_loss, "binary", {"class_weights": [0.3, 2.0], "label_smoothing": 0.1}),
    "ce-zero-negative-weight": (F.cross_entropy_loss, "binary", {"class_weights": [0.0, 1.5]}),
    "ce-one-weight-sum": (F.cross_entropy_loss, "binary", {"class_weights": [2.5], "reduction": "sum"}),
    "ce-frequency-weights-norm": (F.cross_entropy_loss, "binary",
                                  {"class_weights": "inverse_frequency", "weight_norm": "weights"}),
    "ce-ignore-none": (F.cross_entropy_loss, "binary", {"ignore_index": 255, "reduction": "none"}),
    "ce-multilabel": (F.cross_entropy_loss, "multilabel",
                      {"class_weights": [1.0, 0.0, 3.0], "ignore_index": 255, "label_smoothing": 0.2}),
    "ce-multilabel-sum": (F.cross_entropy_loss, "multilabel", {"reduction": "sum"}),
    "focal": (F.focal_loss, "binary", {}),
    "focal-alpha-ignore": (F.focal_loss, "binary", {"gamma": 0.5, "alpha": 0.25, "ignore_index": 255}),
    "focal-gamma0-alpha": (F.focal_loss, "binary", {"gamma": 0.0, "alpha": 0.7}),
    "focal-multilabel-none": (F.focal_loss, "multilabel",
                              {"gamma": 1.5, "class_weights": "sqrt_inverse_frequency", "reduction": "none"}),
    "focal-multilabel-ignore": (F.focal_loss, "multilabel", {"alpha": 0.4, "class_weights": [2.0, 0.0, 1.0],
                                                            "ignore_index": 255}),
    "topk": (F.topk_loss, "binary", {"k": 30, "class_weights": [0.5, 2.0]}),
    "topk-threshold-multilabel": (F.topk_loss, "multilabel", {"threshold": 0.6, "ignore_index": 255,
                                                              "class_weights": [1.0, 2.0, 0.5]}),
    "dpce": (F.distance_penalized_ce_loss, "binary", {"class_weights": [0.4, 1.0]}),
    "dpce-multilabel-ignore": (F.distance_penalized_ce_loss, "multilabel", {"ignore_index": 255}),
}


def _bernoulli_target(mode, kind, ignore, shape=(2, 3, 5, 7), seed=1):
    g = torch.Generator().manual_seed(seed)
    tshape = (shape[0],) + shape[2:] if mode == "binary" else shape
    t = torch.rand(tshape, generator=g, dtype=torch.float64)
    if kind == "labels":
        t = (t > 0.6).long()
    if ignore:
        t.view(-1)[::9] = 255
    return t


def _value_and_grad(fn, x, t, kw, fused, monkeypatch):
    """Value and input gradient, through the fused kernel or (fused=False) the autograd form."""
    real = F.distribution._fused_bernoulli
    taken = []
    with monkeypatch.context() as m:
        m.setattr(F.distribution, "_fused_bernoulli",
                  (lambda *a: taken.append(real(*a)) or taken[-1]) if fused else (lambda *a: False))
        z = x.detach().clone().requires_grad_(True)
        v = fn(z, t, **kw)
        # a non-uniform upstream gradient, so that the "none" maps are checked pixel by pixel
        up = torch.linspace(0.5, 1.5, v.numel(), dtype=v.dtype).reshape(v.shape)
        (v * up).sum().backward()
    if fused:
        assert taken and all(taken), "the fused kernel did not run"
    return v.detach(), z.grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", ["labels", "soft"])
@pytest.mark.parametrize("case", sorted(FUSED_CASES))
def test_fused_bernoulli_equals_autograd_form(case, kind, dtype, monkeypatch):
    fn, mode, kw = FUSED_CASES[case]
    x, _ = _pair((2, 3, 5, 7), mode, dtype=torch.float64, seed=2)
    x = (3 * x).to(dtype)
    t = _bernoulli_target(mode, kind, "ignore_index" in kw)
    kw = dict(kw, mode=mode)
    v1, g1 = _value_and_grad(fn, x, t, kw, True, monkeypatch)
    v0, g0 = _value_and_grad(fn, x, t, kw, False, monkeypatch)
    assert v1.dtype == v0.dtype == dtype and g1.dtype == dtype
    tol = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6),
           torch.bfloat16: dict(rtol=1e-2, atol=1e-3)}[dtype]
    torch.testing.assert_close(v1, v0, **tol)
    torch.testing.assert_close(g1, g0, **tol)
    assert float(g1.abs().sum()) > 0


@pytest.mark.parametrize("case", ["ce-weights-smoothing", "ce-zero-negative-weight", "ce-ignore-none",
                                  "ce-multilabel", "focal-alpha-ignore", "focal-multilabel-none", "dpce"])
def test_fused_bernoulli_gradcheck(case):
    fn, mode, kw = FUSED_CASES[case]
    x, _ = _pair((2, 3, 2, 3), mode, seed=3)
    t = _bernoulli_target(mode, "soft", "ignore_index" in kw, shape=(2, 3, 2, 3))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: fn(z, t, mode=mode, check_values=False, **kw), (x,))


def test_fused_bernoulli_hand_values():
    # x = 0: q = 1/2. CE: ln 2 per outcome; focal gamma=2: (1/2)^2 ln 2; weights scale
    # the outcome they belong to; the gradient of CE is q - g = -1/2 (g = 1) or +1/2 (g = 0)
    x = torch.zeros(1, 1, 2, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1, 0]])
    v = F.cross_entropy_loss(x, y, class_weights=[0.5, 3.0], reduction="none")
    torch.testing.assert_close(v, torch.tensor([[3 * math.log(2), 0.5 * math.log(2)]], dtype=torch.float64))
    v.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[[-1.5, 0.25]]], dtype=torch.float64))
    x.grad = None
    # focal gamma=2, positive: d/dx [-(1-q)^2 log q] = 2 q (1-q)^2 log q - (1-q)^3, at q = 1/2
    # 2 (1/2)(1/4)(-ln 2) - 1/8 = -(ln 2)/4 - 1/8; the negative outcome, -q^2 log(1-q), mirrors it
    v = F.focal_loss(x, y, reduction="sum")
    assert float(v.detach()) == pytest.approx(2 * 0.25 * math.log(2), rel=1e-12)
    v.backward()
    d = -math.log(2) / 4 - 1 / 8
    torch.testing.assert_close(x.grad, torch.tensor([[[d, -d]]], dtype=torch.float64))


def test_fused_bernoulli_retain_graph_no_grad_and_saturation():
    x, t = _pair((2, 3, 4, 5), "multilabel", dtype=torch.float32)
    z = x.clone().requires_grad_(True)
    v = F.focal_loss(z, t, mode="multilabel", alpha=0.3)
    v.backward(retain_graph=True)
    first = z.grad.clone()
    v.backward()  # the kept gradient is not consumed by the first backward
    torch.testing.assert_close(z.grad, 2 * first)
    with torch.no_grad():
        torch.testing.assert_close(F.focal_loss(z, t, mode="multilabel", alpha=0.3), v.detach())
    # the "none" map is an ordinary tensor: an in-place change keeps the gradient right
    for mode, tt, zz in (("multilabel", t, z), ("binary", t[:, 0], z[:, :1])):
        for fn in (F.cross_entropy_loss, F.focal_loss):
            zl = zz.detach().clone().requires_grad_(True)
            m = fn(zl, tt, mode=mode, reduction="none")
            m.mul_(2).sum().backward()
            ref = zl.grad.clone()
            zl.grad = None
            fn(zl, tt, mode=mode, reduction="none").sum().backward()
            torch.testing.assert_close(ref, 2 * zl.grad)
    # saturated logits: finite values and gradients in every branch
    for kw in ({}, {"class_weights": [0.0, 2.0]}, {"gamma": 0.5}, {"gamma": 2.0, "alpha": 0.25}):
        fn = F.focal_loss if "gamma" in kw else F.cross_entropy_loss
        xs = (torch.sign(x[:, :1]) * 1e4).requires_grad_(True)
        out = fn(xs, t[:, 0], **kw)
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(xs.grad).all()


def test_fused_bernoulli_not_used_for_a_target_with_gradient():
    # a soft target that requires grad (e.g. a teacher's output) keeps its gradient: the
    # autograd form runs, and its input gradient equals the kernel's
    x, _ = _pair((2, 1, 4, 5), "binary")
    soft = torch.rand(2, 4, 5, dtype=torch.float64, requires_grad=True)
    z = x.clone().requires_grad_(True)
    F.cross_entropy_loss(z, soft, class_weights=[0.5, 2.0]).backward()
    assert soft.grad is not None and float(soft.grad.abs().sum()) > 0
    z2 = x.clone().requires_grad_(True)
    F.cross_entropy_loss(z2, soft.detach(), class_weights=[0.5, 2.0]).backward()
    torch.testing.assert_close(z.grad, z2.grad)


# ------------------------------------------------------------------ shared behaviour


@pytest.mark.parametrize("name", sorted(PIXELWISE))
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_gradcheck(name, mode):
    x, t = _pair((2, 2, 2, 3), mode)
    x.requires_grad_(True)
    fn = PIXELWISE[name]
    kw = {"k": 40} if name == "topk" else {}
    kw["class_weights"] = "inverse_frequency" if name != "dpce" else None
    assert torch.autograd.gradcheck(lambda z: fn(z, t, mode=mode, check_values=False, **kw), (x,))


@pytest.mark.parametrize("name", sorted(PIXELWISE))
@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_reductions_empty_and_ignored(name, shape):
    fn = PIXELWISE[name]
    x, t = _pair(shape, "multiclass")
    b, s = shape[0], shape[2:]
    none = fn(x, t, mode="multiclass", reduction="none")
    assert none.shape == (b,) + s
    torch.testing.assert_close(fn(x, t, mode="multiclass", reduction="sum"), none.sum())
    if name != "topk":
        torch.testing.assert_close(fn(x, t, mode="multiclass"), none.mean())
    # empty masks (every pixel background): finite value, finite gradient
    z = x.clone().requires_grad_(True)
    v = fn(z, torch.zeros_like(t), mode="multiclass")
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(z.grad).all()
    # every pixel ignored: 0 and zero gradient
    z.grad = None
    v = fn(z, torch.full_like(t, 255), mode="multiclass", ignore_index=255)
    v.backward()
    assert float(v.detach()) == 0.0 and float(z.grad.abs().sum()) == 0.0
    # ignore_index == cropping the ignored pixels away (here: the last image)
    t2 = t.clone()
    t2[-1] = 255
    torch.testing.assert_close(fn(x, t2, mode="multiclass", ignore_index=255), fn(x[:-1], t[:-1], mode="multiclass"))


@pytest.mark.parametrize("name", sorted(PIXELWISE))
def test_minimum_at_truth_and_half_precision(name):
    fn = PIXELWISE[name]
    _, t = _pair((2, 3, 4, 5), "multiclass")
    onehot = TF.one_hot(t, 3).movedim(-1, 1).double()
    kw = {"mode": "multiclass"}
    perfect = fn(20 * (2 * onehot - 1), t, **kw)
    assert 0.0 <= float(perfect) < 1e-6
    for other in (torch.zeros_like(onehot), torch.randn_like(onehot)):
        assert float(fn(other, t, **kw)) > float(perfect)
    x, _ = _pair((2, 3, 4, 5), "multiclass", dtype=torch.float32)
    for dt in (torch.float16, torch.bfloat16):
        v = fn(x.to(dt), t, **kw)
        assert v.dtype == dt and torch.isfinite(v)
        assert float(v) == pytest.approx(float(fn(x, t, **kw)), rel=2e-2)


def test_module_forms_equal_functions():
    x, t = _pair((2, 3, 4, 5), "multiclass")
    cases = [
        (sl.CrossEntropyLoss(mode="multiclass", label_smoothing=0.1), F.cross_entropy_loss, {"label_smoothing": 0.1}),
        (sl.TopKLoss(mode="multiclass", k=30), F.topk_loss, {"k": 30}),
        (sl.FocalLoss(mode="multiclass", gamma=1.0), F.focal_loss, {"gamma": 1.0}),
        (sl.DistancePenalizedCELoss(mode="multiclass"), F.distance_penalized_ce_loss, {}),
    ]
    for module, fn, kw in cases:
        torch.testing.assert_close(module(x, t), fn(x, t, mode="multiclass", **kw))
    m = sl.CrossEntropyLoss(class_weights="inverse_frequency")
    assert m.config["class_weights"] == "inverse_frequency"
    assert sl.CrossEntropyLoss(class_weights=torch.tensor([1, 2])).config["class_weights"] == (1.0, 2.0)


def test_errors():
    x, t = _pair((1, 3, 2, 3), "multiclass")
    with pytest.raises(ValueError, match=r"`label_smoothing` must lie in \[0, 1\); got 1.0"):
        F.cross_entropy_loss(x, t, mode="multiclass", label_smoothing=1.0)
    with pytest.raises(ValueError, match="`weight_norm` must be one of 'pixels', 'weights'; got 'pixel' "
                                         r"\(did you mean 'pixels'\?\)"):
        F.cross_entropy_loss(x, t, mode="multiclass", weight_norm="pixel")
    with pytest.raises(ValueError, match=r"`class_weights` must hold one weight per class kept by the loss \(3\)"):
        F.cross_entropy_loss(x, t, mode="multiclass", class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="`class_weights` must be one of 'inverse_frequency', "
                                         "'sqrt_inverse_frequency'; got 'inverse'"):
        F.focal_loss(x, t, mode="multiclass", class_weights="inverse")
    with pytest.raises(ValueError, match="`gamma` must be a finite number >= 0; got -1.0"):
        F.focal_loss(x, t, mode="multiclass", gamma=-1)
    with pytest.raises(ValueError, match=r"`alpha` must lie in \[0, 1\]; got 1.5"):
        F.focal_loss(x, t, mode="multiclass", alpha=1.5)
    with pytest.raises(ValueError, match=r"`target` labels must lie in \[0, 2\]"):
        F.distance_penalized_ce_loss(x, t + 1, mode="multiclass")
    with pytest.raises(ValueError, match="`spacing`"):
        F.distance_penalized_ce_loss(x, t, mode="multiclass", spacing=(1.0, -1.0))
    with pytest.raises(TypeError, match="unexpected keyword argument 'gama' \\(did you mean 'gamma'\\?\\)"):
        sl.FocalLoss(gama=2)
