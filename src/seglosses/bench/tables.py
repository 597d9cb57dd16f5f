"""The Markdown tables of the report: the main table (seed 000 Table 1 layout), the per-class IoU,
the overview over data sets, and the tables and verdicts of the paired tests.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, List, Mapping, Optional, Sequence, Tuple


from seglosses.bench.stats import (
    best_flags,
    mean_std,
)

from seglosses.bench.reportdata import ROWS, Configuration, _heading, _short

__all__ = ["format_cell", "main_table", "per_class_table", "overview_table"]


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
