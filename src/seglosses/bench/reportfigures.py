"""The figures of the report for a data set's configurations: learning curves, metric bars,
sample predictions and reliability diagrams (drawn by :mod:`seglosses.bench.figures`).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from seglosses.bench import figures as _figures

from seglosses.bench.comparisons import _compare_pairs
from seglosses.bench.reportdata import ROWS, Configuration
from seglosses.bench.tables import _row_label

__all__ = ["pooled_reliability", "reliability_diagram"]


def _panels(configs: Sequence[Configuration], factor: Optional[str]) -> "OrderedDict[str, List[Configuration]]":
    """Configurations per panel: with a compared factor, one panel per combination of the other
    factors (its levels side by side); else one panel per loss."""
    panels: "OrderedDict[str, List[Configuration]]" = OrderedDict()
    if factor:
        paired = _compare_pairs(configs, factor)
        for a, b, ctx in paired:
            members = panels.setdefault(ctx or "all", [])
            for c in (b, a):
                if c not in members:
                    members.append(c)
        for c in configs:
            if not any(c in m for m in panels.values()):
                panels.setdefault(c.label, []).append(c)
        return panels
    for c in configs:
        panels.setdefault(str(c.config().get("loss_label") or c.label), []).append(c)
    return panels


def _learning_curves(path: Path, dataset: str, configs: Sequence[Configuration], factor: Optional[str] = None) -> bool:
    panels = _panels(configs, factor) if len(configs) > _figures.MAX_OVERLAID else None
    return _figures.learning_curves(path, dataset, configs, panels, factor)


def _metric_bars(path: Path, dataset: str, configs: Sequence[Configuration], multiclass: bool) -> bool:
    rows = [(m, a, _row_label(m, a, l, h, multiclass), h) for m, a, l, h in ROWS
            if any(c.values(m, a) for c in configs)]
    return _figures.metric_bars(path, dataset, configs, rows)


_sample_panel = _figures.sample_panel


def pooled_reliability(conf: Configuration) -> Optional[Dict[str, np.ndarray]]:
    """A configuration's reliability bins pooled over its seeds: ``count``, ``confidence``, ``accuracy``
    ``[C, bins]`` (means weighted by the pixels of each run's bin; NaN in empty bins), or ``None``
    when no run recorded them (the study did not ask for a calibration metric).

    Example:
        >>> rel = {"bins": 2, "count": [[1.0, 3.0]], "confidence": [[0.2, 0.9]], "accuracy": [[0.0, 1.0]]}
        >>> c = Configuration("d", "CE", 0, [{"config": {"seed": s}, "results": {"reliability": rel}} for s in (1, 2)])
        >>> pooled_reliability(c)["count"].tolist()
        [[2.0, 6.0]]
    """
    parts = [r["results"]["reliability"] for r in conf.runs if r.get("results", {}).get("reliability")]
    if not parts:
        return None
    count = sum(np.asarray(p["count"], dtype=float) for p in parts)
    sums = {k: sum(np.nan_to_num(np.asarray(p[k], dtype=float)) * np.asarray(p["count"], dtype=float) for p in parts)
            for k in ("confidence", "accuracy")}
    with np.errstate(invalid="ignore", divide="ignore"):
        means = {k: np.where(count > 0, v / np.where(count > 0, count, 1.0), np.nan) for k, v in sums.items()}
    return {"count": count, **means}


def reliability_diagram(path: Path, dataset: str, configs: Sequence[Configuration],
                        class_names: Optional[Sequence[str]] = None) -> bool:
    """The reliability diagram of every configuration (pooled over seeds), one panel per scored class.

    In each bin of predicted probability, the fraction of its pixels that belong to the class
    against their mean probability; the diagonal is perfect calibration, points below it are
    over-confident. The legend gives each configuration's expected calibration error of the
    pooled bins. Written only when some run recorded the bins (a calibration metric in the
    study's ``eval.metrics``); returns whether the figure was written.
    """
    pooled = [(c, pooled_reliability(c)) for c in configs]
    pooled = [(c, r) for c, r in pooled if r is not None]
    if not pooled:
        return False
    import matplotlib.pyplot as plt

    n_cls = pooled[0][1]["count"].shape[0]
    fig, axes = plt.subplots(1, n_cls, figsize=(3.8 * n_cls + 1.5, 3.8), squeeze=False)
    colors = _figures._colors(len(configs))
    color_of = {c.label: colors[i] for i, c in enumerate(configs)}
    for k, ax in enumerate(axes[0]):
        ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=0.8)
        for conf, rel in pooled:
            count, x, y = rel["count"][k], rel["confidence"][k], rel["accuracy"][k]
            keep = count > 0
            total = count.sum()
            ece = float(np.sum(count[keep] * np.abs(x[keep] - y[keep])) / total) if total > 0 else math.nan
            ax.plot(x[keep], y[keep], marker="o", markersize=3, linewidth=1.2, color=color_of[conf.label],
                    label=f"{conf.label} (ECE {ece:.3f})")
        name = class_names[k] if class_names and k < len(class_names) else (f"class {k}" if n_cls > 1 else "foreground")
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("fraction in the class")
        ax.grid(True, alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"{dataset}: reliability (pixels pooled over evaluation items and seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True


def _scored_names(names: Optional[Sequence[str]], multiclass: bool) -> Optional[List[str]]:
    """The names of the classes the calibration metrics score (the foreground ones in multiclass mode)."""
    if not names:
        return None
    return list(names[1:]) if multiclass else [str(names[-1])]
