"""Naive reference implementations of the metrics: numpy, float64, explicit loops, no library code."""
from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import binary_erosion, generate_binary_structure
from scipy.spatial.distance import cdist


def counts(pred, target, valid=None):
    """TP, FP, FN, TN of two boolean arrays by a loop over the pixels."""
    pred = np.asarray(pred, bool).ravel()
    target = np.asarray(target, bool).ravel()
    valid = np.ones_like(pred) if valid is None else np.asarray(valid, bool).ravel()
    tp = fp = fn = tn = 0
    for p, g, v in zip(pred, target, valid):
        if not v:
            continue
        if p and g:
            tp += 1
        elif p:
            fp += 1
        elif g:
            fn += 1
        else:
            tn += 1
    return tp, fp, fn, tn


def ratio(num, den, empty=1.0):
    return empty if den == 0 else num / den


def dice(tp, fp, fn, tn, empty=1.0):
    return ratio(2 * tp, 2 * tp + fp + fn, empty)


def jaccard(tp, fp, fn, tn, empty=1.0):
    return ratio(tp, tp + fp + fn, empty)


def balanced_accuracy(tp, fp, fn, tn, empty=1.0):
    return (ratio(tp, tp + fn, empty) + ratio(tn, tn + fp, empty)) / 2


def average_precision(scores, labels):
    """AP = sum over distinct thresholds (descending) of (R_n - R_{n-1}) P_n, by a loop over thresholds."""
    scores = np.asarray(scores, float).ravel()
    labels = np.asarray(labels, float).ravel()
    pos = labels.sum()
    if pos == 0:
        return math.nan
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(scores.tolist()), reverse=True):
        sel = scores >= t
        tp = labels[sel].sum()
        recall = tp / pos
        ap += (recall - prev_recall) * (tp / sel.sum())
        prev_recall = recall
    return ap


def surface(mask):
    """Surface pixels: mask minus its erosion with the cross structure, outside = background."""
    mask = np.asarray(mask, bool)
    return mask & ~binary_erosion(mask, generate_binary_structure(mask.ndim, 1), border_value=0)


def surface_distances(pred, target, spacing):
    """Distances of every surface point of one mask to the other surface, by brute force."""
    sp = np.argwhere(surface(pred)) * np.asarray(spacing, float)
    sg = np.argwhere(surface(target)) * np.asarray(spacing, float)
    d = cdist(sp, sg)
    return d.min(1), d.min(0)


def modified_hausdorff(x_mask, y_mask, spacing, q=95.0):
    """Seed 000 eq. 7 by brute force over all point pairs."""
    cx = np.argwhere(x_mask) * np.asarray(spacing, float)
    cy = np.argwhere(y_mask) * np.asarray(spacing, float)
    d = cdist(cx, cy)
    hx = np.mean([np.percentile(row, q) for row in d])
    hy = np.mean([np.percentile(col, q) for col in d.T])
    return 0.5 * (hx + hy)
