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

Significance (:mod:`seglosses.bench.stats`): every row of the main table is tested for pairs of
configurations: against the baseline configuration, and, with the study's ``compare:`` factor,
between the configurations that differ in that factor only (all pairs of its levels, within
each combination of the other factors). Evaluation items cut from one source image (quadrants,
tiles), or taken from one patient where the data set says so (``group_by``), form a cluster:

* per-image metrics: per common seed and item the difference, averaged within the cluster and
  over the seeds, then a two-sided Wilcoxon signed-rank test over the clusters (effect size:
  matched-pairs rank-biserial correlation);
* pooled metrics (pooled Dice, IoU / mIoU, AP, balanced and pixel accuracy): a paired bootstrap
  over clusters of the seed-mean difference, recomputed from the per-item statistics each run
  stores (``image_sums.npz``); effect size: the difference over its bootstrap s.d.

p-values are Holm-corrected over each table; a verdict (better / worse / no significant
difference, by the metric's direction) at 0.05. Each row also gives the per-seed differences
(mean ± s.d. and each value) and their sign consistency; with at least five common seeds a
Wilcoxon test over seeds as well.
"""
from __future__ import annotations

import csv
import io
import json  # noqa: F401 - the doctests use it
import math
import textwrap
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
from seglosses.bench.stats import (holm, paired_cluster_bootstrap, paired_cluster_test, sign_consistency,
                                   wilcoxon_test)

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
#: Each label says how the metric is aggregated ("pooled": confusion counts or score histograms
#: summed over every pixel of every evaluation item, then the formula; "per-image mean": each
#: item's value, then the mean) and how an item without the class is scored.
ROWS: List[Tuple[str, str, str, bool]] = [
    ("average_precision", "dataset", "AP, pooled", True),
    ("average_precision", "image_mean", "AP, per-image mean (class absent: 1)", True),
    ("balanced_accuracy", "dataset", "balanced accuracy, pooled", True),
    ("dice", "dataset", "Dice, pooled", True),
    ("dice", "image_mean", "Dice, per-image mean (absent in both: 1)", True),
    ("jaccard", "dataset", "IoU, pooled", True),
    ("jaccard", "image_mean", "Jaccard, per-image mean (absent in both: 1)", True),
    ("pixel_accuracy", "dataset", "pixel accuracy, pooled", True),
    ("modified_hausdorff", "image_mean",
     "mod. Hausdorff / diagonal, per-image mean (absent in both: left out; in one: 1)", False),
    ("hd95", "image_mean", "HD95 px, per-image mean (absent in both: left out; in one: diagonal)", False),
]
_HIGHER = {m: h for m, _, _, h in ROWS}
_LABELS = {(m, a): label for m, a, label, _ in ROWS}

CONVENTIONS = [
    "pooled: confusion counts summed over all pixels of all evaluation items, then the formula "
    "(seed 003's IoU); average precision from score histograms (1000 bins) summed over the data set",
    "per-image mean: each evaluation item's value, then the mean over the items where it is defined",
    "multiclass: overlap metrics average the foreground classes (IoU, pooled is then seed 003's mIoU, "
    "the mean of the per-class table without the background)",
    "0/0 overlap ratios (class absent from prediction and truth) count as 1 (seed 003)",
    "mod. Hausdorff: seed 000 eq. 7 over the foreground pixel sets, divided by the image diagonal; "
    "HD95: 95th percentile surface distance in pixels; both left out where prediction and truth lack "
    "the class, and the diagonal (1 after normalisation) where exactly one lacks it",
    "average precision on the raw probabilities; every other metric on the prediction thresholded at 0.5 "
    "(binary) or its arg-max (multiclass)",
    "paired tests respect the data's structure: evaluation items cut from one source image (tiles, "
    "quadrants), or taken from one patient where the data set says so, form a cluster. Per-image metrics: "
    "for each common seed and item the difference, averaged over the cluster's items and the seeds, then a "
    "two-sided Wilcoxon signed-rank test over the clusters (effect size: matched-pairs rank-biserial r). "
    "Pooled metrics: a paired bootstrap over clusters (1000 resamples, the same draw for both "
    "configurations and every seed) of the seed-mean difference of the pooled metric (effect size: the "
    "difference over its bootstrap s.d.). p-values are Holm-corrected over each table; verdicts at 0.05",
    "seeds: the per-seed differences of the aggregated metric and how many of them favour each side "
    "(a Wilcoxon test over seeds needs at least 5 seeds in common)",
]


_NAMES = {"dice": "Dice", "jaccard": "Jaccard", "balanced_accuracy": "balanced accuracy", "average_precision": "AP",
          "pixel_accuracy": "pixel accuracy", "modified_hausdorff": "mod. Hausdorff", "hd95": "HD95"}


def _short(metric: str, aggregation: str, multiclass: bool = False) -> str:
    """A metric's short name with its aggregation, for verdict lines (``"Dice (pooled)"``)."""
    if metric == "jaccard" and aggregation == "dataset":
        return "mIoU (pooled)" if multiclass else "IoU (pooled)"
    return f"{_NAMES.get(metric, metric)} ({'pooled' if aggregation == 'dataset' else 'per-image'})"


def _heading(metric: str, aggregation: str, multiclass: bool = False) -> str:
    """The column / row heading of a metric: its name, aggregation and the absent-class rule."""
    if metric == "jaccard" and aggregation == "dataset" and multiclass:
        return "mIoU, pooled per class, mean over foreground classes"
    return _LABELS.get((metric, aggregation), f"{metric} ({aggregation})")


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
    return f"{_heading(metric, aggregation, multiclass)} {'↑' if higher else '↓'}"


def main_table(configs: Sequence[Configuration], *, multiclass: bool = False, digits: int = 4) -> str:
    """The seed 000 Table 1 layout: metric rows with ↑/↓, configuration columns, best in bold.

    Example:
        >>> a = Configuration("d", "CE", 0, [{"config": {"seed": 0}, "results": {"dataset": {"dice": 0.5}}}])
        >>> b = Configuration("d", "Dice", 1, [{"config": {"seed": 0}, "results": {"dataset": {"dice": 0.7}}}])
        >>> print(main_table([a, b]))
        | metric | CE | Dice |
        |---|---|---|
        | Dice, pooled ↑ | 0.5000 | **0.7000** |
    """
    lines = ["| metric | " + " | ".join(c.label for c in configs) + " |",
             "|---|" + "---|" * len(configs)]
    for metric, aggregation, label, higher in ROWS:
        values = [c.values(metric, aggregation) for c in configs]
        if not any(not math.isnan(v) for vs in values for v in vs):
            continue  # a metric that was not computed (or nowhere defined) gets no row
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

#: The tested rows: every row of :data:`ROWS`; per-image rows by a Wilcoxon test over clusters,
#: data-set rows by a paired cluster bootstrap (see :mod:`seglosses.bench.stats`).
LEVEL = 0.05
N_BOOT = 1000


def _source_of(name: str) -> str:
    """The source image of an evaluation item named by the data module (``img@y,x#q1`` -> ``img``)."""
    return str(name).split("#q")[0].split("@")[0]


class _Tester:
    """The paired tests of one data set: per configuration and seed, per-image values and
    per-cluster pooled statistics (loaded once), and the tests of pairs of configurations."""

    def __init__(self, configs: Sequence[Configuration], n_boot: int = N_BOOT) -> None:
        self.configs = list(configs)
        self.n_boot = n_boot
        self.groups: Dict[str, str] = {}
        for c in configs:
            for r in c.runs:
                for item in r.get("per_image", {}):
                    self.groups.setdefault(item, _source_of(item))
                self.groups.update({str(k): str(v) for k, v in (r.get("groups") or {}).items()})
        self._sums: Dict[Tuple[str, int], Any] = {}

    # ---- what a configuration has
    def per_image(self, conf: Configuration, metric: str) -> Dict[int, Dict[str, float]]:
        out: Dict[int, Dict[str, float]] = {}
        for r in conf.runs:
            values = {n: row.get(metric) for n, row in r.get("per_image", {}).items()}
            values = {n: float(v) for n, v in values.items() if v is not None}
            if values:
                out[int(r["config"]["seed"])] = values
        return out

    def seed_values(self, conf: Configuration, metric: str, aggregation: str) -> Dict[int, float]:
        out = {}
        for r in conf.runs:
            v = r["results"].get(aggregation, {}).get(metric)
            if v is not None and not isinstance(v, list) and not math.isnan(float(v)):
                out[int(r["config"]["seed"])] = float(v)
        return out

    def cluster_sums(self, conf: Configuration) -> Dict[int, Any]:
        """Per seed: (cluster names, per-cluster sums, accumulators) of the pooled metrics."""
        from seglosses.bench.evaluate import IMAGE_SUMS, load_image_sums, pooled_accumulators

        out = {}
        for r in conf.runs:
            seed = int(r["config"]["seed"])
            key = (conf.label, seed)
            if key not in self._sums:
                loaded = load_image_sums(Path(r.get("dir", ".")) / IMAGE_SUMS) if r.get("dir") else None
                if loaded is None:
                    self._sums[key] = None
                else:
                    meta = loaded["meta"]
                    clusters = sorted(set(loaded["groups"]))
                    index = {g: i for i, g in enumerate(clusters)}
                    member = np.array([index[g] for g in loaded["groups"]])
                    summed = {}
                    for k, v in loaded["arrays"].items():
                        acc = np.zeros((len(clusters),) + v.shape[1:])
                        np.add.at(acc, member, v)
                        summed[k] = acc
                    fg, every = pooled_accumulators(meta["mode"], int(meta["num_classes"]), meta["metrics"],
                                                    per_class=True)
                    self._sums[key] = (clusters, summed, fg, every)
            if self._sums[key] is not None:
                out[seed] = self._sums[key]
        return out

    # ---- tests
    def test(self, a: Configuration, b: Configuration, metric: str, aggregation: str) -> Optional[Dict[str, Any]]:
        """The paired test of ``a - b`` for one row of :data:`ROWS`, with the per-seed differences."""
        va, vb = self.seed_values(a, metric, aggregation), self.seed_values(b, metric, aggregation)
        signs = sign_consistency(va, vb)
        if not signs["n"]:
            return None
        diffs = list(signs["diffs"].values())
        out: Dict[str, Any] = {"seeds": signs, "mean_diff_seeds": float(np.mean(diffs)),
                               "std_diff_seeds": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0}
        if aggregation == "image_mean":
            pa, pb = self.per_image(a, metric), self.per_image(b, metric)
            test = paired_cluster_test(pa, pb, self.groups) if set(pa) & set(pb) else None
        else:
            test = self._bootstrap(a, b, metric)
        if test is not None:
            out["test"] = test
        if len(set(va) & set(vb)) >= 5:
            common = sorted(set(va) & set(vb))
            out["seed_test"] = wilcoxon_test([va[s] for s in common], [vb[s] for s in common])
        return out

    def _bootstrap(self, a: Configuration, b: Configuration, metric: str) -> Optional[Dict[str, Any]]:
        sa, sb = self.cluster_sums(a), self.cluster_sums(b)
        seeds = sorted(set(sa) & set(sb))
        if not seeds:
            return None
        clusters = sorted(set.intersection(*(set(x[s][0]) for x in (sa, sb) for s in seeds)))
        if not clusters:
            return None
        prefix, key = ("all:", metric) if metric in ("pixel_accuracy",) else ("fg:", metric)

        def prepared(entry):
            names, summed, fg, every = entry
            acc = every if prefix == "all:" else fg
            if acc is None or metric not in acc.metrics:
                return None
            pos = [names.index(c) for c in clusters]
            return {k[len(prefix):]: v[pos] for k, v in summed.items() if k.startswith(prefix)}, acc

        pa = {s: prepared(sa[s]) for s in seeds}
        pb = {s: prepared(sb[s]) for s in seeds}
        if any(v is None for v in (*pa.values(), *pb.values())):
            return None

        def statistic(entry, weights: np.ndarray) -> np.ndarray:
            import torch

            sums, acc = entry
            batched = {k: torch.from_numpy(np.tensordot(weights, v, axes=(1, 0))) for k, v in sums.items()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = acc.finalize(batched)[f"{key}_dataset"].double().numpy()
            value = value.reshape(value.shape[0], -1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return np.nanmean(value, axis=1)

        return paired_cluster_bootstrap(pa, pb, clusters, statistic, n_boot=self.n_boot)


def _pair_tests(tester: _Tester, pairs: Sequence[Tuple[Configuration, Configuration]],
                rows: Sequence[Tuple[str, str, str, bool]]) -> List[Dict[str, Any]]:
    """Every test of the pairs ``(a, b)`` (difference ``a - b``) and rows; Holm-corrected together."""
    found: List[Dict[str, Any]] = []
    for a, b in pairs:
        for metric, aggregation, label, higher in rows:
            r = tester.test(a, b, metric, aggregation)
            if r is None:
                continue
            r.update(a=a.label, b=b.label, metric=metric, aggregation=aggregation, row=label, higher=higher)
            found.append(r)
    adjusted = holm([r["test"]["p"] if "test" in r else math.nan for r in found])
    for r, p in zip(found, adjusted):
        r["p_holm"] = p
        r["verdict"] = _verdict(r)
    return found


def _verdict(r: Mapping[str, Any]) -> str:
    """``better`` / ``worse`` (a against b, by the metric's direction) at Holm-adjusted p < LEVEL,
    else ``no significant difference`` (``not tested`` without a test)."""
    if "test" not in r or math.isnan(r.get("p_holm", math.nan)):
        return "not tested"
    if r["p_holm"] >= LEVEL or r["test"]["mean_diff"] == 0:
        return "no significant difference"
    return "better" if (r["test"]["mean_diff"] > 0) == r["higher"] else "worse"


def _fmt(v: Optional[float], digits: int = 4, sign: bool = True) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _p(v: Optional[float]) -> str:
    if v is None or math.isnan(v):
        return "–"
    return f"{v:.2g}" if v >= 1e-3 else f"{v:.1e}"


def _signs_text(signs: Mapping[str, Any], higher: bool) -> str:
    n = signs["n"]
    good = signs["positive"] if higher else signs["negative"]
    bad = signs["negative"] if higher else signs["positive"]
    return f"{good}/{n} better, {bad}/{n} worse"


def _tests_table(tests: Sequence[Mapping[str, Any]], *, pair_column: str, multiclass: bool = False) -> str:
    lines = [f"| {pair_column} | metric | difference over seeds (per seed) | test | p | p (Holm) | effect | "
             "seeds | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for r in tests:
        per_seed = ", ".join(_fmt(v) for v in r["seeds"]["diffs"].values())
        diff = f"{_fmt(r['mean_diff_seeds'])} ± {_fmt(r['std_diff_seeds'], sign=False)} ({per_seed})"
        t = r.get("test")
        if t is None:
            kind, p, effect = "–", "–", "–"
        elif t["unit"] == "cluster":
            kind = f"Wilcoxon, {t['n_clusters']} clusters ({t['n_items']} items)"
            p, effect = _p(t["p"]), f"r = {_fmt(t['effect'], 2)}"
        else:
            kind = f"bootstrap, {t['n_clusters']} clusters, 95% CI [{_fmt(t['ci'][0])}, {_fmt(t['ci'][1])}]"
            p, effect = _p(t["p"]), f"d/sd = {_fmt(t['effect'], 2)}"
        verdict = r["verdict"]
        verdict = f"**{verdict}**" if verdict in ("better", "worse") else verdict
        seeds = _signs_text(r["seeds"], r["higher"])
        if r.get("seed_test"):
            seeds += f"; Wilcoxon over {r['seed_test']['n']} seeds p = {_p(r['seed_test']['p'])}"
        lines.append(f"| {r['a']} − {r['b']} | {_heading(r['metric'], r['aggregation'], multiclass)} | {diff} | "
                     f"{kind} | {p} | "
                     f"{_p(r.get('p_holm'))} | {effect} | {seeds} | {verdict} |")
    return "\n".join(lines)


def _verdict_lines(tests: Sequence[Mapping[str, Any]], names: Optional[Mapping[Tuple[str, str], str]] = None,
                   multiclass: bool = False) -> List[str]:
    """One line per compared pair: where ``a`` is better, worse, not significantly different."""
    pairs: "OrderedDict[Tuple[str, str], List[Mapping[str, Any]]]" = OrderedDict()
    for r in tests:
        pairs.setdefault((r["a"], r["b"]), []).append(r)
    lines = []
    for (a, b), rows in pairs.items():
        by = {v: [_short(r["metric"], r["aggregation"], multiclass) for r in rows if r["verdict"] == v]
              for v in ("better", "worse", "no significant difference", "not tested")}
        words = {"better": "better in", "worse": "worse in", "no significant difference": "not significantly different in",
                 "not tested": "not tested in"}
        parts = [f"{words[v]} {', '.join(m)}" for v, m in by.items() if m]
        title = names.get((a, b)) if names else None
        lines.append(f"- **{title or f'{a} vs {b}'}**: {a} is " + "; ".join(parts) + ".")
    return lines


def _compare_pairs(configs: Sequence[Configuration], factor: str) -> List[Tuple[Configuration, Configuration, str]]:
    """Pairs ``(later, earlier, context)`` of configurations that differ in ``factor`` only."""
    keys = ["loss_label", "domain", "batch_size", "epochs"]
    if any(c.config().get("effective_batch_size") not in (None, c.config().get("batch_size")) for c in configs):
        keys.insert(3, "effective_batch_size")  # only when it differs from the batch size somewhere
    field_of = {"loss": "loss_label", "domain": "domain", "batch_size": "batch_size",
                "effective_batch_size": "effective_batch_size", "epochs": "epochs"}
    target = field_of.get(factor, factor)
    varying = [k for k in keys if k != target and len({c.config().get(k) for c in configs} - {None}) > 1]
    groups: "OrderedDict[tuple, List[Configuration]]" = OrderedDict()
    for c in configs:
        if c.config().get(target) is None:
            continue
        groups.setdefault(tuple(c.config().get(k) for k in varying), []).append(c)
    names = {"loss_label": "loss", "domain": "domain", "batch_size": "batch size",
             "effective_batch_size": "effective batch size", "epochs": "epochs"}
    out = []
    for key, members in groups.items():
        context = ", ".join(f"{names[k]} {v}" for k, v in zip(varying, key) if v is not None)
        for j, later in enumerate(members):
            for earlier in members[:j]:
                out.append((later, earlier, context))
    return out


def _full_spec(spec: Any, mode: str) -> str:
    """The loss spec with every parameter, defaults included (the run's exact definition)."""
    try:
        from seglosses.bench.train import build_run_loss
        from seglosses.losses.compound import WeightedSum

        loss = build_run_loss(spec, mode, None)
    except Exception:  # noqa: BLE001 - an old or foreign spec: show it as written
        return str(spec)
    hidden = ("check_values", "sync", "mode", "from_logits")

    def one(module) -> str:
        info = getattr(type(module), "info", None)
        name = info.name if info is not None else type(module).__name__
        args = ", ".join(f"{k}={v!r}" for k, v in getattr(module, "config", {}).items() if k not in hidden)
        return f"{name}({args})"

    if isinstance(loss, WeightedSum):
        parts = []
        for w, term in loss.terms():
            parts.append(f"{float(w) if isinstance(w, (int, float)) else w!r}*{_full_spec_term(term, one)}")
        return " + ".join(parts)
    return one(loss)


def _full_spec_term(term, one) -> str:
    from seglosses.losses.compound import WeightedSum

    if isinstance(term, WeightedSum):
        return "(" + " + ".join(f"{float(w) if isinstance(w, (int, float)) else w!r}*{_full_spec_term(t, one)}"
                                for w, t in term.terms()) + ")"
    return one(term)


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


def _curve(conf: Configuration, key: str):
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


#: Above this many configurations the learning curves are drawn as small multiples.
MAX_OVERLAID = 4


def _learning_curves(path: Path, dataset: str, configs: Sequence[Configuration], factor: Optional[str] = None) -> bool:
    import matplotlib.pyplot as plt

    if not any(_curve(c, "train_loss") for c in configs):
        return False
    rows = [("train_loss", "training loss"), ("val_loss", "validation loss"),
            ("val_dice_dataset", "validation Dice (pooled)")]
    if len(configs) <= MAX_OVERLAID:
        panels = OrderedDict([("", list(configs))])
    else:
        panels = _panels(configs, factor)
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
            ax.xaxis.get_major_locator().set_params(integer=True)
            if key == "val_dice_dataset":
                ax.set_ylim(-0.02, 1.02)
            else:  # log scale only where the curves span more than a decade
                lines = [np.asarray(l.get_ydata(), dtype=float) for l in ax.get_lines()]
                if lines and all(np.nanmin(y) > 0 for y in lines) and \
                        max(np.nanmax(y) for y in lines) > 10 * min(np.nanmin(y) for y in lines):
                    ax.set_yscale("log")
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=9)
    how = "one panel per " + ("combination of the other factors" if factor else "loss") if ncols > 1 else ""
    fig.suptitle(f"{dataset}: learning curves (mean over seeds; band: ± 1 s.d.){'; ' + how if how else ''}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
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
        ax.set_title(textwrap.fill(_row_label(metric, aggregation, label, higher, multiclass), 44), fontsize=9)
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
    colors = _colors(len(configs))
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
                 figures: bool = True, compare: Optional[str] = None, n_boot: int = N_BOOT,
                 warn: Optional[Callable[[str], None]] = None) -> Path:
    """Write the report of one study folder (see the module docstring); returns the report folder.

    Args:
        study_dir: ``OUT/<study>`` (or a folder of runs).
        out: the report folder; default ``study_dir/report``.
        baseline: the reference configuration of the significance tests: a configuration label,
            a loss label, a loss spec or a registered loss name (``"ce"``); default the study's
            ``baseline`` setting, else the first configuration.
        figures: write the PNG figures (matplotlib, Agg backend).
        compare: the factor of the comparison section (default: the study's ``compare``).
        n_boot: bootstrap resamples of the pooled metrics' tests.
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
        >>> "| Dice, pooled ↑ | **0.5000** |" in (out / "report.md").read_text()
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
    settings = index.get("settings") or {}
    wanted = baseline if baseline is not None else settings.get("baseline")
    factor = compare if compare is not None else settings.get("compare")
    modes = {run["dataset"]: run.get("mode", "binary") for run in runs}
    classes = {run["dataset"]: int(run.get("num_classes", 2)) for run in runs}
    class_names = {run["dataset"]: run.get("class_names") for run in runs if run.get("class_names")}
    name = index.get("name") or study_dir.name

    md: List[str] = [f"# Loss comparison: {name}", ""]
    md.append(summary_line(index, runs) + " Values are mean ± sample standard deviation over seeds; the best value "
              "of each row is in bold; ↑ means larger is better, ↓ smaller is better.")
    failures = index.get("failures") or []
    if failures:
        md += ["", "**Failed runs:**", ""] + [f"- {f['run']}: {f['error']}" for f in failures]
    if skipped:
        md += ["", "**Runs left out (their results cannot be read):**", ""] + [f"- {m}" for m in skipped]
    results: Dict[str, Any] = {"study": name, "conventions": CONVENTIONS, "compare": factor, "datasets": {}}
    figures_written: List[str] = []
    if figures:
        import matplotlib

        matplotlib.use("Agg")
    for dataset, configs in grouped.items():
        multiclass = modes[dataset] == "multiclass"
        first = configs[0].runs[0]
        seeds = sorted({s for c in configs for s in c.seeds})
        tester = _Tester(configs, n_boot=n_boot)
        n_items = first["results"].get("n_images")
        n_clusters = len({tester.groups.get(n, _source_of(n)) for n in first.get("per_image", {})})
        items = first["results"].get("items")
        what = f"{n_items} evaluation items" + (f" ({items})" if items else "") + \
            (f" from {n_clusters} source images / patients (the clusters of the tests)" if n_clusters else "")
        md += ["", f"## {dataset}", "",
               f"{'multiclass, ' + str(classes[dataset]) + ' classes' if multiclass else 'binary'}; evaluated on the "
               f"{first.get('split', 'test')} split: {what}; after "
               f"{', '.join(sorted({str(c.config().get('epochs')) for c in configs}))} epochs; "
               f"seeds {', '.join(map(str, seeds))}.", ""]
        md.append(main_table(configs, multiclass=multiclass))
        md += ["", "Configurations (the full loss definition, every parameter included):", ""]
        for c in configs:
            cfg = c.config()
            extra = f", pre-trained with {cfg['pretrain']['loss']} for {cfg['pretrain']['epochs']} epochs" \
                if cfg.get("pretrain") else ""
            md.append(f"- **{c.label}**: `{_full_spec(cfg.get('loss_spec'), modes[dataset])}`, batch size "
                      f"{cfg.get('batch_size')}"
                      f"{'' if cfg.get('effective_batch_size') == cfg.get('batch_size') else ', effective ' + str(cfg.get('effective_batch_size'))}"
                      f", {cfg.get('epochs')} epochs, {len(c.runs)} seed(s), "
                      f"{np.mean([r.get('train_seconds', 0.0) for r in c.runs]):.0f} s training per run{extra}")
        pct = per_class_table(configs, classes[dataset], class_names=class_names.get(dataset))
        if pct is not None:
            md += ["", f"### {dataset}: IoU per class, pooled", "", pct]
        rows = [r for r in ROWS if any(tester.seed_values(c, r[0], r[1]) for c in configs)]
        entry: Dict[str, Any] = {"mode": modes[dataset], "num_classes": classes[dataset], "n_items": n_items,
                                 "items": items, "n_clusters": n_clusters, "configurations": []}
        if factor:
            pairs = _compare_pairs(configs, factor)
            md += ["", f"### {dataset}: {factor} compared", ""]
            if pairs:
                tests = _pair_tests(tester, [(a, b) for a, b, _ in pairs], rows)
                titles = {(a.label, b.label): f"{a.label} vs {b.label}" + (f" ({ctx})" if ctx else "")
                          for a, b, ctx in pairs}
                md += ["Paired differences (first − second) of every metric; " + _TEST_NOTE, "",
                       _tests_table(tests, pair_column="comparison", multiclass=multiclass), "", "Verdicts:", ""]
                md += _verdict_lines(tests, titles, multiclass)
                entry["compare"] = {"factor": factor, "tests": tests}
            else:
                md.append(f"No two configurations differ in {factor} only.")
        base = _match_baseline(configs, wanted)
        if base is None:
            known = ", ".join(c.label for c in configs)
            raise ReportError(f"`baseline` must name a configuration of {dataset!r} ({known}); got {wanted!r}")
        entry["baseline"] = base.label
        others = [c for c in configs if c is not base]
        if others and (not factor or wanted is not None):
            tests = _pair_tests(tester, [(c, base) for c in others], rows)
            md += ["", f"### {dataset}: paired tests against the baseline {base.label}", "",
                   "Paired differences (configuration − baseline); " + _TEST_NOTE, "",
                   _tests_table(tests, pair_column="configuration − baseline", multiclass=multiclass), "",
                   "Verdicts:", ""]
            md += _verdict_lines(tests, multiclass=multiclass)
            entry["significance"] = tests
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
                "full_spec": _full_spec(cfg.get("loss_spec"), modes[dataset]),
                "domain": cfg.get("domain"), "batch_size": cfg.get("batch_size"),
                "effective_batch_size": cfg.get("effective_batch_size"), "epochs": cfg.get("epochs"),
                "seeds": c.seeds, "train_seconds": [r.get("train_seconds") for r in c.runs], "metrics": metrics})
        results["datasets"][dataset] = entry
        if figures:
            slug = _slug(dataset)
            md += ["", f"### {dataset}: figures", ""]
            for fname, fn, caption in (
                (f"learning_curves_{slug}.png", lambda p: _learning_curves(p, dataset, configs, factor),
                 "learning curves"),
                (f"metrics_{slug}.png", lambda p: _metric_bars(p, dataset, configs, multiclass), "final metrics"),
                (f"samples_{slug}.png", lambda p: _sample_panel(p, dataset, configs, classes[dataset],
                                                                class_names.get(dataset), warn),
                 "sample predictions"),
                (f"reliability_{slug}.png", lambda p: reliability_diagram(
                    p, dataset, configs, _scored_names(class_names.get(dataset), multiclass)), "reliability diagram"),
            ):
                if fn(out_dir / fname):
                    figures_written.append(fname)
                    md.append(f"![{dataset}: {caption}]({fname})")
    if len(grouped) > 0:
        overview = overview_table(grouped, modes)
        if overview:
            md += ["", "## Pixel accuracy and IoU / mIoU (pooled) over all data sets", "", overview]
    md += ["", "## Conventions", ""] + [f"- {c}" for c in CONVENTIONS] + [""]
    results["figures"] = figures_written
    atomic_write_text(out_dir / "report.md", "\n".join(md))
    atomic_write_text(out_dir / "results.csv", _csv([r for c in grouped.values() for conf in c for r in conf.runs]))
    atomic_write_json(out_dir / "results.json", _jsonable(results))
    return out_dir


_TEST_NOTE = ("mean ± s.d. over seeds of the per-seed difference of the aggregated metric, with the per-seed "
              "values; per-image metrics tested by a Wilcoxon signed-rank test over clusters (source images / "
              "patients: an item's differences averaged within its cluster and over the seeds), pooled metrics "
              "by a paired bootstrap over clusters; p-values Holm-corrected over this table; verdict at 0.05, "
              "by the metric's direction (better / worse / no significant difference).")


def summary_line(index: Mapping[str, Any], runs: Sequence[Any]) -> str:
    """``"N of M planned runs finished."`` naming the data sets that failed as a whole.

    Example:
        >>> summary_line({"planned": 6, "failures": [{"run": "data set kvasir-seg", "error": "x"}]}, [1, 2, 3])
        '3 of 6 planned runs finished; data set(s) failed: kvasir-seg.'
    """
    n = len(runs)
    planned = int(index.get("planned") or len(index.get("runs", [])) or n)
    failed = [f["run"][len("data set "):] for f in index.get("failures") or [] if str(f.get("run", "")).startswith("data set ")]
    text = f"{n} of {planned} planned runs finished" if planned != n or failed else f"{n} finished runs"
    return text + (f"; data set(s) failed: {', '.join(failed)}." if failed else ".")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
