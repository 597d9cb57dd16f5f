"""Options of the region losses: ``log_loss`` (−log of the index), the log-cosh Dice loss,
and ``label_smoothing`` (training on smoothed targets, seed 000 Claim 1)."""
from __future__ import annotations

import math

import pytest
import torch

import seglosses as sl
from seglosses import functional as F

P = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
G = torch.tensor([[[1, 0], [0, 1]]])


@pytest.mark.parametrize("fn, index", [(F.dice_loss, 0.5), (F.iou_loss, 1 / 3), (F.tversky_loss, 0.5)])
def test_log_loss_is_minus_log_of_the_index(fn, index):
    assert float(fn(P, G, from_logits=False, smooth=0.0, log_loss=True)) == pytest.approx(-math.log(index))
    assert float(fn(P, G, from_logits=False, smooth=0.0)) == pytest.approx(1 - index)
    # an index of 0 is floored at 1e-7 (finite value, as segmentation_models_pytorch)
    v = fn(1 - P, torch.tensor([[[1, 0], [1, 0]]]), from_logits=False, smooth=0.0, log_loss=True)
    assert float(v) == pytest.approx(-math.log(1e-7))


def test_log_loss_per_class_then_mean_and_same_minimiser():
    torch.manual_seed(0)
    x, t = torch.randn(2, 3, 5, 6, dtype=torch.float64), torch.randint(0, 3, (2, 5, 6))
    d = 1 - F.dice_loss(x, t, mode="multiclass", reduction="none")
    torch.testing.assert_close(F.dice_loss(x, t, mode="multiclass", log_loss=True), (-torch.log(d)).mean())
    perfect = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).double() * 60 - 30
    assert float(F.tversky_loss(perfect, t, mode="multiclass", log_loss=True)) < 1e-9
    assert sl.build_loss("iou(log_loss=True)").spec() == "iou(log_loss=True)"


def test_log_cosh_dice():
    # D = 0.5: log cosh 0.5
    assert float(F.log_cosh_dice_loss(P, G, from_logits=False, smooth=0.0)) == pytest.approx(math.log(math.cosh(0.5)))
    torch.manual_seed(0)
    x, t = torch.randn(2, 3, 5, 6, dtype=torch.float64), torch.randint(0, 3, (2, 5, 6))
    d = F.dice_loss(x, t, mode="multiclass", reduction="none")
    torch.testing.assert_close(F.log_cosh_dice_loss(x, t, mode="multiclass"), torch.log(torch.cosh(d)).mean())
    # the worst case (D = 0) is log cosh 1, the declared upper end of the range
    assert float(F.log_cosh_dice_loss(1 - P, torch.tensor([[[1, 0], [1, 0]]]), from_logits=False, smooth=0.0)) == \
        pytest.approx(sl.LogCoshDiceLoss.info.value_range[1])


@pytest.mark.parametrize("mode, c", [("binary", 1), ("multiclass", 3), ("multilabel", 3)])
@pytest.mark.parametrize("name", ["dice", "tversky", "iou", "mcc", "cldice", "log_cosh_dice"])
def test_label_smoothing_equals_training_on_the_smoothed_target(mode, c, name):
    torch.manual_seed(1)
    x = torch.randn(2, c, 5, 6, dtype=torch.float64)
    if mode == "multilabel":
        t = torch.randint(0, 2, (2, c, 5, 6))
        smoothed = (1 - 0.2) * t.double() + 0.1
    else:
        t = torch.randint(0, max(c, 2), (2, 5, 6))
        smoothed = F.label_smoothing(t, 0.2, c).double()
        if mode == "binary":
            smoothed = smoothed[:, 0]
    loss = sl.build_loss(f"{name}(mode={mode!r}, label_smoothing=0.2)")
    ref = sl.build_loss(f"{name}(mode={mode!r})")
    torch.testing.assert_close(loss(x, t), ref(x, smoothed))


def test_label_smoothing_with_ignore_index_and_bad_values():
    torch.manual_seed(2)
    x, t = torch.randn(2, 3, 5, 6, dtype=torch.float64), torch.randint(0, 3, (2, 5, 6))
    t[:, 0] = 255
    smoothed = F.label_smoothing(t, 0.1, 3, ignore_index=255).double()
    a = F.dice_loss(x, t, mode="multiclass", label_smoothing=0.1, ignore_index=255)
    torch.testing.assert_close(a, F.dice_loss(x, smoothed, mode="multiclass", ignore_index=255))
    with pytest.raises(ValueError, match=r"`label_smoothing` must lie in \[0, 1\); got 1.0"):
        F.dice_loss(x, t, mode="multiclass", label_smoothing=1.0)
    # refused when the module is built (a study fails before its first run)
    with pytest.raises(ValueError, match=r"`label_smoothing` must lie in \[0, 1\); got 1.5"):
        sl.build_loss("dice(label_smoothing=1.5)")


def test_seed000_claim1_standard_form_optimum_at_the_hard_labels_soft_form_at_the_smoothed():
    # One foreground pixel and one background pixel, ε = 0.2: smoothed targets 0.9 and 0.1.
    # Scan a shared prediction level q for the foreground (1 - q for the background) pixel.
    t = torch.tensor([[[1, 0]]])
    q = torch.linspace(0.5, 1.0, 501, dtype=torch.float64)
    p = torch.stack([q, 1 - q], -1).view(-1, 1, 1, 2)
    tt = t.expand(len(q), 1, 2)
    for form, best in ((False, 1.0), (True, 0.9)):
        spec = f"dice(domain='batch', label_smoothing=0.2, soft_form={form}, smooth=0.0, from_logits=False, " \
               f"reduction='none')"
        loss = sl.build_loss(spec)
        values = torch.stack([loss(p[i:i + 1], tt[i:i + 1]) for i in range(len(q))]).reshape(-1)
        assert float(q[values.argmin()]) == pytest.approx(best, abs=1e-3), (form, float(q[values.argmin()]))


def test_study_spec_strings_build_and_round_trip():
    for spec in ("dice(domain='batch', label_smoothing=0.1)",
                 "dice(domain='batch', label_smoothing=0.1, soft_form=True)"):
        loss = sl.build_loss(spec)
        assert loss.config["label_smoothing"] == 0.1
        assert sl.build_loss(loss.spec()).config == loss.config
    # in a sum with a regulariser, the smoothed Dice keeps its smoothing
    s = sl.build_loss("dice(domain='batch', label_smoothing=0.1) + 0.1*label_noise_penalty")
    assert s.losses[0].config["label_smoothing"] == 0.1


def test_label_smoothing_is_exact_over_micro_batches():
    from tests.test_accumulate import accumulated, full_batch, make_batch, max_diff, small_net, splits

    torch.manual_seed(0)
    model = small_net(3)
    x, y = make_batch(c=3, ignore=255)
    loss = sl.DiceLoss(mode="multiclass", domain="batch", label_smoothing=0.1, soft_form=True, ignore_index=255)
    v_full, g_full = full_batch(model, loss, x, y)
    for label, mbs in splits(x, y).items():
        v, g = accumulated(model, loss, mbs)
        assert max_diff(g, g_full) < 1e-6, label
        assert abs(float(v - v_full)) < 1e-6, label
