"""A soft target that requires grad (distillation, a teacher's soft labels): never dropped silently.

Every registered loss either passes the exact gradient to the target (checked against
finite differences in float64), or refuses such a target with a ValueError naming
``target``, or does not depend on the target at all (the regularisers).
"""
from __future__ import annotations

import inspect

import pytest
import torch

import seglosses as sl
from seglosses import functional as F
from seglosses._inputs import canonicalize
from seglosses._stats import MOMENTS, _Moments, moments
from seglosses.registry import ENTRIES, resolve

REFUSED = "`target` must not require grad here: "
# losses that read the target through a transform without a gradient, and why
REFUSES = {"boundary", "hausdorff_dt", "log_hausdorff_dt", "distance_penalized_ce", "margin_calibration",
           "skeleton_recall"}
# losses that do not read the target's values (only its ignore mask)
TARGET_FREE = {"label_noise_penalty", "confidence_penalty"}


def _params(name):
    return inspect.signature(resolve(name).cls).parameters


def _soft_pair(mode, shape=(2, 3, 4), c=3):
    b, *s = shape
    if mode == "binary":
        x = torch.randn(b, 1, *s, dtype=torch.float64)
        t = torch.rand(b, 1, *s, dtype=torch.float64) * 0.8 + 0.1
    elif mode == "multilabel":
        x = torch.randn(b, c, *s, dtype=torch.float64)
        t = torch.rand(b, c, *s, dtype=torch.float64) * 0.8 + 0.1
    else:
        x = torch.randn(b, c, *s, dtype=torch.float64)
        t = torch.softmax(torch.randn(b, c, *s, dtype=torch.float64), 1)
    return x, t


def _modes(name):
    ps = _params(name)
    if "mode" not in ps:
        return ["multiclass"]
    out = []
    for mode in ("binary", "multiclass", "multilabel"):
        x, t = _soft_pair(mode)
        try:
            resolve(name).cls(mode=mode)(x, t)
        except ValueError:
            continue
        out.append(mode)
    return out


_CASES = [(e.name, mode) for e in ENTRIES for mode in _modes(e.name)]


def _configs(name):
    """Default settings, and the batch domain / a fixed class weighting where the loss has them."""
    ps = _params(name)
    out = [{}]
    if "domain" in ps:
        out.append({"domain": "batch"})
    if "class_weights" in ps and ps["class_weights"].default is not None:
        out.append({"class_weights": None})  # exp_log: its default weights come from the target's counts
    return out


@pytest.mark.parametrize("name, mode", _CASES)
def test_every_loss_passes_the_exact_target_gradient_or_refuses(name, mode):
    for extra in _configs(name):
        kw = dict(extra, **({"mode": mode} if "mode" in _params(name) else {}))
        loss = resolve(name).cls(**kw)
        x, t = _soft_pair(mode)
        tg = t.clone().requires_grad_()
        try:
            value = loss(x, tg)
        except ValueError as e:
            assert str(e).startswith(REFUSED), str(e)
            assert "(pass target.detach() to use it as a constant)" in str(e)
            refused_by_design = name in REFUSES or "class_weights=" in str(e)
            assert refused_by_design, f"{name} {kw} refuses a target that requires grad: {e}"
            # and the same call with a constant target works
            assert torch.isfinite(loss(x, t))
            continue
        assert name not in REFUSES, f"{name} {kw} took a target that requires grad"
        if name in TARGET_FREE:
            assert not value.requires_grad
            assert torch.equal(loss(x, t), loss(x, (t * 0.5 + 0.25).detach()))
            continue
        assert value.requires_grad, f"{name} {kw}: the target's gradient was dropped"
        assert torch.autograd.gradcheck(lambda tt: loss(x, tt), (tg,), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True), (name, kw)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_gradients_flow_into_the_input_and_the_target_together(mode):
    x, t = _soft_pair(mode)
    for name in ("dice", "tversky", "lovasz", "cross_entropy", "combo", "generalized_dice"):
        loss = resolve(name).cls(mode=mode)
        xg, tg = x.clone().requires_grad_(), t.clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda a, b: loss(a, b), (xg, tg), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True), name


def _reference_moments(p, g, w, names):
    """The moments as plain autograd sums over the pixels (the oracle)."""
    w = torch.ones_like(p[:, :1]) if w is None else w.unsqueeze(1).to(p.dtype)
    terms = {"p": p, "g": g, "pg": p * g, "pp": p * p, "gg": g * g, "ppg": p * p * g, "pgg": p * g * g,
             "ggg": g * g * g, "absdiff": (p - g).abs(), "n": torch.ones_like(p)}
    return [(terms[k] * w).sum(-1) for k in names]


@pytest.mark.parametrize("kernel", ["eager", "traced"])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax", "none"])
@pytest.mark.parametrize("masked", [False, True])
def test_kernel_target_gradient_matches_autograd(kernel, activation, masked):
    """Every moment's gradient w.r.t. a dense target, in the eager kernel and in the fused
    form (the one ``torch.compile`` traces and the compiled kernel runs), against the
    autograd form of the same sums; gradcheck in float64."""
    torch.manual_seed(1)
    b, c, n = 2, 3, 7
    x = torch.randn(b, c, n, dtype=torch.float64)
    if activation == "none":
        x = torch.rand(b, c, n, dtype=torch.float64)
    g = torch.rand(b, c, n, dtype=torch.float64)
    valid = (torch.rand(b, n) > 0.3) if masked else None
    names = tuple(MOMENTS)
    coef = torch.randn(len(names), b, c, dtype=torch.float64)

    def kernel_form(xx, gg):
        out = _Moments.apply(xx, None, gg, valid, activation, names, kernel, 0)
        return sum((o * k).sum() for o, k in zip(out, coef))

    def reference(xx, gg):
        p = {"sigmoid": torch.sigmoid, "softmax": lambda v: torch.softmax(v, 1), "none": lambda v: v}[activation](xx)
        return sum((o * k).sum() for o, k in zip(_reference_moments(p, gg, valid, names), coef))

    xg, gg = x.clone().requires_grad_(), g.clone().requires_grad_()
    assert torch.autograd.gradcheck(kernel_form, (xg, gg), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)
    got = torch.autograd.grad(kernel_form(xg, gg), (xg, gg))
    want = torch.autograd.grad(reference(xg, gg), (xg, gg))
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)
    # only the target requires grad: the kernel passes its gradient alone
    (only_g,) = torch.autograd.grad(kernel_form(x, gg), (gg,))
    torch.testing.assert_close(only_g, want[1], rtol=1e-10, atol=1e-12)


def test_dice_target_gradient_by_hand():
    # binary Dice over two pixels, p = (0.8, 0.4) (probabilities), g = (a, b) soft:
    # L = 1 - 2(0.8a + 0.4b)/(1.2 + a + b); dL/da = -(2*0.8*(1.2+a+b) - 2(0.8a+0.4b))/(1.2+a+b)^2
    p = torch.tensor([[[0.8, 0.4]]], dtype=torch.float64)
    g = torch.tensor([[[0.6, 0.3]]], dtype=torch.float64, requires_grad=True)
    loss = F.dice_loss(p, g, from_logits=False, smooth=0.0)
    loss.backward()
    s, tp = 1.2 + 0.9, 0.8 * 0.6 + 0.4 * 0.3
    expect = [-(2 * pi * s - 2 * tp) / s**2 for pi in (0.8, 0.4)]
    torch.testing.assert_close(g.grad.flatten(), torch.tensor(expect, dtype=torch.float64))


def test_frequency_weights_from_the_target_are_refused_with_a_soft_target_that_requires_grad():
    x, t = _soft_pair("multiclass")
    tg = t.clone().requires_grad_()
    for cls in (sl.CrossEntropyLoss, sl.FocalLoss, sl.TopKLoss):
        with pytest.raises(ValueError, match=r"^`target` must not require grad here: "
                                             r"class_weights='inverse_frequency' are computed from the target's class "
                                             r"counts, a constant, which has no gradient; got a target with "
                                             r"requires_grad=True \(pass target.detach\(\) to use it as a constant\)$"):
            cls(mode="multiclass", class_weights="inverse_frequency")(x, tg)
        # fixed weights: the exact gradient
        loss = cls(mode="multiclass", class_weights=[1.0, 2.0, 0.5])
        assert torch.autograd.gradcheck(lambda tt: loss(x, tt), (tg,), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("name, why", [
    ("boundary", "the boundary loss reads the target through distance maps of its mask"),
    ("hausdorff_dt", "the Hausdorff-DT loss reads the target through distance maps of its mask"),
    ("distance_penalized_ce", "the distance-penalised CE weighs pixels by a distance map of the target's regions"),
    ("margin_calibration", "the margin loss reads the target as a label map (and its margin offsets from the label "
                           "counts)"),
])
def test_non_differentiable_target_transforms_refuse_with_the_reason(name, why):
    x, t = _soft_pair("binary")
    msg = (f"`target` must not require grad here: {why}, which has no gradient; got a target with "
           f"requires_grad=True (pass target.detach() to use it as a constant)")
    with pytest.raises(ValueError, match="^" + __import__("re").escape(msg) + "$"):
        resolve(name).cls(mode="binary")(x, t.clone().requires_grad_())
    # under no_grad nothing is differentiated: the value is computed
    with torch.no_grad():
        assert torch.isfinite(resolve(name).cls(mode="binary")(x, t.clone().requires_grad_()))


def test_canonical_target_keeps_its_graph():
    # the canonical dense target is a differentiable view of the given one (binary [B, 1, *S] and [B, *S])
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    for t in (torch.rand(2, 1, 3, 3, dtype=torch.float64), torch.rand(2, 3, 3, dtype=torch.float64)):
        tg = t.requires_grad_()
        canon = canonicalize(x, tg, mode="binary")
        assert canon.dense.requires_grad
        m = moments(canon, ("pg", "g"))
        assert m["pg"].requires_grad and m["g"].requires_grad


@pytest.mark.slow
@pytest.mark.parametrize("soft_form", [False, True])
def test_compiled_kernel_passes_the_same_target_gradient(soft_form):
    """``set_kernel("compiled")``: the fused forward/backward through torch.compile, and the
    target's gradient from the same expression as the eager kernel."""
    x, t = _soft_pair("multiclass", shape=(2, 6, 5))
    loss = sl.TverskyLoss(mode="multiclass", alpha=0.4, beta=0.6, soft_form=soft_form)
    grads = {}
    for kernel in ("eager", "compiled"):
        with sl.use_kernel(kernel):
            xg, tg = x.clone().requires_grad_(), t.clone().requires_grad_()
            loss(xg, tg).backward()
            grads[kernel] = (xg.grad, tg.grad)
    for a, b in zip(grads["eager"], grads["compiled"]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
