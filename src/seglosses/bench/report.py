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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from seglosses.bench.comparisons import (
    N_BOOT,
    _compare_pairs,
    _match_baseline,
    _pair_tests,
    _source_of,
    _Tester,
)
from seglosses.bench.runfiles import (
    atomic_write_json,
    atomic_write_text,
)
from seglosses.bench.stats import (
    wilcoxon_test,
)

from seglosses.bench.reportdata import (
    CONVENTIONS,
    ROWS,
    Configuration,
    ReportError,
    find_studies,
    load_runs,
    summarize,
)
from seglosses.bench.reportfigures import (
    _learning_curves,
    _metric_bars,
    _sample_panel,
    _scored_names,
    reliability_diagram,
)
from seglosses.bench.tables import (
    _class_iou,
    _full_spec,
    _mean_std,
    _tests_table,
    _verdict_lines,
    format_cell,
    main_table,
    overview_table,
    per_class_table,
)

__all__ = ["ROWS", "ReportError", "Configuration", "find_studies", "load_runs", "summarize", "format_cell",
           "main_table", "per_class_table", "overview_table", "wilcoxon_test", "write_report"]


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
