"""The torchmetrics adapter equals SegmentationMetrics; forward gives the batch value."""
from __future__ import annotations

import pytest

from seglosses import metrics as M

from .test_streaming import _close, _data


def test_torchmetrics_adapter():
    pytest.importorskip("torchmetrics")
    x, t, c = _data("multiclass")
    tm = M.TorchmetricsSegmentationMetrics(["dice", ("ap", {"bins": 16}), "hd95"], num_classes=3, mode="multiclass")
    ours = M.SegmentationMetrics(["dice", ("ap", {"bins": 16}), "hd95"], num_classes=3, mode="multiclass")
    batch_value = tm(x[:3], t[:3])  # forward: the batch alone, and accumulated
    first = M.SegmentationMetrics(["dice", ("ap", {"bins": 16}), "hd95"], num_classes=3, mode="multiclass")
    first.update(x[:3], t[:3])
    _close(batch_value, first.compute())
    tm.update(x[3:], t[3:])
    ours.update(x, t)
    _close(tm.compute(), ours.compute())
    tm.reset()
    assert float(tm.state_confusion__tp.sum()) == 0
    import torchmetrics

    assert isinstance(tm, torchmetrics.Metric)


def test_torchmetrics_adapter_new_metrics():
    pytest.importorskip("torchmetrics")
    x, t, c = _data("multiclass")
    names = ["mcc", ("fbeta_score", {"beta": 2.0}), "gds", "avd", ("auc", {"bins": 16}), "ece", "mce",
             ("hausdorff", {"distance": "taxicab", "directed": True}), ("dice", {"average": "weighted"})]
    tm = M.TorchmetricsSegmentationMetrics(names, num_classes=3, mode="multiclass", spacing=(1.0, 2.0))
    ours = M.SegmentationMetrics(names, num_classes=3, mode="multiclass", spacing=(1.0, 2.0))
    tm.update(x[:3], t[:3])
    tm.update(x[3:], t[3:])
    ours.update(x, t)
    _close(tm.compute(), ours.compute())
