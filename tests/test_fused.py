"""The fused form of the statistics kernel (`_fused.py`), run as plain eager torch.

The compiled kernel (``set_kernel("compiled")``) and an outer ``torch.compile`` run these
same functions through the compiler; here they are checked without compiling (fast, in
the default suite) against the eager kernel of ``_stats.py``, term by term. The compiled
runs are checked in ``test_compiled_kernel.py`` (slow).
"""
from __future__ import annotations

import itertools

import pytest
import torch

from seglosses._fused import UNROLL_MAX, fused_backward, fused_forward
from seglosses._inputs import canonicalize
from seglosses._stats import MOMENTS, _P_MOMENTS, _Moments

NAME_SETS = [(k,) for k in MOMENTS] + [
    ("p", "g", "pg"),
    ("p", "g", "absdiff"),
    ("p", "g", "pg", "n"),
    ("pp", "gg", "pg"),
    ("p", "pp", "ppg", "pgg", "ggg", "absdiff"),
]


def _pair(mode: str, c: int, target_kind: str, spatial=(5, 6), ignore: bool = False):
    b = 3
    x = torch.randn(b, c, *spatial, dtype=torch.float64)
    if target_kind == "labels":
        t = torch.randint(0, c, (b, *spatial))
        if ignore:
            t[0, 0] = 255
    elif target_kind == "onehot":
        t = torch.nn.functional.one_hot(torch.randint(0, c, (b, *spatial)), c).movedim(-1, 1).double()
    else:  # soft
        t = torch.rand(b, c, *spatial, dtype=torch.float64)
        if mode == "multiclass":
            t = t / t.sum(1, keepdim=True)
        if ignore:
            t[0, :, 0] = 255
    if mode == "binary" and target_kind == "labels":
        t = t.clamp_max(1) if not ignore else torch.where(t == 255, t, t.clamp_max(1))
    return x, t


CASES = [
    ("binary", 1, "labels"),
    ("binary", 1, "soft"),
    ("multilabel", 3, "onehot"),
    ("multilabel", 3, "soft"),
    ("multiclass", 4, "labels"),
    ("multiclass", 4, "onehot"),
    ("multiclass", 3, "soft"),
    ("multiclass", UNROLL_MAX + 2, "labels"),  # the non-unrolled softmax
]


def _eager(canon, names):
    x = canon.x.detach().requires_grad_(True)
    out = _Moments.apply(x, canon.labels, canon.dense, canon.valid, canon.activation, names, "eager", 0)
    return x, out


@pytest.mark.parametrize("mode,c,kind", CASES)
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("from_logits", [True, False])
def test_fused_forward_and_backward_equal_eager(mode, c, kind, ignore, from_logits):
    x, t = _pair(mode, c, kind, ignore=ignore)
    if not from_logits:
        x = torch.softmax(x, 1) if mode == "multiclass" else torch.sigmoid(x)
    canon = canonicalize(x, t, mode=mode, from_logits=from_logits, ignore_index=255 if ignore else None)
    for names in NAME_SETS:
        xe, ref = _eager(canon, names)
        got, bounds = fused_forward(canon.x, canon.labels, canon.dense, canon.valid, canon.activation, names,
                                    torch.float64)
        assert bounds is None
        assert len(got) == len(names) and all(a.shape == ref[0].shape for a in got)
        for name, a, b in zip(names, got, ref):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=f"moment {name}")
        coefs = tuple(torch.randn_like(r) if k in _P_MOMENTS else None for k, r in zip(names, ref))
        if all(g is None for g in coefs):
            continue
        grad_ref, = torch.autograd.grad([r for k, r in zip(names, ref) if k in _P_MOMENTS], xe,
                                        [g for g in coefs if g is not None])
        grad = fused_backward(canon.x, canon.labels, canon.dense, canon.valid, canon.activation, names, coefs)
        assert grad.dtype == canon.x.dtype and grad.shape == canon.x.shape
        torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12, msg=f"gradient of {names}")


@pytest.mark.parametrize("spatial", [(4, 5), (3, 4, 5)])
def test_fused_3d_and_half_input(spatial):
    x, t = _pair("multiclass", 4, "labels", spatial=spatial)
    xh = x.to(torch.bfloat16)
    canon = canonicalize(xh, t, mode="multiclass")
    names = ("p", "g", "pg")
    got, _ = fused_forward(canon.x, canon.labels, None, None, "softmax", names, torch.float32)
    ref = _Moments.apply(canon.x, canon.labels, None, None, "softmax", names, "eager", 0)
    for a, b in zip(got, ref):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-3)
    coefs = (torch.randn(3, 4), None, torch.randn(3, 4))
    grad = fused_backward(canon.x, canon.labels, None, None, "softmax", names, coefs)
    assert grad.dtype == torch.bfloat16
    x32 = canon.x.float().requires_grad_(True)
    ref32 = _Moments.apply(x32, canon.labels, None, None, "softmax", names, "eager", 0)
    g32, = torch.autograd.grad([ref32[0], ref32[2]], x32, [coefs[0], coefs[2]])
    torch.testing.assert_close(grad.float(), g32, rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("mode,c,kind", [("binary", 1, "soft"), ("multiclass", 4, "labels"),
                                         ("multiclass", UNROLL_MAX + 1, "labels"), ("multilabel", 2, "onehot")])
def test_fused_bounds(mode, c, kind):
    """The bounds the deferred value checks judge: [min, max] of input and target."""
    x, t = _pair(mode, c, kind, ignore=False)
    canon = canonicalize(x, t, mode=mode)
    target = canon.labels if canon.labels is not None else canon.dense
    for nb in (1, 2):
        _, bounds = fused_forward(canon.x, canon.labels, canon.dense, None, canon.activation, ("p",),
                                  torch.float64, nb)
        want = [canon.x.min(), canon.x.max()] + ([target.min(), target.max()] if nb == 2 else [])
        assert bounds.dtype == torch.float64
        assert bounds.tolist() == [float(v) for v in want]
    x2 = canon.x.clone()
    x2[1, 0, 2] = float("nan")
    _, bounds = fused_forward(x2, canon.labels, canon.dense, None, canon.activation, ("p",), torch.float64, 1)
    assert torch.isnan(bounds).all()


@pytest.mark.parametrize("names", [("p", "g", "pg"), ("p", "g", "absdiff", "n")])
def test_traced_kernel_is_the_fused_form(names, monkeypatch):
    """Inside an outer torch.compile the kernel runs the fused form: forced here without
    compiling, the moments and their gradient equal the eager kernel's."""
    import seglosses._stats as S

    x, t = _pair("multiclass", 4, "labels", ignore=True)
    canon = canonicalize(x, t, mode="multiclass", ignore_index=255)
    xe, ref = _eager(canon, names)
    monkeypatch.setattr(S, "_compiling", lambda: True)
    xt = canon.x.detach().requires_grad_(True)
    got = S.moments(canon.__class__(**{**canon.__dict__, "x": xt}), names)
    for k, r in zip(names, ref):
        torch.testing.assert_close(got[k], r, rtol=1e-12, atol=1e-12)
    diff = [k for k in names if k in _P_MOMENTS]
    w = [torch.randn_like(got[k]) for k in diff]
    g1, = torch.autograd.grad([got[k] for k in diff], xt, w)
    g2, = torch.autograd.grad([r for k, r in zip(names, ref) if k in _P_MOMENTS], xe, w)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


def test_all_name_sets_covered():
    covered = set(itertools.chain.from_iterable(NAME_SETS))
    assert covered == set(MOMENTS)
