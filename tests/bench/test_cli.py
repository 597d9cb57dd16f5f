"""End-to-end tests of the ``seglosses`` command line (seglosses.cli)."""
import json

import pytest

from seglosses.cli import main
from seglosses.registry import ENTRIES

QUICK = ["--epochs", "1", "--max-images", "12", "--size", "32", "--width", "4", "--quiet"]


def test_losses_lists_every_registered_loss(capsys):
    assert main(["losses"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(ENTRIES)
    for entry, line in zip(ENTRIES, out):
        assert line.startswith(entry.name) and entry.description in line


def test_bench_default_end_to_end_then_skip_then_report(tmp_path, capsys):
    args = ["bench", *QUICK, "--losses", "CE,Dice (batch),Lovasz", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "study default: 6 of 6 runs finished" in out
    report = tmp_path / "default" / "report"
    md = (report / "report.md").read_text()
    for name in ("synthetic-binary", "synthetic-multiclass"):
        assert f"## {name}" in md
        for fig in ("learning_curves", "metrics", "samples"):
            assert (report / f"{fig}_{name}.png").is_file()
    assert "| metric | CE | Dice (batch) | Lovasz |" in md and "mIoU (data set) ↑" in md
    results = json.loads((report / "results.json").read_text())
    assert results["datasets"]["synthetic-binary"]["baseline"] == "CE"
    assert len((report / "results.csv").read_text().splitlines()) == 7
    # a second run finds every run finished
    assert main(args) == 0
    # the report command, another baseline, tables only
    assert main(["report", str(tmp_path / "default"), "--baseline", "lovasz", "--no-figures",
                 "--out", str(tmp_path / "r2")]) == 0
    assert "against the baseline Lovasz" in (tmp_path / "r2" / "report.md").read_text()


def test_bench_failures_exit_code_and_list(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    for sub in ("images", "masks"):
        (tmp_path / "bad" / sub).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "bad" / "images" / f"{i}.png")
        Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / "bad" / "masks" / f"{i}.png")
    study = tmp_path / "s.yaml"
    study.write_text("datasets:\n  - {type: synthetic, n_images: 12, size: 32, positive_fraction: 0.5, seed: 3}\n"
                     f"  - {{type: folder, name: bad, images: {tmp_path}/bad/images, masks: {tmp_path}/bad/masks, "
                     "classes: {0: 0, 255: 1}}\n"
                     "losses: [ce]\nepochs: 1\nmodel: {depth: 2, width: 4}\n"
                     "eval: {metrics: [dice], samples: 0}\n")
    assert main(["bench", str(study), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "1 failure(s):" in err
    assert "data set bad: ValueError: `classes` must map every mask value" in err
    assert (tmp_path / "out" / "s" / "report" / "report.md").is_file()  # the runs that worked are reported


def test_bench_usage_errors(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "missing.yaml")]) == 2
    assert "`study` must be an existing file" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('losses = ["ce"]\nbatchsize = 3\n')
    assert main(["bench", str(bad)]) == 2
    assert "`batchsize` must be a study setting" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "must hold a study" in capsys.readouterr().err


def test_bench_stop_and_resume(tmp_path, capsys):
    study = tmp_path / "r.json"
    study.write_text(json.dumps({
        "datasets": [{"type": "synthetic", "n_images": 12, "size": 32, "positive_fraction": 0.5, "seed": 3}],
        "losses": ["dice"], "epochs": 2, "model": {"depth": 2, "width": 4},
        "eval": {"metrics": ["dice"], "samples": 0}}))
    out = str(tmp_path / "out")
    assert main(["bench", str(study), "--out", out, "--stop-after-epoch", "1"]) == 3
    assert "re-run the same command to resume" in capsys.readouterr().err
    assert main(["bench", str(study), "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "resuming after epoch 1/2" in printed and "dice  epoch 2/2" in printed and "dice  epoch 1/2" not in printed


def test_isbi_smoke_study(tmp_path, shared_dir, capsys):
    if not (shared_dir / "datasets" / "isbi2012-em").is_dir():
        pytest.skip("isbi2012-em not in the shared folder")
    study = tmp_path / "isbi.yaml"
    study.write_text("name: isbi-smoke\ndatasets: [isbi2012-em]\nlosses: [ce, dice]\nepochs: 1\nbatch_size: 2\n"
                     "model: {depth: 2, width: 8}\n")
    assert main(["bench", str(study), "--max-images", "2", "--size", "64", "--out", str(tmp_path), "--quiet"]) == 0
    report = tmp_path / "isbi-smoke" / "report"
    md = (report / "report.md").read_text()
    assert "## isbi2012-em" in md and "| metric | ce | dice |" in md
    final = json.loads(next((tmp_path / "isbi-smoke" / "runs").rglob("final.json")).read_text())
    assert final["split"] == "test" and final["results"]["n_images"] == 2
    assert 0.0 < final["results"]["dataset"]["pixel_accuracy"] <= 1.0
