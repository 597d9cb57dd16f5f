"""DeepSupervisionLoss: one loss over the outputs of several scales against one target."""
from __future__ import annotations

import pytest
import torch

import seglosses as sl
from seglosses.wrappers import deep_supervision_weights


def _outputs(c=1, sizes=((16, 16), (8, 8), (4, 4)), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, c, *s, generator=g, dtype=torch.float64) for s in sizes]


def test_weights():
    assert deep_supervision_weights(3) == pytest.approx([4 / 6, 2 / 6, 0.0])
    assert deep_supervision_weights(3, "halving") == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert deep_supervision_weights(6, "exp") == [1.0, 0.5, 0.25, 0.125, 0.0625, 0.0625]
    assert deep_supervision_weights(3, "two") == [1.0, 0.5, 0.5]
    assert deep_supervision_weights(1) == [1.0]
    with pytest.raises(ValueError, match="`weights` must be one of 'nnunet', 'halving'"):
        deep_supervision_weights(2, "half")


def test_weighted_sum_of_the_scales_with_nearest_exact_targets():
    outs = _outputs()
    t = torch.randint(0, 2, (2, 16, 16))
    dice = sl.DiceLoss()
    loss = sl.DeepSupervisionLoss(dice, weights=[0.5, 0.3, 0.2])
    # nearest-exact with factor 2 and 4 picks pixels 1, 3, 5, ... and 2, 6, 10, ...
    want = 0.5 * dice(outs[0], t) + 0.3 * dice(outs[1], t[:, 1::2, 1::2]) + 0.2 * dice(outs[2], t[:, 2::4, 2::4])
    torch.testing.assert_close(loss(outs, t), want)
    # "nearest" picks 0, 2, 4, ...
    near = sl.DeepSupervisionLoss(dice, weights=[0.5, 0.3, 0.2], label_resize="nearest")
    want = 0.5 * dice(outs[0], t) + 0.3 * dice(outs[1], t[:, ::2, ::2]) + 0.2 * dice(outs[2], t[:, ::4, ::4])
    torch.testing.assert_close(near(outs, t), want)
    # a single tensor goes to the loss unchanged; weight 0 terms are skipped (default: the last)
    torch.testing.assert_close(loss(outs[0], t), dice(outs[0], t))
    default = sl.DeepSupervisionLoss(dice)
    torch.testing.assert_close(default(outs, t), 4 / 6 * dice(outs[0], t) + 2 / 6 * dice(outs[1], t[:, 1::2, 1::2]))
    # one target per output (nnU-Net's layout) is used as given
    per_scale = [t, t[:, ::2, ::2], t[:, ::4, ::4]]
    torch.testing.assert_close(loss(outs, per_scale), 0.5 * dice(outs[0], t) + 0.3 * dice(outs[1], per_scale[1])
                               + 0.2 * dice(outs[2], per_scale[2]))
    with pytest.raises(ValueError, match=r"`target` must be a tensor or one target per output \(3\); got 2 targets"):
        loss(outs, per_scale[:2])


def test_max_pooling_keeps_thin_structures_and_ignored_cells():
    t = torch.zeros(1, 4, 4, dtype=torch.long)
    t[0, 0, 0] = 1  # one foreground pixel in the top-left 2x2 cell
    t[0, 2:, 2:] = 255  # a whole ignored cell
    t[0, 2, 0] = 255  # one ignored pixel in a background cell
    ds = sl.DeepSupervisionLoss(sl.DiceLoss(ignore_index=255), label_resize="max")
    small = ds.resize_target(t, (2, 2))
    assert small.tolist() == [[[1, 0], [0, 255]]]
    assert ds.resize_target(t, (4, 4)) is t


def test_soft_targets_are_area_averaged_and_3d():
    t = torch.rand(2, 3, 4, 4, 4, dtype=torch.float64)
    t = t / t.sum(1, keepdim=True)
    ds = sl.DeepSupervisionLoss(sl.DiceLoss(mode="multiclass"))
    small = ds.resize_target(t, (2, 2, 2))
    torch.testing.assert_close(small, torch.nn.functional.avg_pool3d(t, 2))
    torch.testing.assert_close(small.sum(1), torch.ones(2, 2, 2, 2, dtype=torch.float64))
    outs = [torch.randn(2, 3, 4, 4, 4, dtype=torch.float64), torch.randn(2, 3, 2, 2, 2, dtype=torch.float64)]
    assert torch.isfinite(ds(outs, t))


def test_specs_any_registered_loss_and_gradients():
    outs = [o.requires_grad_(True) for o in _outputs(c=3)]
    t = torch.randint(0, 3, (2, 16, 16))
    ds = sl.DeepSupervisionLoss("0.5*dice(mode='multiclass') + 0.5*cross_entropy(mode='multiclass')",
                                weights="halving")
    assert isinstance(ds.loss, sl.WeightedSum)
    v = ds(outs, t)
    v.backward()
    assert all(o.grad is not None and bool(torch.isfinite(o.grad).all()) for o in outs)
    for entry in sl.registry.ENTRIES:
        if "multiclass" in entry.cls.info.modes:
            val = sl.DeepSupervisionLoss(entry.cls(mode="multiclass"))([o.detach() for o in outs], t)
            assert torch.isfinite(val), entry.name


def test_bad_arguments_named():
    with pytest.raises(ValueError, match="`weights` must have one number per output \\(3\\); got 2"):
        sl.DeepSupervisionLoss(sl.DiceLoss(), weights=[1.0, 0.5])(_outputs(), torch.zeros(2, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="`weights` must be finite numbers >= 0"):
        sl.DeepSupervisionLoss(sl.DiceLoss(), weights=[1.0, -0.5])
    with pytest.raises(ValueError, match="`label_resize` must be one of"):
        sl.DeepSupervisionLoss(sl.DiceLoss(), label_resize="bilinear")
    with pytest.raises(TypeError, match="`outputs` must be a tensor or a non-empty list/tuple"):
        sl.DeepSupervisionLoss(sl.DiceLoss())([], torch.zeros(2, 4, 4))
    with pytest.raises(TypeError, match="must be a seglosses loss module"):
        sl.BatchwiseAccumulator(sl.DeepSupervisionLoss(sl.DiceLoss()))


@pytest.mark.peers
@pytest.mark.parametrize("weights", ["exp", "same", "two", [0.6, 0.3, 0.1]])
@pytest.mark.parametrize("spatial", [((16, 16), (8, 8), (4, 4)), ((8, 8, 8), (4, 4, 4), (2, 2, 2))])
def test_agrees_with_monai(weights, spatial):
    monai = pytest.importorskip("monai.losses")
    outs = [o.float() for o in _outputs(sizes=spatial)]
    t = torch.randint(0, 2, (2,) + spatial[0])
    kw = {"weight_mode": weights} if isinstance(weights, str) else {"weights": weights}
    ref = monai.DeepSupervisionLoss(monai.DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5), **kw)(
        outs, t[:, None].float())
    ours = sl.DeepSupervisionLoss(sl.DiceLoss(smooth=1e-5), weights=weights)(outs, t)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-7)
