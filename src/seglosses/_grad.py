"""The gradient math of the statistics kernel, defined once.

The moments of :mod:`seglosses._stats` are sums over the pixels, so the gradient of any
formula over them is, per pixel, a short polynomial in ``p`` and ``g`` whose
coefficients are the upstream gradients of the moments. Both forms of the kernel build
their backward from the functions here: the eager kernel (:mod:`seglosses._stats`, one
operation per term, in place) and the fused kernel (:mod:`seglosses._fused`, the same
operations traced by ``torch.compile`` into one loop over the pixels).

* :func:`dloss_dp`: ``∂L/∂p`` for a dense target (one-hot, soft, or the one-hot block of
  a label map in the fused kernel);
* :func:`activation_backward_`: ``∂L/∂x`` from ``∂L/∂p`` through the sigmoid or the
  softmax, over the class axis given whole or in blocks;
* :func:`target_backward`: ``∂L/∂g`` of a dense target that requires grad.

One step has a second, specialised form: the eager backward of a label map
(:func:`seglosses._stats._moments_backward`) writes the true class's term with one
scatter instead of multiplying by a one-hot target it never builds (the fused kernel
builds the one-hot block inside its loop, where it costs nothing).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor

from . import _fast

P_MOMENTS = frozenset(("p", "pg", "pp", "ppg", "pgg", "absdiff"))  # the moments that depend on p
G_MOMENTS = frozenset(("g", "pg", "gg", "ppg", "pgg", "ggg", "absdiff"))  # the moments that depend on g


def dloss_dp(p: Optional[Tensor], g: Optional[Tensor], coef: Mapping[str, Tensor], shape: Sequence[int],
             dtype: torch.dtype, device: torch.device) -> Tensor:
    """``∂L/∂p`` for a dense target ``g``, a fresh tensor of ``shape``, ``dtype`` and ``device``.

    .. math::
        ∂L/∂p = b + a g + 2 q p + 2 c p g + e g^2 + d\\,\\mathrm{sign}(p - g)

    with ``b, a, q, c, e, d`` = ``coef[k]`` for ``k`` = ``p, pg, pp, ppg, pgg, absdiff``
    (the upstream gradients of those moments, broadcastable to ``shape``, in ``dtype``;
    absent keys are 0). Built in one buffer, one in-place pass per term; ``p`` is read only
    for ``q, c, d`` and may be ``None`` otherwise. A ``g`` of another dtype is cast while
    it is copied into the buffer (no temporary). ``g = None`` stands for 0 everywhere (the
    pixels off a label map's true class), where ``sign(p - g)`` is taken as +1.
    """
    a, b, q = coef.get("pg"), coef.get("p"), coef.get("pp")
    # (a mul and an add beat one addcmul here: addcmul with broadcast [B, C, 1] operands
    # is not vectorised on CPU)
    if g is None:
        a = None
        d = coef.get("absdiff")
        if d is not None:
            b = d if b is None else b + d
    if a is not None:
        # a contiguous buffer whatever the target's layout (the in-place activation
        # backward of :mod:`seglosses._fast` needs one)
        v = torch.empty(tuple(shape), dtype=dtype, device=device)
        if g.dtype == dtype:
            torch.mul(g, a, out=v)
        else:
            v.copy_(g).mul_(a)
        if b is not None:
            v.add_(b)
        if q is not None:
            v.addcmul_(p, q, value=2)
    elif q is not None:
        v = p * (2 * q)
        if b is not None:
            v.add_(b)
    elif b is None:
        v = torch.zeros(tuple(shape), dtype=dtype, device=device)
    else:
        v = b.expand(tuple(shape)).clone()
    if g is not None and ("ppg" in coef or "pgg" in coef or "absdiff" in coef):
        gd = g.to(dtype)
        if "ppg" in coef:
            v.addcmul_(p * gd, coef["ppg"], value=2)
        if "pgg" in coef:
            v.addcmul_(gd * gd, coef["pgg"])
        if "absdiff" in coef:
            v.addcmul_(torch.sub(p, gd).sign_(), coef["absdiff"])
    return v


def activation_backward_(ps: Sequence[Tensor], vs: Sequence[Tensor], activation: str) -> Sequence[Tensor]:
    """``∂L/∂x`` from ``vs`` = ``∂L/∂p`` and the activation ``ps``, in place in ``vs``.

    ``ps`` and ``vs`` are the class axis (axis 1) whole (one tensor each) or in blocks
    that together make it up (the fused kernel's per-class blocks ``[B, 1, N]``):

    * sigmoid: ``v <- v p (1 - p)``;
    * softmax: ``v <- p (v - Σ_c p_c v_c)``, the sum over every block.

    The device shortcuts of :mod:`seglosses._fast` (one pass each) are used where they apply.
    """
    if activation == "sigmoid":
        for p, v in zip(ps, vs):
            if _fast.sigmoid_backward_(p, v) is None:
                v.mul_(p)
                v.addcmul_(v, p, value=-1)
    elif activation == "softmax":
        if len(vs) == 1 and _fast.softmax_backward_(ps[0], vs[0]) is not None:
            return vs
        for p, v in zip(ps, vs):
            v.mul_(p)
        s = vs[0].sum(1, keepdim=True)
        for v in vs[1:]:
            s = s + v.sum(1, keepdim=True)
        for p, v in zip(ps, vs):
            v.addcmul_(p, s, value=-1)
    return vs


def target_backward(p: Tensor, g: Tensor, valid: Optional[Tensor], names: Sequence[str],
                    grads: Sequence[Optional[Tensor]]) -> Tensor:
    """``∂L/∂g`` ``[B, C, N]`` of a dense (soft) target that requires grad, in ``g``'s dtype.

    The moments are sums, so with ``a`` the upstream gradient of each moment:
    ``∂L/∂g = w (a_g + a_pg p + 2 a_gg g + a_ppg p² + 2 a_pgg p g + 3 a_ggg g² − a_absdiff sign(p − g))``,
    ``p`` and ``g`` given in the dtype of the computation, ``w`` the validity or weight
    of each pixel ``[B, N]`` (``None``: all 1).
    """
    v: Optional[Tensor] = None
    for name, a in zip(names, grads):
        if a is None or name not in G_MOMENTS:
            continue
        a = a.to(g.dtype).unsqueeze(-1)
        if name == "g":
            t = a.expand_as(g)
        elif name == "pg":
            t = a * p
        elif name == "gg":
            t = 2 * a * g
        elif name == "ppg":
            t = a * p * p
        elif name == "pgg":
            t = 2 * a * p * g
        elif name == "ggg":
            t = 3 * a * g * g
        else:  # absdiff: d|p - g|/dg = -sign(p - g)
            t = -a * torch.sign(p - g)
        v = t if v is None else v + t
    if v is None:
        v = torch.zeros_like(g)
    if valid is not None:
        v = v * valid.unsqueeze(1).to(g.dtype)
    return v
