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
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from seglosses.bench import figures as _figures
from seglosses.bench.comparisons import (  # noqa: F401 - re-exported (tests, results page)
    LEVEL,
    N_BOOT,
    _compare_pairs,
    _match_baseline,
    _pair_tests,
    _source_of,
    _Tester,
    _verdict,
)
from seglosses.bench.runfiles import (
    DamagedFile,
    atomic_write_json,
    atomic_write_text,
    read_final,
    read_index,
    redo_advice,
)
from seglosses.bench.stats import (
    best_flags,
    mean_std,
    wilcoxon_test,
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
    "Pooled metrics: a paired bootstrap over clusters (the same draw for both configurations and every "
    "seed) of the seed-mean difference of the pooled metric (1000 resamples; a test with p < 0.05 is "
    "drawn again with 20 m / 0.05 resamples in a table of m tests, so that the smallest p it can reach, "
    "2 / (n + 1), is a tenth of the smallest Holm threshold; effect size: the "
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


_mean_std = mean_std


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


_best = best_flags


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
            kind = (f"bootstrap ({t['n_boot']} resamples), {t['n_clusters']} clusters, "
                    f"95% CI [{_fmt(t['ci'][0])}, {_fmt(t['ci'][1])}]")
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
              for v in ("better", "worse", "seeds disagree", "no significant difference", "not tested")}
        words = {"better": "better in", "worse": "worse in",
                 "seeds disagree": "significantly different, but not in the same direction in every seed, in",
                 "no significant difference": "not significantly different in", "not tested": "not tested in"}
        parts = [f"{words[v]} {', '.join(m)}" for v, m in by.items() if m]
        title = names.get((a, b)) if names else None
        lines.append(f"- **{title or f'{a} vs {b}'}**: {a} is " + "; ".join(parts) + ".")
    return lines


def _full_spec(spec: Any, mode: str) -> str:
    """The loss spec with every parameter, defaults included (the run's exact definition)."""
    try:
        from seglosses.bench.builders import build_run_loss
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


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------


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
    study = _Study(
        baseline=baseline if baseline is not None else settings.get("baseline"),
        factor=compare if compare is not None else settings.get("compare"),
        modes={run["dataset"]: run.get("mode", "binary") for run in runs},
        classes={run["dataset"]: int(run.get("num_classes", 2)) for run in runs},
        class_names={run["dataset"]: run.get("class_names") for run in runs if run.get("class_names")},
        n_boot=n_boot, figures=figures, out_dir=out_dir, warn=warn)
    name = index.get("name") or study_dir.name
    md: List[str] = [f"# Loss comparison: {name}", ""]
    md.append(summary_line(index, runs) + " Values are mean ± sample standard deviation over seeds; the best value "
              "of each row is in bold; ↑ means larger is better, ↓ smaller is better.")
    failures = index.get("failures") or []
    if failures:
        md += ["", "**Failed runs:**", ""] + [f"- {f['run']}: {f['error']}" for f in failures]
    if skipped:
        md += ["", "**Runs left out (their results cannot be read):**", ""] + [f"- {m}" for m in skipped]
    results: Dict[str, Any] = {"study": name, "conventions": CONVENTIONS, "compare": study.factor, "datasets": {}}
    if figures:
        import matplotlib

        matplotlib.use("Agg")
    for dataset, configs in grouped.items():
        results["datasets"][dataset] = _dataset_section(md, study, dataset, configs)
    if len(grouped) > 0:
        overview = overview_table(grouped, study.modes)
        if overview:
            md += ["", "## Pixel accuracy and IoU / mIoU (pooled) over all data sets", "", overview]
    md += ["", "## Conventions", ""] + [f"- {c}" for c in CONVENTIONS] + [""]
    results["figures"] = study.figures_written
    atomic_write_text(out_dir / "report.md", "\n".join(md))
    atomic_write_text(out_dir / "results.csv", _csv([r for c in grouped.values() for conf in c for r in conf.runs]))
    atomic_write_json(out_dir / "results.json", _jsonable(results))
    return out_dir


@dataclass
class _Study:
    """What every data-set section of a report shares (settings, modes, where figures go)."""

    baseline: Optional[str]
    factor: Optional[str]
    modes: Dict[str, str]
    classes: Dict[str, int]
    class_names: Dict[str, Any]
    n_boot: int
    figures: bool
    out_dir: Path
    warn: Optional[Callable[[str], None]]
    figures_written: List[str] = field(default_factory=list)


def _dataset_section(md: List[str], study: _Study, dataset: str, configs: Sequence[Configuration]) -> Dict[str, Any]:
    """Append one data set's section (tables, tests, figures) to ``md``; its ``results.json`` entry."""
    multiclass = study.modes[dataset] == "multiclass"
    first = configs[0].runs[0]
    seeds = sorted({s for c in configs for s in c.seeds})
    tester = _Tester(configs, n_boot=study.n_boot)
    n_items = first["results"].get("n_images")
    n_clusters = len({tester.groups.get(n, _source_of(n)) for n in first.get("per_image", {})})
    items = first["results"].get("items")
    what = f"{n_items} evaluation items" + (f" ({items})" if items else "") + \
        (f" from {n_clusters} source images / patients (the clusters of the tests)" if n_clusters else "")
    md += ["", f"## {dataset}", "",
           f"{'multiclass, ' + str(study.classes[dataset]) + ' classes' if multiclass else 'binary'}; evaluated on "
           f"the {first.get('split', 'test')} split: {what}; after "
           f"{', '.join(sorted({str(c.config().get('epochs')) for c in configs}))} epochs; "
           f"seeds {', '.join(map(str, seeds))}.", ""]
    md.append(main_table(configs, multiclass=multiclass))
    md += ["", "Configurations (the full loss definition, every parameter included):", ""]
    md += [_configuration_line(c, study.modes[dataset]) for c in configs]
    pct = per_class_table(configs, study.classes[dataset], class_names=study.class_names.get(dataset))
    if pct is not None:
        md += ["", f"### {dataset}: IoU per class, pooled", "", pct]
    rows = [r for r in ROWS if any(tester.seed_values(c, r[0], r[1]) for c in configs)]
    entry: Dict[str, Any] = {"mode": study.modes[dataset], "num_classes": study.classes[dataset], "n_items": n_items,
                             "items": items, "n_clusters": n_clusters, "configurations": []}
    _test_sections(md, entry, study, dataset, configs, tester, rows)
    entry["configurations"] = [_configuration_entry(c, study.modes[dataset]) for c in configs]
    if study.figures:
        _figure_lines(md, study, dataset, configs)
    return entry


def _configuration_line(c: Configuration, mode: str) -> str:
    cfg = c.config()
    extra = f", pre-trained with {cfg['pretrain']['loss']} for {cfg['pretrain']['epochs']} epochs" \
        if cfg.get("pretrain") else ""
    effective = '' if cfg.get('effective_batch_size') == cfg.get('batch_size') \
        else ', effective ' + str(cfg.get('effective_batch_size'))
    return (f"- **{c.label}**: `{_full_spec(cfg.get('loss_spec'), mode)}`, batch size {cfg.get('batch_size')}"
            f"{effective}, {cfg.get('epochs')} epochs, {len(c.runs)} seed(s), "
            f"{np.mean([r.get('train_seconds', 0.0) for r in c.runs]):.0f} s training per run{extra}")


def _test_sections(md: List[str], entry: Dict[str, Any], study: _Study, dataset: str,
                   configs: Sequence[Configuration], tester: _Tester, rows: Sequence[Tuple[str, str, str, bool]]) -> None:
    """The comparison of ``study.factor`` (when set) and the tests against the baseline."""
    multiclass = study.modes[dataset] == "multiclass"
    factor = study.factor
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
    base = _match_baseline(configs, study.baseline)
    if base is None:
        known = ", ".join(c.label for c in configs)
        raise ReportError(f"`baseline` must name a configuration of {dataset!r} ({known}); got {study.baseline!r}")
    entry["baseline"] = base.label
    others = [c for c in configs if c is not base]
    if others and (not factor or study.baseline is not None):
        tests = _pair_tests(tester, [(c, base) for c in others], rows)
        md += ["", f"### {dataset}: paired tests against the baseline {base.label}", "",
               "Paired differences (configuration − baseline); " + _TEST_NOTE, "",
               _tests_table(tests, pair_column="configuration − baseline", multiclass=multiclass), "",
               "Verdicts:", ""]
        md += _verdict_lines(tests, multiclass=multiclass)
        entry["significance"] = tests


def _configuration_entry(c: Configuration, mode: str) -> Dict[str, Any]:
    """A configuration's ``results.json`` entry: its settings and every metric's mean, s.d. and values."""
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
    return {
        "label": c.label, "loss": cfg.get("loss_label"), "loss_spec": cfg.get("loss_spec"),
        "full_spec": _full_spec(cfg.get("loss_spec"), mode),
        "domain": cfg.get("domain"), "batch_size": cfg.get("batch_size"),
        "effective_batch_size": cfg.get("effective_batch_size"), "epochs": cfg.get("epochs"),
        "seeds": c.seeds, "train_seconds": [r.get("train_seconds") for r in c.runs], "metrics": metrics}


def _figure_lines(md: List[str], study: _Study, dataset: str, configs: Sequence[Configuration]) -> None:
    """Draw the data set's figures into the report folder and link them from ``md``."""
    slug = _slug(dataset)
    md += ["", f"### {dataset}: figures", ""]
    for fname, fn, caption in (
        (f"learning_curves_{slug}.png", lambda p: _learning_curves(p, dataset, configs, study.factor),
         "learning curves"),
        (f"metrics_{slug}.png", lambda p: _metric_bars(p, dataset, configs, study.modes[dataset] == "multiclass"),
         "final metrics"),
        (f"samples_{slug}.png", lambda p: _sample_panel(p, dataset, configs, study.classes[dataset],
                                                        study.class_names.get(dataset), study.warn),
         "sample predictions"),
        (f"reliability_{slug}.png", lambda p: reliability_diagram(
            p, dataset, configs, _scored_names(study.class_names.get(dataset), study.modes[dataset] == "multiclass")),
         "reliability diagram"),
    ):
        if fn(study.out_dir / fname):
            study.figures_written.append(fname)
            md.append(f"![{dataset}: {caption}]({fname})")


_TEST_NOTE = ("mean ± s.d. over seeds of the per-seed difference of the aggregated metric, with the per-seed "
              "values; per-image metrics tested by a Wilcoxon signed-rank test over clusters (source images / "
              "patients: an item's differences averaged within its cluster and over the seeds), pooled metrics "
              "by a paired bootstrap over clusters; p-values Holm-corrected over this table; verdict at 0.05, "
              "by the metric's direction (better / worse / no significant difference); a significant test whose "
              "per-seed differences have both signs reads \"seeds disagree\" (the tests resample the test images "
              "for the trained models at hand, not the training).")


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
