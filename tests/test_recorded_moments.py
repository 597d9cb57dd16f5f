"""The recorded form of the eager statistics kernel (small float32 inputs) against the
custom autograd function.

Float32 inputs of at most ``_stats.RECORD_MAX`` elements (bfloat16: a quarter of it,
for the moments whose gradient does not read ``p``) take the kernel's forward recorded
by autograd op by op; larger ones, and every float64 or float16 input, take
:class:`seglosses._stats._Moments` (whose backward the float64 gradient checks
test). Both forms must give the same moments and the same gradients, for the input and
for a soft target that requires grad, with ``ignore_index`` and with weight masks.
"""
from __future__ import annotations

import pytest
import torch

import seglosses
from seglosses import _stats
from seglosses._inputs import canonicalize

NAME_SETS = [("p", "g", "pg"), ("p", "g", "absdiff", "n"), ("pg", "pp", "gg"),
             ("p", "pp", "ppg", "pgg", "ggg", "absdiff")]
CASES = [("binary", 1, "labels"), ("binary", 1, "soft"), ("multilabel", 3, "soft"),
         ("multiclass", 4, "labels"), ("multiclass", 3, "soft")]


def _pair(mode, c, kind, spatial, ignore):
    g = torch.Generator().manual_seed(5)
    x = torch.randn((2, c) + spatial, generator=g)
    if kind == "labels":
        t = torch.randint(0, 2 if mode == "binary" else c, (2,) + spatial, generator=g)
        if ignore:
            t[0, 0] = 255
    else:
        t = torch.rand((2, c) + spatial, generator=g)
        if mode == "multiclass":
            t = t / t.sum(1, keepdim=True)
    return x, t, (255 if ignore and kind == "labels" else None)


def _moments_and_grads(x, t, mode, ignore_index, mask, names, target_grad):
    x = x.clone().requires_grad_()
    t = t.clone().requires_grad_() if target_grad else t
    canon = canonicalize(x, t, mode=mode, ignore_index=ignore_index, mask=mask)
    out = _stats.moments(canon, names)
    w = [torch.linspace(0.5, 2.0, o.numel()).view_as(o) for o in out.values()]
    total = sum((o * wi).sum() for o, wi in zip(out.values(), w))
    wrt = [x, t] if target_grad else [x]
    grads = torch.autograd.grad(total, wrt, allow_unused=True)
    return {k: v.detach() for k, v in out.items()}, grads


# (a label map has no gradient: the target-gradient variant is for soft targets only)
VARIANTS = [(case, v) for case in CASES for v in ("plain", "ignore", "mask", "target_grad")
            if v != "target_grad" or case[2] == "soft"]


@pytest.mark.parametrize("case,variant", VARIANTS)
@pytest.mark.parametrize("names", NAME_SETS)
@pytest.mark.parametrize("spatial", [(5, 7), (3, 4, 5)], ids=["2d", "3d"])
def test_recorded_form_equals_custom_function(case, variant, names, spatial):
    mode, c, kind = case
    x, t, ii = _pair(mode, c, kind, spatial, variant == "ignore")
    mask = None
    if variant == "mask":
        mask = torch.rand((2,) + spatial, generator=torch.Generator().manual_seed(9))
    args = (x, t, mode, ii, mask, names, variant == "target_grad")
    with _stats.record_below(10 ** 6):
        rec_out, rec_grads = _moments_and_grads(*args)
    with _stats.record_below(0):
        fn_out, fn_grads = _moments_and_grads(*args)
    assert rec_out.keys() == fn_out.keys()
    for k in rec_out:
        torch.testing.assert_close(rec_out[k], fn_out[k], rtol=1e-5, atol=1e-5, msg=k)
    for a, b in zip(rec_grads, fn_grads):
        if a is None or b is None:  # (a moment that does not depend on the tensor)
            assert a is None or not a.abs().any()
            assert b is None or not b.abs().any()
            continue
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("names", [("p", "g", "pg"), ("p", "g", "pg", "n")])
@pytest.mark.parametrize("variant", ["plain", "ignore", "mask"])
def test_recorded_form_in_bfloat16(case, names, variant):
    # bfloat16 takes the recorded form for the moments whose gradient does not read p:
    # the sums are accumulated and returned in float32, as by the custom function
    mode, c, kind = case
    x, t, ii = _pair(mode, c, kind, (5, 7), variant == "ignore")
    x = x.bfloat16()
    t = t if kind == "labels" else t.bfloat16()
    mask = torch.rand(2, 5, 7, generator=torch.Generator().manual_seed(9)) if variant == "mask" else None
    assert _stats._recorded(x, "eager", names, kind != "labels")
    with _stats.record_below(10 ** 6):
        rec_out, rec_grads = _moments_and_grads(x, t, mode, ii, mask, names, False)
    with _stats.record_below(0):
        fn_out, fn_grads = _moments_and_grads(x, t, mode, ii, mask, names, False)
    # (weights of a float mask enter the bfloat16 products, as the custom function takes
    # them for a dense target; its label-map class counts keep them in float32)
    tol = dict(rtol=4e-3, atol=1e-5) if variant == "mask" else dict(rtol=1e-6, atol=1e-5)
    for k in rec_out:
        assert rec_out[k].dtype == fn_out[k].dtype == torch.float32
        torch.testing.assert_close(rec_out[k], fn_out[k], **tol, msg=k)
    assert rec_grads[0].dtype == fn_grads[0].dtype == torch.bfloat16
    torch.testing.assert_close(rec_grads[0], fn_grads[0], rtol=1e-2, atol=1e-2)


def _graph_names(t):
    seen, todo, names = set(), [t.grad_fn], set()
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        todo.extend(f for f, _ in fn.next_functions)
    return names


@pytest.mark.parametrize("dtype,numel,custom", [
    (torch.float32, _stats.RECORD_MAX, False),
    (torch.float32, _stats.RECORD_MAX * 2, True),
    (torch.float64, 64, True),
    (torch.bfloat16, _stats.RECORD_MAX // 4, False),
    (torch.bfloat16, _stats.RECORD_MAX // 2, True),
    (torch.float16, 64, True),
])
def test_which_form_runs(dtype, numel, custom):
    x = torch.randn(1, 1, numel).to(dtype).requires_grad_()
    t = (torch.rand(1, 1, numel) > 0.5).to(dtype)
    loss = seglosses.DiceLoss(mode="binary")(x, t)
    assert ("_MomentsBackward" in _graph_names(loss)) == custom


def test_recorded_loss_gradient_matches_on_a_public_loss():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 8, 8, generator=g)
    t = torch.randint(0, 3, (4, 8, 8), generator=g)
    grads = []
    for limit in (10 ** 6, 0):
        xi = x.clone().requires_grad_()
        with _stats.record_below(limit):
            seglosses.TverskyLoss(mode="multiclass", alpha=0.3, beta=0.7)(xi, t).backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)
