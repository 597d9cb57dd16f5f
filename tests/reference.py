"""Naive per-paper reference implementations: float64, explicit loops, no library code.

These are the oracle of the tests. They follow the equations as printed:
seed 000 eq. 3 (Tversky), seed 001 eqs. 7-14 (region losses).
"""
from __future__ import annotations

import math

import torch


def probs_and_onehot(x, t, mode, from_logits=True):
    """Return p [B,C,N] and g [B,C,N] in float64 with plain torch ops."""
    x = x.double()
    b, c = x.shape[:2]
    if mode == "binary":
        p = torch.sigmoid(x) if from_logits else x
        g = t.double().reshape(b, 1, -1)
    elif mode == "multiclass":
        p = torch.softmax(x, 1) if from_logits else x
        if t.dim() == x.dim() - 1:
            g = torch.zeros_like(x)
            for bi in range(b):
                for k in range(c):
                    g[bi, k] = (t[bi] == k).double()
        else:
            g = t.double()
    else:
        p = torch.sigmoid(x) if from_logits else x
        g = t.double()
    return p.reshape(b, c, -1), g.reshape(b, c, -1)


def confusion(p, g):
    """Loops over images and classes: TP, FP, FN as [B, C] lists of floats."""
    b, c, n = p.shape
    tp = torch.zeros(b, c, dtype=torch.float64)
    fp = torch.zeros(b, c, dtype=torch.float64)
    fn = torch.zeros(b, c, dtype=torch.float64)
    for bi in range(b):
        for k in range(c):
            for i in range(n):
                pv, gv = float(p[bi, k, i]), float(g[bi, k, i])
                tp[bi, k] += pv * gv
                fp[bi, k] += pv * (1 - gv)
                fn[bi, k] += (1 - pv) * gv
    return tp, fp, fn


def tversky(tp, fp, fn, alpha, beta, delta):
    return (tp + delta) / (tp + alpha * fp + beta * fn + delta)


def batch_as_one_image(p, g):
    """Concatenate the batch into one image: [1, C, B*N] (seed 000's batchwise definition)."""
    b, c, n = p.shape
    return p.permute(1, 0, 2).reshape(1, c, b * n), g.permute(1, 0, 2).reshape(1, c, b * n)


def gdl(p, g, delta):
    """Seed 001 eq. 11 per image, weights 1/(sum g)^2; absent classes take the max finite weight."""
    b, c, n = p.shape
    out = []
    for bi in range(b):
        vols = [float(g[bi, k].sum()) for k in range(c)]
        ws = [1.0 / v**2 if v > 0 else math.inf for v in vols]
        finite = [w for w in ws if math.isfinite(w)]
        wmax = max(finite) if finite else 1.0
        ws = [w if math.isfinite(w) else wmax for w in ws]
        num = sum(ws[k] * float((p[bi, k] * g[bi, k]).sum()) for k in range(c))
        den = sum(ws[k] * float((p[bi, k] + g[bi, k]).sum()) for k in range(c))
        out.append(1 - (2 * num + delta) / (den + delta))
    return torch.tensor(out, dtype=torch.float64)


def sens_spec(p, g, w, eps):
    """Seed 001 eq. 7 per (image, class)."""
    b, c, n = p.shape
    out = torch.zeros(b, c, dtype=torch.float64)
    for bi in range(b):
        for k in range(c):
            pp, gg = p[bi, k], g[bi, k]
            sens = float(((gg - pp) ** 2 * gg).sum()) / (float(gg.sum()) + eps)
            spec = float(((gg - pp) ** 2 * (1 - gg)).sum()) / (float((1 - gg).sum()) + eps)
            out[bi, k] = w * sens + (1 - w) * spec
    return out
