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
