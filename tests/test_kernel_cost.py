"""The work per call of the eager statistics kernel and of the input checks.

Counted with a dispatch mode (every ATen operation the call runs), so the tests are
exact and independent of timing: the activation runs once per forward+backward, the
Dice formula keeps to its few [I, C] operations, and the metadata checks of a repeated
(shape, dtype, options) combination run once.
"""
from __future__ import annotations

import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import seglosses as sl
from seglosses import _inputs
from seglosses.functional import dice_loss, tversky_loss


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def _ops(fn, x, t, **kw) -> collections.Counter:
    fn(x, t, **kw).backward()  # warm-up (one-off probes)
    x.grad = None
    with _Count() as c:
        fn(x, t, **kw).backward()
    return c.ops


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_activation_runs_once_per_forward_and_backward(mode, dtype):
    g = torch.Generator().manual_seed(0)
    c = 1 if mode == "binary" else 3
    x = torch.randn(2, c, 8, 8, generator=g).to(dtype).requires_grad_()
    t = (torch.randint(0, 3, (2, 8, 8), generator=g) if mode == "multiclass"
         else (torch.rand(2, c, 8, 8, generator=g) > 0.5).to(dtype))
    for fn, kw in ((dice_loss, {}), (tversky_loss, {}), (dice_loss, {"domain": "batch"})):
        ops = _ops(fn, x, t, mode=mode, **kw)
        assert ops["sigmoid"] + ops["_softmax"] == 1, (fn.__name__, dict(ops))


def test_half_quadratic_moments_still_recompute_in_float32():
    # the squared denominator's backward combines cancelling terms: in half precision
    # it keeps the input and recomputes p in float32 (two activations), and stays finite
    x = (torch.randn(2, 3, 8, 8) * 4).bfloat16().requires_grad_()
    t = torch.randint(0, 3, (2, 8, 8))
    ops = _ops(dice_loss, x, t, mode="multiclass", squared_denominator=True)
    assert ops["_softmax"] == 2
    assert bool(torch.isfinite(x.grad).all())


def test_kept_activation_gives_the_recomputed_gradient():
    # float64: the kept p is exactly the recomputed one; compare with the plain autograd form
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (3, 5, 6), generator=g)
    dice_loss(x, t, mode="multiclass", smooth=1e-3).backward()
    oh = torch.nn.functional.one_hot(t, 4).movedim(-1, 1).double()
    xd = x.detach().clone().requires_grad_()
    p = torch.softmax(xd, 1)
    pg, ps, gs = (p * oh).sum((2, 3)), p.sum((2, 3)), oh.sum((2, 3))
    (1 - (2 * pg + 1e-3) / (ps + gs + 1e-3)).mean().backward()
    torch.testing.assert_close(x.grad, xd.grad, rtol=1e-10, atol=1e-12)


def test_dice_formula_is_four_item_ops():
    # 1 - D = (Σp + Σg - 2Σpg) / (Σp + Σg + δ): add, sub, add, div (then the mean)
    x = torch.randn(2, 1, 4, 4, requires_grad=True)
    t = (torch.rand(2, 1, 4, 4) > 0.5).float()
    with _Count() as c:
        dice_loss(x, t)
    assert c.ops["div"] == 1 and c.ops["rsub"] == 0 and c.ops["add"] == 2 and c.ops["sub"] == 1, dict(c.ops)
    # the same value as the ratio form, here and where smooth = 0 takes the other path
    for smooth in (1e-5, 1.0):
        ref = tversky_loss(x, t, alpha=0.5, beta=0.5, smooth=smooth / 2)
        torch.testing.assert_close(dice_loss(x, t, smooth=smooth), ref)


def test_metadata_checks_cached_per_combination(monkeypatch):
    calls = []
    real = _inputs._check_target
    monkeypatch.setattr(_inputs, "_check_target", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(_inputs, "_LAYOUTS", {})
    x, t = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    for _ in range(3):
        sl.DiceLoss(mode="multiclass")(x, t)
    assert len(calls) == 1
    sl.DiceLoss(mode="multiclass", ignore_index=255)(x, t)  # another combination: checked
    assert len(calls) == 2
    # a failing combination is never cached: it raises every time
    for _ in range(2):
        with pytest.raises(ValueError, match="`target` label map must have shape"):
            sl.DiceLoss(mode="multiclass")(x, t[:, :3])
    with pytest.raises(ValueError, match="`ignore_index` must not be a class index"):
        sl.DiceLoss(mode="multiclass", ignore_index=1)(x, t)
    with pytest.raises(TypeError, match="`from_logits` must be a bool"):
        _inputs.canonicalize(x, t, mode="multiclass", from_logits=1)


def test_layout_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(_inputs, "_LAYOUTS", {})
    monkeypatch.setattr(_inputs, "_LAYOUTS_MAX", 4)
    for n in range(1, 11):
        _inputs.canonicalize(torch.randn(1, 1, n), torch.zeros(1, n), check_values=False)
        assert len(_inputs._LAYOUTS) <= 4


def test_half_scale_on_cpu_is_host_arithmetic():
    from seglosses._stats import half_scale, unscale

    g = [torch.full((2, 3), 3.0), None, torch.full((2, 3), -0.5)]
    assert half_scale(g) == (None, 0)  # peak 3 <= 2**8: nothing to scale
    for peak, k in ((257.0, 1), (1e5, 9), (2.0 ** 40, 30), (float("inf"), 30)):
        scale, got = half_scale([torch.tensor([[peak]]), torch.tensor([[1.0]])])
        assert got == k and scale == 2.0 ** -k
    t = torch.full((4,), 3.0, dtype=torch.bfloat16)
    assert unscale(t, 0) is t and torch.equal(unscale(t, 20), torch.full((4,), 3.0 * 2 ** 20, dtype=torch.bfloat16))


def test_half_precision_tiny_input_op_count():
    # small half inputs: one cast-sum per moment (no slices) and a host-side scale
    x = torch.randn(16, 1, 4, 4).bfloat16().requires_grad_()
    t = (torch.rand(16, 1, 4, 4) > 0.5).bfloat16()
    ops = _ops(dice_loss, x, t)
    assert ops["sum"] <= 4 and ops["split"] == 0 and ops["log2"] == 0 and ops["exp2"] == 0, dict(ops)
    assert sum(ops.values()) <= 50, dict(ops)  # 84 before: sliced sums, device-side scale


def test_half_precision_large_input_matches_float32_sums():
    # sliced float32 accumulation (>= 2**16 elements) and the unsliced one agree
    from seglosses import _fast

    t = torch.rand(2, 3, 1 << 15).bfloat16()
    torch.testing.assert_close(_fast.sum_last(t, torch.float32), t.float().sum(-1), rtol=1e-6, atol=1e-3)
    small = t[..., :64]
    torch.testing.assert_close(_fast.sum_last(small, torch.float32), small.float().sum(-1), rtol=0, atol=0)
