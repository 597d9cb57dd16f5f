"""Region losses: hand-computed values, the per-paper reference, special cases, seed 000 Claim 1."""
from __future__ import annotations

import math

import pytest
import torch

import seglosses as sl
from seglosses import functional as F
from tests import reference as R

REGION = {
    "dice": F.dice_loss,
    "iou": F.iou_loss,
    "tversky": F.tversky_loss,
    "focal_tversky": F.focal_tversky_loss,
    "asymmetric_similarity": F.asymmetric_similarity_loss,
    "sensitivity_specificity": F.sensitivity_specificity_loss,
}


def _reference_per_class(name, p, g, delta):
    tp, fp, fn = R.confusion(p, g)
    if name == "dice":
        return 1 - (2 * tp + delta) / (2 * tp + fp + fn + delta)
    if name == "iou":
        return 1 - R.tversky(tp, fp, fn, 1.0, 1.0, delta)
    if name == "tversky":
        return 1 - R.tversky(tp, fp, fn, 0.3, 0.7, delta)
    if name == "focal_tversky":
        return (1 - R.tversky(tp, fp, fn, 0.3, 0.7, delta)) ** (3.0 / 4.0)
    if name == "asymmetric_similarity":
        b2 = 1.5**2
        return 1 - R.tversky(tp, fp, fn, 1 / (1 + b2), b2 / (1 + b2), delta)
    if name == "sensitivity_specificity":
        return R.sens_spec(p, g, 0.05, delta)
    raise KeyError(name)


def _case(mode, spatial, b=2, c=3):
    if mode == "binary":
        x = torch.randn(b, 1, *spatial, dtype=torch.float64)
        t = torch.randint(0, 2, (b, *spatial))
    elif mode == "multiclass":
        x = torch.randn(b, c, *spatial, dtype=torch.float64)
        t = torch.randint(0, c, (b, *spatial))
    else:
        x = torch.randn(b, c, *spatial, dtype=torch.float64)
        t = torch.randint(0, 2, (b, c, *spatial))
    return x, t


# ---------------------------------------------------------------- hand-computed values
def test_hand_values_binary():
    # p = [1, 0, 1, 0], g = [1, 0, 0, 1]: TP = 1, FP = 1, FN = 1
    p = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    g = torch.tensor([[[1, 0], [0, 1]]])
    kw = dict(from_logits=False, smooth=0.0)
    assert F.dice_loss(p, g, **kw).item() == pytest.approx(1 - 2 / 4)
    assert F.iou_loss(p, g, **kw).item() == pytest.approx(1 - 1 / 3)
    # Tversky 0.3/0.7: 1 / (1 + 0.3 + 0.7) = 0.5
    assert F.tversky_loss(p, g, **kw).item() == pytest.approx(0.5)
    # alpha = 0.2, beta = 0.4: 1 / 1.6
    assert F.tversky_loss(p, g, alpha=0.2, beta=0.4, **kw).item() == pytest.approx(1 - 1 / 1.6)
    # focal Tversky gamma = 2: (1 - 0.5)^(1/2)
    assert F.focal_tversky_loss(p, g, gamma=2.0, **kw).item() == pytest.approx(math.sqrt(0.5))
    # F_beta with beta = 2: 1 / (1 + 4/5 * 1 + 1/5 * 1) = 0.5
    assert F.asymmetric_similarity_loss(p, g, beta=2.0, **kw).item() == pytest.approx(0.5)
    # sensitivity-specificity: positives {1 (p=1), 4 (p=0)}: sum (g-p)^2 g = 1, sum g = 2;
    # negatives {2 (p=0), 3 (p=1)}: sum (g-p)^2 (1-g) = 1, sum (1-g) = 2 -> 0.05*0.5 + 0.95*0.5
    assert F.sensitivity_specificity_loss(p, g, **kw).item() == pytest.approx(0.5)


def test_hand_value_smooth():
    # soft p = [0.5, 0.5], g = [1, 0]: TP = 0.5, FP = 0.5, FN = 0.5, delta = 1
    p = torch.tensor([[[0.5, 0.5]]])
    g = torch.tensor([[1, 0]])
    # Tversky(0.3, 0.7): (0.5 + 1) / (0.5 + 0.15 + 0.35 + 1) = 1.5 / 2 = 0.75
    assert F.tversky_loss(p, g, from_logits=False, smooth=1.0).item() == pytest.approx(0.25)
    # Dice: (1 + 1) / (1 + 1 + 1) = 2/3
    assert F.dice_loss(p, g, from_logits=False, smooth=1.0).item() == pytest.approx(1 / 3)
    # squared denominator: (2*0.5 + 1) / (0.25 + 0.25 + 1 + 1) = 2 / 2.5
    assert F.dice_loss(p, g, from_logits=False, smooth=1.0, squared_denominator=True).item() == pytest.approx(0.2)


def test_hand_value_multiclass_gdl():
    # 1 image, 2 classes, 4 pixels; hard prediction p = one-hot([0, 0, 1, 1]), g = [0, 1, 1, 1]
    p = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])
    g = torch.tensor([[0, 1, 1, 1]])
    # w0 = 1/1^2 = 1, w1 = 1/3^2 = 1/9; TP0 = 1, TP1 = 2; p+g sums: class0 2+1 = 3, class1 2+3 = 5
    # GDL = 1 - 2 (1*1 + 2/9) / (1*3 + 5/9) = 1 - (22/9) / (32/9) = 10/32
    v = F.generalized_dice_loss(p, g, mode="multiclass", from_logits=False, smooth=0.0)
    assert v.item() == pytest.approx(10 / 32)
    # penalty k = 1: L / (1 + (1 - L))
    v2 = F.penalty_generalized_dice_loss(p, g, mode="multiclass", from_logits=False, smooth=0.0, k=1.0)
    assert v2.item() == pytest.approx((10 / 32) / (1 + 22 / 32))


def test_soft_confusion_hand():
    p = torch.tensor([[[[0.9, 0.2], [0.6, 0.0]]]])
    g = torch.tensor([[[1, 0], [1, 1]]])
    c = F.soft_confusion(p, g, with_tn=True)
    assert c.tp.item() == pytest.approx(1.5)
    assert c.fp.item() == pytest.approx(0.2)
    assert c.fn.item() == pytest.approx(1.5)
    assert c.tn.item() == pytest.approx(0.8)


# ---------------------------------------------------------------- reference agreement
@pytest.mark.parametrize("name", list(REGION))
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("spatial", [(3, 5), (2, 3, 4)], ids=["2d", "3d"])
@pytest.mark.parametrize("domain", ["image", "batch"])
def test_against_reference(name, mode, spatial, domain):
    x, t = _case(mode, spatial)
    delta = 0.5
    p, g = R.probs_and_onehot(x, t, mode)
    if domain == "batch":
        p, g = R.batch_as_one_image(p, g)
    expected = _reference_per_class(name, p, g, delta)
    got = REGION[name](x, t, mode=mode, domain=domain, smooth=delta, reduction="none")
    expected = expected[0] if domain == "batch" else expected
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("domain", ["image", "batch"])
@pytest.mark.parametrize("spatial", [(3, 5), (2, 3, 4)], ids=["2d", "3d"])
def test_gdl_against_reference(domain, spatial):
    x, t = _case("multiclass", spatial)
    t[0] = 0  # image 0 has only class 0: classes 1, 2 absent -> guard
    p, g = R.probs_and_onehot(x, t, "multiclass")
    if domain == "batch":
        p, g = R.batch_as_one_image(p, g)
    expected = R.gdl(p, g, 1e-5)
    got = F.generalized_dice_loss(x, t, mode="multiclass", domain=domain, reduction="none")
    torch.testing.assert_close(got.reshape(-1), expected, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- special cases of the papers
def test_tversky_half_half_is_dice_and_one_one_is_jaccard():
    x, t = _case("multiclass", (4, 5))
    kw = dict(mode="multiclass", reduction="none")
    for delta in (0.0, 1e-3, 1.0):
        torch.testing.assert_close(
            F.tversky_loss(x, t, alpha=0.5, beta=0.5, smooth=delta, **kw), F.dice_loss(x, t, smooth=2 * delta, **kw)
        )
        torch.testing.assert_close(
            F.tversky_loss(x, t, alpha=1.0, beta=1.0, smooth=delta, **kw), F.iou_loss(x, t, smooth=delta, **kw)
        )
    assert sl.JaccardLoss is sl.IoULoss


def test_focal_tversky_gamma_one_is_tversky_and_exponent_is_per_class():
    x, t = _case("multiclass", (4, 5))
    kw = dict(mode="multiclass", reduction="none")
    torch.testing.assert_close(F.focal_tversky_loss(x, t, gamma=1.0, **kw), F.tversky_loss(x, t, **kw))
    torch.testing.assert_close(F.focal_tversky_loss(x, t, gamma=3.0, **kw), F.tversky_loss(x, t, **kw) ** (1 / 3))


def test_asymmetric_is_tversky_with_alpha_plus_beta_one():
    x, t = _case("binary", (4, 5))
    b = 1.5
    torch.testing.assert_close(
        F.asymmetric_similarity_loss(x, t, beta=b), F.tversky_loss(x, t, alpha=1 / (1 + b * b), beta=b * b / (1 + b * b))
    )


def test_penalty_k0_is_gdl():
    x, t = _case("multiclass", (4, 5))
    torch.testing.assert_close(
        F.penalty_generalized_dice_loss(x, t, k=0.0, mode="multiclass"), F.generalized_dice_loss(x, t, mode="multiclass")
    )


def test_label_map_equals_one_hot_and_binary_target_forms():
    x, t = _case("multiclass", (4, 5))
    oh = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).double()
    for fn in REGION.values():
        torch.testing.assert_close(fn(x, t, mode="multiclass"), fn(x, oh, mode="multiclass"))
    xb, tb = _case("binary", (4, 5))
    for fn in REGION.values():
        a = fn(xb, tb)
        torch.testing.assert_close(a, fn(xb, tb[:, None]))
        torch.testing.assert_close(a, fn(xb, tb.double()))
        torch.testing.assert_close(a, fn(xb, tb.bool()))


def test_include_background_false_drops_channel_zero():
    x, t = _case("multiclass", (4, 5))
    full = F.dice_loss(x, t, mode="multiclass", reduction="none")
    nobg = F.dice_loss(x, t, mode="multiclass", reduction="none", include_background=False)
    torch.testing.assert_close(nobg, full[:, 1:])


def test_class_weights_weighted_mean():
    x, t = _case("multiclass", (4, 5))
    per = F.dice_loss(x, t, mode="multiclass", reduction="none")
    w = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    expected = ((per * w).sum(1) / w.sum()).mean()
    torch.testing.assert_close(F.dice_loss(x, t, mode="multiclass", class_weights=w), expected)
    torch.testing.assert_close(sl.DiceLoss(mode="multiclass", class_weights=[0, 1, 3])(x, t), expected)


def test_reduction_shapes_and_consistency():
    x, t = _case("multiclass", (4, 5))
    for fn in REGION.values():
        none_img = fn(x, t, mode="multiclass", reduction="none")
        none_bat = fn(x, t, mode="multiclass", reduction="none", domain="batch")
        assert none_img.shape == (2, 3) and none_bat.shape == (3,)
        torch.testing.assert_close(fn(x, t, mode="multiclass"), none_img.mean())
        torch.testing.assert_close(fn(x, t, mode="multiclass", reduction="sum"), none_img.sum())
    assert F.generalized_dice_loss(x, t, reduction="none").shape == (2,)
    assert F.generalized_dice_loss(x, t, reduction="none", domain="batch").shape == ()


def test_batch_domain_equals_concatenated_image():
    # seed 000 2.1: the batchwise loss is the loss of the batch substituted as one image
    x, t = _case("multiclass", (4, 5), b=3)
    cat_x = x.permute(1, 0, 2, 3).reshape(1, 3, 12, 5)
    cat_t = t.reshape(1, 12, 5)
    for fn in list(REGION.values()) + [F.generalized_dice_loss, F.penalty_generalized_dice_loss]:
        torch.testing.assert_close(fn(x, t, mode="multiclass", domain="batch"), fn(cat_x, cat_t, mode="multiclass"))
    # and differs from the imagewise mean
    assert not torch.allclose(F.dice_loss(x, t, mode="multiclass", domain="batch"), F.dice_loss(x, t, mode="multiclass"))


def test_ignore_index_equals_cropping():
    x, t = _case("multiclass", (4, 6))
    ti = t.clone()
    ti[:, :, 4:] = 255  # the last two columns are ignored
    for fn in REGION.values():
        for domain in ("image", "batch"):
            a = fn(x, ti, mode="multiclass", ignore_index=255, domain=domain)
            b = fn(x[..., :4], t[..., :4], mode="multiclass", domain=domain)
            torch.testing.assert_close(a, b)
    xb, tb = _case("binary", (4, 6))
    tbi = tb.clone()
    tbi[:, :, 4:] = -1
    torch.testing.assert_close(F.dice_loss(xb, tbi, ignore_index=-1), F.dice_loss(xb[..., :4], tb[..., :4]))


def test_minimum_at_truth_and_range():
    t = torch.randint(0, 3, (2, 5, 6))
    oh = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).double()
    for fn in list(REGION.values()) + [F.generalized_dice_loss, F.penalty_generalized_dice_loss]:
        perfect = fn(oh, t, mode="multiclass", from_logits=False)
        assert perfect.item() == pytest.approx(0.0, abs=1e-6)
        worst = fn(1 - oh, t, mode="multiclass", from_logits=False)
        assert 0.0 < worst.item() <= 1.0 + 1e-12
        for _ in range(3):
            x = torch.randn(2, 3, 5, 6, dtype=torch.float64) * 5
            v = fn(x, t, mode="multiclass", reduction="none")
            assert bool((v >= -1e-12).all() and (v <= 1 + 1e-12).all())


# ---------------------------------------------------------------- empty masks
@pytest.mark.parametrize("name", list(REGION) + ["generalized_dice", "penalty_generalized_dice"])
@pytest.mark.parametrize("domain", ["image", "batch"])
@pytest.mark.parametrize("smooth", [1e-5, 0.0])
def test_empty_masks_finite_and_push_fp_down(name, domain, smooth):
    fn = {**REGION, "generalized_dice": F.generalized_dice_loss,
          "penalty_generalized_dice": F.penalty_generalized_dice_loss}[name]
    x = torch.randn(2, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    t = torch.zeros(2, 4, 5, dtype=torch.long)
    v = fn(x, t, mode="binary", domain=domain, smooth=smooth)
    v.backward()
    assert torch.isfinite(v) and bool(torch.isfinite(x.grad).all())
    if smooth > 0:
        # an all-false-positive prediction on an empty target is penalised (loss > 0, gradient
        # that lowers the logits), never silently zeroed
        if name == "sensitivity_specificity":
            assert v.item() > 0.1  # the specificity term: 0.95 * mean p^2
        else:
            assert v.item() > 0.5
            assert bool((x.grad >= 0).all()) and x.grad.abs().sum() > 0
    # the empty prediction on an empty target is a perfect score
    zero = torch.zeros(2, 1, 4, 5, dtype=torch.float64)
    assert fn(zero, t, mode="binary", domain=domain, smooth=smooth, from_logits=False).item() == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------- seed 000 Claim 1 and the soft form
def test_claim1_standard_form_optimum_stays_binary_soft_form_reaches_soft_target():
    eps = 0.1
    g_hard = torch.tensor([1, 1, 0, 0, 0, 0, 0, 0]).reshape(1, 8)
    y = sl.regularizers.label_smoothing(g_hard, 2 * eps, 1)[:, 0]  # labels {eps, 1 - eps}
    assert sorted(y.unique().tolist()) == pytest.approx([eps, 1 - eps])
    y = y.double()

    def optimise(soft_form):
        z = torch.zeros(1, 1, 8, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([z], lr=0.1)
        for _ in range(1500):
            opt.zero_grad()
            loss = F.tversky_loss(z, y, alpha=0.5, beta=0.5, smooth=1e-6, soft_form=soft_form)
            loss.backward()
            opt.step()
        return torch.sigmoid(z).detach().reshape(-1)

    p_std = optimise(False)
    # Claim 1: the argmax of the index is a {0, 1} tensor
    assert bool(((p_std < 0.02) | (p_std > 0.98)).all()), p_std
    torch.testing.assert_close(p_std.round(), g_hard.reshape(-1).double())
    # value check: the binary prediction beats the soft target under the standard form
    hard = g_hard.double().reshape(1, 1, 8)
    soft = y.reshape(1, 1, 8)
    kw = dict(alpha=0.5, beta=0.5, smooth=0.0, from_logits=False)
    assert F.tversky_loss(hard, y, **kw) < F.tversky_loss(soft, y, **kw)
    # soft form: minimised at p = y (value 0 there), and optimisation reaches it
    assert F.tversky_loss(soft, y, soft_form=True, **kw).item() == pytest.approx(0.0, abs=1e-12)
    assert F.tversky_loss(hard, y, soft_form=True, **kw).item() > 0.01
    p_soft = optimise(True)
    torch.testing.assert_close(p_soft, y.reshape(-1), atol=2e-3, rtol=0)


def test_soft_form_equals_standard_for_hard_targets():
    for mode in ("binary", "multiclass", "multilabel"):
        x, t = _case(mode, (4, 5))
        for fn in (F.dice_loss, F.iou_loss, F.tversky_loss):
            torch.testing.assert_close(fn(x, t, mode=mode, soft_form=True), fn(x, t, mode=mode))


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", list(REGION) + ["generalized_dice", "penalty_generalized_dice"])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_gradcheck(name, mode):
    fn = {**REGION, "generalized_dice": F.generalized_dice_loss,
          "penalty_generalized_dice": F.penalty_generalized_dice_loss}[name]
    x, t = _case(mode, (3, 4))
    x.requires_grad_(True)
    for domain in ("image", "batch"):
        assert torch.autograd.gradcheck(lambda z: fn(z, t, mode=mode, domain=domain, smooth=0.1), (x,))
    if mode == "multiclass":
        ti = t.clone()
        ti[0, 0] = 255
        assert torch.autograd.gradcheck(lambda z: fn(z, ti, mode=mode, ignore_index=255), (x,))
        soft = torch.softmax(torch.randn_like(x), 1)
        assert torch.autograd.gradcheck(lambda z: fn(z, soft, mode=mode), (x,))
        if name in ("dice", "iou", "tversky"):
            assert torch.autograd.gradcheck(lambda z: fn(z, soft, mode=mode, soft_form=True), (x,))


def test_gradcheck_probabilities_input_and_squared_denominator():
    x = torch.rand(2, 3, 3, 4, dtype=torch.float64).clamp(0.05, 0.95).requires_grad_(True)
    t = torch.randint(0, 3, (2, 3, 4))
    assert torch.autograd.gradcheck(lambda z: F.dice_loss(z, t, mode="multilabel" if False else "multiclass",
                                                          from_logits=False, squared_denominator=True), (x,))
    assert torch.autograd.gradcheck(lambda z: F.sensitivity_specificity_loss(z, t, mode="multiclass", from_logits=False), (x,))


# ---------------------------------------------------------------- half precision
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_close_to_float32(dtype):
    x = torch.randn(2, 3, 16, 16)
    t = torch.randint(0, 3, (2, 16, 16))
    tol = 2e-3 if dtype == torch.float16 else 1e-2
    for fn in list(REGION.values()) + [F.generalized_dice_loss]:
        ref = fn(x, t, mode="multiclass")
        xh = x.to(dtype).requires_grad_(True)
        v = fn(xh, t, mode="multiclass")
        v.backward()
        assert xh.grad.dtype == dtype and bool(torch.isfinite(xh.grad).all())
        assert abs(v.float().item() - ref.item()) < tol, (fn.__name__, v.item(), ref.item())


# ---------------------------------------------------------------- modules
def test_module_equals_functional_and_config():
    x, t = _case("multiclass", (4, 5))
    m = sl.TverskyLoss(alpha=0.2, beta=0.8, mode="multiclass", domain="batch")
    torch.testing.assert_close(m(x, t), F.tversky_loss(x, t, alpha=0.2, beta=0.8, mode="multiclass", domain="batch"))
    assert "alpha=0.2" in repr(m)
    with pytest.raises(TypeError, match="alpah.*did you mean 'alpha'"):
        sl.TverskyLoss(alpah=0.3)
    with pytest.raises(ValueError, match="`domain` must be one of"):
        sl.DiceLoss(domain="batches")
    with pytest.raises(ValueError, match="`alpha` must be a finite number >= 0"):
        sl.TverskyLoss(alpha=-1)


def test_modules_hold_no_state_changed_by_forward():
    m = sl.DiceLoss(mode="multiclass", class_weights=[1, 2, 3])
    before = dict(m.config)
    x, t = _case("multiclass", (4, 5))
    m(x, t)
    assert m.config == before
