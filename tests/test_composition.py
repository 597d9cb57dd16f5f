"""Loss objects compose with + and scalar *, and report their terms."""
from __future__ import annotations

import pytest
import torch

import seglosses as sl
from seglosses.losses import WeightedSum


def _xt():
    return torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5))


def test_sum_and_scale():
    x, t = _xt()
    d = sl.DiceLoss(mode="multiclass")
    i = sl.IoULoss(mode="multiclass")
    s = 0.5 * d + i * 0.25 + d / 4
    assert isinstance(s, WeightedSum)
    assert s.weights() == [0.5, 0.25, 0.25]
    torch.testing.assert_close(s(x, t), 0.75 * d(x, t) + 0.25 * i(x, t))
    total, terms = s(x, t, return_terms=True)
    assert list(terms) == ["dice", "iou", "dice_2"]
    nested = 2 * (d + i)
    assert nested.weights() == [2.0, 2.0]


def test_schedules():
    x, t = _xt()
    d = sl.DiceLoss(mode="multiclass")
    ramp = lambda step: min(1.0, 0.1 * step)  # noqa: E731
    s = d + 0.5 * (ramp * sl.IoULoss(mode="multiclass"))
    assert s.weights() == [1.0, 0.0]
    s.step(5)
    assert s.weights() == pytest.approx([1.0, 0.25])
    torch.testing.assert_close(s(x, t), d(x, t) + 0.25 * sl.IoULoss(mode="multiclass")(x, t))


def test_bad_composition():
    d = sl.DiceLoss()
    with pytest.raises(TypeError):
        d + 1.0
    with pytest.raises(TypeError):
        d * "a"
    with pytest.raises(ValueError, match="`terms` must hold at least one"):
        WeightedSum([])
    with pytest.raises(TypeError, match=r"`terms\[0\]` weight must be a number"):
        WeightedSum([("x", d)])


def test_schedule_step_is_in_state_dict():
    s = sl.build_loss("dice + ramp(0.0, 1.0, 10)*iou")
    s.step(4)
    state = s.state_dict()
    fresh = sl.build_loss("dice + ramp(0.0, 1.0, 10)*iou")
    assert fresh.weights() == [1.0, 0.0]
    fresh.load_state_dict(state)
    assert fresh.current_step == 4 and fresh.weights() == pytest.approx([1.0, 0.4])
    nested = WeightedSum([(1.0, sl.DiceLoss()), (2.0, s)])
    assert set(nested.state_dict()) == {"_extra_state", "losses.1._extra_state"}


def test_weighted_sum_is_an_initialised_module():
    s = sl.DiceLoss() + sl.IoULoss()
    assert s.config == {} and s.name == "WeightedSum" and s.training
    assert [m.name for m in s.losses] == ["dice", "iou"]
