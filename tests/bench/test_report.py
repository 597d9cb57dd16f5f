"""Tests of the comparison report (seglosses.bench.report) on hand-made run folders."""
import csv
import json
import math

import numpy as np
import pytest

from seglosses.bench.report import (
    Configuration,
    ReportError,
    find_studies,
    format_cell,
    main_table,
    summarize,
    wilcoxon_test,
    write_report,
)

IMAGES = [f"img{i}" for i in range(6)]


def _run(label, order, seed, dice, hd95, per_image_dice, loss_spec, iou=None, mode="binary"):
    history = [{"epoch": e, "lr": 1e-3, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_dice_dataset": dice * e / 2,
                "val_jaccard_dataset": dice * e / 3, "seconds": 1.0} for e in (1, 2)]
    return {
        "config": {"label": label, "order": order, "seed": seed, "loss_label": label, "loss_spec": loss_spec,
                   "batch_size": 4, "effective_batch_size": 4, "epochs": 2, "domain": None, "kind": "run"},
        "status": "finished", "dataset": "d", "num_classes": 2 if iou is None else len(iou), "mode": mode,
        "split": "test", "train_seconds": 3.0, "history": history,
        "results": {"loss": 0.3, "n_images": 6, "dataset": {"dice": dice, **({"iou_per_class": iou} if iou else {})},
                    "image_mean": {"hd95": hd95, "dice": float(np.mean(per_image_dice))},
                    "defined": {"hd95": 6}},
        "per_image": {name: {"dice": v, "hd95": hd95} for name, v in zip(IMAGES, per_image_dice)},
    }


def _write(folder, runs, index=True, samples=False):
    entries = []
    for i, run in enumerate(runs):
        run_id = f"d/{run['config']['label']}-s{run['config']['seed']}"
        d = folder / "runs" / run_id
        d.mkdir(parents=True)
        (d / "final.json").write_text(json.dumps(run))
        if samples:
            np.savez(d / "samples.npz", images=np.random.rand(2, 1, 8, 8).astype(np.float32),
                     truths=np.eye(8, dtype=np.uint8)[None].repeat(2, 0), preds=np.ones((2, 8, 8), np.uint8),
                     names=np.array(["a", "b"]))
        entries.append({"id": run_id})
    if index:
        (folder / "study.json").write_text(json.dumps({"name": "s", "runs": entries, "settings": {"baseline": None},
                                                       "failures": [{"run": "X", "error": "boom"}]}))


BASE = [0.5, 0.5, 0.6, 0.4, 0.5, 0.5]
BETTER = [0.6, 0.7, 0.8, 0.9, 1.0, 1.1]  # every image better: differences 0.1 .. 0.6


def test_main_table_layout_bold_arrows_mean_std():
    ce = summarize([_run("CE", 0, 0, 0.5, 3.0, BASE, "cross_entropy"),
                    _run("CE", 0, 1, 0.7, 5.0, BASE, "cross_entropy")])["d"][0]
    dice = summarize([_run("Dice", 1, 0, 0.8, 2.0, BETTER, "dice"),
                      _run("Dice", 1, 1, 0.8, 2.0, BETTER, "dice")])["d"][0]
    # mean ± sample s.d.: CE Dice (0.5, 0.7) -> 0.6 ± 0.1414; HD95 (3, 5) -> 4 ± 1.4142; lower HD95 is bold
    assert main_table([ce, dice]) == (
        "| metric | CE | Dice |\n"
        "|---|---|---|\n"
        "| Dice, pooled ↑ | 0.6000 ± 0.1414 | **0.8000 ± 0.0000** |\n"
        "| Dice, per-image mean (absent in both: 1) ↑ | 0.5000 ± 0.0000 | **0.8500 ± 0.0000** |\n"
        "| HD95 px, per-image mean (absent in both: left out; in one: diagonal) ↓ | 4.0000 ± 1.4142 | **2.0000 ± 0.0000** |"
    )
    assert main_table([ce, dice], multiclass=True).count("↑") == 2


def test_ties_are_all_bold_and_missing_values_dash():
    a = Configuration("d", "A", 0, [{"config": {"seed": 0}, "results": {"dataset": {"dice": 0.5}}}])
    b = Configuration("d", "B", 1, [{"config": {"seed": 0}, "results": {"dataset": {"dice": 0.5}}}])
    c = Configuration("d", "C", 2, [{"config": {"seed": 0}, "results": {"dataset": {}}}])
    assert main_table([a, b, c]).splitlines()[-1] == "| Dice, pooled ↑ | **0.5000** | **0.5000** | – |"
    assert format_cell([math.nan]) == "–"


def test_wilcoxon_exact_values():
    # six positive differences: the exact two-sided p is 2 / 2**6
    r = wilcoxon_test(BETTER, BASE)
    assert r["n"] == 6 and r["p"] == pytest.approx(2 / 64)
    assert r["mean_diff"] == pytest.approx(np.mean(np.subtract(BETTER, BASE)))
    assert wilcoxon_test([1.0, 2.0], [1.0, 2.0])["p"] == 1.0
    assert math.isnan(wilcoxon_test([1.0], [0.0])["p"])


def test_write_report_files_tables_and_tests(tmp_path):
    runs = []
    for seed in range(5):
        runs.append(_run("CE", 0, seed, 0.5 + 0.01 * seed, 4.0, BASE, "cross_entropy", iou=[0.9, 0.5]))
        runs.append(_run("Dice", 1, seed, 0.7 + 0.01 * seed, 3.0, BETTER, "dice", iou=[0.95, 0.7]))
    _write(tmp_path, runs, samples=True)
    out = write_report(tmp_path, baseline="ce")  # a registered name matches the CE configuration
    md = (out / "report.md").read_text()
    assert "| Dice, pooled ↑ | 0.5200 ± 0.0158 | **0.7200 ± 0.0158** |" in md
    # per-class IoU, seed 003 Table 4 layout
    assert "| configuration | background ↑ | class 1 ↑ |" in md
    assert "| Dice | **0.9500 ± 0.0000** | **0.7000 ± 0.0000** |" in md
    # per-image Wilcoxon against CE over the 6 source images (all better): p = 2/64, Holm over the two
    # per-image tests (Dice, HD95 both p = 2/64) doubles it; over 5 seeds (all better): p = 2/32
    assert "paired tests against the baseline CE" in md
    line = next(l for l in md.splitlines() if l.startswith("| Dice − CE | Dice, per-image mean"))
    assert "| +0.3500 ± 0.0000 (+0.3500, +0.3500, +0.3500, +0.3500, +0.3500) |" in line
    assert "| Wilcoxon, 6 clusters (6 items) | 0.031 | 0.062 | r = +1.00 | 5/5 better, 0/5 worse;" in line
    assert line.endswith("| no significant difference |")
    pooled = next(l for l in md.splitlines() if l.startswith("| Dice − CE | Dice, pooled"))
    assert "Wilcoxon over 5 seeds p = 0.062" in pooled and "| – | – | – | – |" in pooled  # no image sums stored
    assert "- **Dice vs CE**: Dice is not significantly different in Dice (per-image), HD95 (per-image); not tested in " \
           "Dice (pooled)." in md
    assert "- X: boom" in md  # failures of the study are listed
    results = json.loads((out / "results.json").read_text())
    conf = results["datasets"]["d"]["configurations"][1]
    assert conf["label"] == "Dice" and conf["metrics"]["dice_dataset"]["n"] == 5
    assert conf["metrics"]["dice_dataset"]["mean"] == pytest.approx(0.72)
    tests = {(t["a"], t["metric"], t["aggregation"]): t for t in results["datasets"]["d"]["significance"]}
    assert tests[("Dice", "dice", "image_mean")]["test"]["p"] == pytest.approx(2 / 64)
    assert tests[("Dice", "dice", "image_mean")]["p_holm"] == pytest.approx(4 / 64)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 10 and rows[0]["configuration"] == "CE" and rows[0]["iou_class_1_dataset"] == "0.5"
    for name in ("learning_curves_d.png", "metrics_d.png", "samples_d.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in md


def test_report_without_index_and_baseline_errors(tmp_path):
    _write(tmp_path, [_run("CE", 0, 0, 0.5, 3.0, BASE, "cross_entropy"), _run("Dice", 1, 0, 0.8, 2.0, BETTER, "dice")],
           index=False)
    assert find_studies(tmp_path) == [tmp_path]
    out = write_report(tmp_path, figures=False)
    md = (out / "report.md").read_text()
    assert "against the baseline CE" in md  # the first configuration by default
    assert "1/1 better, 0/1 worse" in md  # one seed: its sign, no test over seeds
    with pytest.raises(ReportError, match="`baseline` must name a configuration of 'd' \\(CE, Dice\\); got 'focal'"):
        write_report(tmp_path, baseline="focal", figures=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="must hold a study"):
        find_studies(empty)
