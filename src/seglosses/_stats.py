"""The statistics kernel: soft confusion statistics per (image, class).

Every region loss and every overlap metric of the package is a formula over the
sums that this module computes from a :class:`~seglosses._inputs.Canonical` pair.
With ``p`` the probabilities, ``g`` the target and ``w`` the validity mask
(``ignore_index``), the kernel computes, per image ``b`` and class ``c``, any of
these *moments* (sums over the pixels ``i``):

=========  ======================  =========  ======================
name       sum                     name       sum
=========  ======================  =========  ======================
``p``      :math:`\\sum w p`        ``pg``     :math:`\\sum w p g`
``g``      :math:`\\sum w g`        ``pp``     :math:`\\sum w p^2`
``gg``     :math:`\\sum w g^2`      ``ppg``    :math:`\\sum w p^2 g`
``pgg``    :math:`\\sum w p g^2`    ``ggg``    :math:`\\sum w g^3`
``absdiff`` :math:`\\sum w |p-g|`   ``n``      :math:`\\sum w`
=========  ======================  =========  ======================

from which TP = Σpg, FP = Σp − TP, FN = Σg − TP, TN = n − TP − FP − FN.

A label-map target is never expanded to one-hot: the sums that involve ``g`` are
gathered at the true class and scattered into the class axis. The moments come out
of a custom autograd function whose backward rebuilds ``∂L/∂p`` from the upstream
gradients of the moments (``∂L/∂p_ic = a_c g_ic + b_c + 2 c_c p_ic + …``), so one
tensor of pixel size is kept between forward and backward besides the target: the
activation ``p`` (the eager kernel; the backward then needs no second activation pass
and no input) or the input (the compiled kernel, and the eager backward of the
quadratic moments in half precision, which recomputes ``p`` in float32). A dense (soft) target
that requires grad (soft labels from a teacher) gets its exact gradient the same way:
the moments are sums, so ``∂L/∂g_ic = a_c p_ic + b'_c + …`` from the same upstream
gradients (:func:`_target_backward`, taken only when the target requires grad); a
label map is an integer tensor and has none. Small inputs (float32 of at most
:data:`RECORD_MAX` elements, bfloat16 of a quarter of it for the linear moments: where
the fixed cost of a call is most of its time) skip
the custom function: the same forward operations run recorded by autograd, the label
map as a one-hot tensor (cheap at that size).

Cost of the eager kernel, for the Dice/Tversky moments ``p, g, pg`` (no
``ignore_index``): the forward is the activation (kept for the backward), one reduction
per moment and, for a dense target, one product ``p g`` that lives only for its sum (a
label map gathers ``p`` at the true class instead); the backward is ``a g + b`` built in
place in one buffer (dense targets: a multiply and an add; label maps: a broadcast copy
and one scatter at the true class), and the activation's backward written in place over
it. The backward's peak is two tensors of the input's size and dtype (the kept ``p`` and
the returned gradient).

Statistics are accumulated in float32 for float16/bfloat16 input, in the input's
dtype otherwise; the pixel-sized intermediates (the probabilities and ``∂L/∂p``) stay
in the input's dtype, except in the backward of the quadratic moments (``pp, ppg``, the
soft form of a dense target), whose cancelling terms are combined in float32.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Dict, Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from typing_extensions import Unpack

from . import _fast
from ._arguments import SCORES, ScoreKeywords, shared_keywords
from ._fused import (
    CompileError,
    auto_failed,
    compiled_backward,
    compiled_forward,
    fused_backward,
    fused_forward,
    get_kernel,
    give_up_compiling,
)
from ._inputs import Canonical, ValueCheck, canonicalize
from ._grad import G_MOMENTS as _G_MOMENTS
from ._grad import P_MOMENTS as _P_MOMENTS
from ._grad import activation_backward_, dloss_dp, target_backward
from ._options import check_domain

MOMENTS = ("p", "g", "pg", "pp", "gg", "ppg", "pgg", "ggg", "absdiff", "n")

#: Float32 inputs of at most this many elements run the eager kernel's forward recorded by
#: autograd op by op (the same operations, :func:`_moments_forward`), not through the
#: custom function :class:`_Moments`. On a small input the time of a call is its fixed
#: cost (Python, one autograd node per step), and the custom function's Python forward
#: and backward cost more than the few nodes autograd records (Dice forward+backward on 2
#: CPU cores, recorded over custom: 0.8 at 256 to 6.6*10^4 elements, 0.92 at 1.3*10^5
#: (multiclass), 1.1-1.4 from 2.6*10^5 up, where the custom backward's fewer passes and
#: smaller memory win). Bfloat16 inputs of at most a quarter of it take it for the moments
#: whose gradient does not read ``p`` (:func:`_recorded`; 0.65-0.76 at 256 to 1.6*10^4
#: elements, parity at 6.6*10^4); float64 (the dtype of the gradient checks) and float16
#: (whose backward scales the coefficients into its range) always take the custom function.
RECORD_MAX = 1 << 16
_record_max = {"value": RECORD_MAX}


@contextlib.contextmanager
def record_below(limit: int) -> Iterator[None]:
    """Inside the block, float32 inputs of at most ``limit`` elements (bfloat16: a quarter,
    see :func:`_recorded`) take the recorded forward (0: none do; used by the tests to run
    both forms)."""
    old = _record_max["value"]
    _record_max["value"] = limit
    try:
        yield
    finally:
        _record_max["value"] = old


def _recorded(x: Tensor, kernel: str, names: Sequence[str], dense: bool) -> bool:
    """Whether this call's moments are recorded op by op (see :data:`RECORD_MAX`): float32,
    and bfloat16 when ``∂L/∂p`` does not read ``p`` (the linear moments of Dice, Tversky,
    ...: ``a g + b``, formed in bfloat16 by either form; the quadratic ones combine
    cancelling terms, which the custom function does in float32)."""
    if kernel != "eager":
        return False
    if x.dtype == torch.float32:
        return x.numel() <= _record_max["value"]
    # (a quarter: on the CPU each float32 sum of a bfloat16 term casts a copy of it, a cost
    # that soon outweighs the fixed cost the recorded form saves)
    return x.dtype == torch.bfloat16 and x.numel() <= _record_max["value"] // 4 and not _backward_reads_p(names, dense)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics are accumulated in: float32 for half types."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def activate(x: Tensor, activation: str) -> Tensor:
    """The activation of ``x`` in ``x``'s dtype (a fresh tensor unless ``activation == "none"``).

    For float16/bfloat16 input the probabilities stay in that dtype (half the memory and
    traffic of float32); the sums over them accumulate in float32 (see :func:`compute_dtype`).
    """
    if activation == "softmax":
        return torch.softmax(x, dim=1)
    if activation == "sigmoid":
        return torch.sigmoid(x)
    return x


# (looked up once: this runs several times per call)
_IS_COMPILING = getattr(getattr(torch, "compiler", None), "is_compiling", None) or (lambda: False)


def _compiling() -> bool:
    """True while ``torch.compile`` traces (the eager-CPU workarounds below are not needed there)."""
    return bool(_IS_COMPILING())


def _bdot(a: Tensor, b: Tensor, dtype: torch.dtype) -> Tensor:
    """Sum over the last axis of ``a * b`` (broadcasting, dtype promotion), accumulated in ``dtype``.

    A product and a sum: the product is one temporary that lives only inside this call
    (torch has no fused batched dot on every device; ``bmm`` of 1xN by Nx1 blocks is
    several times slower on CPU).
    """
    return _fast.sum_last(torch.mul(a, b), dtype)


def _pieces(n: int) -> int:
    """How many pieces a row of ``n`` pixels is split into for a ``scatter_add`` (at most 64,
    each at least 1024 pixels; 1 when ``n`` has no such divisor)."""
    return next((k for k in (64, 32, 16, 8, 4, 2) if n % k == 0 and n // k >= 1024), 1)


def _class_sums(labels: Tensor, values: Optional[Tensor], bsz: int, c: int, dtype: torch.dtype) -> Tensor:
    """``[B, C]`` sums of ``values`` ``[B, N]`` (1 when ``None``) over the pixels of each label.

    One ``scatter_add``, over rows of at most N/64 pixels (the images split in K pieces,
    then summed): with few large images the CPU kernel otherwise runs about one thread
    per image, and threads that add into the same few accumulators slow each other down.
    """
    n = labels.shape[1]
    k = _pieces(n)
    rows = (bsz * k, n // k)
    # (a count adds a broadcast 1: never materialised, which would cost a pass over the pixels)
    values = (torch.ones((), dtype=dtype, device=labels.device).expand(rows) if values is None
              else (values if values.dtype == dtype else values.to(dtype)).reshape(rows))
    out = torch.zeros(bsz * k, c, dtype=dtype, device=labels.device)
    out.scatter_add_(1, labels.reshape(rows), values)
    return out.view(bsz, k, c).sum(1) if k > 1 else out


def _moments_forward(
    p: Tensor,
    labels: Optional[Tensor],
    dense: Optional[Tensor],
    valid: Optional[Tensor],
    names: Sequence[str],
    dtype: torch.dtype,
    p_is_scratch: bool = False,
) -> Tuple[Tensor, ...]:
    """The moments in ``dtype``, one ``[B, C]`` tensor each (distinct tensors), in the order
    of ``names``.

    One reduction per moment, accumulated in ``dtype`` (pixel-sized products stay in
    ``p``'s dtype). ``p_is_scratch``: ``p`` is a fresh tensor of the caller's that may be
    overwritten; the product of ``pg`` (the last use of ``p``) is then taken in place,
    so Dice and Tversky allocate nothing of pixel size besides ``p``. A dense target of
    another dtype is promoted inside the ops (never copied, except for the rarer
    target-only products ``gg, pgg, ggg``, taken in ``dtype``).
    """
    bsz, c, n = p.shape
    need = set(names)
    w = None if valid is None else valid.to(p.dtype)
    pw = p if w is None else p * w.unsqueeze(1)
    # (``p * w`` is a fresh tensor too, except when autograd records these operations, the
    # small-input form of :func:`moments`: it may keep ``p * w`` for the backward of ``pp``)
    pw_scratch = p_is_scratch or (w is not None and not (torch.is_grad_enabled() and pw.requires_grad))
    out: Dict[str, Tensor] = {}
    if need & {"p", "absdiff"}:
        out["p"] = _fast.sum_last(pw, dtype)
    if "pp" in need:
        out["pp"] = _bdot(pw, p, dtype)
    if "n" in need:
        cnt = (torch.full((bsz,), float(n), dtype=dtype, device=p.device) if w is None
               else _fast.sum_last(valid, dtype))
        out["n"] = cnt.unsqueeze(1).expand(bsz, c)
    if dense is not None:
        g = dense.to(dtype) if need & {"gg", "pgg", "ggg"} else dense
        gw = g if w is None else g * w.unsqueeze(1)
        if need & {"g", "absdiff"}:
            out["g"] = _fast.sum_last(gw, dtype)
        if "gg" in need:
            out["gg"] = _bdot(gw, g, dtype)
        if "ppg" in need:
            out["ppg"] = _bdot(pw * p, g, dtype)
        if need & {"pgg", "ggg"}:
            g2 = g * g
            if "pgg" in need:
                out["pgg"] = _bdot(pw, g2, dtype)
            if "ggg" in need:
                out["ggg"] = _bdot(gw, g2, dtype)
        if "absdiff" in need:
            d = torch.sub(p, g).abs_()
            out["absdiff"] = _fast.sum_last(d, dtype) if w is None else _bdot(d, w.unsqueeze(1), dtype)
        if "pg" in need:  # the last use of p: in place when p is scratch
            out["pg"] = _fast.sum_last(pw.mul_(g) if pw_scratch else pw * g, dtype)
    else:
        # label map: g is one-hot, so g = g^2 = g^3 and the sums with g live at the
        # true class only: gather p there, then sum per class with one scatter_add
        t = labels
        if need & {"g", "gg", "ggg", "absdiff"}:
            out["g"] = out["gg"] = out["ggg"] = _class_sums(t, valid, bsz, c, dtype)
        if need & {"pg", "pgg", "ppg", "absdiff"}:
            pt = _fast.gather(p, 1, t.unsqueeze(1)).squeeze(1)
            pt = pt if pt.dtype == dtype else pt.to(dtype)
            ptw = pt if w is None else pt * valid
            out["pg"] = out["pgg"] = _class_sums(t, ptw, bsz, c, dtype)
            if "ppg" in need:
                out["ppg"] = _class_sums(t, ptw * pt, bsz, c, dtype)
        if "absdiff" in need:
            # sum_i |p_ic - [t_i = c]| = sum p - 2 sum_{t=c} p + count
            out["absdiff"] = out["p"] - 2 * out["pg"] + out["g"]
    result = []
    seen = set()
    for k in names:
        t = out[k]
        t = t if t.dtype == dtype else t.to(dtype)
        if id(t) in seen or not t.is_contiguous():  # autograd outputs: distinct, not views
            t = t.clone(memory_format=torch.contiguous_format)
        seen.add(id(t))
        result.append(t)
    return tuple(result)


def _backward_reads_p(names: Sequence[str], dense: bool) -> bool:
    """Whether ``∂L/∂p`` depends on ``p`` (not for Dice, Tversky, ...: ``a g + b``)."""
    return bool(set(names) & {"pp", "ppg"}) or (dense and "absdiff" in names)


def _moments_backward(
    p: Optional[Tensor],
    shape: Sequence[int],
    labels: Optional[Tensor],
    dense: Optional[Tensor],
    valid: Optional[Tensor],
    names: Sequence[str],
    grads: Sequence[Optional[Tensor]],
    dtype: torch.dtype,
    device: torch.device,
    scale: Optional[Union[Tensor, float]] = None,
) -> Tensor:
    """``∂L/∂p`` ``[B, C, N]`` in ``dtype`` (the input's) from the upstream gradients
    ``grads`` (``[B, C]`` or ``None`` for an unused moment, in the order of ``names``).

    Returns a fresh tensor (the caller may overwrite it). With ``a, b, q`` the upstream
    gradients of ``pg, p, pp``: ``∂L/∂p = a g + b + 2 q p (+ the rarer terms)``, built in
    place in one buffer (one pass per term); for a label map the ``g`` terms are one
    scatter at the true class. ``p`` is read only when :func:`_backward_reads_p` says so
    and may be ``None`` otherwise.
    """
    # the coefficients in the gradient's dtype: every op below then runs in one dtype and
    # writes its result in place (mixed dtypes would make CPU ops allocate a temporary).
    # In half precision they are first scaled by ``scale`` (a power of two, exact) so that
    # none overflows (coefficients reach 1/smooth); the caller undoes it (:func:`unscale`)
    used = {k: g for k, g in zip(names, grads) if g is not None and k in _P_MOMENTS}
    if scale is not None:  # (a Python number on the CPU, a device tensor elsewhere)
        used = {k: g * scale for k, g in used.items()}
    coef = {k: (g if g.dtype == dtype else g.to(dtype)).unsqueeze(-1) for k, g in used.items()}
    v = dloss_dp(p, dense, coef, shape, dtype, device)
    if labels is not None:
        b = coef.get("p")
        if "absdiff" in coef:
            b = coef["absdiff"] if b is None else b + coef["absdiff"]
        # the specialised form for a label map (its one-hot form is never built): v holds
        # the value off the true class, b + 2 q p (+ d); the true class gets one more
        # term per pixel, written with one scatter of the whole value there (assignment:
        # no accumulation, which the CPU kernel would run on a float32 copy of a half tensor)
        at_true: Optional[Tensor] = None  # [B, C, 1] coefficient of the true class
        for k in ("pg", "pgg"):
            if k in coef:
                at_true = coef[k] if at_true is None else at_true + coef[k]
        if "absdiff" in coef:
            at_true = -2 * coef["absdiff"] if at_true is None else at_true - 2 * coef["absdiff"]
        if at_true is not None or "ppg" in coef:
            table = at_true if at_true is not None else torch.zeros_like(coef["ppg"])
            if b is not None:
                table = table + b
            vals = _fast.gather(table.squeeze(-1), 1, labels)  # [B, N]: (b + a)_t
            if "pp" in coef or "ppg" in coef:
                q = coef["pp"] if "pp" in coef else torch.zeros_like(coef["ppg"])
                if "ppg" in coef:
                    q = q + coef["ppg"]
                qt = _fast.gather(q.squeeze(-1), 1, labels).mul_(_fast.gather(p, 1, labels.unsqueeze(1)).squeeze(1))
                vals.add_(qt, alpha=2)  # + 2 (q + c_ppg)_t p_t
            _fast.scatter_(v, 1, labels.unsqueeze(1), vals.unsqueeze(1))
    if valid is not None and valid.dtype == torch.bool:  # (a fill, not a product: an overflowed
        v.masked_fill_(~valid.unsqueeze(1), 0)            # coefficient gives no NaN here)
    elif valid is not None:  # per-pixel weights (a float ``mask``)
        v.mul_(valid.unsqueeze(1).to(v.dtype))
    return v


_HALF_EXP = 8  # scaled coefficients stay below 2**8: sums of a few terms fit any half type


def half_scale(grads: Sequence[Optional[Tensor]]) -> Tuple[Optional[Union[Tensor, float]], Union[Tensor, int]]:
    """``(2**-k, k)`` for the upstream gradients of a half-precision backward: ``k >= 0``
    the smallest integer (at most 30) that brings every coefficient below ``2**8``.

    On the CPU, where reading a number back costs no synchronisation, ``k`` is a Python
    int (four operations: one peak over all gradients) and the scale ``None`` when
    ``k = 0`` (the usual case: nothing to scale). Elsewhere both are device tensors,
    computed without a host sync."""
    used = [g.detach() for g in grads if g is not None]
    if used[0].device.type == "cpu":
        same = all(g.shape == used[0].shape for g in used)
        peak = float((torch.stack(used) if same else torch.stack([g.abs().amax() for g in used])).abs().amax())
        # (NaN: k = 0, and the NaN propagates; an infinite peak takes the largest k)
        k = (0 if not peak > 2.0 ** _HALF_EXP else 30 if math.isinf(peak)
             else min(30, math.ceil(math.log2(peak)) - _HALF_EXP))
        return (None if k == 0 else 2.0 ** -k), k
    peak_t = torch.stack([g.abs().amax().float() for g in used]).amax()
    kt = torch.ceil(torch.log2(peak_t.clamp_min(1.0))).sub(_HALF_EXP).clamp(0, 30)
    return torch.exp2(-kt), kt


def unscale(t: Tensor, k: Union[Tensor, int]) -> Tensor:
    """``t * 2**k`` in place, in two factors of at most ``2**15`` (each exact and in range in
    half precision); overflows only where the result itself leaves the dtype's range. On
    the CPU, where reading ``k`` costs no synchronisation, ``k = 0`` (the usual case)
    skips both passes over ``t``."""
    if not isinstance(k, Tensor):
        if k == 0:
            return t
        half = k // 2
        return t.mul_(2.0 ** half).mul_(2.0 ** (k - half))
    if t.device.type == "cpu" and float(k) == 0:
        return t
    lo = torch.floor(k / 2)
    return t.mul_(torch.exp2(lo).to(t.dtype)).mul_(torch.exp2(k - lo).to(t.dtype))


def _kernel() -> str:
    """The kernel for this call: ``"traced"`` (the fused form, inside an outer
    ``torch.compile``), else the selected one (:func:`seglosses.set_kernel`); ``"auto"``
    stays ``"auto"`` (the compiled kernel, eager after a failure) until compiling fails."""
    if _compiling():
        return "traced"
    kernel = get_kernel()
    return "eager" if kernel == "auto" and auto_failed() else kernel


def _target_backward(p: Tensor, dense: Tensor, valid: Optional[Tensor], names: Sequence[str],
                     grads: Sequence[Optional[Tensor]]) -> Tensor:
    """``∂L/∂g`` of a dense target that requires grad (:func:`seglosses._grad.target_backward`),
    the same for every kernel: computed in the statistics' dtype from the activation ``p``
    (in the input's dtype), returned in the target's dtype."""
    dtype = compute_dtype(p.dtype)
    return target_backward(p.to(dtype), dense.to(dtype), valid, names, grads).to(dense.dtype)


def _keeps_activation(x: Tensor, activation: str, names: Sequence[str], dense: bool) -> bool:
    """Whether the eager kernel keeps the activation ``p`` for its backward instead of the
    input ``x``: always, except without an activation (``p`` is ``x``) and for the quadratic
    moments in half precision, whose backward recomputes ``p`` in float32 from ``x``.

    Keeping ``p`` (same size and dtype as ``x``, which the backward then no longer needs)
    spares the backward a second activation pass: a sigmoid or softmax costs more than the
    rest of a Dice backward (bfloat16 sigmoid on CPU: about three float32 ones)."""
    if activation == "none":
        return False
    return not (x.dtype != compute_dtype(x.dtype) and _backward_reads_p(names, dense))


class _Moments(torch.autograd.Function):
    """The moments of (activation(x), target), one ``[B, C]`` output each; the backward
    rebuilds ``∂L/∂x`` from their gradients, and ``∂L/∂g`` for a dense target that
    requires grad (:func:`_target_backward`). Moments that depend on nothing that
    requires grad (``n`` always; ``g, gg, ggg`` for a constant target) are marked
    non-differentiable."""

    @staticmethod
    def forward(ctx, x, labels, dense, valid, activation, names, kernel, bounds):  # type: ignore[override]
        keep_p = False
        if kernel == "eager":
            p = activate(x, activation)
            keep_p = _keeps_activation(x, activation, names, dense is not None)
            out = _moments_forward(p, labels, dense, valid, names, compute_dtype(x.dtype),
                                   p_is_scratch=activation != "none" and not keep_p)
            lohi = None  # (the eager kernel's checks run before it: ``bounds`` is 0 here)
        else:
            run = fused_forward if kernel == "traced" else compiled_forward
            # (one fresh [B, C] tensor per moment: each is its own sum; the "auto" kernel's
            # failure to compile is handled by the caller, :func:`moments`)
            out, lohi = run(x, labels, dense, valid, activation, names, compute_dtype(x.dtype), bounds)
        # the input, or the activation of it (:func:`_keeps_activation`): one of the two
        ctx.save_for_backward(p if keep_p else x, labels, dense, valid)
        ctx.keep_p = keep_p
        ctx.activation = activation
        ctx.names = names
        ctx.kernel = kernel
        ctx.set_materialize_grads(False)
        if lohi is not None:
            out = out + (lohi,)
        live = _P_MOMENTS | (_G_MOMENTS if dense is not None and ctx.needs_input_grad[2] else frozenset())
        ctx.mark_non_differentiable(*[t for k, t in zip(names, out) if k not in live],
                                    *([lohi] if lohi is not None else []))
        return out

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        xp, labels, dense, valid = ctx.saved_tensors  # xp: the input, or its activation (ctx.keep_p)
        names, act = ctx.names, ctx.activation
        grads = grads[:len(names)]  # (the bounds of the value checks have no gradient)
        d_target = None
        if dense is not None and ctx.needs_input_grad[2] and any(
                g is not None for k, g in zip(names, grads) if k in _G_MOMENTS):
            d_target = _target_backward(xp if ctx.keep_p else activate(xp, act), dense, valid, names, grads)
        if not ctx.needs_input_grad[0] or all(g is None for k, g in zip(names, grads) if k in _P_MOMENTS):
            return None, None, d_target, None, None, None, None, None
        if ctx.kernel != "eager" and not (ctx.kernel == "auto" and auto_failed()):
            run = fused_backward if ctx.kernel == "traced" else compiled_backward
            used = tuple(g if k in _P_MOMENTS else None for k, g in zip(names, grads))
            try:
                return (run(xp, labels, dense, valid, act, names, used), None, d_target,
                        None, None, None, None, None)
            except CompileError as err:
                if ctx.kernel != "auto":
                    raise
                give_up_compiling(err)  # and the eager backward below
        dx = _eager_backward(xp, ctx.keep_p, labels, dense, valid, act, names, grads)
        return dx, None, d_target, None, None, None, None, None


def _eager_backward(xp: Tensor, keep_p: bool, labels: Optional[Tensor], dense: Optional[Tensor],
                    valid: Optional[Tensor], activation: str, names: Sequence[str],
                    grads: Sequence[Optional[Tensor]]) -> Tensor:
    """``∂L/∂x`` of the eager kernel; ``xp`` is the activation ``p`` (``keep_p``) or the input."""
    dtype = xp.dtype
    p = xp if keep_p else None
    xw = xp
    if not keep_p and _backward_reads_p(names, dense is not None):
        # the quadratic forms (Σp², Σp²g, soft form) combine terms that cancel, with
        # coefficients up to 1/smooth: in half precision they overflow (NaN) or lose
        # every digit, so their backward runs in float32 and is cast back at the end
        xw = xp.to(compute_dtype(dtype))
        p = activate(xw, activation)
    scale = k = None
    if xw.dtype != compute_dtype(xw.dtype):
        scale, k = half_scale(grads)
    v = _moments_backward(p, xw.shape, labels, dense, valid, names, grads, xw.dtype, xw.device, scale)
    if p is None:  # recomputed after v: its temporaries are gone, the peak is v and p
        p = activate(xw, activation)
    dx = activation_backward_([p], [v], activation)[0]
    if k is not None:
        dx = unscale(dx, k)
    return dx if dx.dtype == dtype else dx.to(dtype)


def moments(canon: Canonical, names: Sequence[str]) -> Dict[str, Tensor]:
    """The requested moments per (image, kept class): a dict of ``[B, C_kept]`` tensors.

    Channels dropped by ``include_background=False`` (channel 0 in multiclass and
    multilabel mode) are computed (the softmax needs them) and then left out. Value
    checks left on ``canon`` (``canonicalize(..., defer_checks=True)``) run here: inside
    the compiled kernel's pass (bounds of input and target computed with the moments,
    judged after it), otherwise before the kernel.
    """
    names = tuple(names)
    for k in names:
        if k not in MOMENTS:
            raise ValueError(f"`names` must be among {MOMENTS}; got {k!r}")
    kernel = _kernel()
    pending = canon.pending_check
    if pending is not None and kernel == "eager":
        pending.run()  # its own pass and sync, before the kernel
        pending = None
    if _recorded(canon.x, kernel, names, canon.dense is not None):
        out = _recorded_moments(canon, names)
    else:
        out = _function_moments(canon, names, kernel, pending)
    first = canon.first_class
    return {k: (t[:, first:] if first else t) for k, t in zip(names, out)}


def _recorded_moments(canon: Canonical, names: Tuple[str, ...]) -> Tuple[Tensor, ...]:
    """The moments of a small input, the kernel's forward recorded by autograd (:data:`RECORD_MAX`)."""
    p = activate(canon.x, canon.activation)
    # (a small label map is cheaper one-hot: one scatter instead of two class sums)
    dense = (canon.dense if canon.labels is None
             else torch.zeros_like(p).scatter_(1, canon.labels.unsqueeze(1), 1.0))
    return _moments_forward(p, None, dense, canon.valid, names, compute_dtype(canon.x.dtype))


def _function_moments(canon: Canonical, names: Tuple[str, ...], kernel: str,
                      pending: Optional[ValueCheck]) -> Tuple[Tensor, ...]:
    """The moments through the custom function :class:`_Moments` (eager or compiled kernel;
    ``pending``: value checks judged from bounds the compiled kernel computes)."""
    bounds = 0 if pending is None else len(pending.tensors())
    try:
        out = _Moments.apply(canon.x, canon.labels, canon.dense, canon.valid, canon.activation, names, kernel, bounds)
    except CompileError as err:
        if kernel != "auto":
            raise
        give_up_compiling(err)
        if pending is not None:
            pending.run()
            pending = None
        out = _Moments.apply(canon.x, canon.labels, canon.dense, canon.valid, canon.activation, names, "eager", 0)
    if pending is not None:
        out, lohi = out[:-1], out[-1]
        pending.judge(lohi.tolist())  # the one sync of the value checks
    return out


def over_domain(stats: Dict[str, Tensor], domain: str) -> Dict[str, Tensor]:
    """Keep the image axis (``"image"``) or sum it into one item (``"batch"``, [1, C])."""
    domain = check_domain(domain)
    if domain == "image":
        return stats
    return {k: v.sum(0, keepdim=True) for k, v in stats.items()}


@dataclass(frozen=True)
class Confusion:
    """Soft confusion statistics, each ``[I, C]`` (I = B images, or 1 for the batch domain)."""

    tp: Tensor
    fp: Tensor
    fn: Tensor
    tn: Optional[Tensor] = None

    def as_tuple(self) -> Tuple[Tensor, ...]:
        return (self.tp, self.fp, self.fn) if self.tn is None else (self.tp, self.fp, self.fn, self.tn)


def confusion_names(soft_form: bool, with_tn: bool) -> Tuple[str, ...]:
    names = ("p", "g", "absdiff") if soft_form else ("p", "g", "pg")
    return names + (("n",) if with_tn else ())


def confusion_from_moments(m: Dict[str, Tensor], soft_form: bool = False, with_tn: bool = False) -> Confusion:
    """TP, FP, FN (and TN) from the moments.

    Standard form: TP = Σpg. Soft form (``soft_form=True``): TP = (Σp + Σg − Σ|p−g|)/2,
    equal to the standard form for hard targets and minimised at p = g for soft ones.
    """
    tp = (m["p"] + m["g"] - m["absdiff"]) / 2 if soft_form else m["pg"]
    fp = m["p"] - tp
    fn = m["g"] - tp
    tn = m["n"] - tp - fp - fn if with_tn else None
    return Confusion(tp, fp, fn, tn)


@shared_keywords(SCORES, without=("reduction", "bins", "empty"))
def soft_confusion(probs: Tensor, target: Tensor, *, with_tn: bool = False, soft_form: bool = False,
                   **kw: Unpack[ScoreKeywords]) -> Confusion:
    r"""Soft confusion statistics TP, FP, FN (and TN) per image and class.

    .. math::
        TP_c = \sum_i p_{ic} g_{ic},\quad FP_c = \sum_i p_{ic}(1-g_{ic}),\quad
        FN_c = \sum_i (1-p_{ic}) g_{ic},\quad TN_c = \sum_i (1-p_{ic})(1-g_{ic})

    (seed 000 eq. 2 and seed 001 eq. 10 write the Tversky index over these sums).
    This is the one kernel behind every region loss and overlap metric.

    Args:
        probs: probabilities ``[B, C, *S]`` (logits with ``from_logits=True``).
        with_tn: also return TN.
        soft_form: TP = (Σp + Σg − Σ|p−g|)/2 (see :func:`confusion_from_moments`).

    Returns:
        :class:`Confusion` with ``[B, C]`` tensors (``[1, C]`` for the batch domain).

    Raises:
        TypeError, ValueError: as :func:`~seglosses._inputs.canonicalize`; an unknown ``domain``.

    Example:
        >>> p = torch.tensor([[[[0.9, 0.2], [0.6, 0.0]]]])
        >>> g = torch.tensor([[[1, 0], [1, 1]]])
        >>> c = soft_confusion(p, g)
        >>> [round(float(v), 4) for v in (c.tp, c.fp, c.fn)]
        [1.5, 0.2, 1.5]
    """
    canon = canonicalize(
        probs, target, mode=kw["mode"], from_logits=kw["from_logits"], include_background=kw["include_background"],
        ignore_index=kw["ignore_index"], check_values=kw["check_values"], defer_checks=True, mask=kw["mask"],
    )
    m = over_domain(moments(canon, confusion_names(soft_form, with_tn)), kw["domain"])
    return confusion_from_moments(m, soft_form=soft_form, with_tn=with_tn)


def safe_ratio(num: Tensor, den: Tensor, empty: float = 1.0) -> Tensor:
    """``num / den`` with ``empty`` where ``den == 0`` and a zero gradient there (double where)."""
    zero = den == 0
    safe_den = torch.where(zero, torch.ones_like(den), den)
    return torch.where(zero, torch.full_like(num, empty), num / safe_den)


def label_moments(pred: Tensor, canon: Canonical, dtype: torch.dtype = torch.float64) -> Dict[str, Tensor]:
    r"""Moments ``p, g, pg, n`` of a hard label-map prediction, per (image, kept class).

    The prediction ``pred`` ``[B, N]`` holds class indices in ``[0, C)`` (C = the
    channels of ``canon``); its one-hot form is never built. With a label-map target
    the per-image confusion matrix is one ``scatter_add`` of the validity weights at
    ``t_i C + \hat y_i``:

    .. math::
        M_{b,kj} = \sum_i w_{bi}\,[t_{bi} = k]\,[\hat y_{bi} = j],\quad
        pg = \operatorname{diag} M,\ p = \textstyle\sum_k M_{kj},\ g = \sum_j M_{kj};

    with a dense target ``g`` the sums are :math:`p_c = \sum_i w_i [\hat y_i = c]`,
    :math:`pg_c = \sum_i w_i g_{ic} [\hat y_i = c]` and :math:`g_c = \sum_i w_i g_{ic}`.
    ``n`` is the number of valid pixels. These are the moments of :func:`moments` for the
    one-hot prediction, so :func:`confusion_from_moments` applies unchanged.

    Args:
        pred: ``[B, N]`` integer class indices (already validated).
        canon: the canonical pair whose target, validity mask and ``include_background``
            are used (its ``x`` is not read).
        dtype: accumulation dtype (float64 keeps pixel counts exact).

    Returns:
        dict of ``[B, C_kept]`` tensors ``p``, ``g``, ``pg``, ``n``.
    """
    bsz, n = pred.shape
    c = canon.num_channels
    pred = pred.long()
    w = (torch.ones((bsz, n), dtype=dtype, device=pred.device) if canon.valid is None
         else canon.valid.to(dtype))
    zeros = torch.zeros(bsz, c, dtype=dtype, device=pred.device)
    if canon.labels is not None:
        cm = torch.zeros(bsz, c * c, dtype=dtype, device=pred.device)
        cm.scatter_add_(1, canon.labels * c + pred, w)
        cm = cm.view(bsz, c, c)  # rows: target class, columns: predicted class
        out = {"p": cm.sum(1), "g": cm.sum(2), "pg": cm.diagonal(dim1=1, dim2=2)}
    else:
        g = canon.dense.to(dtype)
        at_pred = g.gather(1, pred.unsqueeze(1)).squeeze(1)
        out = {
            "p": zeros.scatter_add(1, pred, w),
            "g": torch.linalg.vecdot(g, w.unsqueeze(1).expand_as(g)),
            "pg": zeros.scatter_add(1, pred, at_pred * w),
        }
    out["n"] = w.sum(-1, keepdim=True).expand(bsz, c)
    first = canon.first_class
    return {k: v[:, first:] for k, v in out.items()}
