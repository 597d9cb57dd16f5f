"""BatchwiseAccumulator: the gradient of a batchwise loss over micro-batches equals the whole batch's.

The oracle is the same loss computed on the whole batch at once (its own values are
tested in tests/losses); every comparison here is float64 at 1e-6 (the observed
deviation is ~1e-16: the accumulator is exact, not an approximation).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import seglosses as sl
from seglosses.accumulate import BatchStatistics, MicroBatches
from seglosses.distributed import StatisticsSync
from seglosses._contract import LossInfo
from seglosses.losses import SegLoss

TOL = 1e-6

REGION = [
    "DiceLoss",
    "IoULoss",
    "TverskyLoss",
    "FocalTverskyLoss",
    "AsymmetricSimilarityLoss",
    "GeneralizedDiceLoss",
    "PenaltyGeneralizedDiceLoss",
    "SensitivitySpecificityLoss",
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: thread start-up would dominate (and oversubscribe a shared CPU)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_net(out_channels: int, dims: int = 2, norm: str = "group") -> nn.Module:
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
    layers = [conv(1, 4, 3, padding=1)]
    layers.append(nn.GroupNorm(2, 4) if norm == "group" else bn(4))
    layers += [nn.Tanh(), conv(4, out_channels, 3, padding=1)]
    return nn.Sequential(*layers).double()


def make_batch(b=7, c=3, spatial=(5, 7), seed=1, ignore=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 1, *spatial, generator=g, dtype=torch.float64)
    y = torch.randint(0, max(c, 2), (b,) + tuple(spatial), generator=g)
    if ignore is not None:
        y[torch.rand(y.shape, generator=g) < 0.2] = ignore
    return x, y


def grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


def full_batch(model, loss, x, y):
    model.zero_grad()
    value = loss(model(x), y)
    value.backward()
    return value.detach(), grads(model)


def accumulated(model, loss, micro_batches, **kwargs):
    model.zero_grad()
    value = sl.BatchwiseAccumulator(loss, **kwargs).backward(model, micro_batches)
    return value, grads(model)


def max_diff(a, b):
    return max(float((u - v).abs().max()) for u, v in zip(a, b))


def splits(x, y):
    """Whole batch (one pass), halves, thirds, and an uneven 1/4/2 split of 7 images."""
    uneven = [(x[:1], y[:1]), (x[1:5], y[1:5]), (x[5:], y[5:])]
    return {
        "one": sl.split_batch(x, y, x.shape[0]),
        "two": sl.split_batch(x, y, 4),
        "three": sl.split_batch(x, y, 3),
        "uneven": uneven,
    }


# ---------------------------------------------------------------------------------------
# every region loss, both domains, 1/2/3/uneven micro-batches


@pytest.mark.parametrize("mode", ["multiclass", "binary"])
@pytest.mark.parametrize("domain", ["batch", "image"])
@pytest.mark.parametrize("name", REGION)
def test_region_loss_gradient_equals_full_batch(name, domain, mode):
    c = 3 if mode == "multiclass" else 1
    torch.manual_seed(0)
    model = small_net(c)
    x, y = make_batch(c=c)
    loss = getattr(sl, name)(mode=mode, domain=domain)
    v_full, g_full = full_batch(model, loss, x, y)
    for label, mbs in splits(x, y).items():
        v, g = accumulated(model, loss, mbs)
        assert max_diff(g, g_full) < TOL, label
        assert abs(float(v - v_full)) < TOL, label


@pytest.mark.parametrize("name", ["DiceLoss", "TverskyLoss", "GeneralizedDiceLoss"])
def test_ordinary_accumulation_differs_for_the_batch_domain(name):
    # the reason for the accumulator: summing per-micro-batch batchwise losses is another loss
    torch.manual_seed(0)
    model = small_net(3)
    x, y = make_batch()
    loss = getattr(sl, name)(mode="multiclass", domain="batch")
    _, g_full = full_batch(model, loss, x, y)
    model.zero_grad()
    for xm, ym in sl.split_batch(x, y, 3):
        (loss(model(xm), ym) * xm.shape[0] / x.shape[0]).backward()
    assert max_diff(grads(model), g_full) > 1e-4


def test_hand_computed_gradient_over_two_micro_batches():
    # batch Dice with smooth=0 on probabilities, micro-batches A = [0.5, 1.0] (g = [1, 0]) and
    # B = [0.5] (g = [1]): TP = 0.5 + 0.5 = 1, Σp + Σg = 2 + 2 = 4, D = 2/4, L = 0.5.
    # dL/dp_i = -(2 g_i (Σp+Σg) - 2 TP) / (Σp+Σg)² = -(8 g_i - 2) / 16: -0.375 (g=1), 0.125 (g=0).
    a = torch.tensor([[[0.5, 1.0]]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[[0.5]]], dtype=torch.float64, requires_grad=True)
    ga, gb = torch.tensor([[1, 0]]), torch.tensor([[1]])
    loss = sl.DiceLoss(domain="batch", from_logits=False, smooth=0.0)
    acc = sl.BatchwiseAccumulator(loss)
    value = acc.backward(lambda t: t, [(a, ga), (b, gb)])
    assert float(value) == pytest.approx(0.5, abs=1e-15)
    torch.testing.assert_close(a.grad, torch.tensor([[[-0.375, 0.125]]], dtype=torch.float64), rtol=0, atol=1e-15)
    torch.testing.assert_close(b.grad, torch.tensor([[[-0.375]]], dtype=torch.float64), rtol=0, atol=1e-15)


def test_gradient_with_respect_to_logits_equals_full_batch():
    # the model is the identity on leaf logits: the accumulator's .grad is dL/dlogits itself
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 4, 3, 7, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (5, 3, 7), generator=g)
    loss = sl.TverskyLoss(mode="multiclass", domain="batch", include_background=False)
    whole = logits.clone().requires_grad_()
    loss(whole, y).backward()
    parts = [logits[:2].clone().requires_grad_(), logits[2:].clone().requires_grad_()]
    sl.BatchwiseAccumulator(loss).backward(lambda t: t, [(parts[0], y[:2]), (parts[1], y[2:])])
    torch.testing.assert_close(torch.cat([p.grad for p in parts]), whole.grad, rtol=0, atol=1e-15)


def test_3d_with_ignore_index_and_soft_form():
    torch.manual_seed(0)
    model = small_net(3, dims=3)
    x, y = make_batch(b=5, spatial=(3, 4, 5), ignore=255)
    common = dict(mode="multiclass", domain="batch", ignore_index=255)
    for loss in (sl.DiceLoss(soft_form=True, class_weights=[1.0, 2.0, 0.5], **common),
                 sl.DiceLoss(squared_denominator=True, reduction="sum", **common)):
        v_full, g_full = full_batch(model, loss, x, y)
        v, g = accumulated(model, loss, [(x[:2], y[:2]), (x[2:], y[2:])])
        assert max_diff(g, g_full) < TOL
        assert abs(float(v - v_full)) < TOL


def test_generalized_dice_class_absent_from_a_micro_batch():
    # GDL weights 1/(Σg)² come from the whole batch: class 2 is absent from the first
    # micro-batch, present in the second
    torch.manual_seed(0)
    model = small_net(3)
    x, y = make_batch(b=4)
    y[:2][y[:2] == 2] = 1
    loss = sl.GeneralizedDiceLoss(domain="batch")
    v_full, g_full = full_batch(model, loss, x, y)
    v, g = accumulated(model, loss, sl.split_batch(x, y, 2))
    assert max_diff(g, g_full) < TOL
    assert abs(float(v - v_full)) < TOL


def test_empty_masks_give_finite_exact_gradients():
    torch.manual_seed(0)
    model = small_net(1)
    x, _ = make_batch(b=4, c=1)
    y = torch.zeros(4, 5, 7, dtype=torch.long)  # no foreground anywhere
    for loss in (sl.DiceLoss(domain="batch"), sl.TverskyLoss(domain="batch", smooth=0.0)):
        v_full, g_full = full_batch(model, loss, x, y)
        v, g = accumulated(model, loss, sl.split_batch(x, y, 3))
        assert all(torch.isfinite(t).all() for t in g)
        assert max_diff(g, g_full) < TOL
        assert abs(float(v - v_full)) < TOL


# ---------------------------------------------------------------------------------------
# compounds


def test_compound_with_image_domain_and_pixel_terms():
    # batch-domain region term + image-domain region term + two pixel means with
    # ignore_index (the micro-batches hold different numbers of valid pixels)
    torch.manual_seed(0)
    model = small_net(3)
    x, y = make_batch(ignore=255)
    common = dict(mode="multiclass", ignore_index=255)
    loss = (
        sl.TverskyLoss(domain="batch", **common)
        + 0.5 * sl.DiceLoss(domain="image", **common)
        + 0.1 * sl.ConfidencePenalty(**common)
        + 0.2 * sl.LabelNoisePenalty(**common, reduction="sum")
        + 0.3 * sl.GeneralizedDiceLoss(domain="image", reduction="sum", **common)
    )
    v_full, g_full = full_batch(model, loss, x, y)
    for label, mbs in splits(x, y).items():
        v, g = accumulated(model, loss, mbs)
        assert max_diff(g, g_full) < TOL, label
        assert abs(float(v - v_full)) < TOL, label


def test_compound_with_cross_entropy_if_available():
    ce = getattr(sl, "CrossEntropyLoss", None)
    if ce is None:
        pytest.skip("no cross-entropy loss in this build")
    torch.manual_seed(0)
    model = small_net(3)
    x, y = make_batch(ignore=255)
    loss = sl.DiceLoss(mode="multiclass", domain="batch", ignore_index=255) + ce(mode="multiclass", ignore_index=255)
    v_full, g_full = full_batch(model, loss, x, y)
    v, g = accumulated(model, loss, splits(x, y)["uneven"])
    assert max_diff(g, g_full) < TOL
    assert abs(float(v - v_full)) < TOL


def test_compound_with_distribution_terms():
    # pixel means with fixed class weights: CE, focal, distance-penalised CE and the
    # margin-calibrated loss with fixed class counts; ignored pixels everywhere
    for name in ("CrossEntropyLoss", "FocalLoss", "DistancePenalizedCELoss", "MarginCalibrationLoss"):
        if not hasattr(sl, name):
            pytest.skip(f"no {name} in this build")
    torch.manual_seed(0)
    model = small_net(3)
    x, y = make_batch(ignore=255)
    common = dict(mode="multiclass", ignore_index=255)
    loss = (
        sl.DiceLoss(domain="batch", **common)
        + 0.5 * sl.CrossEntropyLoss(class_weights=[1.0, 2.0, 0.5], **common)
        + 0.3 * sl.FocalLoss(gamma=2.0, alpha=0.25, **common)
        + 0.2 * sl.DistancePenalizedCELoss(**common)
        + 0.1 * sl.MarginCalibrationLoss(class_counts=[50.0, 30.0, 20.0], **common)
    )
    v_full, g_full = full_batch(model, loss, x, y)
    for label in ("two", "uneven"):
        v, g = accumulated(model, loss, splits(x, y)[label])
        assert max_diff(g, g_full) < TOL, label
        assert abs(float(v - v_full)) < TOL, label


def test_refuses_terms_that_depend_on_the_whole_batch():
    if hasattr(sl, "CrossEntropyLoss"):
        with pytest.raises(ValueError, match="class frequencies of each batch"):
            sl.BatchwiseAccumulator(sl.CrossEntropyLoss(mode="multiclass", class_weights="inverse_frequency"))
        with pytest.raises(ValueError, match="use weight_norm='pixels'"):
            sl.BatchwiseAccumulator(sl.CrossEntropyLoss(mode="multiclass", class_weights=[1.0, 2.0],
                                                        weight_norm="weights"))
    if hasattr(sl, "MarginCalibrationLoss"):
        with pytest.raises(ValueError, match="class counts of each batch"):
            sl.BatchwiseAccumulator(sl.MarginCalibrationLoss(mode="multiclass"))
    if hasattr(sl, "TopKLoss"):
        for domain in ("batch", "image"):
            with pytest.raises(ValueError, match="must be a function of summed statistics"):
                sl.BatchwiseAccumulator(sl.DiceLoss() + sl.TopKLoss(domain=domain))
    for name in ("LovaszLoss", "ComboLoss"):
        if hasattr(sl, name):
            with pytest.raises(ValueError, match="must be a function of summed statistics"):
                sl.BatchwiseAccumulator(getattr(sl, name)(domain="batch"))


def test_scheduled_weights_are_read_at_every_call():
    torch.manual_seed(0)
    model = small_net(1)
    x, y = make_batch(c=1)
    loss = sl.DiceLoss(domain="batch") + (lambda step: 0.1 * step) * sl.ConfidencePenalty()
    acc = sl.BatchwiseAccumulator(loss)
    for _ in range(2):
        loss.step()
        v_full, g_full = full_batch(model, loss, x, y)
        model.zero_grad()
        v = acc.backward(model, sl.split_batch(x, y, 3))
        assert max_diff(grads(model), g_full) < TOL
        assert abs(float(v - v_full)) < TOL


# ---------------------------------------------------------------------------------------
# lower-level pieces, step, passes


def test_lower_level_pieces_reproduce_backward():
    torch.manual_seed(0)
    model = small_net(3)
    x, y = make_batch()
    loss = sl.DiceLoss(mode="multiclass", domain="batch") + sl.ConfidencePenalty(mode="multiclass")
    v_full, g_full = full_batch(model, loss, x, y)
    acc = sl.BatchwiseAccumulator(loss)
    mbs = sl.split_batch(x, y, 3)
    with torch.no_grad():
        parts = [acc.statistics(model(xm), ym) for xm, ym in mbs]
    total = acc.reduce(sum(parts[1:], parts[0]))
    assert isinstance(total, BatchStatistics) and int(total.images) == 7
    model.zero_grad()
    shares = []
    for xm, ym in mbs:
        share = acc.share(model(xm), ym, total)
        share.backward()
        shares.append(share.detach())
    assert max_diff(grads(model), g_full) < TOL
    # the shares' values add up to the loss of the whole batch
    assert abs(float(sum(shares) - v_full)) < TOL


def test_collect_then_accumulate():
    torch.manual_seed(0)
    model = small_net(3)
    x, y = make_batch()
    loss = sl.IoULoss(mode="multiclass", domain="batch")
    v_full, g_full = full_batch(model, loss, x, y)
    acc = sl.BatchwiseAccumulator(loss)
    mbs = sl.split_batch(x, y, 2)
    model.zero_grad()
    total = acc.collect(model, mbs)
    assert model[0].weight.grad is None or float(model[0].weight.grad.abs().max()) == 0.0
    v = acc.accumulate(model, mbs, total)
    assert max_diff(grads(model), g_full) < TOL
    assert abs(float(v - v_full)) < TOL


def test_step_equals_a_full_batch_sgd_step():
    torch.manual_seed(0)
    ref = small_net(3)
    model = small_net(3)
    model.load_state_dict(ref.state_dict())
    x, y = make_batch()
    loss = sl.TverskyLoss(mode="multiclass", domain="batch")
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    acc = sl.BatchwiseAccumulator(loss)
    for _ in range(3):
        opt_ref.zero_grad()
        v_ref = loss(ref(x), y)
        v_ref.backward()
        v_ref = v_ref.detach()
        opt_ref.step()
        v = acc.step(model, opt, sl.split_batch(x, y, 3))
        assert abs(float(v - v_ref)) < TOL
    for p, q in zip(model.parameters(), ref.parameters()):
        assert float((p - q).detach().abs().max()) < TOL


class Counting(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_pass_count_one_micro_batch_runs_once():
    torch.manual_seed(0)
    model = Counting(small_net(1))
    x, y = make_batch(c=1)
    acc = sl.BatchwiseAccumulator(sl.DiceLoss(domain="batch"))
    acc.backward(model, sl.split_batch(x, y, 7))
    assert model.calls == 1
    model.calls = 0
    acc.backward(model, sl.split_batch(x, y, 3))
    assert model.calls == 6  # 3 micro-batches, two passes


def test_dropout_masks_are_replayed():
    # pass 2 replays pass 1's generator states, so the dropout masks match: the result
    # equals keeping the graphs of all micro-batches (same draws, same order)
    torch.manual_seed(0)
    model = nn.Sequential(small_net(3), nn.Dropout2d(0.5)).double().train()
    x, y = make_batch()
    loss = sl.DiceLoss(mode="multiclass", domain="batch")
    mbs = sl.split_batch(x, y, 3)
    torch.manual_seed(5)
    model.zero_grad()
    loss(torch.cat([model(xm) for xm, _ in mbs]), y).backward()
    g_ref = grads(model)
    torch.manual_seed(5)
    _, g = accumulated(model, loss, mbs)
    assert max_diff(g, g_ref) < TOL
    # without the replay the statistics differ between the passes
    with pytest.raises(ValueError, match="`micro_batches` must give the same statistics on both passes"):
        accumulated(model, loss, mbs, preserve_rng_state=False)


# ---------------------------------------------------------------------------------------
# BatchNorm


def test_batchnorm_in_train_mode_is_refused():
    model = small_net(1, norm="batch").train()
    x, y = make_batch(c=1)
    acc = sl.BatchwiseAccumulator(sl.DiceLoss(domain="batch"))
    with pytest.raises(ValueError, match="`model` must not have BatchNorm in train mode"):
        acc.backward(model, sl.split_batch(x, y, 3))
    # one micro-batch is the whole batch: BatchNorm sees what it sees without the accumulator
    _, g_full = full_batch(model, sl.DiceLoss(domain="batch"), x, y)
    _, g = accumulated(model, sl.DiceLoss(domain="batch"), sl.split_batch(x, y, 7))
    assert max_diff(g, g_full) < TOL


def test_frozen_batchnorm_is_exact():
    torch.manual_seed(0)
    model = small_net(3, norm="batch").train()
    model.apply(sl.freeze_bn)
    x, y = make_batch()
    loss = sl.DiceLoss(mode="multiclass", domain="batch")
    _, g_full = full_batch(model, loss, x, y)
    _, g = accumulated(model, loss, sl.split_batch(x, y, 3))
    assert max_diff(g, g_full) < TOL


def test_batchnorm_allowed_updates_running_statistics_once_per_micro_batch():
    torch.manual_seed(0)
    model = small_net(3, norm="batch").train()
    ref = small_net(3, norm="batch").train()
    ref.load_state_dict(model.state_dict())
    x, y = make_batch()
    mbs = sl.split_batch(x, y, 3)
    loss = sl.DiceLoss(mode="multiclass", domain="batch")
    sl.BatchwiseAccumulator(loss, batchnorm="allow").backward(model, mbs)
    with torch.no_grad():
        for xm, _ in mbs:  # ordinary processing: one train-mode forward per micro-batch
            ref(xm)
    bn, bn_ref = model[1], ref[1]
    assert int(bn.num_batches_tracked) == len(mbs)
    torch.testing.assert_close(bn.running_mean, bn_ref.running_mean, rtol=0, atol=1e-15)
    torch.testing.assert_close(bn.running_var, bn_ref.running_var, rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------------------
# refusals and errors


def _no_sync_loss(input, target, *, domain: str = "batch", reduction: str = "mean"):
    """A loss over the batch that is not a function of summed statistics."""
    return input.flatten().sort().values[: input.numel() // 2].mean()


class NotDecomposable(SegLoss):
    function = staticmethod(_no_sync_loss)
    info = LossInfo("not_decomposable", "whole_batch")


def test_refuses_a_loss_that_is_not_a_function_of_summed_statistics():
    with pytest.raises(ValueError, match="must be a function of summed statistics"):
        sl.BatchwiseAccumulator(NotDecomposable())
    with pytest.raises(ValueError, match="must be a function of summed statistics"):
        sl.BatchwiseAccumulator(sl.DiceLoss() + NotDecomposable())


def test_refuses_foreign_modules_and_unreduced_losses():
    with pytest.raises(TypeError, match="`loss` must be a seglosses loss module"):
        sl.BatchwiseAccumulator(nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="`loss` term 'dice' must reduce to a scalar"):
        sl.BatchwiseAccumulator(sl.DiceLoss(reduction="none"))
    with pytest.raises(ValueError, match="`loss` term 'dice' must have sync None, 'distributed'"):
        sl.BatchwiseAccumulator(sl.DiceLoss(domain="batch", sync=StatisticsSync()))
    with pytest.raises(ValueError, match="`batchnorm` must be one of 'raise', 'allow'; got 'warn'"):
        sl.BatchwiseAccumulator(sl.DiceLoss(), batchnorm="warn")
    with pytest.raises(ValueError, match="`sync` must be None, 'distributed'.*did you mean 'distributed'"):
        sl.BatchwiseAccumulator(sl.DiceLoss(), sync="distributd")


def test_errors_on_micro_batch_sources():
    model = small_net(1)
    x, y = make_batch(c=1)
    acc = sl.BatchwiseAccumulator(sl.DiceLoss(domain="batch"))
    with pytest.raises(TypeError, match="`micro_batches` must be re-iterable"):
        acc.backward(model, ((x[i:i + 2], y[i:i + 2]) for i in (0, 2)))
    with pytest.raises(ValueError, match="`micro_batches` must hold at least one"):
        acc.backward(model, [])
    with pytest.raises(TypeError, match=r"`micro_batches` must yield \(input, target\) pairs"):
        acc.backward(model, [x, x])
    with pytest.raises(TypeError, match="`model` must return the logits tensor"):
        acc.backward(lambda t: {"out": t}, [(x, y), (x, y)])


def test_error_when_micro_batches_disagree_in_classes():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    b = torch.randn(2, 4, 4, 5, generator=g, dtype=torch.float64)
    ya, yb = torch.randint(0, 3, (2, 4, 5), generator=g), torch.randint(0, 4, (2, 4, 5), generator=g)
    acc = sl.BatchwiseAccumulator(sl.DiceLoss(mode="multiclass", domain="batch"))
    with pytest.raises(ValueError, match="micro-batch 1 has 4 channels.*micro-batch 0 has 3 channels"):
        acc.backward(lambda t: t, [(a, ya), (b, yb)])
    with pytest.raises(ValueError, match="`micro_batches` must agree in channels"):
        acc.statistics(a, ya) + acc.statistics(b, yb)


def test_error_when_micro_batches_disagree_in_target_format():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    ya = torch.randint(0, 3, (2, 4, 5), generator=g)
    onehot = nn.functional.one_hot(ya, 3).movedim(-1, 1).double()
    acc = sl.BatchwiseAccumulator(sl.DiceLoss(mode="multiclass", domain="batch"))
    with pytest.raises(ValueError, match=r"label map \(integer\) target.*dense \(float\) target"):
        acc.backward(lambda t: t, [(a, onehot), (a, ya)])


class Drifting:
    """Re-iterable micro-batches whose data change between the passes (e.g. random augmentation)."""

    def __init__(self, x, y):
        self.x, self.y, self.reads = x, y, 0

    def __iter__(self):
        self.reads += 1
        shift = 0.0 if self.reads == 1 else 0.5
        for i in (0, 3):
            yield self.x[i:i + 3] + shift, self.y[i:i + 3]


class Shrinking(Drifting):
    def __iter__(self):
        self.reads += 1
        stops = (0, 3) if self.reads == 1 else (0,)
        for i in stops:
            yield self.x[i:i + 3], self.y[i:i + 3]


def test_error_when_the_passes_see_different_data():
    model = small_net(1)
    x, y = make_batch(c=1)
    acc = sl.BatchwiseAccumulator(sl.DiceLoss(domain="batch"))
    with pytest.raises(ValueError, match="`micro_batches` must give the same statistics on both passes"):
        acc.backward(model, Drifting(x, y))
    with pytest.raises(ValueError, match="pass 1 saw 2, pass 2 saw 1"):
        acc.backward(model, Shrinking(x, y))


# ---------------------------------------------------------------------------------------
# split_batch


def test_split_batch():
    x, y = torch.arange(5.0).reshape(5, 1, 1, 1), torch.arange(5).reshape(5, 1, 1)
    mb = sl.split_batch(x, y, 2)
    assert isinstance(mb, MicroBatches) and len(mb) == 3
    assert [int(t.shape[0]) for t, _ in mb] == [2, 2, 1]
    assert [t.shape[0] for t, _ in mb] == [t.shape[0] for t, _ in mb]  # re-iterable
    assert torch.equal(mb[-1][1], y[4:])
    with pytest.raises(IndexError):
        mb[3]
    with pytest.raises(ValueError, match="`batch_size` must be >= 1; got 0"):
        sl.split_batch(x, y, 0)
    with pytest.raises(TypeError, match="`batch_size` must be an int; got float"):
        sl.split_batch(x, y, 2.0)
    with pytest.raises(ValueError, match="`target` must have the input's batch size 5"):
        sl.split_batch(x, y[:4], 2)


def test_accumulate_needs_the_statistics_of_collect():
    torch.manual_seed(0)
    model = small_net(1)
    x, y = make_batch(c=1)
    acc = sl.BatchwiseAccumulator(sl.DiceLoss(domain="batch"))
    mbs = sl.split_batch(x, y, 3)
    with torch.no_grad():
        total = acc.statistics(model(x), y)
    with pytest.raises(ValueError, match="`total` must come from collect()"):
        acc.accumulate(model, mbs, total)
    total = acc.collect(model, mbs)
    with pytest.raises(ValueError, match="micro-batch 0 has 2 images in pass 2, 3 in pass 1"):
        acc.accumulate(model, sl.split_batch(x, y, 2), total)


def test_step_with_a_grad_scaler():
    scaler_cls = getattr(getattr(torch, "amp", None), "GradScaler", None)
    if scaler_cls is None:
        pytest.skip("torch.amp.GradScaler not available")
    torch.manual_seed(0)
    ref = small_net(3)
    model = small_net(3)
    model.load_state_dict(ref.state_dict())
    x, y = make_batch()
    loss = sl.DiceLoss(mode="multiclass", domain="batch")
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss(ref(x), y).backward()
    opt_ref.step()
    scaler = scaler_cls("cpu", init_scale=2.0 ** 8)
    sl.BatchwiseAccumulator(loss).step(model, opt, sl.split_batch(x, y, 3), scaler=scaler)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert float((p - q).detach().abs().max()) < TOL
