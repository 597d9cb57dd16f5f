"""The figures of the benchmark report (matplotlib, Agg backend): learning curves, final-metric
bars and sample predictions.

They are drawn for speed without losing content: fixed margins instead of ``tight_layout`` plus a
``bbox_inches="tight"`` save (one draw instead of three), and the sample panel as one mosaic image
in one axes instead of one axes per tile.
"""
from __future__ import annotations

import math
import textwrap
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from seglosses.bench.runfiles import DamagedFile, load_samples
from seglosses.bench.stats import best_flags, mean_std

__all__ = ["MAX_OVERLAID", "learning_curves", "metric_bars", "sample_panel"]


def _colors(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _curve(conf: Any, key: str):
    """(epochs, mean, std) of one history column over the seeds, or ``None``."""
    histories = [h for h in (r.get("history") or [] for r in conf.runs) if h]
    if not histories:
        return None
    n = min(len(h) for h in histories)
    epochs = [h["epoch"] for h in histories[0][:n]]
    arr = np.array([[np.nan if row.get(key) is None else float(row[key]) for row in h[:n]] for h in histories])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(arr, axis=0)
        std = np.nanstd(arr, axis=0, ddof=1) if arr.shape[0] > 1 else None
    return epochs, mean, std


#: Above this many configurations the learning curves are drawn as small multiples.
MAX_OVERLAID = 4


def _fixed_layout(fig, *, left: float, right: float, top: float, bottom: float, wspace: float,
                  hspace: float) -> None:
    """Margins and gaps between the axes of a regular grid, in inches: the layout ``tight_layout``
    would find for a grid whose labels are known in advance, without measuring every tick label."""
    width, height = fig.get_size_inches()
    grid = fig.axes[0].get_subplotspec().get_gridspec()
    rows, cols = grid.get_geometry()
    ax_w = (width - left - right - wspace * (cols - 1)) / cols
    ax_h = (height - top - bottom - hspace * (rows - 1)) / rows
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                        wspace=wspace / ax_w, hspace=hspace / ax_h)


def learning_curves(path: Path, dataset: str, configs: Sequence[Any],
                    panels: Optional["OrderedDict[str, List[Any]]"] = None, factor: Optional[str] = None) -> bool:
    """Training loss, validation loss and validation Dice over the epochs (mean over seeds, band
    ± 1 s.d.): all configurations in one panel up to :data:`MAX_OVERLAID`, else ``panels`` (one
    per loss, or per combination of the factors other than the compared ``factor``)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, MaxNLocator, NullLocator

    if not any(_curve(c, "train_loss") for c in configs):
        return False
    rows = [("train_loss", "training loss"), ("val_loss", "validation loss"),
            ("val_dice_dataset", "validation Dice (pooled)")]
    if len(configs) <= MAX_OVERLAID or panels is None:
        panels = OrderedDict([("", list(configs))])
    ncols = len(panels)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(max(5.0, 3.6 * ncols) + 2.5, 2.9 * len(rows)),
                             squeeze=False, sharex=True)
    colors = _colors(max(len(m) for m in panels.values()))
    for col, (title, members) in enumerate(panels.items()):
        for j, conf in enumerate(members):
            for row, (key, _) in enumerate(rows):
                found = _curve(conf, key)
                if found is None:
                    continue
                epochs, mean, std = found
                ax = axes[row, col]
                ax.plot(epochs, mean, marker="o", markersize=2.5, color=colors[j], linewidth=1.4,
                        label=conf.label if row == 0 else None)
                if std is not None:
                    ax.fill_between(epochs, mean - std, mean + std, color=colors[j], alpha=0.15, linewidth=0)
        axes[0, col].set_title(title, fontsize=9)
        axes[0, col].legend(fontsize=7, frameon=False, loc="upper right")
    for row, (key, label) in enumerate(rows):
        axes[row, 0].set_ylabel(label, fontsize=9)
        for ax in axes[row]:
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
            if key == "val_dice_dataset":
                ax.set_ylim(-0.02, 1.02)
                ax.yaxis.set_major_locator(MaxNLocator(4))
            else:  # log scale only where the curves span more than a decade
                lines = [np.asarray(l.get_ydata(), dtype=float) for l in ax.get_lines()]
                if lines and all(np.nanmin(y) > 0 for y in lines) and \
                        max(np.nanmax(y) for y in lines) > 10 * min(np.nanmin(y) for y in lines):
                    ax.set_yscale("log")
                    ax.yaxis.set_major_locator(LogLocator(numticks=4))
                    ax.yaxis.set_minor_locator(NullLocator())
                else:
                    ax.yaxis.set_major_locator(MaxNLocator(4))
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=9)
    how = "one panel per " + ("combination of the other factors" if factor else "loss") if ncols > 1 else ""
    fig.suptitle(f"{dataset}: learning curves (mean over seeds; band: ± 1 s.d.){'; ' + how if how else ''}",
                 fontsize=10)
    _fixed_layout(fig, left=0.8, right=0.15, top=0.75, bottom=0.5, wspace=0.5, hspace=0.15)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def metric_bars(path: Path, dataset: str, configs: Sequence[Any], rows: Sequence[Tuple[str, str, str, bool]]) -> bool:
    """One bar chart per row ``(metric, aggregation, title, higher is better)``: mean over seeds
    of each configuration, error bars ± 1 s.d., the best marked."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not rows:
        return False
    ncols = min(4, len(rows))
    nrows = math.ceil(len(rows) / ncols)
    width = max(3.6, 0.42 * len(configs) + 1.2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 3.6 * nrows), squeeze=False)
    colors = _colors(len(configs))
    x = np.arange(len(configs))
    title_lines = 1
    for ax, (metric, aggregation, heading, higher) in zip(axes.flat, rows):
        stats = [mean_std(c.values(metric, aggregation)) for c in configs]
        means = np.array([s[0] for s in stats])
        stds = np.array([s[1] for s in stats])
        ax.bar(x, np.nan_to_num(means), yerr=np.nan_to_num(stds), color=colors, capsize=3,
               edgecolor="black", linewidth=0.4)
        best = best_flags(list(means), higher)
        for i, b in enumerate(best):
            if b:
                ax.annotate("best", (x[i], np.nan_to_num(means[i]) + np.nan_to_num(stds[i])), ha="center",
                            va="bottom", fontsize=7)
        title = textwrap.fill(heading, 44)
        title_lines = max(title_lines, title.count("\n") + 1)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(x)
        ax.set_xticklabels([c.label for c in configs], rotation=45, ha="right", fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
        ax.yaxis.set_major_locator(MaxNLocator(5))
        if metric not in ("hd95",):
            ax.set_ylim(0, max(1.0, float(np.nanmax(means + stds)) * 1.08) if np.isfinite(means).any() else 1.0)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    fig.suptitle(f"{dataset}: final metrics (bars: mean over seeds; error bars: ± 1 s.d.)")
    # below each row the configuration names at 45 degrees (about 0.05 in per character of 8 pt);
    # above it the wrapped title (about 0.17 in per line of 9 pt)
    names = 0.05 * max(len(c.label) for c in configs) + 0.25
    titles = 0.17 * title_lines + 0.1
    _fixed_layout(fig, left=0.55, right=0.15, top=0.45 + titles, bottom=names, wspace=0.55, hspace=names + titles)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _load_samples(run_dir: Path, warn: Optional[Callable[[str], None]] = None) -> Optional[Dict[str, Any]]:
    p = run_dir / "samples.npz"
    if not p.is_file():
        return None
    try:
        return load_samples(p)
    except DamagedFile as err:
        if warn is not None:
            warn(f"{err} (left out of the sample figure)")
        return None


def _sample_tiles(ref: Mapping[str, Any], samples: Sequence[Optional[Mapping[str, Any]]],
                  num_classes: int) -> List[List[Optional[np.ndarray]]]:
    """Per sample row, the RGB tiles (float ``[H, W, 3]`` in [0, 1]) of the sample panel: the
    image, the truth and each configuration's prediction (``None``: not available). Binary:
    white true positives, red false positives, cyan false negatives, black true negatives;
    multiclass: one colour per class (:data:`_LABEL_COLORS`)."""
    from matplotlib.colors import to_rgb

    binary = num_classes == 2
    errors = np.array([to_rgb(c) for c in ("black", "white", "tab:red", "tab:cyan")])
    n = max(2, num_classes)
    lut = np.array([to_rgb(c) for c in _LABEL_COLORS[:n]])
    top = max(1, num_classes - 1)

    def labels(x: np.ndarray) -> np.ndarray:  # the colour of a ListedColormap over [0, top]
        return lut[np.clip(np.floor(x.astype(float) / top * len(lut)), 0, len(lut) - 1).astype(int)]

    rows = []
    for row in range(len(ref["names"])):
        image = np.asarray(ref["images"][row], dtype=float)
        truth = np.asarray(ref["truths"][row])
        shown = np.repeat(image[0][..., None], 3, -1) if image.shape[0] == 1 else np.moveaxis(image[:3], 0, -1)
        tiles: List[Optional[np.ndarray]] = [np.clip(shown, 0, 1)]
        tiles.append(errors[(truth >= 1).astype(int)] if binary else labels(truth))
        for s in samples:
            if s is None or row >= len(s["preds"]) or s["names"][row] != ref["names"][row]:
                tiles.append(None)
                continue
            pred = np.asarray(s["preds"][row]).astype(int)
            if binary:
                tiles.append(errors[np.where(pred == 1, np.where(truth == 1, 1, 2), np.where(truth == 1, 3, 0))])
            else:
                tiles.append(labels(pred))
        rows.append(tiles)
    return rows


_LABEL_COLORS = ["black", "tab:orange", "tab:green", "tab:purple", "tab:blue", "tab:red"]


def sample_panel(path: Path, dataset: str, configs: Sequence[Any], num_classes: int,
                  class_names: Optional[Sequence[str]] = None, warn: Optional[Callable[[str], None]] = None) -> bool:
    """The sample figure: one row per sample item, columns image, truth and each configuration's
    prediction; drawn as one mosaic image in one axes (an axes per tile costs seconds)."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Patch, Rectangle

    samples = [_load_samples(Path(conf.runs[0]["dir"]), warn) if conf.runs else None for conf in configs]
    ref = next((s for s in samples if s is not None), None)
    if ref is None:
        return False
    rows = _sample_tiles(ref, samples, num_classes)
    k, ncols = len(rows), 2 + len(configs)
    heights = [max(t.shape[0] for t in r if t is not None) for r in rows]
    width = max(t.shape[1] for r in rows for t in r if t is not None)
    gap = max(2, width // 12)
    cell_h = [h + gap for h in heights]
    mosaic = np.ones((sum(cell_h), ncols * (width + gap), 3))
    frames, missing = [], []
    y0 = 0
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            x0 = c * (width + gap)
            if tile is None:
                missing.append((x0 + width / 2, y0 + heights[r] / 2))
                continue
            h, w = tile.shape[:2]
            oy, ox = y0 + (heights[r] - h) // 2, x0 + (width - w) // 2
            mosaic[oy:oy + h, ox:ox + w] = tile
            frames.append(Rectangle((ox - 0.5, oy - 0.5), w, h))
        y0 += cell_h[r]
    fig = plt.figure(figsize=(1.9 * ncols, 2.0 * k + 0.8))
    ax = fig.add_axes((0.02, 0.07, 0.97, 0.83))
    ax.imshow(mosaic, interpolation="nearest", aspect="equal")
    ax.add_collection(PatchCollection(frames, facecolor="none", edgecolor="black", linewidth=0.8))
    for x, y in missing:
        ax.text(x, y, "n/a", ha="center", va="center")
    titles = ["image", "truth"] + [c.label.replace(" (", "\n(") for c in configs]
    for c, title in enumerate(titles):
        ax.text(c * (width + gap) + width / 2, -gap, title, ha="center", va="bottom", fontsize=8)
    y0 = 0
    for r, name in enumerate(ref["names"]):
        ax.text(-gap, y0 + heights[r] / 2, name, ha="right", va="center", rotation=90, fontsize=7)
        y0 += cell_h[r]
    ax.set_axis_off()
    if num_classes == 2:
        handles = [Patch(facecolor=c, edgecolor="grey", label=l) for c, l in
                   zip(["white", "tab:red", "tab:cyan", "black"], ["true positive", "false positive",
                                                                   "false negative", "true negative"])]
    else:
        names = list(class_names) if class_names else ["background"] + [f"class {c}" for c in range(1, num_classes)]
        handles = [Patch(facecolor=_LABEL_COLORS[c % len(_LABEL_COLORS)], edgecolor="grey", label=names[c])
                   for c in range(num_classes)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=8)
    fig.suptitle(f"{dataset}: sample predictions (first seed of each configuration)", fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
