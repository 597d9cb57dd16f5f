"""The results page: re-tests of the source papers' claims, regenerated from committed study results.

.. code-block:: bash

    seglosses bench studies/seed000-table1-monuseg.yaml --out results --quiet   # (and the others)
    python -m seglosses.bench.results            # writes docs/results.md and docs/results/<study>/

For every claim of :data:`CLAIMS` the page reads the finished runs of its studies
(``results/<study>/``: ``study.json`` and each run's ``final.json`` and ``image_sums.npz``, the
real outputs of the runs), writes each study's full report into ``docs/results/<study>/``
(:func:`seglosses.bench.report.write_report`: tables, paired tests, figures), and states in
``docs/results.md`` the tests the claim rests on and its verdict, computed from the numbers:

* **holds**: every selected test has the expected verdict (Holm-corrected p < 0.05 in the
  expected direction, and no seed's difference the other way; for a claim of no difference: no
  test significant with the same direction in every seed);
* **does not hold**: at least one selected test is significant against the claim;
* **inconclusive at this scale**: neither (some tests not significant, or not tested);
* **not run yet**: no finished run of the study was found.

Nothing in the verdicts or the claim wording is written by hand besides the claim itself.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = ["Claim", "CLAIMS", "judge", "build_page", "main"]


@dataclass(frozen=True)
class Claim:
    """One claim of a source paper and the tests that decide it.

    Attributes:
        key: anchor of the claim on the page.
        source: where the claim is made (e.g. ``"seed 000, section 3.2 and Table 1"``).
        statement: the claim, quoted or closely paraphrased from the source.
        studies: the study folders (names) whose reports hold the tests.
        section: ``"compare"`` (the study's ``compare:`` table) or ``"significance"`` (the tests
            against the baseline).
        expect: the verdict each selected test must have for the claim to hold: ``"better"`` or
            ``"worse"`` (for the first configuration of the pair), or ``"none"`` (no significant
            difference).
        metrics: the ``(metric, aggregation)`` rows the claim is about.
        a, b: regular expressions the pair's first / second configuration must match (``None``:
            any).
        paper_scale: what the paper ran (for the scale statement).

    Example:
        >>> Claim("k", "seed 000", "batch beats image", ("s",), "compare", "better", (("dice", "dataset"),)).expect
        'better'
    """

    key: str
    source: str
    statement: str
    studies: Tuple[str, ...]
    section: str
    expect: str
    metrics: Tuple[Tuple[str, str], ...]
    a: Optional[str] = None
    b: Optional[str] = None
    paper_scale: str = ""


_OVERLAP = (("dice", "dataset"), ("dice", "image_mean"), ("jaccard", "dataset"), ("jaccard", "image_mean"))
_SEED000 = _OVERLAP + (("average_precision", "dataset"), ("balanced_accuracy", "dataset"),
                       ("modified_hausdorff", "image_mean"))

#: The claims of the results page.
CLAIMS: List[Claim] = [
    Claim("seed000-table1", "seed 000, section 3.2 and Table 1",
          "Using a batchwise loss consistently gives a better performance regardless of batch size "
          "(Dice loss, positive images; batch beats image in AP, balanced accuracy, Dice, Jaccard and the "
          "modified Hausdorff distance at batch sizes 8, 16, 32 and 64).",
          ("seed000-table1-monuseg", "seed000-table1-kvasir"), "compare", "better", _SEED000,
          a=r"\(batch\)", b=r"\(image\)",
          paper_scale="private H&E tile set (512 tiles, 256 crops), U-Net, Adam lr 1e-6, 100 epochs, one run "
                      "per configuration, GPU, batch sizes 8-64"),
    Claim("seed000-regularisers-small", "seed 000, section 3.3",
          "Adding the label-noise or the confidence penalty makes no significant difference (small coefficients).",
          ("seed000-regularisers",), "significance", "none", _OVERLAP, a=r"\+ 0\.1 (LNP|CP)$", b=r"^Dice$",
          paper_scale="initial experiments, up to 200 epochs, coefficients not given"),
    Claim("seed000-label-smoothing", "seed 000, section 2.2 (Claim 1)",
          "Label smoothing of the target does not carry over to the Dice/Tversky loss: its optimum stays a "
          "{0, 1} prediction, so training on smoothed targets changes nothing significant.",
          ("seed000-regularisers",), "significance", "none", _OVERLAP, a=r"^Dice \+ LS 0\.1$", b=r"^Dice$",
          paper_scale="a proof, no experiment"),
    Claim("seed000-regularisers-large", "seed 000, section 3.3",
          "With regularisation coefficients close to 1, performance starts to deteriorate.",
          ("seed000-regularisers",), "significance", "worse", _OVERLAP, a=r"\+ 1\.0 (LNP|CP)$", b=r"^Dice$",
          paper_scale="initial experiments, up to 200 epochs"),
    Claim("seed003-margin", "seed 003, Tables 2-4",
          "Among single losses, margin calibration obtains the best IoU (binary) or mIoU (multiclass): better "
          "than CE, focal, Dice and Lovasz.",
          ("seed003-margin",), "significance", "worse", (("jaccard", "dataset"),), b=r"^Margin calibration$",
          paper_scale="COVID-19 CT lesions and robotic-instrument videos, COPLE-Net, pre-training with CE, GPU"),
    Claim("seed004-surrogates-vs-ce", "seed 004, abstract and experiments",
          "Each metric surrogate (soft Dice, soft Jaccard, Lovasz) beats cross entropy and weighted cross entropy "
          "in Dice and Jaccard.",
          ("seed004-surrogates", "seed004-surrogates-acdc"), "compare", None, _OVERLAP,
          a=r"^(Soft Dice|Soft Jaccard|Lovasz)$", b=r"^(CE|Weighted CE)$",
          paper_scale="five medical segmentation tasks (2D and 3D), U-Net-like models, GPU"),
    Claim("seed004-surrogates-equal", "seed 004, abstract and experiments",
          "The choice among the surrogates (soft Dice, soft Jaccard, Lovasz) makes no statistical difference.",
          ("seed004-surrogates", "seed004-surrogates-acdc"), "compare", "none", _OVERLAP,
          a=r"^(Soft Dice|Soft Jaccard|Lovasz)$", b=r"^(Soft Dice|Soft Jaccard|Lovasz)$",
          paper_scale="five medical segmentation tasks (2D and 3D), U-Net-like models, GPU"),
]
# ``expect=None`` (seed 004's first claim) means "the surrogate is better", whichever side of the
# pair it is on: the compare table writes each pair as later − earlier in the study's order, so a
# pair reads "CE − Soft Dice" and the surrogate is better when CE is worse (see :func:`_expected`).
_SURROGATE = re.compile(r"^(Soft Dice|Soft Jaccard|Lovasz)$")


def _expected(claim: Claim, test: Mapping[str, Any]) -> str:
    if claim.expect is not None:
        return claim.expect
    return "better" if _SURROGATE.search(test["a"]) else "worse"


def _selected(claim: Claim, tests: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    out = []
    for t in tests:
        if (t["metric"], t["aggregation"]) not in claim.metrics:
            continue
        a, b = t["a"], t["b"]
        direct = (claim.a is None or re.search(claim.a, a)) and (claim.b is None or re.search(claim.b, b))
        swapped = claim.expect is None and (claim.a is None or re.search(claim.a, b)) and \
            (claim.b is None or re.search(claim.b, a))
        if direct or swapped:
            out.append(t)
    return out


_OPPOSITE = {"better": "worse", "worse": "better"}


def judge(claim: Claim, tests: Sequence[Mapping[str, Any]]) -> Tuple[str, Dict[str, int]]:
    """The verdict of a claim from its selected tests, with the count of each test verdict.

    Example:
        >>> c = Claim("k", "s", "x", ("s",), "compare", "better", (("dice", "dataset"),))
        >>> judge(c, [{"verdict": "better", "a": "A", "b": "B", "metric": "dice", "aggregation": "dataset"}])
        ('holds', {'as claimed': 1, 'against the claim': 0, 'no significant difference': 0, 'not tested': 0})
    """
    counts = {"as claimed": 0, "against the claim": 0, "no significant difference": 0, "not tested": 0}
    for t in tests:
        want = _expected(claim, t)
        v = t["verdict"]
        if v == "seeds disagree":  # significant for these models, but no consistent direction
            v = "no significant difference"
        if v == "not tested":
            counts["not tested"] += 1
        elif want == "none":
            counts["as claimed" if v == "no significant difference" else "against the claim"] += 1
        elif v == want:
            counts["as claimed"] += 1
        elif v == _OPPOSITE[want]:
            counts["against the claim"] += 1
        else:
            counts["no significant difference"] += 1
    if not tests:
        return "not run yet", counts
    if counts["against the claim"]:
        return "does not hold", counts
    if counts["as claimed"] == len(tests):
        return "holds", counts
    return "inconclusive at this scale", counts


def _fmt(v: Optional[float], digits: int = 4) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.{digits}f}"


def _p(v: Optional[float]) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.2g}" if v >= 1e-3 else f"{v:.1e}"


def _study_facts(folder: Path, results: Mapping[str, Any]) -> str:
    """Sizes, crops, epochs, seeds and wall time of a study, from its index and runs."""
    index = json.loads((folder / "study.json").read_text()) if (folder / "study.json").is_file() else {}
    st = index.get("settings") or {}
    finals = [json.loads(p.read_text()) for p in sorted((folder / "runs").rglob("final.json"))]
    finals = [f for f in finals if (f.get("config") or {}).get("kind", "run") == "run"]
    seconds = sum(float(f.get("train_seconds") or 0) + float(f.get("eval_seconds") or 0) for f in finals)
    planned = int(index.get("planned") or len(index.get("runs", [])) or len(finals))
    parts = []
    for d in index.get("datasets", []):
        entry = (results.get("datasets") or {}).get(d["name"], {})
        sizes = d.get("sizes", {})
        text = f"{d['name']}: {sizes.get('train', '?')} training / {sizes.get('val', '?')} validation items, "
        if "n_items" in entry:
            text += (f"{entry['n_items']} test items ({entry.get('items') or 'whole images'}) from "
                     f"{entry.get('n_clusters', '?')} clusters")
        else:
            text += "no finished run evaluated yet"
        parts.append(text)
    crops = sorted({str(e.get("crop")) for e in st.get("datasets", []) if isinstance(e, Mapping) and e.get("crop")})
    return (f"{len(finals)} of {planned} planned runs finished; " + "; ".join(parts)
            + (f"; training crops {', '.join(crops)} px" if crops else "")
            + f"; epochs {', '.join(map(str, st.get('epochs', [])))}"
            + (f" of {st['steps_per_epoch']} steps" if st.get("steps_per_epoch") else "")
            + f"; batch sizes {', '.join(map(str, st.get('batch_sizes', [])))}; seeds "
            + f"{', '.join(map(str, st.get('seeds', [])))}; wall time {seconds / 60:.1f} min "
            + "(training and evaluation, summed over the runs).")


def _tests_of(results: Mapping[str, Any], section: str) -> List[Dict[str, Any]]:
    out = []
    for dataset, entry in (results.get("datasets") or {}).items():
        found = (entry.get("compare") or {}).get("tests", []) if section == "compare" else entry.get("significance", [])
        for t in found or []:
            out.append({**t, "dataset": dataset})
    return out


def build_page(results_dir: str | Path = "results", out: str | Path = "docs/results.md", *,
               claims: Sequence[Claim] = tuple(CLAIMS), n_boot: int = 1000, figures: bool = True) -> Path:
    """Write the results page and each study's report from the committed study results.

    Args:
        results_dir: the folder holding one folder per study (``seglosses bench ... --out results``).
        out: the page; the studies' reports go to ``<out's folder>/results/<study>/``.
        claims: the claims to judge (default :data:`CLAIMS`).
        n_boot: bootstrap resamples of the pooled metrics' tests.
        figures: write the reports' figures.

    Returns:
        The page's path.
    """
    results_dir, out = Path(results_dir), Path(out)
    reports, facts = _write_reports(results_dir, out.parent / "results", claims, n_boot=n_boot, figures=figures)
    md = ["# Results: the source papers' claims re-tested on real data", "",
          "Generated by `python -m seglosses.bench.results` from the committed study results in "
          f"`{results_dir.as_posix()}/` (each run's `final.json` and `image_sums.npz`); the study files are in "
          "`studies/`. Each verdict is computed from the paired tests of the study's report: Holm-corrected over "
          "the report's table, at 0.05; per-image metrics tested over source images / patients (Wilcoxon), "
          "pooled metrics by a paired bootstrap over them. A test counts as better or worse only when, in "
          "addition, no seed's difference has the other sign (\"seeds disagree\" otherwise: the tests "
          "resample images for the trained models, not the training). **holds**: every test the claim rests on goes its "
          "way; **does not hold**: at least one test is significant against it; **inconclusive at this "
          "scale**: neither. The scale is far below the papers' (small U-Nets, few epochs, CPU); the "
          "verdicts are about these runs.", ""]
    summary = ["| claim | source | studies | verdict |", "|---|---|---|---|"]
    body: List[str] = []
    for claim in claims:
        tests = []
        for study in claim.studies:
            if reports.get(study):
                tests += [{**t, "study": study} for t in _tests_of(reports[study], claim.section)]
        selected = _selected(claim, tests)
        verdict, counts = judge(claim, selected)
        summary.append(f"| [{claim.statement[:70]}{'…' if len(claim.statement) > 70 else ''}](#{claim.key}) | "
                       f"{claim.source} | {', '.join(claim.studies)} | **{verdict}** |")
        body += _claim_section(claim, selected, verdict, counts, reports, facts, results_dir)
    md += summary + body + [""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md))
    return out


def _write_reports(results_dir: Path, report_root: Path, claims: Sequence[Claim], *, n_boot: int, figures: bool
                   ) -> Tuple[Dict[str, Optional[Dict[str, Any]]], Dict[str, str]]:
    """Write the report of every study the claims rest on; their ``results.json`` (``None`` for a
    study without finished runs) and a line of facts about each."""
    from seglosses.bench.report import ReportError, write_report

    reports: Dict[str, Optional[Dict[str, Any]]] = {}
    facts: Dict[str, str] = {}
    for study in dict.fromkeys(s for c in claims for s in c.studies):
        folder = results_dir / study
        try:
            target = write_report(folder, out=report_root / study, figures=figures, n_boot=n_boot)
        except ReportError:
            reports[study] = None
            continue
        reports[study] = json.loads((target / "results.json").read_text())
        facts[study] = _study_facts(folder, reports[study])
    return reports, facts


def _claim_section(claim: Claim, selected: Sequence[Mapping[str, Any]], verdict: str, counts: Mapping[str, int],
                   reports: Mapping[str, Optional[Dict[str, Any]]], facts: Mapping[str, str],
                   results_dir: Path) -> List[str]:
    """A claim's section of the page: the statement, the studies, the tests and the verdict."""
    body = ["", f"## {claim.source}: {claim.key}", "", f'<a id="{claim.key}"></a>', "", f"> {claim.statement}", ""]
    if claim.paper_scale:
        body += [f"Paper's scale: {claim.paper_scale}.", ""]
    for study in claim.studies:
        if reports.get(study):
            body.append(f"- `{study}` ([report](results/{study}/report.md)): {facts[study]}")
        else:
            body.append(f"- `{study}`: no finished run in `{results_dir.as_posix()}/{study}/` yet "
                        f"(run `seglosses bench studies/{study}.yaml --out {results_dir.as_posix()}`).")
    body.append("")
    if selected:
        body += _tests_table(selected, reports)
    n = len(selected)
    body.append(f"**Verdict: {verdict}.** " + (
        f"Of {n} tests, {counts['as claimed']} as claimed, {counts['against the claim']} significant against "
        f"the claim, {counts['no significant difference']} without a significant difference"
        + (f", {counts['not tested']} not tested" if counts["not tested"] else "") + "." if n else
        "No finished runs to test yet."))
    figs = []
    for study in claim.studies:
        for f in (reports.get(study) or {}).get("figures", []):
            if f.startswith(("learning_curves", "metrics")):
                figs.append(f"![{study}: {f}](results/{study}/{f})")
    if figs:
        body += [""] + figs
    return body


def _tests_table(selected: Sequence[Mapping[str, Any]], reports: Mapping[str, Any]) -> List[str]:
    """The table of the tests a claim rests on."""
    from seglosses.bench.reportdata import _heading

    rows = ["| study | data set | pair | metric | difference over seeds (per seed) | test p | p (Holm) | "
            "verdict |", "|---|---|---|---|---|---|---|---|"]
    for t in selected:
        per_seed = ", ".join(_fmt(v) for v in (t.get("seeds") or {}).get("diffs", {}).values())
        test = t.get("test") or {}
        mode = (reports[t["study"]]["datasets"][t["dataset"]] or {}).get("mode")
        rows.append(f"| {t['study']} | {t['dataset']} | {t['a']} − {t['b']} | "
                    f"{_heading(t['metric'], t['aggregation'], mode == 'multiclass')} | "
                    f"{_fmt(t.get('mean_diff_seeds'))} ({per_seed}) | {_p(test.get('p'))} | "
                    f"{_p(t.get('p_holm'))} | {t['verdict']} |")
    rows.append("")
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m seglosses.bench.results [--results DIR] [--out FILE] [--n-boot N] [--no-figures]``."""
    parser = argparse.ArgumentParser(prog="python -m seglosses.bench.results",
                                     description="Regenerate docs/results.md from the committed study results.")
    parser.add_argument("--results", default="results", help="folder of the study folders (default: results/)")
    parser.add_argument("--out", default="docs/results.md", help="the page (default: docs/results.md)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    path = build_page(args.results, args.out, n_boot=args.n_boot, figures=not args.no_figures)
    print(f"results page: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover - the command line
    sys.exit(main())
