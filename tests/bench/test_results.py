"""The results page (seglosses.bench.results) on a tiny synthetic study: verdicts follow the numbers."""
import json

import pytest

from seglosses.bench.results import CLAIMS, Claim, build_page, judge, main

IMAGES = [f"img{i}" for i in range(6)]


def _run(domain, seed, per_image):
    label = f"Dice ({domain})"
    mean = sum(per_image) / len(per_image)
    return {
        "config": {"label": label, "order": 0 if domain == "image" else 1, "seed": seed, "loss_label": "Dice",
                   "loss_spec": f"dice(domain='{domain}')", "batch_size": 4, "effective_batch_size": 4,
                   "epochs": 2, "domain": domain, "kind": "run"},
        "status": "finished", "dataset": "toy", "num_classes": 2, "mode": "binary", "split": "test",
        "train_seconds": 30.0, "eval_seconds": 6.0, "history": [],
        "results": {"n_images": 6, "items": "quadrants of the source images", "dataset": {"dice": mean},
                    "image_mean": {"dice": mean}},
        "per_image": {n: {"dice": v} for n, v in zip(IMAGES, per_image)},
        "groups": {n: n for n in IMAGES},
    }


def _study(root, batch_gain):
    folder = root / "toy-study"
    runs = []
    for seed in (0, 1, 2):
        base = [0.5, 0.4, 0.6, 0.5, 0.45, 0.55]
        runs.append(_run("image", seed, base))
        runs.append(_run("batch", seed, [v + g for v, g in zip(base, batch_gain)]))
    entries = []
    for run in runs:
        run_id = f"toy/{run['config']['label'].replace(' ', '_')}-s{run['config']['seed']}"
        (folder / "runs" / run_id).mkdir(parents=True)
        (folder / "runs" / run_id / "final.json").write_text(json.dumps(run))
        entries.append({"id": run_id})
    (folder / "study.json").write_text(json.dumps({
        "name": "toy-study", "runs": entries, "planned": 8, "failures": [],
        "settings": {"compare": "domain", "baseline": None, "epochs": [2], "batch_sizes": [4], "seeds": [0, 1, 2],
                     "steps_per_epoch": None, "datasets": [{"type": "synthetic", "crop": 16}]},
        "datasets": [{"name": "toy", "num_classes": 2, "sizes": {"train": 10, "val": 2, "test": 6}}]}))


CLAIM = Claim("toy-claim", "toy paper, Table 1", "The batch domain beats the image domain.", ("toy-study",),
              "compare", "better", (("dice", "image_mean"),), a=r"\(batch\)", b=r"\(image\)", paper_scale="huge")


@pytest.mark.parametrize("gain, verdict, counts, test_verdict", [
    # six source images all better: Wilcoxon p = 2/64 over the clusters, the only test of the table
    ([0.1, 0.2, 0.15, 0.12, 0.3, 0.05], "holds", "Of 1 tests, 1 as claimed, 0 significant against", "better"),
    ([-0.1, -0.2, -0.15, -0.12, -0.3, -0.05], "does not hold", "Of 1 tests, 0 as claimed, 1 significant against",
     "worse"),
    ([0.1, -0.2, 0.15, -0.12, 0.3, -0.05], "inconclusive at this scale",
     "Of 1 tests, 0 as claimed, 0 significant against the claim, 1 without a significant difference",
     "no significant difference"),
])
def test_page_verdict_follows_the_numbers(tmp_path, gain, verdict, counts, test_verdict):
    _study(tmp_path / "results", gain)
    page = build_page(tmp_path / "results", tmp_path / "docs" / "results.md", claims=[CLAIM], figures=False)
    md = page.read_text()
    assert f"**Verdict: {verdict}.** {counts}" in md
    assert f"| [The batch domain beats the image domain.](#toy-claim) | toy paper, Table 1 | toy-study | **{verdict}** |" in md
    # the facts of the study come from its files: 6 runs of 8 planned, wall time 6 x 36 s
    assert "6 of 8 planned runs finished; toy: 10 training / 2 validation items, 6 test items (quadrants of the " \
           "source images) from 6 clusters; training crops 16 px; epochs 2; batch sizes 4; seeds 0, 1, 2; wall " \
           "time 3.6 min" in md
    assert (tmp_path / "docs" / "results" / "toy-study" / "report.md").is_file()
    row = next(l for l in md.splitlines() if l.startswith("| toy-study | toy | Dice (batch) − Dice (image) |"))
    assert "| Dice, per-image mean (absent in both: 1) |" in row and row.endswith(f"| 0.031 | 0.031 | {test_verdict} |") \
        or row.endswith(f"| {test_verdict} |") and test_verdict == "no significant difference"


def test_missing_study_is_not_run_yet_and_cli(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    out = tmp_path / "page.md"
    assert main(["--results", str(tmp_path / "results"), "--out", str(out), "--no-figures"]) == 0
    md = out.read_text()
    assert "results page:" in capsys.readouterr().out
    assert md.count("**Verdict: not run yet.**") == len(CLAIMS)
    assert "no finished run in" in md and "seglosses bench studies/seed000-table1-monuseg.yaml" in md


def test_judge_of_a_no_difference_claim():
    claim = Claim("k", "s", "x", ("s",), "compare", "none", (("dice", "dataset"),))
    tests = [{"verdict": v, "a": "A", "b": "B"} for v in ("no significant difference", "better")]
    assert judge(claim, tests[:1])[0] == "holds"
    assert judge(claim, tests)[0] == "does not hold"
    assert judge(claim, [{"verdict": "not tested", "a": "A", "b": "B"}])[0] == "inconclusive at this scale"
    assert judge(claim, [])[0] == "not run yet"


def test_surrogate_claim_reads_either_side_of_a_pair():
    claim = next(c for c in CLAIMS if c.key == "seed004-surrogates-vs-ce")
    # in the compare table CE comes second in the study, so the pair reads CE − Soft Dice
    t = {"verdict": "worse", "a": "CE", "b": "Soft Dice", "metric": "dice", "aggregation": "dataset"}
    assert judge(claim, [t])[0] == "holds"
    assert judge(claim, [{**t, "verdict": "better"}])[0] == "does not hold"


def test_data_set_without_finished_runs_says_so(tmp_path):
    # a second data set of the study that no finished run has reached yet: no "?" placeholders
    _study(tmp_path / "results", [0.1, 0.2, 0.15, 0.12, 0.3, 0.05])
    index_path = tmp_path / "results" / "toy-study" / "study.json"
    index = json.loads(index_path.read_text())
    index["datasets"].append({"name": "later", "num_classes": 2, "sizes": {"train": 7, "val": 1, "test": 3}})
    index_path.write_text(json.dumps(index))
    md = build_page(tmp_path / "results", tmp_path / "page.md", claims=[CLAIM], figures=False).read_text()
    assert "later: 7 training / 1 validation items, no finished run evaluated yet" in md
    assert "? test items" not in md


def test_every_claim_selects_the_labels_it_means_in_its_study_files():
    # a claim's a/b patterns must pick configurations of its committed study files, and the
    # regulariser claims must not also pick the label-smoothing rows (and vice versa)
    import re
    from pathlib import Path

    import yaml

    studies = Path(__file__).resolve().parents[2] / "studies"
    for claim in CLAIMS:
        labels = []
        for name in claim.studies:
            raw = yaml.safe_load((studies / f"{name}.yaml").read_text())
            # a study with `domains:` labels its configurations "<loss> (<domain>)"
            labels += [f"{entry['label']} ({d})" if d else entry["label"]
                       for entry in raw["losses"] for d in raw.get("domains") or [None]]
        for pattern in (claim.a, claim.b):
            if pattern is not None:
                assert any(re.search(pattern, label) for label in labels), (claim.key, pattern, labels)
    by_key = {c.key: c for c in CLAIMS}
    assert not re.search(by_key["seed000-regularisers-small"].a, "Dice + LS 0.1")
    assert re.search(by_key["seed000-regularisers-small"].a, "Dice + 0.1 LNP")
    assert not re.search(by_key["seed000-label-smoothing"].a, "Dice soft form + LS 0.1")
