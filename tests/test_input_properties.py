"""Property-based tests of the input contract (hypothesis).

For random shapes (1D-3D spatial, size-1 and zero-size dims, empty batches), dtypes
(float16/bfloat16/float32/float64 inputs; integer, bool and float targets), modes,
ignore indices, value ranges and every registered loss, a call either

* gives a finite loss whose backward gives finite gradients (input, and a float
  target that requires grad), or
* raises a ``ValueError`` / ``TypeError`` whose message names an argument in backticks;

never another exception type, never NaN. The metrics: a value without NaN (``inf``
only where the surface metrics document it), or the same kind of error.

The default profile keeps the suite quick; ``-m slow`` runs a larger one.
"""
from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seglosses as sl
from seglosses import metrics as M
from seglosses.registry import ENTRIES, resolve

NAMES = [e.name for e in ENTRIES]
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
ARG = re.compile(r"`\w+`")

FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LARGE = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])


@st.composite
def pairs(draw, with_loss: bool = True):
    mode = draw(st.sampled_from(["binary", "multiclass", "multilabel"]))
    b = draw(st.sampled_from([1, 1, 2, 2, 3, 1, 2, 0]))
    c = 1 if mode == "binary" else draw(st.integers(2 if mode == "multiclass" else 1, 4))
    if draw(st.integers(0, 19)) == 0:  # now and then a channel count that does not fit the mode
        c = draw(st.integers(0, 3))
    nd = draw(st.integers(1, 3))
    spatial = tuple(draw(st.lists(st.sampled_from([1, 2, 3, 5, 1, 2, 3, 5, 4, 0]), min_size=nd, max_size=nd)))
    shape = (b, c) + spatial
    dtype = draw(st.sampled_from(FLOATS))
    scale = draw(st.sampled_from([1.0, 1.0, 10.0, 1e4]))
    from_logits = draw(st.booleans())
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(shape, generator=g) * scale
    if not from_logits:
        x = torch.rand(shape, generator=g) * draw(st.sampled_from([1.0, 1.0, 1.5]))  # sometimes out of [0, 1]
    x = x.to(dtype)
    kind = draw(st.sampled_from(["labels", "bool", "soft", "onehot", "int_dense"]))
    ncls = max(c, 2)
    if kind == "labels":
        t = torch.randint(0, ncls, (b,) + spatial, generator=g)
    elif kind == "bool":
        t = torch.randint(0, 2, ((b,) + spatial) if mode == "binary" else shape, generator=g).bool()
    elif kind == "soft":
        t = torch.rand(shape, generator=g).to(draw(st.sampled_from(FLOATS)))
    elif kind == "onehot":
        t = torch.nn.functional.one_hot(torch.randint(0, max(c, 1), (b,) + spatial, generator=g),
                                        max(c, 1)).movedim(-1, 1).float()
    else:
        t = torch.randint(0, 2, shape, generator=g)
    ignore_index = draw(st.sampled_from([None, None, 255, -100, 0, 1, 2]))
    if ignore_index is not None and t.numel() and not t.dtype == torch.bool and draw(st.booleans()):
        t = t.clone().contiguous()
        t.view(-1)[0] = ignore_index  # (a float target holding 255: only ignore_index makes it valid)
    name = draw(st.sampled_from(NAMES)) if with_loss else None
    target_grad = t.is_floating_point() and draw(st.booleans())
    options = dict(include_background=draw(st.booleans()), domain=draw(st.sampled_from(["image", "batch"])),
                   reduction=draw(st.sampled_from(["mean", "sum", "none"])))
    return dict(mode=mode, x=x, t=t, from_logits=from_logits, ignore_index=ignore_index, name=name,
                target_grad=target_grad, options=options)


def _check_error(err: Exception) -> None:
    assert isinstance(err, (ValueError, TypeError)), f"{type(err).__name__}: {err}"
    assert ARG.search(str(err)), f"the message names no argument: {err}"


def _run_loss(case) -> None:
    cls = resolve(case["name"]).cls
    params = cls.__init__.__signature__.parameters
    kw = {k: case[k] for k in ("mode", "from_logits", "ignore_index") if k in params}
    kw.update({k: v for k, v in case["options"].items() if k in params})
    x = case["x"].clone().requires_grad_()
    t = case["t"].clone().requires_grad_() if case["target_grad"] else case["t"]
    try:
        loss = cls(**kw)(x, t)
    except Exception as err:  # noqa: BLE001 - the contract says which kinds may come out
        _check_error(err)
        return
    assert torch.isfinite(loss.float()).all(), f"{case['name']} gave {loss} for {_describe(case)}"
    if loss.requires_grad:
        loss.sum().backward()
    for name, v in (("input", x), ("target", t)):
        if v.grad is not None and not torch.isfinite(v.grad.float()).all():
            # only a gradient beyond the dtype's range may overflow (half precision): the
            # same call in float64 says how large the true gradient is
            big = _float64_grad(cls, kw, case, name)
            limit = torch.finfo(v.dtype).max
            bad = ~torch.isfinite(v.grad.float())
            assert (big.abs()[bad] > limit / 2).all(), f"{case['name']}: non-finite {name} gradient, {_describe(case)}"


def _float64_grad(cls, kw, case, which):
    x = case["x"].double().requires_grad_()
    t = case["t"].double() if case["t"].is_floating_point() else case["t"]
    if which == "target":
        t = t.requires_grad_()
    cls(**kw)(x, t).sum().backward()
    return (x if which == "input" else t).grad


def _describe(case) -> str:
    return (f"mode={case['mode']}, input {tuple(case['x'].shape)} {case['x'].dtype}, target "
            f"{tuple(case['t'].shape)} {case['t'].dtype}, from_logits={case['from_logits']}, "
            f"ignore_index={case['ignore_index']}, {case.get('options')}")


@FAST
@given(pairs())
def test_losses_give_finite_values_and_gradients_or_a_named_error(case):
    _run_loss(case)


@pytest.mark.slow
@LARGE
@given(pairs())
def test_losses_input_contract_large_profile(case):
    _run_loss(case)


_METRICS = [M.dice, M.jaccard, M.specificity, M.pixel_accuracy, M.mean_iou, M.average_precision, M.hd95,
            M.surface_dice]
_SURFACE = {M.hd95}  # may give inf (a class missing from one side), as documented


def _run_metric(case, fn) -> None:
    x = case["x"]
    opts = {k: v for k, v in case["options"].items() if k in ("include_background", "reduction")}
    try:
        v = fn(x, case["t"], mode=case["mode"], from_logits=case["from_logits"], ignore_index=case["ignore_index"],
               **({} if fn is M.mean_iou else opts))
    except Exception as err:  # noqa: BLE001
        _check_error(err)
        return
    v = v.float()
    assert not torch.isnan(v).any(), f"{fn.__name__} gave NaN for {_describe(case)}"
    if fn not in _SURFACE:
        assert torch.isfinite(v).all(), f"{fn.__name__} gave {v} for {_describe(case)}"


@FAST
@given(pairs(with_loss=False), st.sampled_from(_METRICS))
def test_metrics_give_a_value_or_a_named_error(case, fn):
    _run_metric(case, fn)


@FAST
@given(pairs(with_loss=False))
def test_streaming_metrics_give_a_value_or_a_named_error(case):
    c = case["x"].shape[1] if case["x"].dim() >= 2 else 1
    try:
        m = M.SegmentationMetrics(["dice", "ap", "pixel_accuracy"], max(c, 1) if case["mode"] != "binary" else None,
                                  mode=case["mode"], from_logits=case["from_logits"],
                                  ignore_index=case["ignore_index"])
        m.update(case["x"], case["t"])
        out = m.compute()
    except Exception as err:  # noqa: BLE001
        _check_error(err)
        return
    for k, v in out.items():
        assert torch.isfinite(v).all() or (k.endswith("image_mean") and torch.isnan(v).all()), (k, v)


@st.composite
def masks(draw):
    nd = draw(st.integers(1, 3))
    shape = (draw(st.sampled_from([0, 1, 2])),) + tuple(draw(st.lists(st.sampled_from([0, 1, 2, 4]), min_size=nd,
                                                                         max_size=nd)))
    dtype = draw(st.sampled_from([torch.bool, torch.uint8, torch.int64, torch.float32]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    m = torch.randint(0, draw(st.sampled_from([2, 2, 3])), shape, generator=g).to(dtype)
    spacing = draw(st.sampled_from([None, 1.0, 0.5, 0.0, -1.0, math.inf, "x"]))
    return m, spacing


@FAST
@given(masks(), st.sampled_from(["edt", "signed_distance", "two_sided_distance"]))
def test_distance_transforms_give_finite_maps_or_a_named_error(case, fn_name):
    mask, spacing = case
    fn = getattr(sl.distance, fn_name)
    try:
        d = fn(mask, spacing)
    except Exception as err:  # noqa: BLE001
        _check_error(err)
        return
    assert d.shape == mask.shape and torch.isfinite(d).all()


@pytest.mark.slow
@LARGE
@given(pairs(with_loss=False), st.sampled_from(_METRICS))
def test_metrics_input_contract_large_profile(case, fn):
    _run_metric(case, fn)
