"""``seglosses.set_kernel("auto")``: the compiled kernel while compiling works, the eager
one with exactly one warning once it fails (compiling made to fail here, so the test
needs no compiler and runs fast)."""
from __future__ import annotations

import warnings

import pytest
import torch

import seglosses
from seglosses import _fused
from seglosses.functional import dice_loss, tversky_loss


class _NoCompiler(Exception):
    """Stands for an inductor error (the kernel wraps errors of torch's compiler modules)."""


_NoCompiler.__module__ = "torch._inductor.exc"


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(_fused, "_state", {})
    monkeypatch.setattr(_fused, "_warned", {})
    monkeypatch.setattr(_fused, "_compiled", {})
    yield
    seglosses.set_kernel("eager")


def _pair():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 6, 5, generator=g), torch.randint(0, 3, (2, 6, 5), generator=g)


def _value_and_grad(fn, x, t, **kw):
    x = x.clone().requires_grad_()
    v = fn(x, t, mode="multiclass", **kw)
    v.backward()
    return v.detach(), x.grad


def test_auto_falls_back_to_eager_with_one_warning(fresh, monkeypatch):
    def broken(fn, key):
        def run(*args):
            raise _NoCompiler("no C++ compiler found")
        return run

    monkeypatch.setattr(_fused, "_compile", broken)
    x, t = _pair()
    want = [_value_and_grad(f, x, t) for f in (dice_loss, tversky_loss)]
    seglosses.set_kernel("auto")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [_value_and_grad(f, x, t) for f in (dice_loss, tversky_loss)]
        got += [_value_and_grad(dice_loss, x, t, domain="batch")]
    mine = [w for w in caught if "set_kernel('auto')" in str(w.message)]
    assert len(mine) == 1 and issubclass(mine[0].category, RuntimeWarning)
    assert "no C++ compiler found" in str(mine[0].message) and "eager kernel runs instead" in str(mine[0].message)
    for (v0, g0), (v1, g1) in zip(want, got):
        torch.testing.assert_close(v1, v0)
        torch.testing.assert_close(g1, g0)
    assert seglosses.get_kernel() == "auto"


def test_auto_checks_values_after_falling_back(fresh, monkeypatch):
    monkeypatch.setattr(_fused, "_compile", lambda fn, key: (_ for _ in ()).throw(_NoCompiler("broken")))
    seglosses.set_kernel("auto")
    x, t = _pair()
    t[0, 0, 0] = 7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"`target` labels must lie in \[0, 2\]"):
            dice_loss(x, t, mode="multiclass")


def test_auto_fails_in_backward_only(fresh, monkeypatch):
    """Compiling the backward fails after the forward compiled: the same call finishes eagerly."""
    def half_broken(fn, key):
        if fn.__name__ == "fused_backward":
            def run(*args):
                raise _NoCompiler("backward does not compile")
            return run
        return fn  # "compiled" = the fused form run as it is

    monkeypatch.setattr(_fused, "_compile", half_broken)
    x, t = _pair()
    v0, g0 = _value_and_grad(dice_loss, x, t)
    seglosses.set_kernel("auto")
    with pytest.warns(RuntimeWarning, match="backward does not compile"):
        v1, g1 = _value_and_grad(dice_loss, x, t)
    torch.testing.assert_close(v1, v0)
    torch.testing.assert_close(g1, g0)


def test_auto_uses_the_compiled_kernel_when_it_compiles(fresh, monkeypatch):
    calls = []

    def fake(fn, key):
        calls.append(fn.__name__)
        return fn

    monkeypatch.setattr(_fused, "_compile", fake)
    seglosses.set_kernel("auto")
    x, t = _pair()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _value_and_grad(dice_loss, x, t)
    assert calls == ["fused_forward", "fused_backward"]


def test_compiled_kernel_still_raises_when_compiling_fails(fresh, monkeypatch):
    monkeypatch.setattr(_fused, "_compile", lambda fn, key: (_ for _ in ()).throw(_NoCompiler("broken")))
    seglosses.set_kernel("compiled")
    x, t = _pair()
    with pytest.raises(RuntimeError, match=r"failed to compile.*Use seglosses.set_kernel\('eager'\)"):
        dice_loss(x, t, mode="multiclass")


def test_auto_from_the_environment(fresh, monkeypatch):
    monkeypatch.setenv("SEGLOSSES_KERNEL", "auto")
    assert seglosses.get_kernel() == "auto"
