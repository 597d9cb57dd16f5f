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


def _counting(monkeypatch):
    """Count canonicalisations, value-check passes (each one host sync) and kernel passes."""
    import seglosses._inputs as inputs
    import seglosses._stats as stats
    import seglosses.functional.region as region

    calls = {"canonicalize": 0, "checks": 0, "kernel": 0}

    def wrap(owner, name, key):
        orig = getattr(owner, name)

        def counted(*a, **k):
            calls[key] += 1
            return orig(*a, **k)

        monkeypatch.setattr(owner, name, counted)

    wrap(region, "canonicalize", "canonicalize")
    wrap(inputs.ValueCheck, "judge", "checks")  # every check pass ends here, with its sync
    wrap(stats, "_moments_forward", "kernel")  # the eager kernel's forward, in either form
    return calls


def test_region_terms_share_one_canonicalisation_and_check(monkeypatch):
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (2, 6, 7))
    kw = dict(mode="multiclass")
    terms = [sl.DiceLoss(**kw), sl.TverskyLoss(alpha=0.4, beta=0.6, **kw), sl.GeneralizedDiceLoss(**kw),
             sl.DiceLoss(squared_denominator=True, **kw)]
    s = WeightedSum([(1.0, terms[0]), (0.5, terms[1]), (0.25, terms[2]), (2.0, terms[3])])
    ref = terms[0](x, t) + 0.5 * terms[1](x, t) + 0.25 * terms[2](x, t) + 2.0 * terms[3](x, t)
    (gref,) = torch.autograd.grad(ref, x)
    calls = _counting(monkeypatch)
    v = s(x, t)
    (g,) = torch.autograd.grad(v, x)
    torch.testing.assert_close(v, ref)
    torch.testing.assert_close(g, gref)
    # one canonicalisation and one value check for the four terms; one kernel pass for
    # the three that ask for the same moments (p, g, pg), one for the squared form
    assert calls == {"canonicalize": 1, "checks": 1, "kernel": 2}


def test_sharing_respects_different_settings_and_inputs(monkeypatch):
    x = torch.randn(2, 3, 6, 7)
    t = torch.randint(0, 3, (2, 6, 7))
    s = sl.DiceLoss(mode="multiclass") + sl.DiceLoss(mode="multiclass", include_background=False) \
        + sl.DiceLoss(mode="multiclass", domain="batch")
    ref = sum(term(x, t) for term in s.losses)
    calls = _counting(monkeypatch)
    torch.testing.assert_close(s(x, t), ref)
    assert calls["canonicalize"] == 2 and calls["kernel"] == 3  # include_background splits; domain only sums
    with pytest.raises(ValueError, match="`target`"):
        s(x, t + 5)  # labels out of range: the shared check still runs
