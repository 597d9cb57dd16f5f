"""The Lightning and MONAI examples train for a few steps on CPU (synthetic data)."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "integrations"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_lightning_module_trains_and_logs_seglosses_metrics(tmp_path, monkeypatch):
    pytest.importorskip("lightning")
    pytest.importorskip("torchmetrics")
    monkeypatch.chdir(tmp_path)
    logged = _load("lightning_train").main(max_steps=4, val_batches=1, n_train=16)  # one epoch, then validation
    for key in ("train/loss", "train/dice", "train/cross_entropy", "val/loss", "val/dice_dataset",
                "val/jaccard_image_mean", "val/hd95_image_mean"):
        assert key in logged, sorted(logged)
        assert math.isfinite(logged[key]) or key.startswith("val/hd95")
    assert 0.0 <= logged["val/dice_dataset"] <= 1.0


@pytest.mark.slow
@pytest.mark.peers
def test_monai_loop_with_seglosses_loss_and_metric():
    pytest.importorskip("monai")
    results = _load("monai_loop").main(steps=6)
    assert math.isfinite(results["first_loss"]) and math.isfinite(results["last_loss"])
    assert results["last_loss"] < results["first_loss"]  # it learns
    assert 0.0 <= results["dice_dataset"] <= 1.0 and "hd95_image_mean" in results
