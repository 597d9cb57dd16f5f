"""Lovász hinge and Lovász-softmax (Berman et al. 2018).

Oracles: hand derivations (in the comments), the Lovász extension of the Jaccard
set function computed two independent ways in plain Python (the maximum over all
permutations, valid because the Jaccard loss is submodular, and the Choquet
integral), a per-image, per-class reference loop built on them, and (marker
``peers``) kornia's ``lovasz_hinge_loss`` / ``lovasz_softmax_loss``.
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch

import seglosses as sl
from seglosses import functional as F
from seglosses.registry import resolve

SHAPES = [(2, 3, 5, 7), (2, 3, 4, 5, 6)]  # 2D and 3D, C != any spatial size, odd sizes


# --------------------------------------------------------------------------- plain-Python oracles


def jaccard_set_loss(M, G):
    """Δ_J(M) = |M| / |G ∪ M| with Δ(∅) = 0 (M, G sets of pixel indices)."""
    if not M:
        return 0.0
    return len(M) / len(G | M)


def extension_by_permutations(m, g):
    """max over all orders π of Σ_i m⁺_π(i) (Δ(π_1..π_i) − Δ(π_1..π_{i−1})): the Lovász
    extension of a submodular Δ (the decreasing order attains the maximum)."""
    mp = [max(v, 0.0) for v in m]
    G = {i for i, v in enumerate(g) if v}
    best = -math.inf
    for perm in itertools.permutations(range(len(m))):
        total, prefix, prev = 0.0, set(), 0.0
        for i in perm:
            prefix = prefix | {i}
            cur = jaccard_set_loss(prefix, G)
            total += mp[i] * (cur - prev)
            prev = cur
        best = max(best, total)
    return best


def extension_by_choquet(m, g):
    """∫_0^∞ Δ({i : m_i ≥ t}) dt for the clipped errors (the Choquet integral form)."""
    mp = [max(v, 0.0) for v in m]
    G = {i for i, v in enumerate(g) if v}
    levels = sorted(set(v for v in mp if v > 0), reverse=True) + [0.0]
    total = 0.0
    for k in range(len(levels) - 1):
        level_set = {i for i, v in enumerate(mp) if v >= levels[k]}
        total += (levels[k] - levels[k + 1]) * jaccard_set_loss(level_set, G)
    return total


def reference_lovasz(x, t, *, mode, from_logits=True, classes="present", domain="image",
                     include_background=True, ignore_index=None, class_weights=None):
    """Per-paper loop: errors per (image, class), ignored pixels dropped, Choquet extension."""
    x = x.double()
    b, c = x.shape[:2]
    xf = x.reshape(b, c, -1)
    if mode == "multiclass":
        p = torch.softmax(xf, 1) if from_logits else xf
        lab = t.reshape(b, -1)
        valid = torch.ones_like(lab, dtype=torch.bool) if ignore_index is None else lab != ignore_index
        g = torch.stack([(lab == k).double() for k in range(c)], 1)
    else:
        tt = t.reshape(b, c, -1) if t.dim() == x.dim() else t.reshape(b, 1, -1)
        valid = torch.ones(b, xf.shape[-1], dtype=torch.bool) if ignore_index is None else (tt != ignore_index).all(1)
        g = torch.where(tt == ignore_index, 0, tt).double() if ignore_index is not None else tt.double()
        p = xf
    first = 0 if (include_background or mode == "binary") else 1
    ks = list(range(first, c)) if isinstance(classes, str) else list(classes)
    items = [[bi] for bi in range(b)] if domain == "image" else [list(range(b))]
    out = []
    for imgs in items:
        num = den = 0.0
        for k in ks:
            errs, gs = [], []
            for bi in imgs:
                for i in range(xf.shape[-1]):
                    if not valid[bi, i]:
                        continue
                    gv = float(g[bi, k, i])
                    if mode == "multiclass" or not from_logits:
                        errs.append(abs(gv - float(p[bi, k, i])))
                    else:
                        errs.append(1 - float(xf[bi, k, i]) * (2 * gv - 1))
                    gs.append(gv)
            present = sum(gs) > 0
            w = 1.0 if class_weights is None else class_weights[k - first]
            if mode == "binary" or classes != "present" or present:
                num += w * extension_by_choquet(errs, gs)
                den += w
        out.append(num / den if den > 0 else 0.0)
    return torch.tensor(out, dtype=torch.float64)


def _pair(shape, mode, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    b, c = shape[:2]
    s = shape[2:]
    if mode == "binary":
        return torch.randn((b, 1) + s, generator=gen, dtype=dtype), torch.randint(0, 2, (b,) + s, generator=gen)
    if mode == "multiclass":
        return torch.randn(shape, generator=gen, dtype=dtype), torch.randint(0, c, (b,) + s, generator=gen)
    return torch.randn(shape, generator=gen, dtype=dtype), torch.randint(0, 2, shape, generator=gen)


# --------------------------------------------------------------------------- the extension itself


def test_oracles_agree_with_each_other():
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        n = int(torch.randint(1, 6, (1,), generator=gen))
        m = (torch.randn(n, generator=gen) * 2).tolist()
        g = torch.randint(0, 2, (n,), generator=gen).tolist()
        assert extension_by_permutations(m, g) == pytest.approx(extension_by_choquet(m, g), abs=1e-12)


def test_extension_hand_value():
    # errors (0.9, 0.2, 0.5, 0.0), positives {0, 1}; decreasing order 0(+), 2(-), 1(+), 3(-)
    # Δ of the prefixes: |M|/|G ∪ M| = 1/2, 2/3, 3/3, 4/4 -> increments 1/2, 1/6, 1/3, 0
    # extension: 0.9/2 + 0.5/6 + 0.2/3 + 0 = 0.45 + 0.08333 + 0.06667 = 0.6
    e = torch.tensor([[0.9, 0.2, 0.5, 0.0]], dtype=torch.float64)
    g = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    assert float(F.lovasz_extension(e, g)) == pytest.approx(0.6, abs=1e-15)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_extension_matches_brute_force_over_permutations(n):
    gen = torch.Generator().manual_seed(n)
    m = torch.randn(12, n, generator=gen, dtype=torch.float64) * 1.5
    g = torch.randint(0, 2, (12, n), generator=gen).double()
    g[0] = 0  # a row without positives
    g[1] = 1  # a row of positives only
    m[2, :] = 0.7  # all errors tied
    ours = F.lovasz_extension(m, g)
    ref = torch.tensor([extension_by_permutations(m[r].tolist(), g[r].tolist()) for r in range(12)],
                       dtype=torch.float64)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_extension_row_without_positives_is_the_largest_error():
    # Δ_J(M) = |M|/|M| = 1 for every non-empty M when G = ∅: increments (1, 0, 0, ...)
    e = torch.tensor([[0.3, -0.5, 1.7, 0.2], [-1.0, -2.0, -0.5, -3.0]], dtype=torch.float64)
    g = torch.zeros_like(e)
    torch.testing.assert_close(F.lovasz_extension(e, g), torch.tensor([1.7, 0.0], dtype=torch.float64))


def test_extension_minus_infinity_pixels_are_left_out():
    e = torch.tensor([[0.4, -math.inf, 0.9, -math.inf]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    out = F.lovasz_extension(e, g)
    out.backward()
    out = out.detach()
    # same as the row (0.4, 0.9) with positives {0}: order 0.9(-), 0.4(+): Δ 1/2, 2/2 -> 0.45 + 0.2
    assert float(out) == pytest.approx(0.65, abs=1e-15)
    assert torch.equal(e.grad, torch.tensor([[0.5, 0.0, 0.5, 0.0]], dtype=torch.float64))
    # a row of left-out pixels only scores 0 with a zero gradient
    e2 = torch.full((1, 3), -math.inf, dtype=torch.float64, requires_grad=True)
    out2 = F.lovasz_extension(e2, torch.zeros(1, 3, dtype=torch.float64))
    out2.backward()
    assert float(out2.detach()) == 0.0 and torch.equal(e2.grad, torch.zeros(1, 3, dtype=torch.float64))


def test_extension_gradient_is_the_increments():
    # d/dm_(i) = Δ(π_1..π_i) − Δ(π_1..π_{i−1}) for positive errors
    e = torch.tensor([[0.9, 0.2, 0.5, 0.1]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    F.lovasz_extension(e, g).backward()
    # order 0(+), 2(-), 1(+), 3(-): increments 1/2, 1/6, 1/3, 0, scattered back to pixels 0, 2, 1, 3
    torch.testing.assert_close(e.grad, torch.tensor([[1 / 2, 1 / 3, 1 / 6, 0.0]], dtype=torch.float64))


def test_extension_float32_long_rows_stay_accurate():
    gen = torch.Generator().manual_seed(3)
    e = torch.rand(2, 200_000, generator=gen, dtype=torch.float64)
    g = (torch.rand(2, 200_000, generator=gen) < 0.05).double()
    ref = F.lovasz_extension(e, g)
    ours = F.lovasz_extension(e.float(), g.float())
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=0)


def test_extension_shape_error():
    with pytest.raises(ValueError, match="`target` must have the shape of `errors`"):
        F.lovasz_extension(torch.zeros(2, 3), torch.zeros(2, 4))


# --------------------------------------------------------------------------- hand values of the loss


def test_hinge_hand_value():
    # logits (2, -1, 0.5, -3), target (1, 1, 0, 0); hinge errors 1 - x(2g-1) = (-1, 2, 1.5, -2)
    # decreasing: 2(+), 1.5(-), -1(+), -2(-); Δ of the prefixes 1/2, 2/3, 1, 1
    # loss = 2 * 1/2 + 1.5 * 1/6 + 0 + 0 = 1.25 (negative errors are clipped at 0)
    x = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]], dtype=torch.float64)
    g = torch.tensor([[[1, 1], [0, 0]]])
    assert float(F.lovasz_loss(x, g)) == pytest.approx(1.25, abs=1e-15)
    assert float(sl.LovaszLoss()(x, g)) == pytest.approx(1.25, abs=1e-15)


def test_hinge_empty_target_is_the_largest_error():
    # no positive: the extension is max(1 + x) = 1 + 0.5 = 1.5 (paper convention)
    x = torch.tensor([[[[-2.0, 0.5], [0.0, -0.2]]]], dtype=torch.float64, requires_grad=True)
    out = F.lovasz_loss(x, torch.zeros(1, 2, 2, dtype=torch.long))
    out.backward()
    assert float(out.detach()) == pytest.approx(1.5, abs=1e-15)
    # d(1 + x)/dx at the arg max only
    assert torch.equal(x.grad, torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]], dtype=torch.float64))


def _softmax_case():
    # 3 classes, 2 pixels, labels (1, 0); probabilities per class:
    # class 0 (0.1, 0.6), class 1 (0.8, 0.3), class 2 (0.1, 0.1)
    p = torch.tensor([[[0.1, 0.6], [0.8, 0.3], [0.1, 0.1]]], dtype=torch.float64)
    return p, torch.tensor([[1, 0]])


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        # class 0: g (0,1), errors (0.1, 0.4): 0.4(+) then 0.1(-): Δ 1/1, 2/2 -> 0.4
        # class 1: g (1,0), errors (0.2, 0.3): 0.3(-) then 0.2(+): Δ 1/2, 2/2 -> 0.15 + 0.1 = 0.25
        # class 2: absent, errors (0.1, 0.1): the largest error 0.1
        ({}, (0.4 + 0.25) / 2),                                      # present: classes 0 and 1
        ({"classes": "all"}, (0.4 + 0.25 + 0.1) / 3),
        ({"classes": [2]}, 0.1),
        ({"classes": [1, 2]}, (0.25 + 0.1) / 2),
        ({"include_background": False}, 0.25),                        # present among {1, 2}
        ({"include_background": False, "classes": "all"}, (0.25 + 0.1) / 2),
        ({"classes": "all", "class_weights": [1.0, 2.0, 1.0]}, (0.4 + 2 * 0.25 + 0.1) / 4),
        ({"class_weights": [1.0, 2.0, 5.0]}, (0.4 + 2 * 0.25) / 3),     # absent class 2 weighs 0
        ({"classes": [2, 0], "class_weights": [1.0, 2.0, 4.0]}, (4 * 0.1 + 0.4) / 5),
    ],
)
def test_softmax_hand_values(kwargs, expected):
    p, t = _softmax_case()
    out = F.lovasz_loss(p, t, mode="multiclass", from_logits=False, **kwargs)
    assert float(out) == pytest.approx(expected, abs=1e-14)


def test_sigmoid_errors_with_probabilities():
    # binary, from_logits=False: errors |g - p| = (0.1, 0.7, 0.2, 0.0) for p (0.9, 0.3, 0.2, 0), g (1, 1, 0, 0)
    # decreasing 0.7(+), 0.2(-), 0.1(+), 0(-): Δ 1/2, 2/3, 1, 1 -> 0.35 + 0.2/6 + 0.1/3 = 0.41667
    p = torch.tensor([[[[0.9, 0.3], [0.2, 0.0]]]], dtype=torch.float64)
    out = F.lovasz_loss(p, torch.tensor([[[1, 1], [0, 0]]]), from_logits=False)
    assert float(out) == pytest.approx(0.35 + 0.2 / 6 + 0.1 / 3, abs=1e-14)


# --------------------------------------------------------------------------- against the reference loop


CONFIGS = [
    dict(mode="binary"),
    dict(mode="binary", domain="batch"),
    dict(mode="binary", from_logits=False),
    dict(mode="multiclass"),
    dict(mode="multiclass", domain="batch"),
    dict(mode="multiclass", classes="all"),
    dict(mode="multiclass", classes=[0, 2]),
    dict(mode="multiclass", include_background=False, class_weights=[1.0, 3.0]),
    dict(mode="multilabel"),
    dict(mode="multilabel", classes="all", domain="batch"),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_matches_reference(shape, cfg):
    x, t = _pair(shape, cfg["mode"], seed=len(shape))
    if cfg.get("from_logits") is False:
        x = torch.sigmoid(x)
    if cfg["mode"] == "multiclass":
        t[1][t[1] == 1] = 0  # class 1 absent from the second image
    elif cfg["mode"] == "multilabel":
        t[0, 2] = 0          # channel 2 empty in the first image
    ours = F.lovasz_loss(x, t, reduction="none", **cfg)
    ref = reference_lovasz(x, t, **cfg)
    torch.testing.assert_close(ours.reshape(-1), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("domain", ["image", "batch"])
def test_ignore_index_equals_the_reference_without_those_pixels(mode, domain):
    x, t = _pair((2, 3, 5, 7), mode, seed=5)
    if mode == "multilabel":
        t = t.clone()
        t[0, :, 1, :] = 255          # a row of pixels ignored in every channel
    else:
        t = t.clone()
        t[0, 1, :] = 255
        t[1, :, 2] = 255
    ours = F.lovasz_loss(x, t, mode=mode, domain=domain, ignore_index=255, reduction="none")
    ref = reference_lovasz(x, t, mode=mode, domain=domain, ignore_index=255)
    torch.testing.assert_close(ours.reshape(-1), ref, rtol=1e-12, atol=1e-12)


def test_ignore_index_changes_nothing_else_and_all_ignored_image_scores_zero():
    x, t = _pair((2, 3, 5, 7), "multiclass", seed=6)
    t = t.clone()
    t[1] = 255
    x.requires_grad_(True)
    out = F.lovasz_loss(x, t, mode="multiclass", ignore_index=255, reduction="none")
    assert float(out[1].detach()) == 0.0
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.equal(x.grad[1], torch.zeros_like(x.grad[1]))
    # the first image's value is the value of that image alone
    alone = F.lovasz_loss(x[:1].detach(), t[:1], mode="multiclass", reduction="none")
    torch.testing.assert_close(out[:1].detach(), alone)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cfg", [
    dict(mode="binary"),
    dict(mode="binary", domain="batch", ignore_index=255),
    dict(mode="multiclass"),
    dict(mode="multiclass", domain="batch", classes="all"),
    dict(mode="multiclass", ignore_index=255, include_background=False),
    dict(mode="multilabel"),
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_gradcheck(shape, cfg):
    # random float64 logits: no ties and no error exactly at 0, so the loss is smooth nearby
    x, t = _pair(shape, cfg["mode"], seed=11)
    if cfg.get("ignore_index") is not None:
        t = t.clone()
        t[0, 0] = 255
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: F.lovasz_loss(z, t, check_values=False, **cfg), (x,), eps=1e-7,
                                    atol=1e-6, fast_mode=True)
    # the full Jacobian check on a 3x4 crop of the first image
    if len(shape) == 4:
        xs = x[:1, :, :3, :4].detach().clone().requires_grad_(True)
        ts = t[:1][..., :3, :4]
        assert torch.autograd.gradcheck(lambda z: F.lovasz_loss(z, ts, check_values=False, **cfg), (xs,), eps=1e-7,
                                        atol=1e-6)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_empty_targets_give_finite_values_and_gradients(mode):
    x, _ = _pair((2, 3, 5, 7), mode, seed=2)
    x.requires_grad_(True)
    t = torch.zeros((2, 5, 7), dtype=torch.long)  # binary: no foreground; multiclass: background only
    for domain in ("image", "batch"):
        for classes in ("present", "all"):
            out = F.lovasz_loss(x, t, mode=mode, domain=domain, classes=classes)
            (g,) = torch.autograd.grad(out, x)
            assert torch.isfinite(out) and torch.isfinite(g).all()
            if mode == "binary":
                assert float(g.abs().sum()) > 0  # an empty target still pushes the false positives down
    if mode == "multiclass":
        # background left out and only background present: no class to score -> 0
        assert float(F.lovasz_loss(x.detach(), t, mode="multiclass", include_background=False)) == 0.0


# --------------------------------------------------------------------------- range and minimum


@pytest.mark.parametrize("shape", SHAPES)
def test_range_and_minimum_at_truth(shape):
    for mode in ("binary", "multilabel"):
        x, t = _pair(shape, mode, seed=4)
        g = t.double() if mode == "multilabel" else t.double().unsqueeze(1)
        # hinge: right sign with margin >= 1 gives 0; random logits give >= 0
        assert float(F.lovasz_loss(1.5 * (2 * g - 1), t, mode=mode, classes="all")) == 0.0
        assert float(F.lovasz_loss(x * 4, t, mode=mode)) >= 0.0
        # margin exactly 1 still scores 0 (error 0 is clipped)
        assert float(F.lovasz_loss(2 * g - 1, t, mode=mode, classes="all")) == 0.0
    x, t = _pair(shape, "multiclass", seed=4)
    onehot = torch.nn.functional.one_hot(t, shape[1]).movedim(-1, 1).double()
    assert float(F.lovasz_loss(onehot, t, mode="multiclass", from_logits=False, classes="all")) == 0.0
    worst = 1 - onehot  # all mass off the true class (not a distribution, but in [0, 1])
    val = float(F.lovasz_loss(worst, t, mode="multiclass", from_logits=False, classes="all", check_values=False))
    assert 0.0 <= val <= 1.0
    for scale in (0.1, 1.0, 10.0):
        v = float(F.lovasz_loss(x * scale, t, mode="multiclass"))
        assert 0.0 <= v <= 1.0


def test_reduction_shapes_and_values():
    x, t = _pair((3, 3, 5, 7), "multiclass", seed=8)
    none = F.lovasz_loss(x, t, mode="multiclass", reduction="none")
    assert none.shape == (3,)
    torch.testing.assert_close(F.lovasz_loss(x, t, mode="multiclass"), none.mean())
    torch.testing.assert_close(F.lovasz_loss(x, t, mode="multiclass", reduction="sum"), none.sum())
    assert F.lovasz_loss(x, t, mode="multiclass", domain="batch", reduction="none").shape == ()


def test_half_precision_runs_in_float32():
    x, t = _pair((2, 3, 5, 7), "multiclass", dtype=torch.float32, seed=9)
    ref = F.lovasz_loss(x.double(), t, mode="multiclass")
    out = F.lovasz_loss(x.half(), t, mode="multiclass")
    assert out.dtype == torch.float32
    assert abs(float(out) - float(ref)) < 1e-2


# --------------------------------------------------------------------------- errors, module, registry


def test_bad_classes():
    x, t = _pair((2, 3, 5, 7), "multiclass")
    for bad in ("some", [], [3], [0, 0], [True], (1.0,)):
        with pytest.raises(ValueError, match="`classes` must be 'present', 'all' or a non-empty list"):
            F.lovasz_loss(x, t, mode="multiclass", classes=bad)
    with pytest.raises(ValueError, match=r"in \[1, 2\] \(include_background=False leaves out class 0\)"):
        F.lovasz_loss(x, t, mode="multiclass", classes=[0], include_background=False)


def test_bad_options_and_inputs():
    x, t = _pair((2, 3, 5, 7), "multiclass")
    with pytest.raises(ValueError, match="`domain` must be one of 'image', 'batch'; got 'batches'"):
        F.lovasz_loss(x, t, mode="multiclass", domain="batches")
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        F.lovasz_loss(x, t, mode="multiclass", reduction="avg")
    with pytest.raises(ValueError, match="`input` must have 1 channel in binary mode"):
        F.lovasz_loss(x, t)
    with pytest.raises(ValueError, match="`class_weights` must hold one weight per class"):
        F.lovasz_loss(x, t, mode="multiclass", class_weights=[1.0, 2.0])
    xb, tb = _pair((2, 3, 5, 7), "binary")
    with pytest.raises(ValueError, match=r"`class_weights` must hold one weight per class kept by the loss \(1\)"):
        F.lovasz_loss(xb, tb, class_weights=[1.0, 2.0])
    torch.testing.assert_close(F.lovasz_loss(xb, tb, class_weights=[3.0]), F.lovasz_loss(xb, tb))
    with pytest.raises(TypeError, match="unexpected keyword argument 'clases'"):
        sl.LovaszLoss(clases="all")


def test_module_and_registry():
    x, t = _pair((2, 3, 4, 5, 6), "multiclass")
    loss = sl.LovaszLoss(mode="multiclass", classes="all", domain="batch")
    torch.testing.assert_close(loss(x, t), F.lovasz_loss(x, t, mode="multiclass", classes="all", domain="batch"))
    for alias in ("lovasz", "lovasz_hinge", "lovasz_softmax", "lovasz_loss"):
        assert resolve(alias).cls is sl.LovaszLoss
    assert resolve("lovasz").family == "lovasz"
    assert sl.LovaszLoss.info.value_range == (0.0, math.inf) and sl.LovaszLoss.info.minimum_at_truth
    built = sl.build_loss("lovasz_softmax(mode='multiclass', classes=[1, 2])")
    torch.testing.assert_close(built(x, t), F.lovasz_loss(x, t, mode="multiclass", classes=[1, 2]))


# --------------------------------------------------------------------------- peers


@pytest.mark.peers
@pytest.mark.parametrize("seed", [0, 1])
def test_kornia_lovasz_hinge(seed):
    # kornia: one extension per image on the hinge errors, mean over the batch = domain="image"
    kornia = pytest.importorskip("kornia")
    x, t = _pair((4, 1, 9, 13), "binary", seed=seed)
    t[0] = 0  # an image without foreground: both take the largest error
    ref = kornia.losses.lovasz_hinge_loss(x, t)
    torch.testing.assert_close(F.lovasz_loss(x, t), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.peers
@pytest.mark.parametrize("seed", [0, 1])
def test_kornia_lovasz_softmax(seed):
    # kornia: per image, the mean over all C classes (absent ones too), then the batch mean
    # = classes="all", domain="image"; its `weight` divides by C, ours by the summed weights
    kornia = pytest.importorskip("kornia")
    x, t = _pair((3, 4, 9, 13), "multiclass", seed=seed)
    t[0][t[0] == 2] = 1  # class 2 absent from one image
    ref = kornia.losses.lovasz_softmax_loss(x, t)
    torch.testing.assert_close(F.lovasz_loss(x, t, mode="multiclass", classes="all"), ref, rtol=1e-12, atol=1e-12)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    ref_w = kornia.losses.lovasz_softmax_loss(x, t, weight=w)
    ours_w = F.lovasz_loss(x, t, mode="multiclass", classes="all", class_weights=w.tolist())
    torch.testing.assert_close(ours_w * w.sum() / w.numel(), ref_w, rtol=1e-12, atol=1e-12)
