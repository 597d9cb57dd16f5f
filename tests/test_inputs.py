"""Every error path of the canonical inputs: the message names the argument, the expectation and what was got."""
from __future__ import annotations

import pytest
import torch

import seglosses as sl
from seglosses import functional as F


def mc(b=2, c=3, h=4, w=5):
    return torch.randn(b, c, h, w), torch.randint(0, c, (b, h, w))


@pytest.mark.parametrize(
    "kwargs, input_, target, exc, match",
    [
        (dict(mode="multiclass"), torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 6)), ValueError,
         r"`target` label map must have shape \(2, 4, 5\).*got \(2, 4, 6\)"),
        (dict(mode="multiclass"), torch.randn(2, 3, 4, 5), torch.rand(2, 4, 4, 5), ValueError,
         r"`target` must have shape \(2, 3, 4, 5\).*got \(2, 4, 4, 5\)"),
        (dict(mode="multiclass"), torch.randn(2, 3, 4, 5), torch.randint(0, 4, (2, 4, 5)).index_fill_(1, torch.tensor([0]), 3),
         ValueError, r"`target` labels must lie in \[0, 2\] for 3 classes; got values in \[0, 3\]"),
        (dict(mode="multiclass"), torch.randn(2, 3, 4, 5), torch.full((2, 4, 5), -1), ValueError,
         r"`target` labels must lie in \[0, 2\]"),
        (dict(mode="multiclass"), torch.randn(2, 3, 4, 5), torch.rand(2, 4, 5), TypeError,
         r"`target` label map \[B, \*spatial\] must be an integer tensor.*float32"),
        (dict(mode="multiclass"), torch.randn(2, 3, 4, 5), torch.randint(0, 2, (2, 3, 4, 5)), TypeError,
         r"`target` of shape \[B, C, \*spatial\] must be a float one-hot.*integer dtype torch.int64"),
        (dict(mode="binary"), torch.randn(2, 3, 4, 5), torch.randint(0, 2, (2, 4, 5)), ValueError,
         r"`input` must have 1 channel in binary mode.*\(2, 3, 4, 5\)"),
        (dict(mode="multiclass"), torch.randn(2, 1, 4, 5), torch.randint(0, 1, (2, 4, 5)), ValueError,
         r"`input` must have at least 2 channels in multiclass mode"),
        (dict(mode="binary"), torch.randn(2, 1, 4, 5), torch.randint(0, 2, (2, 4, 4)), ValueError,
         r"`target` must have shape \(2, 4, 5\) or \(2, 1, 4, 5\)"),
        (dict(mode="binary"), torch.randn(2, 1, 4, 5), torch.randint(0, 3, (2, 4, 5)).fill_(2), ValueError,
         r"`target` labels must lie in \[0, 1\]"),
        (dict(mode="multilabel"), torch.randn(2, 3, 4, 5), torch.randint(0, 2, (2, 4, 5)), ValueError,
         r"`target` must have shape \(2, 3, 4, 5\) in multilabel mode"),
        (dict(mode="binary", from_logits=False), torch.randn(2, 1, 4, 5) * 3, torch.randint(0, 2, (2, 4, 5)),
         ValueError, r"`input` must hold probabilities in \[0, 1\] \(pass from_logits=True for logits\)"),
        (dict(mode="binary"), torch.full((2, 1, 4, 5), float("nan")), torch.randint(0, 2, (2, 4, 5)), ValueError,
         r"`input` must be finite; got 40 NaN and 0 Inf"),
        (dict(mode="binary"), torch.full((2, 1, 4, 5), float("inf")), torch.randint(0, 2, (2, 4, 5)), ValueError,
         r"`input` must be finite; got 0 NaN and 40 Inf"),
        (dict(mode="binary"), torch.randn(2, 1, 4, 5), torch.rand(2, 4, 5) * 2, ValueError,
         r"`target` must hold probabilities in \[0, 1\]"),
        (dict(mode="binary"), torch.randint(0, 2, (2, 1, 4, 5)), torch.randint(0, 2, (2, 4, 5)), TypeError,
         r"`input` must be a floating-point tensor; got torch.int64"),
        (dict(mode="binary"), torch.randn(2, 5), torch.randint(0, 2, (2, 5)), ValueError,
         r"`input` must have shape \[B, C, \*spatial\]"),
        (dict(mode="multi-class"), torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5)), ValueError,
         r"`mode` must be one of 'binary', 'multiclass', 'multilabel'; got 'multi-class' \(did you mean 'multiclass'\?\)"),
        (dict(mode="multiclass", domain="batches"), torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5)), ValueError,
         r"`domain` must be one of 'image', 'batch'; got 'batches' \(did you mean 'batch'\?\)"),
        (dict(mode="multiclass", reduction="avg"), torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5)), ValueError,
         r"`reduction` must be one of 'mean', 'sum', 'none'; got 'avg'"),
        (dict(mode="multiclass", ignore_index=1), torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5)), ValueError,
         r"`ignore_index` must not be a class index in \[0, 2\]"),
        (dict(mode="multiclass", class_weights=[1.0, 2.0]), torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5)),
         ValueError, r"`class_weights` must hold one weight per class kept by the loss \(3\); got shape \(2,\)"),
        (dict(mode="multiclass", class_weights=[1.0, -2.0, 1.0]), torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5)),
         ValueError, r"`class_weights` must be finite, >= 0"),
        (dict(mode="binary", smooth=-1.0), torch.randn(2, 1, 4, 5), torch.randint(0, 2, (2, 4, 5)), ValueError,
         r"`smooth` must be a finite number >= 0; got -1.0"),
        (dict(mode="binary"), torch.randn(0, 1, 4, 5), torch.randint(0, 2, (0, 4, 5)), ValueError,
         r"`input` must hold at least one image; got batch size 0"),
        (dict(mode="binary"), torch.randn(2, 1, 4, 5), [[0, 1]], TypeError, r"`target` must be a torch.Tensor; got list"),
    ],
)
def test_bad_input_messages(kwargs, input_, target, exc, match):
    with pytest.raises(exc, match=match):
        F.dice_loss(input_, target, **kwargs)


@pytest.mark.parametrize("fn", [F.tversky_loss, F.focal_tversky_loss])
def test_negative_alpha_beta(fn):
    x, t = mc()
    with pytest.raises(ValueError, match="`alpha` must be a finite number >= 0; got -0.1"):
        fn(x, t, mode="multiclass", alpha=-0.1)
    with pytest.raises(ValueError, match="`beta` must be a finite number >= 0; got -1.0"):
        fn(x, t, mode="multiclass", beta=-1.0)
    with pytest.raises(ValueError, match="`gamma` must be a finite number > 0"):
        F.focal_tversky_loss(x, t, mode="multiclass", gamma=0.0)


def test_other_hyper_parameters():
    x, t = mc()
    with pytest.raises(ValueError, match="`weight_type` must be one of 'square', 'simple', 'uniform'; got 'sqare'"):
        F.generalized_dice_loss(x, t, weight_type="sqare")
    with pytest.raises(ValueError, match=r"`w` must lie in \[0, 1\]; got 1.5"):
        F.sensitivity_specificity_loss(x, t, mode="multiclass", w=1.5)
    with pytest.raises(ValueError, match="`k` must be a finite number >= 0"):
        F.penalty_generalized_dice_loss(x, t, k=-2)
    with pytest.raises(ValueError, match="`soft_form` must be False when `squared_denominator` is True"):
        F.dice_loss(x, t, mode="multiclass", soft_form=True, squared_denominator=True)


def test_device_mismatch_message():
    x, t = mc()
    meta = torch.empty(2, 4, 5, dtype=torch.long, device="meta")
    with pytest.raises(ValueError, match="`target` must be on the input's device cpu; got meta"):
        F.dice_loss(x, meta, mode="multiclass")


def test_ignore_index_values_pass_the_range_check():
    x, t = mc()
    t[0, 0, 0] = 255
    t[1, 1, 1] = 255
    assert torch.isfinite(F.dice_loss(x, t, mode="multiclass", ignore_index=255))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\] or ignore_index=254 for 3 classes; got values in \[0, 255\]"):
        F.dice_loss(x, t, mode="multiclass", ignore_index=254)


def test_check_values_false_skips_value_checks_only():
    x = torch.randn(2, 1, 4, 5) * 3
    t = torch.randint(0, 2, (2, 4, 5))
    # probabilities out of range are not looked at with check_values=False ...
    F.dice_loss(x, t, from_logits=False, check_values=False)
    # ... but shapes still are
    with pytest.raises(ValueError, match="`target` must have shape"):
        F.dice_loss(x, t[:, :3], check_values=False)


def test_all_validation_lives_in_one_module():
    import pathlib
    import re

    src = pathlib.Path(sl.__file__).parent
    for path in list(src.glob("functional/*.py")) + list(src.glob("losses/*.py")):
        text = path.read_text()
        assert not re.search(r"^\s*assert ", text, re.M), f"assert used for validation in {path.name}"


@pytest.mark.parametrize("layout", ["channels_last", "channels_last_3d", "permuted", "sliced"])
def test_value_checks_on_non_contiguous_layouts(layout):
    """The bounds are read in memory order; the checks see the same values in any layout."""
    from seglosses._inputs import _bounds, _in_memory_order

    if layout == "channels_last":
        x = torch.randn(2, 3, 5, 6).to(memory_format=torch.channels_last)
    elif layout == "channels_last_3d":
        x = torch.randn(2, 3, 4, 5, 6).to(memory_format=torch.channels_last_3d)
    elif layout == "permuted":
        x = torch.randn(2, 5, 6, 3).permute(0, 3, 1, 2)
    else:
        x = torch.randn(2, 3, 10, 6)[:, :, ::2]
    if layout != "sliced":
        assert _in_memory_order(x).is_contiguous()
    wide = x[:, :1].expand(x.shape[0], 5, *x.shape[2:])  # a broadcast dim is read once
    assert _in_memory_order(wide).numel() == x[:, :1].numel()
    assert _bounds(wide).tolist() == [float(x[:, :1].min()), float(x[:, :1].max())]
    assert _bounds(x).tolist() == [float(x.min()), float(x.max())]
    x = x.clone(memory_format=torch.preserve_format)
    x[(1, 2, 3, 4) + (1,) * (x.dim() - 4)] = float("nan")
    t = torch.randint(0, 3, (x.shape[0],) + tuple(x.shape[2:]))
    with pytest.raises(ValueError, match=r"`input` must be finite; got 1 NaN and 0 Inf values"):
        sl._inputs.canonicalize(x, t, mode="multiclass")
