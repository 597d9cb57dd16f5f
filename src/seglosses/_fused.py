"""The statistics kernel in fused form: one pass forward, one pass backward.

:mod:`seglosses._stats` computes the moments in eager torch, one operation (one pass
over the data) per term. This module states the same forward and backward as plain
per-pixel arithmetic followed by the sums, which a compiler turns into one loop over
the pixels each way: the forward reads the input and the target once and writes only
the ``[B, C]`` sums; the backward reads them once more and writes the gradient. No
pixel-sized temporary is stored, whatever the dtype (half inputs are computed in
float32 inside the loop).

Two uses:

* under an outer ``torch.compile`` (the user compiles the model and the loss), the
  kernel's autograd function traces these functions instead of the eager ones;
* with ``seglosses.set_kernel("compiled")`` eager calls run them through
  ``torch.compile`` (inductor: C++/OpenMP on the CPU, Triton on CUDA). Each signature
  (moments, activation, target kind, mask, dtype, device) has its own compile cache; its
  first call compiles, which takes seconds, and later calls reuse the compiled code. A
  changed image size recompiles once with dynamic shapes; past the compiler's limit of
  variants per cache the functions run uncompiled (a warning says so).

The softmax over a small class axis (``C <= UNROLL_MAX``) is written per class, so that
the compiled loop runs over the pixels with the classes in registers; a wider class axis
uses ``torch.softmax``.
"""
from __future__ import annotations

import contextlib
import os
import types
import warnings
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ._grad import P_MOMENTS, activation_backward_, dloss_dp
from ._options import lookup_option

KERNELS = ("eager", "compiled", "auto")
UNROLL_MAX = 16
_ENV = "SEGLOSSES_KERNEL"

_state: Dict[str, str] = {}


def set_kernel(name: str) -> None:
    """Select the statistics kernel for eager calls: ``"eager"`` (default), ``"compiled"``
    or ``"auto"``.

    ``"compiled"`` runs the fused forward and backward of every region loss and overlap
    metric through ``torch.compile``; it needs what inductor needs on the device (a C++
    compiler on the CPU, Triton on CUDA) and compiles on the first call of each input
    signature. Values agree with ``"eager"`` to rounding (the sums are taken in another
    order). For float16/bfloat16 input the compiled kernel keeps the probabilities in
    float32, where the eager one rounds them to the input's dtype; the soft form's
    ``sign(p - g)`` can then differ where ``|p - g|`` is below that rounding. The
    environment variable ``SEGLOSSES_KERNEL`` sets the default.

    ``"auto"`` runs the compiled kernel while compiling works; the first time it fails
    (no C++ compiler, no Triton, an unsupported device) it warns once (a
    ``RuntimeWarning`` naming the error) and every call of the process, that one
    included, runs the eager kernel.
    """
    _state["kernel"] = lookup_option("kernel", name, KERNELS)


def get_kernel() -> str:
    """The selected statistics kernel (see :func:`set_kernel`)."""
    if "kernel" not in _state:
        env = os.environ.get(_ENV, "eager") or "eager"
        try:
            set_kernel(env)
        except ValueError as err:
            raise ValueError(f"environment variable {_ENV}: {err}") from None
    return _state["kernel"]


@contextlib.contextmanager
def use_kernel(name: str) -> Iterator[None]:
    """Context manager: select ``name`` (see :func:`set_kernel`) inside the block."""
    old = get_kernel()
    set_kernel(name)
    try:
        yield
    finally:
        _state["kernel"] = old


# --------------------------------------------------------------------------- per-pixel math


Block = Tuple[Tensor, Optional[Tensor], Optional[int]]


def _channels(x: Tensor, dense: Optional[Tensor], activation: str, dtype: torch.dtype) -> List[Block]:
    """Per-pixel ``(p, g, class index)`` blocks, each with a class axis: ``[B, C, N]`` or
    ``[B, 1, N]``.

    Sigmoid and identity act per element: one block ``[B, C, N]`` (``g`` dense, or
    ``None`` with the class index ``None`` for a label map, handled by the caller through
    :func:`_onehot`). The softmax couples the classes: with ``C <= UNROLL_MAX`` one block
    ``[B, 1, N]`` per class, written as elementwise max/exp/sum over the class list.
    """
    c = x.shape[1]
    if activation == "softmax" and c <= UNROLL_MAX:
        xs = [x[:, k:k + 1].to(dtype) for k in range(c)]
        m = xs[0]
        for v in xs[1:]:
            m = torch.maximum(m, v)
        es = [torch.exp(v - m) for v in xs]
        s = es[0]
        for e in es[1:]:
            s = s + e
        r = 1.0 / s
        return [(es[k] * r, None if dense is None else dense[:, k:k + 1].to(dtype), k) for k in range(c)]
    xf = x.to(dtype)
    if activation == "softmax":
        p = torch.softmax(xf, dim=1)
    elif activation == "sigmoid":
        p = torch.sigmoid(xf)
    else:
        p = xf
    return [(p, None if dense is None else dense.to(dtype), None)]


def _onehot(labels: Tensor, k: Optional[int], c: int, dtype: torch.dtype) -> Tensor:
    """The label map's indicator for class ``k`` (``[B, 1, N]``) or all classes (``[B, C, N]``)."""
    idx = torch.arange(c, device=labels.device).view(1, c, 1) if k is None else k
    return (labels.unsqueeze(1) == idx).to(dtype)


def _block_target(labels: Optional[Tensor], g: Optional[Tensor], k: Optional[int], c: int,
                  dtype: torch.dtype) -> Tensor:
    return _onehot(labels, k, c, dtype) if g is None else g


def _coef(a: Tensor, k: Optional[int]) -> Tensor:
    """The ``[B, C]`` upstream gradient ``a`` as a coefficient of a block: ``[B, C or 1, 1]``."""
    return (a if k is None else a[:, k:k + 1]).unsqueeze(-1)


def _sums(p: Tensor, g: Tensor, w: Optional[Tensor], names: Sequence[str]) -> List[Tensor]:
    """The moments of one block, summed over the last axis, in the order of ``names``."""
    out = []
    for name in names:
        if name == "p":
            t = p
        elif name == "g":
            t = g
        elif name == "pg":
            t = p * g
        elif name == "pp":
            t = p * p
        elif name == "gg":
            t = g * g
        elif name == "ppg":
            t = p * p * g
        elif name == "pgg":
            t = p * g * g
        elif name == "ggg":
            t = g * g * g
        elif name == "absdiff":
            t = (p - g).abs()
        else:  # "n"
            t = torch.ones_like(p)
        out.append((t if w is None else t * w).sum(-1))
    return out


def _minmax(parts: Sequence[Tensor]) -> Tensor:
    """``[min, max]`` in float64 over tensors of the same kind, reduced row by row first
    (so that the reductions share the loop of the moments); NaN propagates."""
    lo = torch.stack([t.amin(-1).to(torch.float64).amin() for t in parts]).amin()
    hi = torch.stack([t.amax(-1).to(torch.float64).amax() for t in parts]).amax()
    return torch.stack([lo, hi])


def fused_forward(x: Tensor, labels: Optional[Tensor], dense: Optional[Tensor], valid: Optional[Tensor],
                  activation: str, names: Tuple[str, ...], dtype: torch.dtype,
                  bounds: int = 0) -> Tuple[Tuple[Tensor, ...], Optional[Tensor]]:
    """The moments ``names`` of (activation(x), target), one ``[B, C]`` tensor each in
    ``dtype``, and, with ``bounds`` = 1 or 2, the ``[min, max]`` of the input (and of the
    target: the label map, else the dense target) in float64 (``[2 * bounds]``), computed
    in the same pass, for the deferred value checks (:class:`seglosses._inputs.ValueCheck`)."""
    c = x.shape[1]
    blocks = _channels(x, dense, activation, dtype)
    w = None if valid is None else valid.to(dtype).unsqueeze(1)
    per_block = [_sums(p, _block_target(labels, g, k, c, dtype), w, names) for p, g, k in blocks]
    if len(per_block) == 1:
        moments = tuple(per_block[0])
    else:  # one [B, 1] per class -> [B, C]
        moments = tuple(torch.cat([blk[i] for blk in per_block], -1) for i in range(len(names)))
    if not bounds:
        return moments, None
    xs = [x] if len(blocks) == 1 else [x[:, k] for k in range(c)]
    out = [_minmax(xs)]
    if bounds > 1:
        if labels is not None:
            out.append(_minmax([labels]))
        else:
            out.append(_minmax([dense] if len(blocks) == 1 else [dense[:, k] for k in range(c)]))
    return moments, torch.cat(out)


def fused_backward(x: Tensor, labels: Optional[Tensor], dense: Optional[Tensor], valid: Optional[Tensor],
                   activation: str, names: Tuple[str, ...], grads: Tuple[Optional[Tensor], ...]) -> Tensor:
    """``∂L/∂x`` in ``x``'s dtype from the upstream gradients ``grads`` (``[B, C]`` each, or
    ``None``) of the moments ``names``; the activation is recomputed from ``x``. The math is
    that of the eager kernel (:func:`seglosses._grad.dloss_dp`,
    :func:`seglosses._grad.activation_backward_`), applied per block."""
    dtype = grads[next(i for i, g in enumerate(grads) if g is not None)].dtype
    c = x.shape[1]
    blocks = _channels(x, dense, activation, dtype)
    w = None if valid is None else valid.to(dtype).unsqueeze(1)
    vs = []
    for p, g, k in blocks:
        coef = {n: _coef(a, k) for n, a in zip(names, grads) if a is not None and n in P_MOMENTS}
        v = dloss_dp(p, _block_target(labels, g, k, c, dtype), coef, p.shape, dtype, p.device)
        vs.append(v if w is None else v.mul_(w))
    vs = list(activation_backward_([p for p, _, _ in blocks], vs, activation))
    return (vs[0] if len(vs) == 1 else torch.cat(vs, 1)).to(x.dtype)


# --------------------------------------------------------------------------- compiled entry points

_compiled: Dict[tuple, Callable] = {}
_warned: Dict[str, bool] = {}


class CompileError(RuntimeError):
    """The compiled statistics kernel could not be compiled on this machine."""


def auto_failed() -> bool:
    """Whether ``"auto"`` has given up compiling in this process (see :func:`set_kernel`)."""
    return bool(_warned.get("auto"))


def give_up_compiling(err: Exception) -> None:
    """Under ``"auto"``: record that compiling failed and warn, once per process."""
    if not _warned.get("auto"):
        _warned["auto"] = True
        warnings.warn(f"seglosses.set_kernel('auto'): the compiled statistics kernel cannot be used here "
                      f"({err}); the eager kernel runs instead", RuntimeWarning, stacklevel=4)


def _signature(x: Tensor, labels, dense, valid, activation: str, names, extra) -> tuple:
    """What the compiled code specialises on besides shapes: one compile cache per value."""
    return (activation, tuple(names), labels is None, dense is None, None if valid is None else valid.dtype, x.dtype,
            x.device.type, extra)


def _compile(fn: Callable, key: tuple) -> Callable:
    """``torch.compile`` of a copy of ``fn`` for one signature ``key``.

    The compiler keeps its compiled variants per code object, at most
    ``torch._dynamo.config.recompile_limit`` (8) of them. Each signature (moments,
    activation, target kind, mask, dtype, device) gets its own copy of the code, so a
    process that uses many losses does not run into that limit; within a signature only
    the shapes vary (static at first, dynamic after a change of shape).
    """
    k = (fn.__name__,) + key
    if k not in _compiled:
        code = fn.__code__.replace()  # a distinct code object: a compile cache of its own
        clone = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
        clone.__doc__ = fn.__doc__
        _compiled[k] = torch.compile(clone, fullgraph=True)
    return _compiled[k]


def _run_compiled(fn: Callable, key: tuple, *args):
    try:
        return _compile(fn, key)(*args)
    except Exception as err:  # noqa: BLE001 - re-raised with the setting that caused it
        name = type(err).__name__
        if "RecompileLimit" in name or "CacheLimit" in name:
            # more shapes in one signature than the compiler keeps: the same fused
            # functions run uncompiled (same values, eager speed)
            if not _warned.get(name):
                _warned[name] = True
                warnings.warn(f"seglosses' compiled statistics kernel: {name} ({err}); "
                              f"calls past the limit run the fused form uncompiled", RuntimeWarning, stacklevel=3)
            return fn(*args)
        if type(err).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise CompileError(
                f"the compiled statistics kernel (seglosses.set_kernel('compiled')) failed to compile "
                f"on {args[0].device.type}: {name}: {err}. Use seglosses.set_kernel('eager')."
            ) from err
        raise


def compiled_forward(x, labels, dense, valid, activation, names, dtype, bounds=0):
    """:func:`fused_forward` through ``torch.compile``."""
    key = _signature(x, labels, dense, valid, activation, names, (dtype, bounds))
    return _run_compiled(fused_forward, key, x, labels, dense, valid, activation, names, dtype, bounds)


def compiled_backward(x, labels, dense, valid, activation, names, grads):
    """:func:`fused_backward` through ``torch.compile``. The upstream gradients are made
    contiguous first (a batch-domain sum hands down stride-0 expansions, which would
    otherwise compile a second variant)."""
    grads = tuple(None if g is None else g.contiguous() for g in grads)
    key = _signature(x, labels, dense, valid, activation, names, tuple(g is None for g in grads))
    return _run_compiled(fused_backward, key, x, labels, dense, valid, activation, names, grads)
