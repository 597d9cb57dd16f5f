"""What the report reads: the finished runs of a study folder, grouped into configurations, and
the rows of its tables (metrics, how they are aggregated, which direction is better).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple


from seglosses.bench.runfiles import (
    DamagedFile,
    read_final,
    read_index,
    redo_advice,
)

__all__ = ["ROWS", "CONVENTIONS", "ReportError", "Configuration", "find_studies", "load_runs", "summarize"]


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
