"""The spatial ``mask=`` argument of the region losses and the overlap metrics.

A bool mask leaves pixels out exactly as ``ignore_index`` does (and combines with it); a
float mask weighs every sum of the statistics kernel by the pixel's weight; a mask of
ones changes nothing. Also: the shapes accepted (``[B, 1, *S]``, ``[B, *S]``, a batch of
1), the errors naming ``mask``, gradients (gradcheck in float64, the fused form), the
module forms, the pixel-weighted mean of ``reduce_pixels``, and MONAI's
``MaskedDiceLoss`` where the conventions match.
"""
from __future__ import annotations

import pytest
import torch

import seglosses
import seglosses.metrics
from seglosses import registry
from seglosses._fused import fused_backward, fused_forward
from seglosses._inputs import canonicalize
from seglosses._reduce import reduce_pixels
from seglosses._stats import _Moments
from seglosses.metrics import overlap as overlap_metrics

REGION = [e for e in registry.ENTRIES if e.family == "region"]
METRICS = [overlap_metrics.dice, overlap_metrics.jaccard, overlap_metrics.tversky_index,
           overlap_metrics.sensitivity, overlap_metrics.specificity, overlap_metrics.precision,
           overlap_metrics.pixel_accuracy]
METRICS += [getattr(seglosses.metrics, n) for n in ("matthews_correlation", "f_beta", "generalized_dice_score")
            if hasattr(seglosses.metrics, n)]


def _data(spatial=(6, 7), c=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, *spatial, generator=g, dtype=dtype)
    t = torch.randint(0, c, (2, *spatial), generator=g)
    keep = torch.rand(2, *spatial, generator=g) > 0.3
    w = torch.rand(2, *spatial, generator=g, dtype=dtype) * 2
    return x, t, keep, w


def _value_grad(fn, x, *args, **kw):
    x = x.detach().clone().requires_grad_()
    v = fn(x, *args, **kw)
    v.sum().backward()
    return v.detach(), x.grad


@pytest.mark.parametrize("entry", REGION, ids=lambda e: e.name)
@pytest.mark.parametrize("domain", ["image", "batch"])
def test_bool_mask_equals_ignore_index_for_every_region_loss(entry, domain):
    fn = entry.cls.function
    x, t, keep, _ = _data()
    ignored = torch.where(keep, t, torch.full_like(t, 255))
    kw = dict(mode="multiclass", domain=domain, reduction="none")
    want = _value_grad(fn, x, ignored, ignore_index=255, **kw)
    for mask in (keep, keep.unsqueeze(1), keep.double()):
        got = _value_grad(fn, x, t, mask=mask, **kw)
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("entry", REGION, ids=lambda e: e.name)
def test_mask_of_ones_changes_nothing_and_combines_with_ignore_index(entry):
    fn = entry.cls.function
    x, t, keep, _ = _data(seed=1)
    t[0, 0, :3] = 255
    kw = dict(mode="multiclass", ignore_index=255, reduction="none")
    want = _value_grad(fn, x, t, **kw)
    for ones in (torch.ones_like(keep), torch.ones(2, 1, 6, 7, dtype=torch.float64)):
        torch.testing.assert_close(_value_grad(fn, x, t, mask=ones, **kw), want)
    # both: a pixel left out by either is left out
    both = torch.where(keep, t, torch.full_like(t, 255))
    torch.testing.assert_close(_value_grad(fn, x, t, mask=keep, **kw), _value_grad(fn, x, both, **kw))


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("pred_kind", ["probs", "labels"])
def test_bool_mask_equals_ignore_index_for_overlap_metrics(metric, pred_kind):
    x, t, keep, w = _data(seed=2)
    pred = x.softmax(1) if pred_kind == "probs" else x.argmax(1)
    kw = dict(mode="multiclass", reduction="none", num_classes=3)
    ignored = torch.where(keep, t, torch.full_like(t, 255))
    want = metric(pred, ignored, ignore_index=255, **kw)
    torch.testing.assert_close(metric(pred, t, mask=keep, **kw), want)
    torch.testing.assert_close(metric(pred, t, mask=torch.ones_like(keep), **kw), metric(pred, t, **kw))
    # weights: the counts are weighted sums (dice = 2 Σw tp / Σw (2 tp + fp + fn))
    if metric is overlap_metrics.dice:
        hard = torch.nn.functional.one_hot(pred if pred_kind == "labels" else pred.argmax(1), 3).movedim(-1, 1)
        onehot = torch.nn.functional.one_hot(t, 3).movedim(-1, 1)
        ww = w.unsqueeze(1)
        tp = (ww * hard * onehot).sum((2, 3))
        ref = 2 * tp / ((ww * hard).sum((2, 3)) + (ww * onehot).sum((2, 3)))
        got = metric(pred, t, mask=w, **kw)
        torch.testing.assert_close(got, ref.to(got.dtype))


def test_binary_metric_with_mask():
    x, _, keep, w = _data(c=1, seed=3)
    t = (torch.rand(2, 6, 7) > 0.5).long()
    p = torch.sigmoid(x)
    ignored = torch.where(keep, t, torch.full_like(t, 255))
    torch.testing.assert_close(overlap_metrics.dice(p, t, mask=keep, reduction="none"),
                               overlap_metrics.dice(p, ignored, ignore_index=255, reduction="none"))


def test_weighted_mask_weighs_every_sum():
    """Dice with weights w: (2 Σ w p g + δ) / (Σ w p + Σ w g + δ), by hand."""
    x, t, _, w = _data(seed=4)
    v = seglosses.functional.dice_loss(x, t, mode="multiclass", mask=w, reduction="none", smooth=1e-3)
    p = x.softmax(1)
    g = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).double()
    ww = w.unsqueeze(1)
    ref = 1 - (2 * (ww * p * g).sum((2, 3)) + 1e-3) / ((ww * p).sum((2, 3)) + (ww * g).sum((2, 3)) + 1e-3)
    torch.testing.assert_close(v, ref)
    # soft target, binary, squared denominator, soft form
    xb, _, _, _ = _data(c=1, seed=5)
    gb = torch.rand(2, 1, 6, 7, dtype=torch.float64)
    pb = torch.sigmoid(xb)
    for kw, ref in [
        (dict(squared_denominator=True),
         1 - (2 * (ww[:, :1] * pb * gb).sum((2, 3)) + 1e-3)
         / ((ww[:, :1] * pb * pb).sum((2, 3)) + (ww[:, :1] * gb * gb).sum((2, 3)) + 1e-3)),
        (dict(soft_form=True),
         1 - ((ww[:, :1] * (pb + gb - (pb - gb).abs())).sum((2, 3)) + 1e-3)
         / ((ww[:, :1] * (pb + gb)).sum((2, 3)) + 1e-3)),
    ]:
        got = seglosses.functional.dice_loss(xb, gb, mask=w, reduction="none", smooth=1e-3, **kw)
        torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("name,kw", [
    ("dice", dict(mode="multiclass")),
    ("tversky", dict(mode="multiclass", soft_form=True)),
    ("dice", dict(mode="binary", squared_denominator=True)),
    ("sensitivity_specificity", dict(mode="multilabel")),
])
def test_gradcheck_with_weighted_mask(name, kw):
    fn = registry.resolve(name).cls.function
    g = torch.Generator().manual_seed(6)
    c = 1 if kw["mode"] == "binary" else 3
    x = torch.randn(2, c, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    if kw["mode"] == "multiclass":
        t = torch.randint(0, 3, (2, 4, 5), generator=g)
    else:
        t = torch.rand(2, c, 4, 5, generator=g, dtype=torch.float64).requires_grad_()
    w = torch.rand(2, 1, 4, 5, generator=g, dtype=torch.float64)
    w[0, 0, 0] = 0.0
    args = (x, t) if not t.requires_grad else (x, t)
    assert torch.autograd.gradcheck(lambda *a: fn(*a, mask=w, **kw), args)


@pytest.mark.parametrize("labels", [True, False])
def test_fused_form_with_weighted_mask(labels):
    x, t, _, w = _data(seed=7)
    target = t if labels else torch.nn.functional.one_hot(t, 3).movedim(-1, 1).double()
    canon = canonicalize(x, target, mode="multiclass", mask=w)
    assert canon.valid.dtype == torch.float64
    names = ("p", "g", "pg", "pp", "absdiff", "n")
    xe = canon.x.clone().requires_grad_()
    ref = _Moments.apply(xe, canon.labels, canon.dense, canon.valid, canon.activation, names, "eager", 0)
    got, _ = fused_forward(canon.x, canon.labels, canon.dense, canon.valid, canon.activation, names, torch.float64)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b)
    co = tuple(torch.randn_like(r) for r in ref)
    grad_ref, = torch.autograd.grad([r for k, r in zip(names, ref) if k != "n" and k != "g"], xe,
                                    [c for k, c in zip(names, co) if k != "n" and k != "g"])
    used = tuple(None if k in ("n", "g") else c for k, c in zip(names, co))
    grad = fused_backward(canon.x, canon.labels, canon.dense, canon.valid, canon.activation, names, used)
    torch.testing.assert_close(grad, grad_ref)


@pytest.mark.parametrize("spatial", [(5, 6), (3, 4, 5)])
def test_2d_3d_and_mask_shapes(spatial):
    x, t, keep, w = _data(spatial=spatial, seed=8)
    f = seglosses.functional.tversky_loss
    want = f(x, t, mode="multiclass", mask=w, reduction="none")
    torch.testing.assert_close(f(x, t, mode="multiclass", mask=w.unsqueeze(1), reduction="none"), want)
    # a batch of one applies to every image
    one = w[:1]
    torch.testing.assert_close(f(x, t, mode="multiclass", mask=one, reduction="none"),
                               f(x, t, mode="multiclass", mask=one.expand_as(w), reduction="none"))


def test_module_forms_take_mask_per_call():
    x, t, keep, w = _data(seed=9)
    loss = seglosses.DiceLoss(mode="multiclass")
    assert "mask" not in str(__import__("inspect").signature(type(loss)))  # per-call data, not configuration
    f = seglosses.functional.dice_loss(x, t, mode="multiclass", mask=w)
    torch.testing.assert_close(loss(x, t, mask=w), f)
    both = seglosses.DiceLoss(mode="multiclass") + 0.5 * seglosses.TverskyLoss(mode="multiclass")
    ref = f + 0.5 * seglosses.functional.tversky_loss(x, t, mode="multiclass", mask=w)
    torch.testing.assert_close(both(x, t, mask=w), ref)


@pytest.mark.parametrize("bad,err,msg", [
    ("list", TypeError, r"`mask` must be a torch.Tensor; got list"),
    ("int", TypeError, r"`mask` must be a bool or floating-point tensor \(per-pixel weights\); got torch.int64"),
    ("shape", ValueError, r"`mask` must have shape \(2, 1, 6, 7\) or \(2, 6, 7\) .* got \(2, 3, 6, 7\)"),
    ("spatial", ValueError, r"`mask` must have shape .* got \(2, 6, 6\)"),
    ("batch", ValueError, r"`mask` must have shape .* got \(3, 6, 7\)"),
    ("negative", ValueError, r"`mask` weights must be >= 0; got values in \[-1"),
    ("nan", ValueError, r"`mask` must be finite; got 1 NaN and 0 Inf values"),
    ("inf", ValueError, r"`mask` must be finite; got 0 NaN and 1 Inf values"),
])
def test_bad_mask_errors(bad, err, msg):
    x, t, keep, w = _data()
    mask = {"list": [1, 0], "int": keep.long(), "shape": torch.ones(2, 3, 6, 7), "spatial": torch.ones(2, 6, 6),
            "batch": torch.ones(3, 6, 7)}.get(bad)
    if mask is None:
        mask = w.clone()
        mask[0, 0, 0] = {"negative": -1.0, "nan": float("nan"), "inf": float("inf")}[bad]
    with pytest.raises(err, match=msg):
        seglosses.functional.dice_loss(x, t, mode="multiclass", mask=mask)
    with pytest.raises(err, match=msg):
        overlap_metrics.dice(x.softmax(1), t, mode="multiclass", mask=mask)


def test_weights_refused_where_only_keep_or_drop():
    x, t, keep, w = _data()
    with pytest.raises(ValueError, match=r"`mask` must be boolean \(or hold only 0 and 1\) here"):
        canonicalize(x, t, mode="multiclass", mask=w, mask_weights=False)
    c = canonicalize(x, t, mode="multiclass", mask=keep.double(), mask_weights=False)
    assert c.valid.dtype == torch.bool and torch.equal(c.valid, keep.reshape(2, -1))


def test_reduce_pixels_weighted_mean():
    v = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    w = torch.tensor([[0.0, 1.0, 3.0, 0.5]])
    assert float(reduce_pixels(v, "mean", w)) == pytest.approx((2 + 9 + 2) / 4.5)
    assert float(reduce_pixels(v, "sum", w)) == pytest.approx(13.0)
    torch.testing.assert_close(reduce_pixels(v, "none", w), v * w)
    assert float(reduce_pixels(v, "mean", torch.zeros_like(w))) == 0.0


def test_agrees_with_monai_masked_dice_for_bool_masks():
    monai_losses = pytest.importorskip("monai.losses")
    x, t, keep, w = _data(seed=10, dtype=torch.float32)
    onehot = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).float()
    m = keep.unsqueeze(1).float()
    for batch in (False, True):
        ref = monai_losses.MaskedDiceLoss(softmax=True, batch=batch, smooth_nr=1e-5, smooth_dr=1e-5)(x, onehot, mask=m)
        ours = seglosses.functional.dice_loss(x, t, mode="multiclass", domain="batch" if batch else "image",
                                              smooth=1e-5, mask=keep)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    # binary, sigmoid
    xb = x[:, :1]
    tb = (t > 0).float().unsqueeze(1)
    ref = monai_losses.MaskedDiceLoss(sigmoid=True)(xb, tb, mask=m)
    torch.testing.assert_close(seglosses.functional.dice_loss(xb, tb, mask=keep), ref, rtol=1e-5, atol=1e-6)


def test_weighted_mask_convention_differs_from_monai():
    """MONAI multiplies prediction and target by the mask, so its intersection weighs a
    pixel by w² (Σ w² p g) and its sums by w; ours weighs every sum by w."""
    monai_losses = pytest.importorskip("monai.losses")
    x, t, _, w = _data(seed=11, dtype=torch.float32)
    w = w.float()
    onehot = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).float()
    ref = monai_losses.MaskedDiceLoss(softmax=True, reduction="none", smooth_nr=0.0, smooth_dr=1e-5)(
        x, onehot, mask=w.unsqueeze(1)).reshape(2, 3)
    p = x.softmax(1)
    ww = w.unsqueeze(1)
    squared = 1 - 2 * (ww * ww * p * onehot).sum((2, 3)) / ((ww * p).sum((2, 3)) + (ww * onehot).sum((2, 3)) + 1e-5)
    torch.testing.assert_close(ref, squared, rtol=1e-5, atol=1e-6)
    ours = seglosses.functional.dice_loss(x, t, mode="multiclass", mask=w, reduction="none", smooth=1e-5)
    assert not torch.allclose(ours, ref, atol=1e-3)


@pytest.mark.parametrize("name", ["cross_entropy", "focal"])
@pytest.mark.parametrize("mode", ["multiclass", "binary"])
def test_pixel_mean_losses_take_mask(name, mode):
    fn = registry.resolve(name).cls.function
    x, t, keep, w = _data(c=3 if mode == "multiclass" else 1, seed=12)
    if mode == "binary":
        t = (t > 0).long()
    ignored = torch.where(keep, t, torch.full_like(t, 255))
    want = _value_grad(fn, x, ignored, mode=mode, ignore_index=255)
    torch.testing.assert_close(_value_grad(fn, x, t, mode=mode, mask=keep), want)
    torch.testing.assert_close(_value_grad(fn, x, t, mode=mode, mask=torch.ones_like(w)),
                               _value_grad(fn, x, t, mode=mode))
    per = fn(x, t, mode=mode, reduction="none")
    torch.testing.assert_close(fn(x, t, mode=mode, mask=w), (per * w).sum() / w.sum())
    assert torch.autograd.gradcheck(lambda z: fn(z, t, mode=mode, mask=w), (x.clone().requires_grad_(),))


@pytest.mark.parametrize("name", ["combo", "exp_log", "label_noise_penalty", "confidence_penalty"])
def test_compound_and_regularizer_losses_take_mask(name):
    fn = registry.resolve(name).cls.function
    x, t, keep, w = _data(seed=13)
    kw = dict(mode="multiclass")
    ignored = torch.where(keep, t, torch.full_like(t, 255))
    torch.testing.assert_close(_value_grad(fn, x, t, mask=keep, **kw),
                               _value_grad(fn, x, ignored, ignore_index=255, **kw))
    torch.testing.assert_close(_value_grad(fn, x, t, mask=torch.ones_like(w), **kw), _value_grad(fn, x, t, **kw))
    assert torch.autograd.gradcheck(lambda z: fn(z, t, mask=w, **kw), (x.clone().requires_grad_(),))
    if name in ("label_noise_penalty", "confidence_penalty"):  # a weighted pixel mean, by hand
        per = fn(x, t, reduction="none", **kw)
        torch.testing.assert_close(fn(x, t, mask=w, **kw), (per * w).sum() / w.sum())


@pytest.mark.slow
def test_compiled_kernel_with_weighted_mask():
    """The compiled kernel (fused form through torch.compile) weighs the sums as the eager one."""
    x, t, _, w = _data(spatial=(8, 15), seed=14, dtype=torch.float32)
    out = []
    for kernel in ("eager", "compiled"):
        with seglosses.use_kernel(kernel):
            out.append(_value_grad(seglosses.functional.dice_loss, x, t, mode="multiclass", mask=w.float()))
    torch.testing.assert_close(out[1], out[0], rtol=1e-5, atol=1e-6)
