"""Device-specific shortcuts of the statistics kernel, each with a plain fallback.

The statistics kernel (:mod:`seglosses._grad`, :mod:`seglosses._stats`) is written in
public torch operations. A few of its steps have a faster form on the CPU in eager mode
that leans on what a public operation does not promise; they all live here, behind one
switch, each next to its plain equivalent:

* :func:`softmax_backward_` / :func:`sigmoid_backward_`: the activation's backward in
  one pass written over its input, through ATen's ``_softmax_backward_data.out`` and
  ``sigmoid_backward.grad_input`` (the plain form: two or three in-place passes);
* :func:`gather` / :func:`scatter_`: moves of float16/bfloat16 elements as raw 16-bit
  integers (the eager CPU kernels otherwise work on a float32 copy of the whole tensor);
* :func:`sum_last`: a reduction with ``dtype=`` over slices of the last axis (the CPU
  reduction casts its whole input first).

The shortcuts are used when :func:`enabled`: torch at least :data:`MIN_TORCH`, the ATen
ops present and giving the plain form's values on a probe (checked once per process),
not while ``torch.compile`` traces (the compiler writes its own loops), and not turned
off by the environment variable ``SEGLOSSES_PLAIN_KERNEL=1`` or :func:`plain`. Values
agree with the plain forms to rounding (the gather/scatter moves are bit-exact).
"""
from __future__ import annotations

import contextlib
import os
from typing import Dict, Iterator, Optional

import torch
from torch import Tensor

MIN_TORCH = (2, 1)
_ENV = "SEGLOSSES_PLAIN_KERNEL"
_CPU_SUM_PIECES = 4
_CPU_SUM_MIN = 1 << 16  # below this the whole cast copy is small: one operation, not seven
_state: Dict[str, Optional[bool]] = {"probe": None, "forced_plain": None}


# (looked up once: this runs several times per call)
_IS_COMPILING = getattr(getattr(torch, "compiler", None), "is_compiling", None) or (lambda: False)


def _compiling() -> bool:
    return bool(_IS_COMPILING())


def _version() -> tuple:
    head = torch.__version__.split("+")[0].split(".")
    try:
        return tuple(int(part) for part in head[:2])
    except ValueError:
        return (0, 0)


def _probe() -> bool:
    """Whether the shortcuts are available: torch version, ops present, values right."""
    if _version() < MIN_TORCH:
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, 17, generator=gen)
        v = torch.randn(2, 3, 17, generator=gen)
        p = torch.softmax(x, 1)
        want = p * (v - (p * v).sum(1, keepdim=True))
        got = torch.ops.aten._softmax_backward_data.out(v.clone(), p, 1, v.dtype, grad_input=v.clone())
        work = v.clone()
        torch.ops.aten._softmax_backward_data.out(work, p, 1, work.dtype, grad_input=work)
        s = torch.sigmoid(x)
        sig = torch.ops.aten.sigmoid_backward.grad_input(v.clone(), s, grad_input=v.clone())
        h = x.to(torch.bfloat16)
        moved = h.view(torch.int16).gather(1, torch.zeros(2, 1, 17, dtype=torch.long)).view(torch.bfloat16)
        return (torch.allclose(got, want, atol=1e-6) and torch.allclose(work, want, atol=1e-6)
                and torch.allclose(sig, v * s * (1 - s), atol=1e-6) and torch.equal(moved, h[:, :1]))
    except Exception:  # noqa: BLE001 - any failure means: use the plain forms
        return False


def available() -> bool:
    """Whether this torch has the shortcuts (probed once per process)."""
    if _state["probe"] is None:
        _state["probe"] = _probe()
    return bool(_state["probe"])


def enabled(device: torch.device) -> bool:
    """Whether the shortcuts apply to eager work on ``device`` now (CPU only)."""
    if device.type != "cpu" or _compiling():
        return False
    forced = _state["forced_plain"]
    if forced is None:
        forced = _state["forced_plain"] = os.environ.get(_ENV, "") not in ("", "0")
    return not forced and available()


@contextlib.contextmanager
def plain() -> Iterator[None]:
    """Inside the block only the plain forms run (used by the tests)."""
    old = _state["forced_plain"]
    _state["forced_plain"] = True
    try:
        yield
    finally:
        _state["forced_plain"] = old


def softmax_backward_(p: Tensor, v: Tensor) -> Optional[Tensor]:
    """``v <- p (v - Σ_c p_c v_c)`` over the class axis 1 in one pass written over ``v``
    (the CPU kernel finishes a pixel's sum before it writes that pixel); ``None`` where
    the shortcut does not apply (the caller runs the plain form,
    :func:`seglosses._grad.activation_backward_`)."""
    if not (enabled(v.device) and v.is_contiguous() and p.is_contiguous()):
        return None
    return torch.ops.aten._softmax_backward_data.out(v, p, 1, v.dtype, grad_input=v)


def sigmoid_backward_(p: Tensor, v: Tensor) -> Optional[Tensor]:
    """``v <- v p (1 - p)`` in one pass written over ``v``; ``None`` where the shortcut
    does not apply (see :func:`softmax_backward_`)."""
    if not (enabled(v.device) and v.is_contiguous() and p.is_contiguous()):
        return None
    return torch.ops.aten.sigmoid_backward.grad_input(v, p, grad_input=v)


def _raw_half(t: Tensor) -> bool:
    return t.dtype in (torch.float16, torch.bfloat16) and enabled(t.device)


def gather(src: Tensor, dim: int, index: Tensor) -> Tensor:
    """``src.gather(dim, index)``, bit-identical."""
    if _raw_half(src):
        return src.view(torch.int16).gather(dim, index).view(src.dtype)
    return src.gather(dim, index)


def scatter_(dst: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """``dst.scatter_(dim, index, src)`` (assignment), ``src`` cast to ``dst``'s dtype."""
    if _raw_half(dst):
        dst.view(torch.int16).scatter_(dim, index, src.to(dst.dtype).view(torch.int16))
        return dst
    return dst.scatter_(dim, index, src.to(dst.dtype))


def sum_last(t: Tensor, dtype: torch.dtype) -> Tensor:
    """Sum over the last axis, accumulated and returned in ``dtype`` (slice by slice on the
    CPU when ``t`` has another dtype and at least ``2**16`` elements: the cast copies one
    slice at a time)."""
    if t.dtype == dtype or t.numel() < _CPU_SUM_MIN or not enabled(t.device):
        return t.sum(-1, dtype=dtype)
    pieces = t.chunk(_CPU_SUM_PIECES, dim=-1)
    total = pieces[0].sum(-1, dtype=dtype)
    for piece in pieces[1:]:
        total = total + piece.sum(-1, dtype=dtype)
    return total
