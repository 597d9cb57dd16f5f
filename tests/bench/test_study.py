"""Tests of study files, the run grid, data-set entries and the study runner (seglosses.bench.study)."""
import json

import numpy as np
import pytest
from PIL import Image

from seglosses.bench.study import (
    StudyError,
    apply_overrides,
    build_data,
    load_study,
    parse_study,
    plan_runs,
    resolve_dataset,
    run_study,
)

TINY = {"name": "tiny", "type": "synthetic", "n_images": 12, "size": 32, "positive_fraction": 0.5, "seed": 3,
        "split": {"counts": [6, 3, 3], "seed": 0}}


def _study(**changes):
    raw = {"name": "t", "datasets": [TINY], "losses": ["ce"], "epochs": 1, "batch_size": 3,
           "model": {"depth": 2, "width": 4}, "eval": {"metrics": ["dice", "jaccard"], "samples": 0}}
    if "batch_sizes" in changes:
        del raw["batch_size"]
    raw.update(changes)
    return parse_study(raw)


def test_study_files_yaml_toml_json(tmp_path):
    (tmp_path / "a.yaml").write_text("datasets:\n  - {type: synthetic}\nlosses: [ce, dice]\nseeds: [0, 1]\n")
    (tmp_path / "b.toml").write_text('losses = ["ce"]\nepochs = 3\n[[datasets]]\ntype = "synthetic"\n')
    (tmp_path / "c.json").write_text(json.dumps({"datasets": ["synthetic"], "losses": ["focal"]}))
    a, b, c = (load_study(tmp_path / n) for n in ("a.yaml", "b.toml", "c.json"))
    assert (a.name, a["seeds"], [e["label"] for e in a["losses"]]) == ("a", [0, 1], ["ce", "dice"])
    assert (b.name, b["epochs"]) == ("b", [3])
    assert c["datasets"] == ["synthetic"]


@pytest.mark.parametrize("raw, match", [
    ({"datasets": [TINY], "losses": ["ce"], "epoch": 3}, "`epoch` must be a study setting .*did you mean 'epochs'"),
    ({"datasets": [TINY]}, "`losses` must list at least one entry"),
    ({"datasets": [TINY], "losses": ["ce"], "domains": ["pixel"]}, "`domains` must hold 'image' or 'batch'"),
    ({"datasets": [TINY], "losses": ["ce"], "seeds": [-1]}, "`seeds` must hold integers >= 0"),
    ({"datasets": [TINY], "losses": ["ce"], "seed": 0, "seeds": [1]}, "`seeds` must be given once"),
    ({"datasets": [TINY], "losses": ["ce"], "eval": {"metrics": ["dise"]}}, "did you mean 'dice'"),
    ({"datasets": [TINY], "losses": ["ce"], "pretrain": {"loss": "ce"}}, "`pretrain` must be null or"),
])
def test_study_errors_name_the_key(raw, match):
    with pytest.raises(StudyError, match=match):
        parse_study(raw, source="s.yaml")


def test_bad_files(tmp_path):
    with pytest.raises(StudyError, match="must be an existing file"):
        load_study(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("losses: [ce\n")
    with pytest.raises(StudyError, match="must be valid YAML; got an error in '.*bad.yaml'"):
        load_study(tmp_path / "bad.yaml")
    (tmp_path / "s.ini").write_text("")
    with pytest.raises(StudyError, match=r"must be a \.yaml, \.yml, \.toml or \.json file"):
        load_study(tmp_path / "s.ini")


def test_grid_domains_dedupe_labels_and_stable_ids():
    study = _study(losses=["ce", {"label": "Dice", "loss": "dice"}, "dice(domain='batch')"],
                   domains=["image", "batch"], seeds=[0, 1], batch_sizes=[2, 4])
    data = build_data(resolve_dataset(TINY))
    failures = []
    runs = plan_runs(study, TINY, resolve_dataset(TINY), data, failures)
    labels = sorted({r.label for r in runs})
    # CE has no domain: once per batch size; Dice in both domains; the fixed-domain Dice builds the
    # loss of "Dice (batch)" in both domains, so it adds no run
    assert labels == ["Dice (batch) bs2", "Dice (batch) bs4", "Dice (image) bs2", "Dice (image) bs4",
                      "ce bs2", "ce bs4"]
    assert len(runs) == 12 and not failures
    assert len({r.id for r in runs}) == 12
    assert {r.config["loss_spec"] for r in runs} == {"cross_entropy", "dice", "dice(domain='batch')"}
    again = plan_runs(study, TINY, resolve_dataset(TINY), data)
    assert [r.id for r in again] == [r.id for r in runs]  # same study, same folders
    changed = _study(losses=["ce"], optimizer={"lr": 0.5})
    other = plan_runs(changed, TINY, resolve_dataset(TINY), data)
    assert other[0].id.split("-")[-1] != runs[0].id.split("-")[-1]  # a setting changes the hash


def test_unknown_loss_is_a_failure_not_a_crash():
    study = _study(losses=["ce", "dcie"])
    data = build_data(resolve_dataset(TINY))
    failures = []
    runs = plan_runs(study, TINY, resolve_dataset(TINY), data, failures)
    assert [r.label for r in runs] == ["ce"]
    assert "loss 'dcie'" in failures[0]["error"] and "did you mean 'dice'" in failures[0]["error"]


def test_overrides():
    study = apply_overrides(_study(losses=["ce", "dice"]), epochs=2, max_images=8, size=32, width=2,
                            seeds=[5], losses=["dice"])
    assert study["epochs"] == [2] and study["seeds"] == [5] and study["model"]["width"] == 2
    assert [e["label"] for e in study["losses"]] == ["dice"]
    data = build_data(resolve_dataset(study["datasets"][0]))
    assert len(data.train) + len(data.val) + len(data.test) == 8
    with pytest.raises(StudyError, match="`--losses` must name losses of the study"):
        apply_overrides(_study(), losses=["nope"])


def test_dataset_entries(tmp_path, shared_dir):
    spec = resolve_dataset("isbi2012-em")
    assert spec["classes"] == {0: 1, 255: 0} and spec["images"].endswith("isbi2012-em/images")
    assert resolve_dataset({"preset": "isbi2012-em", "crop": 64})["crop"] == 64
    with pytest.raises(StudyError, match="known data set .*isbi2012-em.*did you mean 'isbi2012-em'"):
        resolve_dataset("isbi2012")


def _folder(tmp_path, n=3, size=(8, 8), mask_values=(0, 255), drop_mask=None, bad_size=None):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(images / f"{i:02d}.png")
        if i == drop_mask:
            continue
        shape = bad_size if i == 1 and bad_size else size
        m = np.full(shape, mask_values[0], np.uint8)
        m[: shape[0] // 2] = mask_values[1]
        if i == 2 and len(mask_values) > 2:
            m[0, 0] = mask_values[2]
        Image.fromarray(m).save(masks / f"{i:02d}.png")
    return {"type": "folder", "name": "f", "images": str(images), "masks": str(masks), "classes": {0: 0, 255: 1},
            "split": {"train": "0", "val": "1", "test": "2"}}


@pytest.mark.parametrize("kind, match", [
    ("no mask", "must hold a mask for every image; got no mask with stem '02' for image '.*02.png'"),
    ("size", "must match their images in size; got mask \\[4, 8\\] in '.*01.png' for image \\[8, 8\\]"),
    ("values", "`classes` must map every mask value; got values \\[7\\] in '.*02.png' outside its keys \\[0, 255\\]"),
])
def test_study_goes_on_after_data_errors(tmp_path, kind, match):
    root = tmp_path / kind.replace(" ", "_")
    if kind == "no mask":
        bad = _folder(root, drop_mask=2)
    elif kind == "size":
        bad = _folder(root, bad_size=(4, 8))
    else:
        bad = _folder(root, mask_values=(0, 255, 7))
    study = _study(datasets=[bad, TINY])
    out = run_study(study, tmp_path / "out", log=lambda m: None)
    assert len(out.failures) == 1 and out.failures[0]["run"] == "data set f"
    assert __import__("re").search(match, out.failures[0]["error"])
    assert len(out.finished) == 1  # the synthetic data set still ran
    index = json.loads((tmp_path / "out" / "t" / "study.json").read_text())
    assert index["failures"] == out.failures and len(index["finished"]) == 1


def test_rerun_skips_finished_runs_and_pretrain_protocol(tmp_path):
    study = _study(losses=["ce", "dice"], pretrain={"loss": "ce", "epochs": 1})
    messages = []
    first = run_study(study, tmp_path, log=messages.append)
    assert len(first.finished) == 2 and not first.failures
    assert sum("pre-training with ce" in m for m in messages) == 1  # one pre-training, shared by both losses
    pre = [p for p in (tmp_path / "t" / "runs" / "tiny" / "_pretrain").iterdir()]
    assert len(pre) == 1 and (pre[0] / "final.json").is_file()
    final = json.loads((tmp_path / "t" / "runs" / first.runs[1].id / "final.json").read_text())
    assert final["config"]["pretrain"]["loss"] == "cross_entropy"
    stamp = (tmp_path / "t" / "runs" / first.runs[0].id / "final.json").stat().st_mtime_ns
    messages.clear()
    second = run_study(study, tmp_path, log=messages.append)
    assert len(second.finished) == 2
    assert sum("finished earlier, skipped" in m for m in messages) == 2
    assert (tmp_path / "t" / "runs" / first.runs[0].id / "final.json").stat().st_mtime_ns == stamp
