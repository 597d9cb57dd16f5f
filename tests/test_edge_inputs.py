"""Inputs that used to give a number without meaning, for every loss and metric: now a clear error.

* an ``ignore_index`` that is a target value in binary / multilabel mode (0 or 1), or a
  value of a dense multiclass target, removed a class (or every pixel) silently;
* zero-size spatial dims ``[B, C, 0, W]`` gave 0 or 1, or raw IndexError / RuntimeError;
* ``SegmentationMetrics.compute()`` before any ``update()`` reported a perfect Dice.
"""
from __future__ import annotations

import re

import pytest
import torch

import seglosses as sl
from seglosses import metrics as M
from seglosses.registry import ENTRIES

METRIC_FUNCTIONS = [
    M.dice, M.jaccard, M.tversky_index, M.sensitivity, M.specificity, M.precision, M.balanced_accuracy,
    M.pixel_accuracy, M.iou_per_class, M.mean_iou, M.average_precision, M.hausdorff, M.hd95, M.assd,
    M.surface_dice, M.modified_hausdorff, M.surface_metrics,
]
LOSS_NAMES = [e.name for e in ENTRIES]


def _loss(name: str, **kwargs):
    return sl.build_loss(name, **kwargs)


def _pair(mode: str, shape=(2, 5, 6), c: int = 3, soft: bool = False):
    b, *s = shape
    if mode == "binary":
        x = torch.randn(b, 1, *s)
        t = torch.rand(b, *s) if soft else torch.randint(0, 2, (b, *s))
    elif mode == "multilabel":
        x = torch.randn(b, c, *s)
        t = torch.rand(b, c, *s) if soft else torch.randint(0, 2, (b, c, *s))
    else:
        x = torch.randn(b, c, *s)
        t = torch.randint(0, c, (b, *s))
        if soft:
            t = torch.nn.functional.one_hot(t, c).movedim(-1, 1).float()
    return x, t


# ----------------------------------------------------------------------------- ignore_index a target value

_BINARY_MSG = {
    0: "`ignore_index` must not be a target value in binary mode (0 or 1: it would remove the background); "
       "got 0 (use e.g. 255 or -100)",
    1: "`ignore_index` must not be a target value in binary mode (0 or 1: it would remove the foreground); "
       "got 1 (use e.g. 255 or -100)",
}


def _exact(msg: str) -> str:
    return "^" + re.escape(msg) + "$"


@pytest.mark.parametrize("ignore_index", [0, 1])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_binary_ignore_index_that_is_a_class_is_refused_by_every_loss(name, ignore_index):
    x, t = _pair("binary")
    loss = _loss(name, mode="binary", ignore_index=ignore_index) if "ignore_index" in _accepts(name) else None
    if loss is None:
        pytest.skip(f"{name} takes no ignore_index")
    with pytest.raises(ValueError, match=_exact(_BINARY_MSG[ignore_index])):
        loss(x, t)
    with pytest.raises(ValueError, match="`ignore_index` must not be a target value in binary mode"):
        loss(x, t.float())  # a soft / float binary target holds the same values


@pytest.mark.parametrize("ignore_index", [0, 1])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_multilabel_ignore_index_that_is_a_label_value_is_refused(name, ignore_index):
    if "ignore_index" not in _accepts(name) or not _takes_mode(name, "multilabel"):
        pytest.skip(f"{name} takes no ignore_index or no multilabel mode")
    x, t = _pair("multilabel")
    on = "off" if ignore_index == 0 else "on"
    msg = (f"`ignore_index` must not be a target value in multilabel mode (0 or 1: it would remove every pixel "
           f"where a label is {on}); got {ignore_index} (use e.g. 255 or -100)")
    with pytest.raises(ValueError, match=_exact(msg)):
        _loss(name, mode="multilabel", ignore_index=ignore_index)(x, t)


@pytest.mark.parametrize("ignore_index", [0, 1])
def test_dense_multiclass_ignore_index_zero_or_one_is_refused(ignore_index):
    # every pixel of a one-hot target holds a 0 and a 1: the mask removed them all
    x, t = _pair("multiclass", soft=True)
    msg = (f"`ignore_index` must not be a one-hot / soft target's value (0 or 1: it would remove every pixel of a "
           f"one-hot target); got {ignore_index} (use e.g. 255 or -100)")
    with pytest.raises(ValueError, match=_exact(msg)):
        sl.DiceLoss(mode="multiclass", ignore_index=ignore_index)(x, t)
    with pytest.raises(ValueError, match=_exact(msg)):
        M.dice(x.softmax(1), t, mode="multiclass", ignore_index=ignore_index)
    # a value that no one-hot entry holds is still a valid ignore index (2 is a class index, not a value)
    assert torch.isfinite(sl.DiceLoss(mode="multiclass", ignore_index=2)(x, t))


@pytest.mark.parametrize("ignore_index", [0, 1])
@pytest.mark.parametrize("fn", METRIC_FUNCTIONS, ids=lambda f: f.__name__)
def test_binary_ignore_index_that_is_a_class_is_refused_by_every_metric(fn, ignore_index):
    x, t = _pair("binary")
    with pytest.raises(ValueError, match=_exact(_BINARY_MSG[ignore_index])):
        fn(x.sigmoid(), t, mode="binary", ignore_index=ignore_index)
    if fn is not M.average_precision:  # (AP ranks scores: no hard prediction)
        with pytest.raises(ValueError, match=_exact(_BINARY_MSG[ignore_index])):
            fn((x > 0).long(), t, mode="binary", ignore_index=ignore_index)  # a hard prediction


@pytest.mark.parametrize("ignore_index", [0, 1])
def test_streaming_metrics_refuse_a_class_ignore_index(ignore_index):
    # at construction, before any data: a bad setting does not wait for the first batch
    with pytest.raises(ValueError, match=_exact(_BINARY_MSG[ignore_index])):
        M.SegmentationMetrics(["dice", "ap", "hd95"], ignore_index=ignore_index)
    with pytest.raises(ValueError, match=_exact(
            f"`ignore_index` must not be a class index in [0, 2] (it would remove class {ignore_index}); got "
            f"{ignore_index} (use e.g. 255 or -100)")):
        M.SegmentationMetrics(["dice"], 3, mode="multiclass", ignore_index=ignore_index)
    with pytest.raises(ValueError, match="`ignore_index` must not be a target value in multilabel mode"):
        M.SegmentationMetrics(["dice"], 3, mode="multilabel", ignore_index=ignore_index)


def test_streaming_metrics_check_their_settings_at_construction():
    with pytest.raises(ValueError, match=_exact("`threshold` must lie in [0, 1]; got 2.0")):
        M.SegmentationMetrics(["dice"], threshold=2)
    with pytest.raises(TypeError, match=_exact("`from_logits` must be a bool; got int")):
        M.SegmentationMetrics(["dice"], from_logits=1)
    with pytest.raises(TypeError, match=_exact("`ignore_index` must be an int or None; got float")):
        M.SegmentationMetrics(["dice"], ignore_index=1.5)


def test_non_class_ignore_index_still_works_in_binary_mode():
    x, t = _pair("binary")
    t[0, 0, 0] = 255
    for name in ("dice", "cross_entropy", "lovasz"):
        assert torch.isfinite(_loss(name, ignore_index=255)(x, t))
    assert 0.0 <= float(M.dice(x.sigmoid(), t, ignore_index=255)) <= 1.0


# ----------------------------------------------------------------------------- zero-size spatial dims

def _zero_msg(shape) -> str:
    return (f"`input` must hold at least one pixel per image; got a spatial size of 0, "
            f"shape ({', '.join(map(str, shape))})")


_ZERO_SHAPES = [(2, 0, 6), (2, 5, 0), (1, 3, 0, 4)]


@pytest.mark.parametrize("shape", _ZERO_SHAPES)
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_zero_size_spatial_dims_are_refused_by_every_loss(name, shape):
    for mode in ("binary", "multiclass"):
        if not _takes_mode(name, mode):
            continue
        x, t = _pair(mode, shape)
        with pytest.raises(ValueError, match=_exact(_zero_msg(x.shape))):
            _loss(name, mode=mode)(x, t)


@pytest.mark.parametrize("shape", _ZERO_SHAPES)
@pytest.mark.parametrize("fn", METRIC_FUNCTIONS, ids=lambda f: f.__name__)
def test_zero_size_spatial_dims_are_refused_by_every_metric(fn, shape):
    x, t = _pair("binary", shape)
    with pytest.raises(ValueError, match=_exact(_zero_msg(x.shape))):
        fn(x.sigmoid(), t, mode="binary")
    x, t = _pair("multiclass", shape)
    with pytest.raises(ValueError, match=_exact(_zero_msg(x.shape))):
        fn(x.softmax(1), t, mode="multiclass")


@pytest.mark.parametrize("shape", _ZERO_SHAPES)
def test_zero_size_spatial_dims_are_refused_by_streaming_metrics(shape):
    x, t = _pair("multiclass", shape)
    m = M.SegmentationMetrics(["dice", "ap", "hd95", "pixel_accuracy"], 3, mode="multiclass")
    with pytest.raises(ValueError, match=_exact(_zero_msg(x.shape))):
        m.update(x.softmax(1), t)
    with pytest.raises(ValueError, match="`input` must hold at least one pixel per image"):
        m.update(x.argmax(1), t)  # a hard label-map prediction


def test_zero_channels_are_refused():
    x = torch.randn(2, 0, 4, 4)
    with pytest.raises(ValueError, match=_exact("`input` must have at least one channel; got 0 channels, "
                                                "shape (2, 0, 4, 4)")):
        sl.DiceLoss(mode="multilabel")(x, torch.rand(2, 0, 4, 4))


# ----------------------------------------------------------------------------- compute before update

_NO_UPDATE = ("`update` must be called before `compute`: no image was added since the metrics were made or last "
              "reset (on any process); got 0 images")


@pytest.mark.parametrize("aggregation", ["dataset", "image", ("dataset", "image")])
def test_compute_before_update_raises(aggregation):
    names = ["dice", "ap", "pixel_accuracy"] + ([] if aggregation == "dataset" else ["hd95"])
    m = M.SegmentationMetrics(names, aggregation=aggregation)
    with pytest.raises(ValueError, match=_exact(_NO_UPDATE)):
        m.compute()
    x, t = _pair("binary")
    m.update(x.sigmoid(), t)
    assert 0.0 <= float(m.compute()["dice_" + ("dataset" if aggregation == "dataset" else "image_mean")]) <= 1.0
    m.reset()
    with pytest.raises(ValueError, match=_exact(_NO_UPDATE)):
        m.compute()


def test_ap_error_bound_before_update_raises():
    m = M.SegmentationMetrics(["ap"])
    with pytest.raises(ValueError, match=_exact(_NO_UPDATE.replace("`compute`", "`ap_error_bound`"))):
        m.ap_error_bound()
    x, t = _pair("binary")
    m.update(x.sigmoid(), t)
    assert bool((m.ap_error_bound() >= 0).all())


def test_failed_update_does_not_count_as_seen():
    m = M.SegmentationMetrics(["dice"])
    with pytest.raises(ValueError):
        m.update(torch.rand(2, 1, 4, 4), torch.full((2, 4, 4), 3))
    with pytest.raises(ValueError, match=_exact(_NO_UPDATE)):
        m.compute()


def test_torchmetrics_adapter_compute_before_update_raises():
    pytest.importorskip("torchmetrics")
    from seglosses.metrics import TorchmetricsSegmentationMetrics

    m = TorchmetricsSegmentationMetrics(["dice"])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=_exact(_NO_UPDATE)):
        m.compute()


# ----------------------------------------------------------------------------- helpers

def _accepts(name: str):
    import inspect

    from seglosses.registry import resolve

    return inspect.signature(resolve(name).cls).parameters


def _takes_mode(name: str, mode: str) -> bool:
    params = _accepts(name)
    if "mode" not in params:
        return mode == "multiclass"
    try:
        x, t = _pair(mode)
        _loss(name, mode=mode)(x, t)
    except ValueError as e:
        return "mode" not in str(e)
    return True


# ----------------------------------------------------------------------------- class weights of the wrong kind

def _cls(name):
    from seglosses.registry import resolve

    return resolve(name).cls


_SCHEME_LOSSES = {"cross_entropy", "topk", "focal", "distance_penalized_ce", "exp_log", "margin_calibration"}


@pytest.mark.parametrize("name", [e.name for e in ENTRIES if "class_weights" in _accepts(e.name)])
def test_class_weights_of_the_wrong_kind_name_the_argument(name):
    mode = dict(mode="multiclass") if "mode" in _accepts(name) else {}
    x, t = _pair("multiclass")
    if name in _SCHEME_LOSSES:  # these take weight scheme names: the message lists them
        with pytest.raises(ValueError, match=r"^`class_weights` must be one of 'inverse_frequency'.*; got 'foo'$"):
            _cls(name)(class_weights="foo", **mode)(x, t)
    else:
        with pytest.raises(TypeError, match=_exact(
                "`class_weights` must be None or one weight per class (a sequence of numbers or a tensor) for this "
                "loss, which takes no weight scheme name; got 'foo'")):
            _cls(name)(class_weights="foo", **mode)(x, t)
    for bad in (["a", "b", "c"], {"a": 1.0}, [1.0, None, 2.0], object()):
        with pytest.raises(TypeError, match=r"^`class_weights` must be a sequence of real numbers; got "):
            _cls(name)(class_weights=bad, **mode)(x, t)
    with pytest.raises(TypeError, match=r"^`class_weights` must "):
        _cls(name)(class_weights=torch.ones(3, dtype=torch.complex64), **mode)(x, t)
    with pytest.raises(ValueError, match=_exact("`class_weights` must be one-dimensional (one value per class or "
                                                "dim); got shape (3, 1)")):
        _cls(name)(class_weights=[[1.0], [2.0], [3.0]], **mode)(x, t)


def test_other_sequence_arguments_name_themselves():
    x, t = _pair("multiclass")
    with pytest.raises(TypeError, match=r"^`class_counts` must be a sequence of real numbers; got 'foo'$"):
        sl.MarginCalibrationLoss(mode="multiclass", class_counts="foo")(x, t)
    with pytest.raises(TypeError, match=r"^`class_counts` must be a sequence of real numbers; got \['a', 'b', 'c'\]$"):
        sl.MarginCalibrationLoss(mode="multiclass", class_counts=["a", "b", "c"])
    with pytest.raises(TypeError, match=r"^`spacing` must be a sequence of real numbers; got \{'x': 1\}$"):
        sl.BoundaryLoss(spacing={"x": 1})
    from seglosses.functional.margin import margin_offsets

    with pytest.raises(TypeError, match=r"^`class_counts` must be a sequence of real numbers; got 'ab'$"):
        margin_offsets("ab")


@pytest.mark.parametrize("empty", [float("inf"), -float("inf")])
def test_metric_empty_must_be_finite(empty):
    # a score for an undefined case is a finite number or NaN; an infinite one would poison every mean
    from seglosses import metrics

    p = torch.rand(2, 1, 4, 4)
    g = (torch.rand(2, 1, 4, 4) > 0.5).long()
    with pytest.raises(ValueError, match=r"`empty` must be a finite number or 'nan'; got -?inf"):
        metrics.dice(p, g, empty=empty)
    with pytest.raises(ValueError, match="`empty` must be a finite number"):
        metrics.SegmentationMetrics({"dice": {"empty": empty}})
    # a missing surface may still be scored as an infinite distance
    miss = metrics.hausdorff(p > 0.5, torch.zeros(2, 4, 4, dtype=torch.long), missing=float("inf"))
    assert torch.isinf(miss).all()
