r"""The comparison report of a study: tables, significance tests, figures.

:func:`write_report` reads the finished runs of a study folder (``OUT/<study>``, as written by
:func:`seglosses.bench.study.run_study`) and writes ``OUT/<study>/report/``:

``report.md``
    per data set, a table in the layout of seed 000 Table 1 (rows: metrics with ↑ / ↓, columns:
    configurations, the best value of each row in bold), mean ± standard deviation over the
    seeds; the per-class IoU (seed 003 Table 4) and a pixel accuracy / IoU table over all data
    sets (seed 003 Tables 2-3); the paired significance tests against the baseline; the figures.
``results.csv``
    one row per run: its configuration and every final metric.
``results.json``
    per data set and configuration, mean, standard deviation, count and the per-seed values of
    every metric; the significance tests; the conventions.
``learning_curves_<data set>.png``, ``metrics_<data set>.png``, ``samples_<data set>.png``
    train / validation loss and validation Dice per epoch; a bar chart of every metric with
    error bars (standard deviation over seeds); sample predictions of every configuration next
    to the image and its truth (seed 003 Figures 3-4).

Significance: for each configuration and metric, a two-sided Wilcoxon signed-rank test
(:func:`scipy.stats.wilcoxon`) of the paired per-image values (averaged over the seeds that both
configurations ran) against the baseline configuration; and, when both have at least five seeds
in common, of the per-seed values. Pairs with an undefined value are left out; zero
differences are dropped (``zero_method="wilcox"``). No correction for multiple comparisons.
"""
from __future__ import annotations

import csv
import io
import json  # noqa: F401 - the doctests use it
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from seglosses.bench.runfiles import (
    DamagedFile,
    atomic_write_json,
    atomic_write_text,
    load_samples,
    read_final,
    read_index,
    redo_advice,
)

__all__ = ["ROWS", "ReportError", "Configuration", "find_studies", "load_runs", "summarize", "format_cell",
           "main_table", "per_class_table", "overview_table", "wilcoxon_test", "write_report"]


class ReportError(ValueError):
    """A folder without finished runs, or an unknown baseline.

    Example:
        >>> issubclass(ReportError, ValueError)
        True
    """


#: The rows of the main table: (metric, aggregation, label, higher is better). The order
#: follows seed 000 Table 1 (AP, balanced accuracy, Dice, Jaccard, Hausdorff), then seed 003.
ROWS: List[Tuple[str, str, str, bool]] = [
    ("average_precision", "dataset", "average precision (data set)", True),
    ("average_precision", "image_mean", "average precision (per image)", True),
    ("balanced_accuracy", "dataset", "balanced accuracy (data set)", True),
    ("dice", "dataset", "Dice index (data set)", True),
    ("dice", "image_mean", "Dice index (per image)", True),
    ("jaccard", "dataset", "IoU (data set)", True),
    ("jaccard", "image_mean", "Jaccard index (per image)", True),
    ("pixel_accuracy", "dataset", "pixel accuracy (data set)", True),
    ("modified_hausdorff", "image_mean", "mod. Hausdorff / diagonal (per image)", False),
    ("hd95", "image_mean", "HD95, pixels (per image)", False),
]
#: The per-image metrics tested against the baseline.
TESTED = ("dice", "jaccard", "balanced_accuracy", "average_precision", "modified_hausdorff", "hd95")
_HIGHER = {m: h for m, _, _, h in ROWS}

CONVENTIONS = [
    "data set: confusion counts summed over all pixels of all evaluation images, then the formula "
    "(seed 003's IoU); average precision from score histograms (1000 bins) summed over the data set",
    "per image: each image's value, then the mean over the images where it is defined",
    "multiclass: overlap metrics average the foreground classes (IoU (data set) is then seed 003's mIoU, "
    "the mean of the per-class table without the background)",
    "0/0 overlap ratios (class absent from prediction and truth) count as 1 (seed 003)",
    "mod. Hausdorff: seed 000 eq. 7 over the foreground pixel sets, divided by the image diagonal; "
    "HD95: 95th percentile surface distance in pixels; both left out where prediction and truth lack "
    "the class, and the diagonal (1 after normalisation) where exactly one lacks it",
    "average precision on the raw probabilities; every other metric on the prediction thresholded at 0.5 "
    "(binary) or its arg-max (multiclass)",
    "the paired tests treat the evaluation items as independent; items cut from one image (quadrants, tiles) "
    "are not, so their p-values are optimistic",
]


@dataclass
class Configuration:
    """All seeds of one configuration of one data set (the runs' ``final.json`` contents).

    Example:
        >>> c = Configuration("d", "CE", 0, [{"config": {"seed": 1}, "results": {"dataset": {"dice": 0.5}},
        ...                                   "per_image": {"a": {"dice": 0.25}}}])
        >>> c.seeds, c.values("dice", "dataset"), c.per_image("dice")
        ([1], [0.5], {'a': 0.25})
    """

    dataset: str
    label: str
    order: int
    runs: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def seeds(self) -> List[int]:
        return [int(r["config"]["seed"]) for r in self.runs]

    def config(self) -> Dict[str, Any]:
        return self.runs[0]["config"]

    def values(self, metric: str, aggregation: str) -> List[float]:
        out = []
        for r in self.runs:
            v = r["results"].get(aggregation, {}).get(metric)
            if v is not None and not isinstance(v, list):
                out.append(float(v))
        return out

    def per_image(self, metric: str, seeds: Optional[Sequence[int]] = None) -> Dict[str, float]:
        """Per-image values averaged over ``seeds`` (all by default), NaN-free images only."""
        sums: Dict[str, List[float]] = {}
        for r in self.runs:
            if seeds is not None and int(r["config"]["seed"]) not in seeds:
                continue
            for name, row in r.get("per_image", {}).items():
                v = row.get(metric)
                if v is not None:
                    sums.setdefault(name, []).append(float(v))
        return {n: sum(v) / len(v) for n, v in sums.items() if not any(math.isnan(x) for x in v)}


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------


def find_studies(path: str | Path) -> List[Path]:
    """The study folders under ``path``: itself when it holds ``study.json`` or ``runs/``, else its
    sub-folders that do; a bare folder of runs (``final.json`` files somewhere below) is itself one.

    Raises:
        ReportError: no study or run found.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp()); (root / "s" / "runs").mkdir(parents=True)
        >>> [p.name for p in find_studies(root)]
        ['s']
    """
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"`runs_dir` must be an existing folder; got '{path}'")
    if (path / "study.json").is_file() or (path / "runs").is_dir():
        return [path]
    subs = sorted(p for p in path.iterdir() if p.is_dir() and ((p / "study.json").is_file() or (p / "runs").is_dir()))
    if subs:
        return subs
    if path.name == "runs" and (path.parent / "study.json").is_file():
        return [path.parent]
    if any(path.rglob("final.json")):
        return [path]
    raise ReportError(f"`runs_dir` must hold a study (study.json, runs/) or finished runs (final.json); "
                      f"got none in '{path}'")


def load_runs(study_dir: str | Path, skipped: Optional[List[str]] = None
              ) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """The study index (``study.json``, or ``{}``) and the finished runs (``final.json`` contents).

    Runs are those the index lists when there is one, else every ``final.json`` below the
    folder; pre-training runs are left out. Each run gets ``"dir"``, its folder. A damaged
    ``final.json`` is left out and its message (path, damage, remedy) appended to ``skipped``.

    Raises:
        ReportError: a damaged ``study.json`` (the message names it and the remedy).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp()); (root / "r").mkdir()
        >>> run = '{"config": {"kind": "run", "seed": 0}, "dataset": "d", "results": {}}'
        >>> _ = (root / "r" / "final.json").write_text(run)
        >>> (root / "q").mkdir(); _ = (root / "q" / "final.json").write_text(run[:20])
        >>> skipped = []
        >>> index, runs = load_runs(root, skipped)
        >>> index, len(runs), runs[0]["dir"] == str(root / "r"), "(truncated JSON)" in skipped[0]
        ({}, 1, True, True)
    """
    study_dir = Path(study_dir)
    index: Dict[str, Any] = {}
    if (study_dir / "study.json").is_file():
        try:
            index = read_index(study_dir / "study.json")
        except DamagedFile as err:
            raise ReportError(str(err)) from None
    runs = []
    if index.get("runs"):
        paths = [study_dir / "runs" / r["id"] / "final.json" for r in index["runs"]]
    else:
        paths = sorted(study_dir.rglob("final.json"))
    for p in paths:
        if not p.is_file():
            continue
        try:
            run = read_final(p, advice=redo_advice(_run_id(study_dir, p)))
        except DamagedFile as err:
            if skipped is not None:
                skipped.append(str(err))
            continue
        if run.get("config", {}).get("kind") == "pretrain":
            continue
        run["dir"] = str(p.parent)
        runs.append(run)
    return index, runs


def _run_id(study_dir: Path, final: Path) -> Optional[str]:
    try:
        return final.parent.relative_to(study_dir / "runs").as_posix()
    except ValueError:
        return None


def summarize(runs: Sequence[Mapping[str, Any]]) -> "OrderedDict[str, List[Configuration]]":
    """Group runs by data set and configuration label (configurations in study order).

    Example:
        >>> r = {"config": {"label": "CE", "order": 0, "seed": 0}, "dataset": "d", "results": {}}
        >>> [(c.label, c.seeds) for c in summarize([r])["d"]]
        [('CE', [0])]
    """
    groups: Dict[Tuple[str, str], Configuration] = {}
    for run in runs:
        cfg = run["config"]
        key = (run["dataset"], cfg.get("label", cfg.get("loss_label", "?")))
        if key not in groups:
            groups[key] = Configuration(key[0], key[1], int(cfg.get("order", len(groups))))
        groups[key].runs.append(dict(run))
    out: "OrderedDict[str, List[Configuration]]" = OrderedDict()
    for conf in sorted(groups.values(), key=lambda c: (c.order, c.label)):
        conf.runs.sort(key=lambda r: int(r["config"]["seed"]))
        out.setdefault(conf.dataset, []).append(conf)
    return out


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    mean = float(np.mean(finite))
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return mean, std


def format_cell(values: Sequence[float], digits: int = 4, bold: bool = False) -> str:
    """``mean ± std`` (sample standard deviation) of the values, or the value when there is one.

    Example:
        >>> format_cell([0.5, 0.7]), format_cell([0.25], bold=True), format_cell([])
        ('0.6000 ± 0.1414', '**0.2500**', '–')
    """
    mean, std = _mean_std(values)
    if math.isnan(mean):
        return "–"
    text = f"{mean:.{digits}f}" if len(values) < 2 else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"**{text}**" if bold else text


def _best(means: Sequence[float], higher: bool) -> List[bool]:
    finite = [m for m in means if not math.isnan(m)]
    if not finite:
        return [False] * len(means)
    best = max(finite) if higher else min(finite)
    return [not math.isnan(m) and abs(m - best) <= 1e-12 * max(1.0, abs(best)) for m in means]


def _row_label(metric: str, aggregation: str, label: str, higher: bool, multiclass: bool) -> str:
    if metric == "jaccard" and aggregation == "dataset" and multiclass:
        label = "mIoU (data set)"
    return f"{label} {'↑' if higher else '↓'}"


def main_table(configs: Sequence[Configuration], *, multiclass: bool = False, digits: int = 4) -> str:
    """The seed 000 Table 1 layout: metric rows with ↑/↓, configuration columns, best in bold.

    Example:
        >>> a = Configuration("d", "CE", 0, [{"config": {"seed": 0}, "results": {"dataset": {"dice": 0.5}}}])
        >>> b = Configuration("d", "Dice", 1, [{"config": {"seed": 0}, "results": {"dataset": {"dice": 0.7}}}])
        >>> print(main_table([a, b]))
        | metric | CE | Dice |
        |---|---|---|
        | Dice index (data set) ↑ | 0.5000 | **0.7000** |
    """
    lines = ["| metric | " + " | ".join(c.label for c in configs) + " |",
             "|---|" + "---|" * len(configs)]
    for metric, aggregation, label, higher in ROWS:
        values = [c.values(metric, aggregation) for c in configs]
        if not any(values):
            continue
        means = [_mean_std(v)[0] for v in values]
        bold = _best(means, higher)
        cells = [format_cell(v, digits, b) for v, b in zip(values, bold)]
        lines.append(f"| {_row_label(metric, aggregation, label, higher, multiclass)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _class_iou(conf: Configuration) -> List[List[float]]:
    """Per seed, the per-class IoU list."""
    return [list(r["results"].get("dataset", {}).get("iou_per_class", [])) for r in conf.runs
            if r["results"].get("dataset", {}).get("iou_per_class")]


def per_class_table(configs: Sequence[Configuration], num_classes: int, digits: int = 4,
                    class_names: Optional[Sequence[str]] = None) -> Optional[str]:
    """Seed 003 Table 4: configuration rows, per-class IoU (data set) columns, best in bold.

    Returns ``None`` when no run has per-class values.

    Example:
        >>> c = Configuration("d", "CE", 0, [{"config": {"seed": 0},
        ...                                   "results": {"dataset": {"iou_per_class": [0.9, 0.4]}}}])
        >>> print(per_class_table([c], 2))
        | configuration | background ↑ | class 1 ↑ |
        |---|---|---|
        | CE | **0.9000** | **0.4000** |
    """
    per = [_class_iou(c) for c in configs]
    if not any(per):
        return None
    names = list(class_names) if class_names else ["background"] + [f"class {k}" for k in range(1, num_classes)]
    columns = [[[seed[k] for seed in p if len(seed) > k] for p in per] for k in range(num_classes)]
    bolds = [_best([_mean_std(v)[0] for v in col], True) for col in columns]
    lines = ["| configuration | " + " | ".join(f"{n} ↑" for n in names) + " |", "|---|" + "---|" * num_classes]
    for i, c in enumerate(configs):
        cells = [format_cell(columns[k][i], digits, bolds[k][i]) for k in range(num_classes)]
        lines.append(f"| {c.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def overview_table(studies: Mapping[str, Sequence[Configuration]], modes: Mapping[str, str],
                   digits: int = 4) -> Optional[str]:
    """Seed 003 Tables 2-3: configuration rows; per data set, pixel accuracy and IoU / mIoU (data set).

    Example:
        >>> c = Configuration("d", "CE", 0, [{"config": {"seed": 0},
        ...                                   "results": {"dataset": {"pixel_accuracy": 0.9, "jaccard": 0.5}}}])
        >>> print(overview_table({"d": [c]}, {"d": "binary"}))
        | configuration | d: pixel acc. ↑ | d: IoU ↑ |
        |---|---|---|
        | CE | **0.9000** | **0.5000** |
    """
    labels: List[str] = []
    for confs in studies.values():
        labels.extend(c.label for c in confs if c.label not in labels)
    if not labels:
        return None
    header = ["configuration"]
    for ds in studies:
        header += [f"{ds}: pixel acc. ↑", f"{ds}: {'mIoU' if modes.get(ds) == 'multiclass' else 'IoU'} ↑"]
    cols: List[List[str]] = []
    for ds, confs in studies.items():
        by_label = {c.label: c for c in confs}
        for metric in ("pixel_accuracy", "jaccard"):
            values = [by_label[l].values(metric, "dataset") if l in by_label else [] for l in labels]
            bold = _best([_mean_std(v)[0] for v in values], True)
            cols.append([format_cell(v, digits, b) for v, b in zip(values, bold)])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---|" * (len(header) - 1)]
    for i, label in enumerate(labels):
        lines.append(f"| {label} | " + " | ".join(col[i] for col in cols) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Significance
# ------------------------------------------------------------------------------------------------


def wilcoxon_test(x: Sequence[float], y: Sequence[float]) -> Dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired values ``x`` vs ``y`` (:func:`scipy.stats.wilcoxon`).

    Returns ``{"n": pairs, "mean_diff": mean(x - y), "p": p-value}``; ``p`` is 1 when every
    difference is zero and NaN with fewer than two pairs.

    Example:
        >>> r = wilcoxon_test([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
        >>> r["n"], r["mean_diff"], round(r["p"], 4)
        (6, 2.25, 0.0312)
    """
    from scipy.stats import wilcoxon

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    d = x - y
    out: Dict[str, Any] = {"n": int(d.size), "mean_diff": float(d.mean()) if d.size else math.nan, "p": math.nan}
    if d.size < 2:
        return out
    if np.all(d == 0):
        out["p"] = 1.0
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["p"] = float(wilcoxon(x, y, zero_method="wilcox", alternative="two-sided").pvalue)
    return out


def _significance(configs: Sequence[Configuration], baseline: Configuration) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for conf in configs:
        if conf is baseline:
            continue
        common = sorted(set(conf.seeds) & set(baseline.seeds))
        entry: Dict[str, Any] = {"images": {}, "seeds": {}}
        for metric in TESTED:
            a, b = conf.per_image(metric, common), baseline.per_image(metric, common)
            names = [n for n in a if n in b]
            if names:
                entry["images"][metric] = wilcoxon_test([a[n] for n in names], [b[n] for n in names])
        if len(common) >= 5:
            for metric, aggregation, _, _ in ROWS:
                va = {int(r["config"]["seed"]): r["results"].get(aggregation, {}).get(metric) for r in conf.runs}
                vb = {int(r["config"]["seed"]): r["results"].get(aggregation, {}).get(metric) for r in baseline.runs}
                pairs = [(va[s], vb[s]) for s in common if va.get(s) is not None and vb.get(s) is not None
                         and not math.isnan(va[s]) and not math.isnan(vb[s])]
                if len(pairs) >= 5:
                    entry["seeds"][f"{metric}_{aggregation}"] = wilcoxon_test([p[0] for p in pairs],
                                                                              [p[1] for p in pairs])
        out[conf.label] = entry
    return out


def _sig_cell(r: Optional[Mapping[str, Any]], higher: bool) -> str:
    if not r or math.isnan(r["p"]):
        return "–"
    star = "*" if r["p"] < 0.05 else ""
    better = (r["mean_diff"] > 0) == higher and r["mean_diff"] != 0
    arrow = "" if r["mean_diff"] == 0 else (" (better)" if better else " (worse)")
    return f"{r['mean_diff']:+.4f}, p={r['p']:.3g}{star}{arrow if star else ''}"


_SHORT = {"dice": "Dice", "jaccard": "Jaccard", "balanced_accuracy": "balanced acc.", "average_precision": "AP",
          "pixel_accuracy": "pixel acc.", "modified_hausdorff": "mod. Hausdorff", "hd95": "HD95"}


def _column(key: str) -> str:
    for (metric, aggregation, label, higher) in ROWS:
        if key == f"{metric}_{aggregation}":
            return f"{label} {'↑' if higher else '↓'}"
    return f"{_SHORT.get(key, key)} {'↑' if _HIGHER.get(key, True) else '↓'}"


def _significance_table(sig: Mapping[str, Any], kind: str, metrics: Sequence[str]) -> Optional[str]:
    rows = [(label, entry[kind]) for label, entry in sig.items() if entry.get(kind)]
    if not rows:
        return None
    lines = ["| configuration | " + " | ".join(_column(m) for m in metrics) + " |", "|---|" + "---|" * len(metrics)]
    for label, tests in rows:
        cells = []
        for m in metrics:
            metric = next((name for name in _HIGHER if m.startswith(name)), m)
            cells.append(_sig_cell(tests.get(m), _HIGHER.get(metric, True)))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _match_baseline(configs: Sequence[Configuration], name: Optional[str]) -> Optional[Configuration]:
    if not configs:
        return None
    if name is None:
        return configs[0]
    key = str(name).strip().lower()

    def canonical(spec: str) -> Optional[str]:
        try:
            from seglosses.registry import resolve

            return resolve(spec).name
        except Exception:  # noqa: BLE001 - not a single registered name
            return None

    wanted = canonical(key)
    tests = [
        lambda c: c.label.lower() == key,
        lambda c: str(c.config().get("loss_label", "")).lower() == key,
        lambda c: str(c.config().get("loss_spec", "")).lower() == key or str(c.config().get("loss", "")).lower() == key,
        lambda c: wanted is not None and canonical(str(c.config().get("loss_spec", ""))) == wanted,
    ]
    for test in tests:
        found = [c for c in configs if test(c)]
        if found:
            return found[0]
    return None


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------


def _colors(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _learning_curves(path: Path, dataset: str, configs: Sequence[Configuration]) -> bool:
    import matplotlib.pyplot as plt

    panels = [("train_loss", "training loss"), ("val_loss", "validation loss"),
              ("val_dice_dataset", "validation Dice (data set)")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    colors = _colors(len(configs))
    drawn = False
    for conf, color in zip(configs, colors):
        histories = [r.get("history") or [] for r in conf.runs]
        histories = [h for h in histories if h]
        if not histories:
            continue
        n = min(len(h) for h in histories)
        epochs = [h["epoch"] for h in histories[0][:n]]
        for ax, (key, _) in zip(axes, panels):
            arr = np.array([[np.nan if row.get(key) is None else float(row[key]) for row in h[:n]] for h in histories])
            mean = np.nanmean(arr, axis=0)
            ax.plot(epochs, mean, marker="o", markersize=3, color=color, label=conf.label, linewidth=1.6)
            if arr.shape[0] > 1:
                std = np.nanstd(arr, axis=0, ddof=1)
                ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    for ax, (key, title) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if key != "val_dice_dataset":
            lines = [l.get_ydata() for l in ax.get_lines()]
            if lines and all(np.nanmin(y) > 0 for y in lines):
                ax.set_yscale("log")
        else:
            ax.set_ylim(-0.02, 1.02)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.995, 0.5), frameon=False)
    fig.suptitle(f"{dataset}: learning curves (mean over seeds; band: ± 1 s.d.)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def _metric_bars(path: Path, dataset: str, configs: Sequence[Configuration], multiclass: bool) -> bool:
    import matplotlib.pyplot as plt

    rows = [(m, a, l, h) for m, a, l, h in ROWS if any(c.values(m, a) for c in configs)]
    if not rows:
        return False
    ncols = min(4, len(rows))
    nrows = math.ceil(len(rows) / ncols)
    width = max(3.6, 0.42 * len(configs) + 1.2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 3.6 * nrows), squeeze=False)
    colors = _colors(len(configs))
    x = np.arange(len(configs))
    for ax, (metric, aggregation, label, higher) in zip(axes.flat, rows):
        stats = [_mean_std(c.values(metric, aggregation)) for c in configs]
        means = np.array([s[0] for s in stats])
        stds = np.array([s[1] for s in stats])
        ax.bar(x, np.nan_to_num(means), yerr=np.nan_to_num(stds), color=colors, capsize=3,
               edgecolor="black", linewidth=0.4)
        best = _best(list(means), higher)
        for i, b in enumerate(best):
            if b:
                ax.annotate("best", (x[i], np.nan_to_num(means[i]) + np.nan_to_num(stds[i])), ha="center",
                            va="bottom", fontsize=7)
        ax.set_title(_row_label(metric, aggregation, label, higher, multiclass), fontsize=9)
        ax.set_xticks(x)
        ax.set_xticklabels([c.label for c in configs], rotation=45, ha="right", fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
        if metric not in ("hd95",):
            ax.set_ylim(0, max(1.0, float(np.nanmax(means + stds)) * 1.08) if np.isfinite(means).any() else 1.0)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    fig.suptitle(f"{dataset}: final metrics (bars: mean over seeds; error bars: ± 1 s.d.)")
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
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


def _sample_panel(path: Path, dataset: str, configs: Sequence[Configuration], num_classes: int,
                  class_names: Optional[Sequence[str]] = None, warn: Optional[Callable[[str], None]] = None) -> bool:
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    samples = []
    for conf in configs:
        s = _load_samples(Path(conf.runs[0]["dir"]), warn) if conf.runs else None
        samples.append(s)
    ref = next((s for s in samples if s is not None), None)
    if ref is None:
        return False
    k = len(ref["names"])
    ncols = 2 + len(configs)
    fig, axes = plt.subplots(k, ncols, figsize=(1.9 * ncols, 2.0 * k + 0.8), squeeze=False)
    binary = num_classes == 2
    if binary:
        # 0 true negative, 1 true positive, 2 false positive, 3 false negative
        err_cmap = ListedColormap(["black", "white", "tab:red", "tab:cyan"])
    label_colors = ["black", "tab:orange", "tab:green", "tab:purple", "tab:blue", "tab:red"]
    lab_cmap = ListedColormap(label_colors[:max(2, num_classes)])
    for row in range(k):
        image = np.asarray(ref["images"][row])
        truth = np.asarray(ref["truths"][row])
        shown = image[0] if image.shape[0] == 1 else np.moveaxis(image[:3], 0, -1)
        axes[row, 0].imshow(shown, cmap="gray" if image.shape[0] == 1 else None, vmin=0, vmax=1)
        if binary:  # white foreground, as the true positives of the prediction columns
            axes[row, 1].imshow(truth, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            axes[row, 1].imshow(truth, cmap=lab_cmap, vmin=0, vmax=max(1, num_classes - 1), interpolation="nearest")
        axes[row, 0].set_ylabel(ref["names"][row], fontsize=7)
        for col, s in enumerate(samples, start=2):
            ax = axes[row, col]
            if s is None or row >= len(s["preds"]) or s["names"][row] != ref["names"][row]:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
                continue
            pred = np.asarray(s["preds"][row]).astype(int)
            if binary:
                code = np.where(pred == 1, np.where(truth == 1, 1, 2), np.where(truth == 1, 3, 0))
                ax.imshow(code, cmap=err_cmap, vmin=0, vmax=3, interpolation="nearest")
            else:
                ax.imshow(pred, cmap=lab_cmap, vmin=0, vmax=max(1, num_classes - 1), interpolation="nearest")
    titles = ["image", "truth"] + [c.label.replace(" (", "\n(") for c in configs]
    for col, title in enumerate(titles):
        axes[0, col].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if binary:
        handles = [Patch(color=c, label=l) for c, l in
                   zip(["white", "tab:red", "tab:cyan", "black"], ["true positive", "false positive",
                                                                   "false negative", "true negative"])]
        for h in handles:
            h.set_edgecolor("grey")
    else:
        names = list(class_names) if class_names else ["background"] + [f"class {c}" for c in range(1, num_classes)]
        handles = [Patch(facecolor=label_colors[c], edgecolor="grey", label=names[c]) for c in range(num_classes)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=8)
    fig.suptitle(f"{dataset}: sample predictions (first seed of each configuration)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "data"


def _csv(runs: Sequence[Mapping[str, Any]]) -> str:
    keys: List[str] = []
    for run in runs:
        for agg in ("dataset", "image_mean"):
            for m, v in run["results"].get(agg, {}).items():
                if isinstance(v, list):
                    names = [f"iou_class_{k}_dataset" for k in range(len(v))]
                    keys.extend(n for n in names if n not in keys)
                elif f"{m}_{agg}" not in keys:
                    keys.append(f"{m}_{agg}")
    head = ["dataset", "configuration", "loss", "loss_spec", "domain", "batch_size", "effective_batch_size",
            "epochs", "seed", "split", "n_images", "train_seconds", "loss_value"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head + keys)
    for run in runs:
        cfg = run["config"]
        res = run["results"]
        flat: Dict[str, Any] = {}
        for agg in ("dataset", "image_mean"):
            for m, v in res.get(agg, {}).items():
                if isinstance(v, list):
                    flat.update({f"iou_class_{k}_dataset": x for k, x in enumerate(v)})
                else:
                    flat[f"{m}_{agg}"] = v
        w.writerow([run["dataset"], cfg.get("label"), cfg.get("loss_label"), cfg.get("loss_spec"), cfg.get("domain") or "",
                    cfg.get("batch_size"), cfg.get("effective_batch_size"), cfg.get("epochs"), cfg.get("seed"),
                    run.get("split"), res.get("n_images"), f"{run.get('train_seconds', 0.0):.1f}",
                    "" if res.get("loss") is None else f"{res['loss']:.6g}"]
                   + ["" if flat.get(k) is None else f"{flat[k]:.6g}" for k in keys])
    return buf.getvalue()


def write_report(study_dir: str | Path, *, out: str | Path | None = None, baseline: Optional[str] = None,
                 figures: bool = True, warn: Optional[Callable[[str], None]] = None) -> Path:
    """Write the report of one study folder (see the module docstring); returns the report folder.

    Args:
        study_dir: ``OUT/<study>`` (or a folder of runs).
        out: the report folder; default ``study_dir/report``.
        baseline: the reference configuration of the significance tests: a configuration label,
            a loss label, a loss spec or a registered loss name (``"ce"``); default the study's
            ``baseline`` setting, else the first configuration.
        figures: write the PNG figures (matplotlib, Agg backend).
        warn: told about each damaged run file left out (the runs are also listed in the report).

    Returns:
        The report folder.

    Raises:
        ReportError: no finished run, or a baseline that matches no configuration.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp()); (root / "r").mkdir()
        >>> run = {"config": {"label": "CE", "seed": 0}, "dataset": "d", "results": {"dataset": {"dice": 0.5}}}
        >>> _ = (root / "r" / "final.json").write_text(json.dumps(run))
        >>> out = write_report(root, figures=False)
        >>> "| Dice index (data set) ↑ | **0.5000** |" in (out / "report.md").read_text()
        True
    """
    study_dir = Path(study_dir)
    skipped: List[str] = []
    index, runs = load_runs(study_dir, skipped)
    for message in skipped:
        if warn is not None:
            warn(f"skipped a run: {message}")
    if not runs:
        raise ReportError(f"`runs_dir` must hold finished runs (final.json); got none in '{study_dir}'")
    out_dir = Path(out) if out is not None else study_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    grouped = summarize(runs)
    wanted = baseline if baseline is not None else (index.get("settings") or {}).get("baseline")
    modes = {run["dataset"]: run.get("mode", "binary") for run in runs}
    classes = {run["dataset"]: int(run.get("num_classes", 2)) for run in runs}
    class_names = {run["dataset"]: run.get("class_names") for run in runs if run.get("class_names")}
    name = index.get("name") or study_dir.name

    md: List[str] = [f"# Loss comparison: {name}", ""]
    n_runs = len(runs)
    expected = len(index.get("runs", [])) or n_runs
    md.append(f"{n_runs} finished runs" + (f" of {expected}" if expected != n_runs else "") + ". "
              "Values are mean ± sample standard deviation over seeds; the best value of each row is in bold; "
              "↑ means larger is better, ↓ smaller is better.")
    failures = index.get("failures") or []
    if failures:
        md += ["", "**Failed runs:**", ""] + [f"- {f['run']}: {f['error']}" for f in failures]
    if skipped:
        md += ["", "**Runs left out (their results cannot be read):**", ""] + [f"- {m}" for m in skipped]
    results: Dict[str, Any] = {"study": name, "conventions": CONVENTIONS, "datasets": {}}
    figures_written: List[str] = []
    if figures:
        import matplotlib

        matplotlib.use("Agg")
    for dataset, configs in grouped.items():
        multiclass = modes[dataset] == "multiclass"
        first = configs[0].runs[0]
        seeds = sorted({s for c in configs for s in c.seeds})
        md += ["", f"## {dataset}", "",
               f"{'multiclass, ' + str(classes[dataset]) + ' classes' if multiclass else 'binary'}; evaluated on the "
               f"{first.get('split', 'test')} split ({first['results'].get('n_images')} images) after "
               f"{', '.join(sorted({str(c.config().get('epochs')) for c in configs}))} epochs; "
               f"seeds {', '.join(map(str, seeds))}.", ""]
        md.append(main_table(configs, multiclass=multiclass))
        md += ["", "Configurations:", ""]
        for c in configs:
            cfg = c.config()
            extra = f", pre-trained with {cfg['pretrain']['loss']} for {cfg['pretrain']['epochs']} epochs" \
                if cfg.get("pretrain") else ""
            md.append(f"- **{c.label}**: `{cfg.get('loss_spec')}`, batch size {cfg.get('batch_size')}"
                      f"{'' if cfg.get('effective_batch_size') == cfg.get('batch_size') else ', effective ' + str(cfg.get('effective_batch_size'))}"
                      f", {cfg.get('epochs')} epochs, {len(c.runs)} seed(s), "
                      f"{np.mean([r.get('train_seconds', 0.0) for r in c.runs]):.0f} s training per run{extra}")
        pct = per_class_table(configs, classes[dataset], class_names=class_names.get(dataset))
        if pct is not None:
            md += ["", f"### {dataset}: IoU per class (data set)", "", pct]
        base = _match_baseline(configs, wanted)
        if base is None:
            known = ", ".join(c.label for c in configs)
            raise ReportError(f"`baseline` must name a configuration of {dataset!r} ({known}); got {wanted!r}")
        sig = _significance(configs, base)
        md += ["", f"### {dataset}: paired tests against the baseline {base.label}", ""]
        tested = [m for m in TESTED if any(m in e["images"] for e in sig.values())]
        table = _significance_table(sig, "images", tested)
        if table:
            md += ["Mean per-image difference (configuration − baseline) and the two-sided Wilcoxon signed-rank "
                   "p-value over the evaluation images (per-image values averaged over the common seeds; "
                   "* p < 0.05, no correction for multiple comparisons):", "", table]
        else:
            md.append("No per-image values to test.")
        seed_metrics = [f"{m}_{a}" for m, a, _, _ in ROWS if any(f"{m}_{a}" in e["seeds"] for e in sig.values())]
        table = _significance_table(sig, "seeds", seed_metrics)
        if table:
            md += ["", "Over seeds (paired by seed, at least 5 in common):", "", table]
        else:
            md += ["", "Over seeds: not tested (fewer than 5 seeds in common with the baseline)."]
        entry: Dict[str, Any] = {"mode": modes[dataset], "num_classes": classes[dataset], "baseline": base.label,
                                 "configurations": [], "significance": sig}
        for c in configs:
            metrics = {}
            for metric, aggregation, label, higher in ROWS:
                vals = c.values(metric, aggregation)
                if vals:
                    mean, std = _mean_std(vals)
                    metrics[f"{metric}_{aggregation}"] = {"mean": mean, "std": std, "n": len(vals), "values": vals,
                                                          "higher_is_better": higher}
            per = _class_iou(c)
            if per:
                arr = np.array(per, dtype=float)
                metrics["iou_per_class_dataset"] = {
                    "mean": arr.mean(0).tolist(),
                    "std": (arr.std(0, ddof=1) if len(per) > 1 else np.zeros(arr.shape[1])).tolist(),
                    "n": len(per), "values": per, "higher_is_better": True}
            cfg = c.config()
            entry["configurations"].append({
                "label": c.label, "loss": cfg.get("loss_label"), "loss_spec": cfg.get("loss_spec"),
                "domain": cfg.get("domain"), "batch_size": cfg.get("batch_size"),
                "effective_batch_size": cfg.get("effective_batch_size"), "epochs": cfg.get("epochs"),
                "seeds": c.seeds, "metrics": metrics})
        results["datasets"][dataset] = entry
        if figures:
            slug = _slug(dataset)
            md += ["", f"### {dataset}: figures", ""]
            for fname, fn, caption in (
                (f"learning_curves_{slug}.png", lambda p: _learning_curves(p, dataset, configs), "learning curves"),
                (f"metrics_{slug}.png", lambda p: _metric_bars(p, dataset, configs, multiclass), "final metrics"),
                (f"samples_{slug}.png", lambda p: _sample_panel(p, dataset, configs, classes[dataset],
                                                                class_names.get(dataset), warn),
                 "sample predictions"),
            ):
                if fn(out_dir / fname):
                    figures_written.append(fname)
                    md.append(f"![{dataset}: {caption}]({fname})")
    if len(grouped) > 0:
        overview = overview_table(grouped, modes)
        if overview:
            md += ["", "## Pixel accuracy and IoU / mIoU (data set) over all data sets", "", overview]
    md += ["", "## Conventions", ""] + [f"- {c}" for c in CONVENTIONS] + [""]
    results["figures"] = figures_written
    atomic_write_text(out_dir / "report.md", "\n".join(md))
    atomic_write_text(out_dir / "results.csv", _csv([r for c in grouped.values() for conf in c for r in conf.runs]))
    atomic_write_json(out_dir / "results.json", _jsonable(results))
    return out_dir


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
