"""Calibration in the bench: the optional evaluation metrics, the recorded bins and the report's figure."""
import json

import numpy as np
import pytest
import torch
from torch import nn

import seglosses.metrics as M
from seglosses.bench.data import SegmentationDataset
from seglosses.bench.evaluate import OPTIONAL_METRICS, RELIABILITY_BINS, check_metric_names, evaluate
from seglosses.bench.report import Configuration, write_report
from seglosses.bench.reportfigures import pooled_reliability, reliability_diagram


class _Logits(nn.Module):
    """Images are the logits themselves."""

    def forward(self, x):
        return x


def _data(mode, seed=0):
    gen = torch.Generator().manual_seed(seed)
    c = 1 if mode == "binary" else 3
    images = torch.randn(5, c, 9, 10, generator=gen) * 2
    masks = torch.randint(0, 2 if mode == "binary" else 3, (5, 9, 10), generator=gen)
    return SegmentationDataset(images, masks), images, masks


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_evaluate_records_calibration_and_bins(mode):
    ds, images, masks = _data(mode)
    nc = 2 if mode == "binary" else 3
    out = evaluate(_Logits(), ds, mode=mode, num_classes=nc, batch_size=2,
                   metrics=["dice", "expected_calibration_error", "maximum_calibration_error"])
    probs = torch.sigmoid(images) if mode == "binary" else images.softmax(1)
    kw = dict(mode=mode, include_background=mode == "binary", bins=RELIABILITY_BINS)
    ece = M.expected_calibration_error(probs, masks, domain="batch", **kw)
    mce = M.maximum_calibration_error(probs, masks, domain="batch", **kw)
    assert out["dataset"]["expected_calibration_error"] == pytest.approx(float(ece), abs=1e-6)
    assert out["dataset"]["maximum_calibration_error"] == pytest.approx(float(mce), abs=1e-6)
    ref = M.calibration_bins(probs, masks, mode=mode, include_background=mode == "binary", bins=RELIABILITY_BINS)
    rel = out["reliability"]
    assert rel["bins"] == RELIABILITY_BINS
    np.testing.assert_allclose(np.array(rel["count"]), ref["count"].numpy())
    np.testing.assert_allclose(np.array(rel["accuracy"], dtype=float), ref["accuracy"].numpy(), equal_nan=True)
    per_image = M.expected_calibration_error(probs, masks, reduction="none", **kw).double().mean(1)
    assert out["image_mean"]["expected_calibration_error"] == pytest.approx(float(per_image.mean()), abs=1e-6)
    # not asked for: no bins, no calibration values
    plain = evaluate(_Logits(), ds, mode=mode, num_classes=nc, metrics=["dice"])
    assert plain["reliability"] is None and "expected_calibration_error" not in plain["dataset"]


def test_optional_metric_names():
    assert check_metric_names(list(OPTIONAL_METRICS)) == list(OPTIONAL_METRICS)
    with pytest.raises(ValueError, match=r"`eval.metrics` must name metrics among .*got 'ece_score'"):
        check_metric_names(["ece_score"], "eval.metrics")


def _runs(with_bins):
    runs = []
    for label, order, acc in (("CE", 0, [0.1, 0.8]), ("Dice", 1, [0.3, 0.95])):
        for seed in (0, 1):
            results = {"loss": 0.1, "n_images": 2, "dataset": {"dice": 0.5, "expected_calibration_error": 0.1},
                       "image_mean": {"dice": 0.5}, "defined": {}}
            if with_bins:
                results["reliability"] = {"bins": 2, "count": [[10.0, 5.0]], "confidence": [[0.2, 0.9]],
                                          "accuracy": [acc]}
            runs.append({"config": {"label": label, "order": order, "seed": seed, "loss_label": label,
                                    "loss_spec": "dice", "batch_size": 2, "effective_batch_size": 2, "epochs": 1,
                                    "domain": None, "kind": "run"},
                         "status": "finished", "dataset": "d", "num_classes": 2, "mode": "binary", "split": "test",
                         "train_seconds": 1.0, "history": [], "results": results,
                         "per_image": {"a": {"dice": 0.5}, "b": {"dice": 0.5}}})
    return runs


def test_pooled_reliability_weights_runs_by_pixels():
    a = {"bins": 2, "count": [[1.0, 0.0]], "confidence": [[0.2, float("nan")]], "accuracy": [[0.0, float("nan")]]}
    b = {"bins": 2, "count": [[3.0, 2.0]], "confidence": [[0.4, 0.9]], "accuracy": [[1.0, 0.5]]}
    c = Configuration("d", "X", 0, [{"config": {"seed": 0}, "results": {"reliability": a}},
                                    {"config": {"seed": 1}, "results": {"reliability": b}}])
    rel = pooled_reliability(c)
    np.testing.assert_allclose(rel["count"], [[4.0, 2.0]])
    np.testing.assert_allclose(rel["confidence"], [[(0.2 + 1.2) / 4, 0.9]])
    np.testing.assert_allclose(rel["accuracy"], [[3 / 4, 0.5]])
    assert pooled_reliability(Configuration("d", "Y", 0, [{"config": {"seed": 0}, "results": {}}])) is None


@pytest.mark.parametrize("with_bins", [True, False])
def test_report_draws_reliability_only_when_recorded(tmp_path, with_bins):
    entries = []
    for run in _runs(with_bins):
        run_id = f"d/{run['config']['label']}-s{run['config']['seed']}"
        d = tmp_path / "runs" / run_id
        d.mkdir(parents=True)
        (d / "final.json").write_text(json.dumps(run))
        entries.append({"id": run_id})
    (tmp_path / "study.json").write_text(json.dumps({"name": "s", "runs": entries, "settings": {"baseline": None}}))
    out = write_report(tmp_path)
    md = (out / "report.md").read_text()
    png = out / "reliability_d.png"
    assert png.exists() == with_bins
    assert ("](reliability_d.png)" in md) == with_bins
    if with_bins:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "reliability_d.png" in json.loads((out / "results.json").read_text())["figures"]


def test_reliability_diagram_nothing_to_draw(tmp_path):
    c = Configuration("d", "X", 0, [{"config": {"seed": 0}, "results": {}}])
    assert reliability_diagram(tmp_path / "r.png", "d", [c]) is False
    assert not (tmp_path / "r.png").exists()
