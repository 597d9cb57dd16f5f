r"""Paired statistics of the bench report: tests that respect the structure of the data.

Evaluation items cut from one source image (tiles, quadrants) or taken from one patient are
not independent, so every test here works on **clusters** (source images or patients):

* :func:`paired_cluster_test`: per-image metrics. For every common seed and evaluation item,
  the difference ``a - b`` of two configurations; the differences are averaged over the items
  of a cluster and over the seeds, giving one value per cluster, and those go into a two-sided
  Wilcoxon signed-rank test (:func:`wilcoxon_test`) with the matched-pairs rank-biserial
  correlation (:func:`rank_biserial`) as the effect size.
* :func:`paired_cluster_bootstrap`: data-set-level (pooled) metrics such as pooled Dice, mIoU
  or pooled AP, which are not means of per-image values. The clusters are resampled with
  replacement (the same draw for both configurations and every seed, so the comparison stays
  paired); the pooled metric of each configuration and seed is recomputed from the summed
  per-image statistics, and the statistic is the seed-mean of the difference. Two-sided
  p-value :math:`\min(1, 2\min(\#\{d^* \le 0\}, \#\{d^* \ge 0\}) + 1) / (B + 1))`, percentile
  95 % interval; the effect size is the observed difference over the bootstrap standard
  deviation.
* :func:`holm`: Holm's step-down correction of a family of p-values.
* :func:`sign_consistency`: in how many seeds the difference has the sign of its mean (for
  studies with too few seeds to test over seeds).

Example:
    >>> a = {0: {"q0": 0.9, "q1": 0.8, "q2": 0.7}}
    >>> b = {0: {"q0": 0.5, "q1": 0.5, "q2": 0.5}}
    >>> r = paired_cluster_test(a, b, {"q0": "img0", "q1": "img0", "q2": "img1"})
    >>> r["n_clusters"], r["n_items"], round(r["mean_diff"], 3)
    (2, 3, 0.275)
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["wilcoxon_test", "rank_biserial", "holm", "cluster_means", "paired_cluster_test",
           "paired_cluster_bootstrap", "sign_consistency", "mean_std", "best_flags"]


def wilcoxon_test(x: Sequence[float], y: Sequence[float]) -> Dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired values ``x`` vs ``y`` (:func:`scipy.stats.wilcoxon`).

    Returns ``{"n": pairs, "mean_diff": mean(x - y), "p": p-value, "effect": rank-biserial}``;
    ``p`` is 1 when every difference is zero and NaN with fewer than two pairs. Zero
    differences are dropped (``zero_method="wilcox"``).

    Example:
        >>> r = wilcoxon_test([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
        >>> r["n"], r["mean_diff"], round(r["p"], 4), r["effect"]
        (6, 2.25, 0.0312, 1.0)
    """
    from scipy.stats import wilcoxon

    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    d = xs - ys
    out: Dict[str, Any] = {"n": int(d.size), "mean_diff": float(d.mean()) if d.size else math.nan, "p": math.nan,
                           "effect": rank_biserial(d)}
    if d.size < 2:
        return out
    if np.all(d == 0):
        out["p"] = 1.0
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["p"] = float(wilcoxon(xs, ys, zero_method="wilcox", alternative="two-sided").pvalue)
    return out


def rank_biserial(d: Sequence[float]) -> float:
    r"""Matched-pairs rank-biserial correlation of paired differences ``d`` (the Wilcoxon effect size).

    .. math::
        r = \frac{R_+ - R_-}{R_+ + R_-}

    with :math:`R_\pm` the sums of the ranks of :math:`|d|` (average ranks for ties) over the
    positive / negative differences; zero differences are left out. In ``[-1, 1]``: 1 when
    every difference is positive; NaN when none is non-zero.

    Example:
        >>> rank_biserial([1.0, 2.0, -3.0])  # ranks 1, 2 positive, 3 negative: (3 - 3) / 6
        0.0
    """
    from scipy.stats import rankdata

    values = np.asarray(d, dtype=float)
    values = values[values != 0]
    if values.size == 0:
        return math.nan
    ranks = rankdata(np.abs(values))
    plus, minus = ranks[values > 0].sum(), ranks[values < 0].sum()
    return float((plus - minus) / (plus + minus))


def holm(pvalues: Sequence[float]) -> List[float]:
    r"""Holm's step-down adjusted p-values (family-wise error), NaN entries kept and not counted.

    With the :math:`m` defined p-values sorted, :math:`p_{(1)} \le \dots \le p_{(m)}`, the adjusted
    value is :math:`\max_{j \le i} \min(1, (m - j + 1)\, p_{(j)})`; reject where it is below the level.

    Example:
        >>> holm([0.01, 0.04, 0.03, float("nan")])
        [0.03, 0.06, 0.06, nan]
    """
    p = [float(v) for v in pvalues]
    defined = [i for i, v in enumerate(p) if not math.isnan(v)]
    order = sorted(defined, key=lambda i: p[i])
    m = len(order)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = round(running, 15)
    return out


def cluster_means(values: Mapping[str, float], groups: Mapping[str, str]) -> Dict[str, float]:
    """The mean of the finite values of each cluster (an item without a group is its own cluster).

    Example:
        >>> cluster_means({"a": 1.0, "b": 3.0, "c": 5.0}, {"a": "x", "b": "x"})
        {'x': 2.0, 'c': 5.0}
    """
    sums: Dict[str, List[float]] = {}
    for item, v in values.items():
        if v is None or math.isnan(float(v)):
            continue
        sums.setdefault(str(groups.get(item, item)), []).append(float(v))
    return {g: sum(v) / len(v) for g, v in sums.items()}


def paired_cluster_test(a: Mapping[int, Mapping[str, float]], b: Mapping[int, Mapping[str, float]],
                        groups: Mapping[str, str]) -> Dict[str, Any]:
    """Paired Wilcoxon test of per-item values over clusters (source images / patients).

    Args:
        a, b: per seed, item name -> value of the two configurations.
        groups: item name -> cluster (items missing here are their own cluster).

    Returns:
        The :func:`wilcoxon_test` result over the clusters (``mean_diff`` is the mean of the
        cluster differences), plus ``n_clusters``, ``n_items`` (distinct items used),
        ``n_seeds`` (common seeds) and ``unit`` = ``"cluster"``.

    Example:
        >>> r = paired_cluster_test({0: {"x": 1.0, "y": 2.0}}, {0: {"x": 1.0, "y": 1.0}}, {})
        >>> r["n_clusters"], r["mean_diff"]
        (2, 0.5)
    """
    seeds = sorted(set(a) & set(b))
    per_cluster: Dict[str, List[float]] = {}
    items = set()
    for s in seeds:
        diffs = {}
        for item, va in a[s].items():
            vb = b[s].get(item)
            if va is None or vb is None or math.isnan(float(va)) or math.isnan(float(vb)):
                continue
            diffs[item] = float(va) - float(vb)
            items.add(item)
        for g, v in cluster_means(diffs, groups).items():
            per_cluster.setdefault(g, []).append(v)
    d = [sum(v) / len(v) for v in per_cluster.values()]
    out = wilcoxon_test(d, [0.0] * len(d))
    out.update(n_clusters=len(d), n_items=len(items), n_seeds=len(seeds), unit="cluster")
    return out


def paired_cluster_bootstrap(
    a: Mapping[int, Any], b: Mapping[int, Any], clusters: Sequence[str],
    statistic: Callable[[Any, np.ndarray], np.ndarray], *, n_boot: int = 1000, seed: int = 0,
) -> Dict[str, Any]:
    """Paired cluster bootstrap of the seed-mean difference of a pooled (data-set-level) statistic.

    Args:
        a, b: per seed, the per-cluster statistics of each configuration (any object that
            ``statistic`` understands); the seeds common to both are used.
        clusters: the cluster names (the order ``statistic`` expects).
        statistic: ``statistic(stats, weights [R, G]) -> [R]`` the pooled metric of one run
            when cluster ``g`` is counted ``weights[r, g]`` times (NaN where undefined).
        n_boot: bootstrap resamples.
        seed: seed of the resampling.

    Returns:
        ``{"n_clusters", "n_seeds", "mean_diff" (observed), "p", "ci" [low, high], "effect"
        (observed / bootstrap s.d.), "n_boot", "unit": "cluster bootstrap"}``; ``p`` NaN with
        fewer than two clusters or no common seed.

    Example:
        >>> import numpy as np
        >>> mean = lambda s, w: (w @ np.asarray(s)) / w.sum(1)
        >>> r = paired_cluster_bootstrap({0: [1.0, 2.0, 3.0]}, {0: [0.0, 1.0, 2.0]}, ["x", "y", "z"], mean)
        >>> r["mean_diff"], r["p"] < 0.01, [round(x, 6) for x in r["ci"]]
        (1.0, True, [1.0, 1.0])
    """
    seeds = sorted(set(a) & set(b))
    k = len(clusters)
    out: Dict[str, Any] = {"n_clusters": k, "n_seeds": len(seeds), "mean_diff": math.nan, "p": math.nan,
                           "ci": [math.nan, math.nan], "effect": math.nan, "n_boot": int(n_boot),
                           "unit": "cluster bootstrap"}
    if not seeds or k == 0:
        return out
    ones = np.ones((1, k))

    def diff(weights: np.ndarray) -> np.ndarray:
        return np.mean([statistic(a[s], weights) - statistic(b[s], weights) for s in seeds], axis=0)

    observed = float(diff(ones)[0])
    out["mean_diff"] = observed
    if k < 2 or math.isnan(observed):
        return out
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, k, size=(int(n_boot), k))
    weights = np.zeros((int(n_boot), k))
    np.add.at(weights, (np.arange(int(n_boot))[:, None], draws), 1.0)
    boot = diff(weights)
    boot = boot[~np.isnan(boot)]
    if boot.size == 0:
        return out
    below, above = int((boot <= 0).sum()), int((boot >= 0).sum())
    out["p"] = min(1.0, 2 * (min(below, above) + 1) / (boot.size + 1))
    if np.all(boot == 0) and observed == 0:
        out["p"] = 1.0
    out["ci"] = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]
    sd = float(np.std(boot, ddof=1)) if boot.size > 1 else 0.0
    out["effect"] = observed / sd if sd > 0 else (0.0 if observed == 0 else math.copysign(math.inf, observed))
    return out


def sign_consistency(a: Mapping[int, Optional[float]], b: Mapping[int, Optional[float]]) -> Dict[str, Any]:
    """Per common seed the difference ``a - b``; how many are positive, negative, zero.

    Returns ``{"n", "positive", "negative", "zero", "diffs": {seed: d}}`` (seeds with an
    undefined value left out).

    Example:
        >>> sign_consistency({0: 0.7, 1: 0.6, 2: 0.5}, {0: 0.6, 1: 0.5, 2: 0.6})["positive"]
        2
    """
    diffs = {}
    for s in sorted(set(a) & set(b)):
        va, vb = a[s], b[s]
        if va is None or vb is None or math.isnan(float(va)) or math.isnan(float(vb)):
            continue
        diffs[s] = float(va) - float(vb)
    vals = list(diffs.values())
    return {"n": len(vals), "positive": sum(v > 0 for v in vals), "negative": sum(v < 0 for v in vals),
            "zero": sum(v == 0 for v in vals), "diffs": diffs}


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation of the defined (non-NaN) values; 0 s.d. for one value,
    ``(nan, nan)`` for none.

    Example:
        >>> mean_std([1.0, 3.0, float("nan")]), mean_std([2.0]), mean_std([])
        ((2.0, 1.4142135623730951), (2.0, 0.0), (nan, nan))
    """
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    mean = float(np.mean(finite))
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return mean, std


def best_flags(means: Sequence[float], higher: bool) -> List[bool]:
    """Which of ``means`` is the best (largest when ``higher``, else smallest; ties all best).

    Example:
        >>> best_flags([0.5, float("nan"), 0.7, 0.7], True)
        [False, False, True, True]
    """
    finite = [m for m in means if not math.isnan(m)]
    if not finite:
        return [False] * len(means)
    best = max(finite) if higher else min(finite)
    return [not math.isnan(m) and abs(m - best) <= 1e-12 * max(1.0, abs(best)) for m in means]
