"""The device shortcuts of `_fast.py` against their plain fallbacks.

Every shortcut has a plain form in public torch operations; here the whole statistics
kernel runs both ways (the shortcuts forced off by `_fast.plain()`) and must give the
same values and gradients, and the version/op guard must choose the plain forms when
the shortcuts are unavailable.
"""
from __future__ import annotations

import pytest
import torch

from seglosses import _fast
from seglosses._inputs import canonicalize
from seglosses._stats import _Moments

NAME_SETS = [("p", "g", "pg"), ("p", "g", "absdiff"), ("pg", "pp", "gg"), ("p", "pp", "ppg", "pgg", "absdiff")]
CASES = [("binary", 1, "labels"), ("binary", 1, "soft"), ("multilabel", 3, "soft"),
         ("multiclass", 4, "labels"), ("multiclass", 3, "soft")]


def _pair(mode, c, kind, dtype, ignore):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, c, 6, 40, generator=g).to(dtype)
    if kind == "labels":
        t = torch.randint(0, 2 if mode == "binary" else c, (2, 6, 40), generator=g)
        if ignore:
            t[0, 0] = 255
    else:
        t = torch.rand(2, c, 6, 40, generator=g)
        if mode == "multiclass":
            t = t / t.sum(1, keepdim=True)
    return x, t, (255 if ignore and kind == "labels" else None)


def _run(x, t, mode, ignore_index, names):
    canon = canonicalize(x, t, mode=mode, ignore_index=ignore_index)
    xe = canon.x.detach().clone().requires_grad_()
    out = _Moments.apply(xe, canon.labels, canon.dense, canon.valid, canon.activation, tuple(names), "eager", 0)
    w = [torch.linspace(0.5, 2.0, o.numel()).view_as(o).to(o.dtype) for o in out]
    grad, = torch.autograd.grad(sum((o * wi).sum() for o, wi in zip(out, w)), xe)
    return [o.detach() for o in out], grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("mode,c,kind", CASES)
@pytest.mark.parametrize("names", NAME_SETS)
@pytest.mark.parametrize("ignore", [False, True])
def test_plain_fallback_equals_shortcuts(dtype, mode, c, kind, names, ignore):
    assert _fast.available()  # this torch has them: the comparison is not vacuous
    x, t, ii = _pair(mode, c, kind, dtype, ignore)
    fast_out, fast_grad = _run(x, t, mode, ii, names)
    with _fast.plain():
        assert not _fast.enabled(torch.device("cpu"))
        plain_out, plain_grad = _run(x, t, mode, ii, names)
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=1e-5, atol=1e-6)
    for a, b in zip(fast_out, plain_out):
        torch.testing.assert_close(a, b, **tol)
    torch.testing.assert_close(fast_grad, plain_grad, **tol)
    assert fast_grad.dtype == plain_grad.dtype == dtype


def test_plain_fallback_gradcheck():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (2, 4, 5))
    import seglosses.functional as seglosses

    with _fast.plain():
        assert torch.autograd.gradcheck(
            lambda z: seglosses.dice_loss(z, t, mode="multiclass") + seglosses.tversky_loss(
                z, t, mode="multiclass", soft_form=True), (x,))


def test_each_shortcut_against_its_plain_form():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(3, 4, 50, generator=g), 1)
    v = torch.randn(3, 4, 50, generator=g)
    want = p * (v - (p * v).sum(1, keepdim=True))
    torch.testing.assert_close(_fast.softmax_backward_(p, v.clone()), want)
    s = torch.sigmoid(torch.randn(3, 4, 50, generator=g))
    torch.testing.assert_close(_fast.sigmoid_backward_(s, v.clone()), v * s * (1 - s))
    h = torch.randn(3, 4, 50, generator=g).to(torch.bfloat16)
    idx = torch.randint(0, 4, (3, 1, 50), generator=g)
    assert torch.equal(_fast.gather(h, 1, idx), h.gather(1, idx))
    src = torch.randn(3, 1, 50, generator=g)
    assert torch.equal(_fast.scatter_(h.clone(), 1, idx, src), h.clone().scatter_(1, idx, src.to(h.dtype)))
    torch.testing.assert_close(_fast.sum_last(h, torch.float32), h.sum(-1, dtype=torch.float32))
    with _fast.plain():  # the activation shortcuts step aside: None, the caller runs the plain form
        assert _fast.softmax_backward_(p, v.clone()) is None
        assert _fast.sigmoid_backward_(s, v.clone()) is None


def test_non_contiguous_buffers_are_not_written_in_place():
    p = torch.softmax(torch.randn(2, 8, 3), 1).transpose(1, 2)
    assert _fast.softmax_backward_(p, torch.randn(2, 8, 3).transpose(1, 2)) is None


@pytest.mark.parametrize("breakage", ["old_torch", "missing_op"])
def test_guard_falls_back_to_plain_forms(breakage, monkeypatch):
    monkeypatch.setitem(_fast._state, "probe", None)
    if breakage == "old_torch":
        monkeypatch.setattr(_fast, "_version", lambda: (1, 13))
    else:
        monkeypatch.setattr(torch.ops.aten, "sigmoid_backward", object())  # no .grad_input
    assert not _fast.available()
    assert not _fast.enabled(torch.device("cpu"))
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    t = torch.randint(0, 3, (2, 4, 4))
    import seglosses.functional as seglosses

    seglosses.dice_loss(x, t, mode="multiclass").backward()
    assert torch.isfinite(x.grad).all()
    monkeypatch.setitem(_fast._state, "probe", None)


def test_environment_variable_turns_the_shortcuts_off(monkeypatch):
    monkeypatch.setitem(_fast._state, "forced_plain", None)
    monkeypatch.setenv("SEGLOSSES_PLAIN_KERNEL", "1")
    assert not _fast.enabled(torch.device("cpu"))
    monkeypatch.setitem(_fast._state, "forced_plain", None)
    monkeypatch.setenv("SEGLOSSES_PLAIN_KERNEL", "0")
    assert _fast.enabled(torch.device("cpu"))
    monkeypatch.setitem(_fast._state, "forced_plain", None)
