"""``torch.compile`` of every registered loss agrees with eager (value and gradient).

Slow (one compilation per case): run with ``python -m pytest tests/test_compile.py -m slow``.
Each registry entry is compiled with ``fullgraph=True`` and ``check_values=False`` (the
value checks are a host sync by design, which ends a graph); the entries listed in
``GRAPH_BREAKS`` run on the CPU distance-transform backends (scipy / edt, host code) and
are compiled without ``fullgraph``. ``SEGLOSSES_COMPILE_BACKEND`` picks the backend
(default ``inductor``; ``aot_eager`` checks tracing only, much faster).
"""
from __future__ import annotations

import inspect
import os

import pytest
import torch

from seglosses import DiceLoss, registry

pytestmark = pytest.mark.slow

BACKEND = os.environ.get("SEGLOSSES_COMPILE_BACKEND", "inductor")

# entries whose CPU path leaves torch on purpose (distance transforms on the host)
GRAPH_BREAKS = {"boundary": "CPU distance transform (scipy/edt)", "hausdorff_dt": "CPU distance transform (scipy/edt)",
                "distance_penalized_ce": "CPU distance transform (scipy/edt)",
                "log_hausdorff_dt": "CPU distance transform (scipy/edt)"}


def _accepts(cls: type, key: str) -> bool:
    return key in inspect.signature(cls.__init__).parameters


def _pair(mode: str, spatial=(7, 9)):
    """Logits and a target: binary {0,1} labels or a 3-class label map, odd non-square sizes."""
    gen = torch.Generator().manual_seed(0)
    c = 1 if mode == "binary" else 3
    x = torch.randn(2, c, *spatial, generator=gen, dtype=torch.float64)
    hi = 2 if mode == "binary" else c
    t = torch.randint(0, hi, (2, *spatial), generator=gen)
    return x, t


CASES = [(e.name, mode) for e in registry.ENTRIES for mode in ("binary", "multiclass")]


def _make(name: str, mode: str):
    cls = registry.resolve(name).cls
    kw = {"mode": mode} if _accepts(cls, "mode") else {}
    if _accepts(cls, "check_values"):
        kw["check_values"] = False
    try:
        return cls(**kw)
    except (TypeError, ValueError) as exc:  # the loss does not take this mode
        pytest.skip(f"{name} does not take mode={mode!r}: {exc}")


@pytest.mark.parametrize("name,mode", CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_compiled_loss_matches_eager(name: str, mode: str) -> None:
    torch._dynamo.reset()
    loss = _make(name, mode)
    x, t = _pair(mode)
    xe = x.clone().requires_grad_()
    try:
        eager = loss(xe, t)
    except (TypeError, ValueError) as exc:
        pytest.skip(f"{name} rejects mode={mode!r} inputs: {exc}")
    eager.backward()
    compiled = torch.compile(loss, fullgraph=name not in GRAPH_BREAKS, backend=BACKEND)
    xc = x.clone().requires_grad_()
    value = compiled(xc, t)
    value.backward()
    torch.testing.assert_close(value, eager.detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-7, atol=1e-10)


KERNEL_CASES = [(domain, mode, dtype) for domain in ("image", "batch") for mode in ("binary", "multiclass")
                for dtype in (torch.float32, torch.bfloat16)]


@pytest.mark.parametrize("domain,mode,dtype", KERNEL_CASES, ids=[f"{d}-{m}-{str(t)[6:]}" for d, m, t in KERNEL_CASES])
def test_compiled_region_kernel_3d_ignore_index(domain: str, mode: str, dtype: torch.dtype) -> None:
    """The statistics kernel's fast paths (float32 / bfloat16, 3D, ignore_index)."""
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(1)
    c = 1 if mode == "binary" else 4
    x = torch.randn(2, c, 3, 5, 6, generator=gen).to(dtype)
    t = torch.randint(0, max(c, 2), (2, 3, 5, 6), generator=gen)
    t[:, 0, 0] = 255
    loss = DiceLoss(mode=mode, domain=domain, ignore_index=255, check_values=False)
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager = loss(xe, t)
    eager.backward()
    value = torch.compile(loss, fullgraph=True, backend=BACKEND)(xc, t)
    value.backward()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=2e-2, atol=1e-3)
    torch.testing.assert_close(value, eager.detach(), **tol)
    assert xc.grad.dtype == dtype
    torch.testing.assert_close(xc.grad.float(), xe.grad.float(), **tol)


def test_compiled_with_value_checks_agrees() -> None:
    """With the value checks on (a host sync), compile works with a graph break."""
    torch._dynamo.reset()
    x, t = _pair("binary")
    loss = DiceLoss(mode="binary")
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager = loss(xe, t)
    eager.backward()
    value = torch.compile(loss, backend=BACKEND)(xc, t)
    value.backward()
    torch.testing.assert_close(value, eager.detach())
    torch.testing.assert_close(xc.grad, xe.grad)


def test_compiled_weighted_sum_agrees() -> None:
    """A compound loss (Dice + 0.5 Tversky) compiles as one graph."""
    torch._dynamo.reset()
    x, t = _pair("multiclass")
    loss = DiceLoss(mode="multiclass", check_values=False) + 0.5 * registry.resolve("tversky").cls(
        mode="multiclass", check_values=False)
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager = loss(xe, t)
    eager.backward()
    value = torch.compile(loss, fullgraph=True, backend=BACKEND)(xc, t)
    value.backward()
    torch.testing.assert_close(value, eager.detach())
    torch.testing.assert_close(xc.grad, xe.grad)
