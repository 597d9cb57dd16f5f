"""End to end: a tiny study with ``compare: domain`` and ``eval.positives_only``, its stored per-item
statistics, and the comparison section of the report."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seglosses.bench.evaluate import IMAGE_SUMS, load_image_sums, pooled_accumulators
from seglosses.bench.report import _compare_pairs, _Tester, summarize, write_report
from seglosses.bench.study import StudyError, parse_study, run_study

METRICS = ["dice", "jaccard", "average_precision", "pixel_accuracy"]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    study = parse_study({
        "name": "tiny", "losses": ["dice"], "domains": ["image", "batch"], "epochs": 1, "seeds": [0, 1],
        "model": {"depth": 1, "width": 4}, "compare": "domain", "batch_size": 4,
        "datasets": [{"type": "synthetic", "n_images": 48, "size": 32, "positive_fraction": 0.7, "quadrants": True,
                      "split": {"fractions": [0.5, 0.1, 0.4], "seed": 0}},
                     # passes the study check, fails to load: every image is smaller than the tile
                     {"type": "synthetic", "n_images": 8, "size": 32, "tile": 64, "small": "error",
                      "name": "broken"}],
        "eval": {"metrics": METRICS, "samples": 0, "positives_only": True}})
    out = tmp_path_factory.mktemp("study")
    outcome = run_study(study, out, log=lambda m: None)
    assert outcome.summary() == "4 of 8 planned runs finished (data set broken failed)"
    return outcome.folder


def _finals(folder):
    return [json.loads(p.read_text()) | {"dir": str(p.parent)} for p in sorted(folder.rglob("final.json"))]


def test_positives_only_filters_quadrants_and_says_what_was_evaluated(study_dir):
    for run in _finals(study_dir):
        res = run["results"]
        assert res["items"] == "quadrants of the source images, with foreground only"
        assert res["n_images"] == len(run["per_image"]) and all("#q" in n for n in run["per_image"])
        # every evaluated quadrant has foreground: its Dice is never the 0/0 = 1 of an empty one with an empty
        # prediction, and its group is the source image
        assert all(run["groups"][n] == n.split("#q")[0] for n in run["per_image"])
    sums = load_image_sums(Path(_finals(study_dir)[0]["dir"]) / IMAGE_SUMS)
    tp_plus_fn = sums["arrays"]["fg:confusion/tp"] + sums["arrays"]["fg:confusion/fn"]
    assert (tp_plus_fn > 0).all()


def test_stored_item_sums_reproduce_the_pooled_metrics(study_dir):
    for run in _finals(study_dir):
        sums = load_image_sums(Path(run["dir"]) / IMAGE_SUMS)
        assert sums["names"] == list(run["per_image"]) and sorted(sums["meta"]["metrics"]) == sorted(METRICS)
        fg, every = pooled_accumulators("binary", 2, METRICS)
        for prefix, acc in (("fg:", fg), ("all:", every)):
            total = {k[len(prefix):]: torch.from_numpy(v.sum(0)) for k, v in sums["arrays"].items()
                     if k.startswith(prefix)}
            for key, value in acc.finalize(total).items():
                assert float(value) == pytest.approx(run["results"]["dataset"][key[: -len("_dataset")]], abs=1e-9)


def test_pairs_differ_in_the_compared_factor_only(study_dir):
    configs = summarize(_finals(study_dir))["synthetic"]
    pairs = _compare_pairs(configs, "domain")
    assert [(a.label, b.label) for a, b, _ in pairs] == [("dice (batch)", "dice (image)")]
    assert _compare_pairs(configs, "batch_size") == []


def test_bootstrap_observed_difference_is_the_seed_mean_of_pooled_differences(study_dir):
    configs = summarize(_finals(study_dir))["synthetic"]
    image, batch = configs
    tester = _Tester(configs, n_boot=200)
    for metric in ("dice", "average_precision", "pixel_accuracy"):
        r = tester.test(batch, image, metric, "dataset")
        expected = np.mean([b - a for a, b in zip(image.values(metric, "dataset"), batch.values(metric, "dataset"))])
        assert r["test"]["mean_diff"] == pytest.approx(expected, abs=1e-9)
        assert r["test"]["unit"] == "cluster bootstrap" and r["test"]["n_clusters"] == len(set(
            n.split("#q")[0] for n in image.runs[0]["per_image"]))
        assert r["seeds"]["n"] == 2
    per_image = tester.test(batch, image, "dice", "image_mean")
    assert per_image["test"]["unit"] == "cluster" and per_image["test"]["n_items"] == image.runs[0]["results"]["n_images"]


def test_report_compare_section_verdicts_and_small_multiples(study_dir, tmp_path):
    out = write_report(study_dir, n_boot=200)
    md = (out / "report.md").read_text()
    assert md.splitlines()[2].startswith("4 of 8 planned runs finished; data set(s) failed: broken.")
    assert "### synthetic: domain compared" in md
    assert "| dice (batch) − dice (image) | Dice, pooled |" in md
    assert "| dice (batch) − dice (image) | Dice, per-image mean (absent in both: 1) |" in md
    verdicts = [l for l in md.splitlines() if l.startswith("- **dice (batch) vs dice (image)**")]
    assert len(verdicts) == 1 and "dice (batch) is " in verdicts[0]
    assert any(w in verdicts[0] for w in ("better in", "worse in", "not significantly different in"))
    assert "Dice (pooled)" in verdicts[0] and "AP (pooled)" in verdicts[0]
    assert "quadrants of the source images, with foreground only" in md
    assert "HD95 px" not in md and "mod. Hausdorff /" not in md  # not computed: no row, no column
    assert "`dice(squared_denominator=False, soft_form=False, log_loss=False, domain='batch', smooth=1e-05" in md  # the full loss spec, defaults included
    results = json.loads((out / "results.json").read_text())
    tests = results["datasets"]["synthetic"]["compare"]["tests"]
    assert {t["verdict"] for t in tests} <= {"better", "worse", "no significant difference", "not tested"}
    assert all(t["p_holm"] is None or t["p_holm"] >= t["test"]["p"] for t in tests if t.get("test"))
    assert (out / "learning_curves_synthetic.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_must_name_a_factor():
    with pytest.raises(StudyError, match="`compare` must be null or a factor among domain, batch_size"):
        parse_study({"datasets": ["synthetic"], "losses": ["ce"], "compare": "domian"})
    with pytest.raises(StudyError, match="`eval.positives_only` must be true or false"):
        parse_study({"datasets": ["synthetic"], "losses": ["ce"], "eval": {"positives_only": "yes"}})


@pytest.mark.parametrize("mode, classes", [("multiclass", 4), ("binary", 2)])
def test_item_sums_of_an_evaluation_add_up_to_its_pooled_metrics(mode, classes, tmp_path):
    from seglosses.bench.data import SegmentationDataset
    from seglosses.bench.evaluate import evaluate, save_image_sums

    gen = torch.Generator().manual_seed(0)
    sizes = [(12, 10), (12, 10), (9, 14)]  # items of different sizes are evaluated one by one
    images = [torch.rand(classes if mode == "multiclass" else 1, h, w, generator=gen) * 4 - 2 for h, w in sizes]
    masks = [torch.randint(0, classes, (h, w), generator=gen) for h, w in sizes]
    masks[2][:] = 0  # an item without foreground
    ds = SegmentationDataset(images, masks, names=["a#q0", "a#q1", "b"], groups=["a", "a", "b"])
    model = torch.nn.Identity()  # the images are the logits
    out = evaluate(model, ds, mode=mode, num_classes=classes, metrics=METRICS + ["iou_per_class"])
    assert out["groups"] == {"a#q0": "a", "a#q1": "a", "b": "b"}
    save_image_sums(tmp_path / IMAGE_SUMS, out["image_sums"])
    sums = load_image_sums(tmp_path / IMAGE_SUMS)
    assert sums["groups"] == ["a", "a", "b"] and sums["arrays"]["fg:confusion/tp"].shape[0] == 3
    fg, every = pooled_accumulators(mode, classes, METRICS + ["iou_per_class"], per_class=True)
    for prefix, acc in (("fg:", fg), ("all:", every)):
        total = {k[len(prefix):]: torch.from_numpy(v.sum(0, keepdims=True)) for k, v in sums["arrays"].items()
                 if k.startswith(prefix)}
        for key, value in acc.finalize(total).items():
            name = key[: -len("_dataset")]
            expected = out["dataset"][name]
            got = value[0].tolist() if name == "iou_per_class" else float(np.nanmean(value[0].numpy()))
            assert got == pytest.approx(expected, abs=1e-9), name
