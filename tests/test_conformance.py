"""The generic suite: every registry entry, every mode it accepts, 2D and 3D.

Each loss class declares its contract (``info``: modes, batching, ``value_range``,
``minimum_at_truth``); this suite runs every declared mode and checks the declarations,
together with gradcheck, empty masks, ignore_index, half precision and the
module/function equivalence. Per-family files hold what is special about a family.
"""
from __future__ import annotations

import inspect

import pytest
import torch

import seglosses as sl
from seglosses import registry

ENTRIES = registry.ENTRIES
MODES = ("binary", "multiclass", "multilabel")


def _params(entry):
    return inspect.signature(entry.cls.function).parameters


def _make(mode, spatial, b=2, c=3, dtype=torch.float64):
    if mode == "binary":
        x = torch.randn(b, 1, *spatial, dtype=dtype)
        t = torch.randint(0, 2, (b, *spatial))
        t.view(b, -1)[:, 0] = 1  # every image has a positive
        t.view(b, -1)[:, 1] = 0
    elif mode == "multiclass":
        x = torch.randn(b, c, *spatial, dtype=dtype)
        t = torch.randint(0, c, (b, *spatial))
        t.view(b, -1)[:, :c] = torch.arange(c)
    else:
        x = torch.randn(b, c, *spatial, dtype=dtype)
        t = torch.randint(0, 2, (b, c, *spatial))
        t.view(b, c, -1)[:, :, 0] = 1
        t.view(b, c, -1)[:, :, 1] = 0
    return x, t


CASES = [(e, m) for e in ENTRIES for m in e.cls.info.modes]
IDS = [f"{e.name}-{m}" for e, m in CASES]


def _perfect_logits(mode, t, c=3, scale=12.0):
    if mode == "binary":
        return (2.0 * t[:, None].double() - 1) * scale
    if mode == "multiclass":
        return (2.0 * torch.nn.functional.one_hot(t, c).movedim(-1, 1).double() - 1) * scale
    return (2.0 * t.double() - 1) * scale


def test_every_entry_supports_binary_and_multiclass():
    for e in ENTRIES:
        assert any(m == "binary" for ee, m in CASES if ee is e) or any(
            m == "multiclass" for ee, m in CASES if ee is e
        ), e.name


def test_registry_matches_exports():
    exported = {getattr(sl, n) for n in sl.__all__ if isinstance(getattr(sl, n), type)}
    registered = {e.cls for e in ENTRIES}
    assert registered <= exported
    for e in ENTRIES:
        assert e.cls.info.name == e.name and e.cls().name == e.name
        assert e.description and len(e.description) < 120
        assert getattr(sl.functional, e.cls.function.__name__) is e.cls.function
    names = [n for n, _ in sl.list_losses()]
    assert names == [e.name for e in ENTRIES] and len(set(names)) == len(names)


#: (entry, mode, extra config): every case, and every case again with ``log_loss=True``
#: where the loss has that option (its range is then that of -log of an index).
RANGE_CASES = [(e, m, {}) for e, m in CASES] + [(e, m, {"log_loss": True}) for e, m in CASES
                                                 if "log_loss" in inspect.signature(e.cls.function).parameters]
RANGE_IDS = [f"{e.name}-{m}" + "".join(f"-{k}" for k in kw) for e, m, kw in RANGE_CASES]


@pytest.mark.parametrize("entry, mode, config", RANGE_CASES, ids=RANGE_IDS)
@pytest.mark.parametrize("spatial", [(4, 5), (2, 3, 4)], ids=["2d", "3d"])
def test_value_range_module_equals_function(entry, mode, config, spatial):
    x, t = _make(mode, spatial)
    loss = entry.cls(mode=mode, **config)
    v = loss(x, t)
    assert v.dim() == 0 and torch.isfinite(v)
    lo, hi = loss.value_range
    assert (lo, hi) == entry.cls.info.range_for(loss.config)
    assert lo - 1e-9 <= v.item() <= hi + 1e-9
    torch.testing.assert_close(v, entry.cls.function(x, t, mode=mode, **config))
    # the reduced loss reaches above 1 under log_loss for a bad enough prediction, so the
    # declared range must say so; a worst prediction stays inside it
    worst = -_perfect_logits(mode, t, scale=30.0)
    w = loss(worst.to(x.dtype), t).item()
    assert lo - 1e-9 <= w <= hi + 1e-9, (entry.name, config, w, (lo, hi))


def test_log_loss_range_is_declared():
    """-log of an index floored at 1e-7: [0, -log 1e-7], not the [0, 1] of 1 - I."""
    for name in ("dice", "iou", "tversky"):
        cls = registry.resolve(name).cls
        assert cls(mode="binary").value_range == (0.0, 1.0)
        lo, hi = cls(mode="binary", log_loss=True).value_range
        assert lo == 0.0 and hi == pytest.approx(-__import__("math").log(1e-7))
        x = torch.full((1, 1, 4, 4), -30.0, dtype=torch.float64)  # predicts nothing
        t = torch.ones(1, 4, 4, dtype=torch.long)
        v = cls(mode="binary", log_loss=True, smooth=0.0)(x, t).item()
        assert 1.0 < v <= hi + 1e-9


@pytest.mark.parametrize("entry, mode", CASES, ids=IDS)
def test_gradcheck_float64(entry, mode):
    x, t = _make(mode, (3, 4))
    x = (x * 0.7).requires_grad_(True)
    fn = entry.cls(mode=mode)
    assert torch.autograd.gradcheck(lambda z: fn(z, t), (x,), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("entry, mode", CASES, ids=IDS)
def test_minimum_at_truth(entry, mode):
    x, t = _make(mode, (5, 6))
    fn = entry.cls(mode=mode)
    # logits of +-30: p = 1 - 1e-13, close enough for losses with fractional powers (ELL)
    perfect = fn(_perfect_logits(mode, t, scale=30.0), t)
    if not entry.cls.info.minimum_at_truth:
        pytest.skip(f"{entry.name} is not minimised by the truth (a regulariser)")
    for _ in range(5):
        assert perfect.item() <= fn(torch.randn_like(x) * 3, t).item() + 1e-9
    if fn.value_range[0] == 0.0:
        assert perfect.item() == pytest.approx(0.0, abs=2e-3)


@pytest.mark.parametrize("entry, mode", CASES, ids=IDS)
@pytest.mark.parametrize("domain", ["image", "batch"])
def test_empty_masks_finite_with_finite_gradients(entry, mode, domain):
    if "domain" not in _params(entry) and domain == "batch":
        pytest.skip("no domain argument")
    kw = {"domain": domain} if "domain" in _params(entry) else {}
    x, t = _make(mode, (4, 5))
    t = torch.zeros_like(t)
    x.requires_grad_(True)
    v = entry.cls(mode=mode, **kw)(x, t)
    v.backward()
    assert torch.isfinite(v), entry.name
    assert bool(torch.isfinite(x.grad).all()), entry.name


@pytest.mark.parametrize("entry, mode", [c for c in CASES if c[1] != "multilabel"],
                         ids=[i for c, i in zip(CASES, IDS) if c[1] != "multilabel"])
def test_ignored_pixels_have_no_influence(entry, mode):
    if "ignore_index" not in _params(entry):
        pytest.skip("no ignore_index")
    x, t = _make(mode, (5, 6))
    t = t.clone()
    t[:, 0, :] = 255  # first row ignored
    fn = entry.cls(mode=mode, ignore_index=255)
    x1 = x.clone().requires_grad_(True)
    v1 = fn(x1, t)
    v1.backward()
    x2 = x.clone()
    x2[:, :, 0, :] = torch.randn_like(x2[:, :, 0, :]) * 5
    v2 = fn(x2, t)
    torch.testing.assert_close(v1.detach(), v2)
    assert float(x1.grad[:, :, 0, :].abs().max()) == 0.0
    assert torch.isfinite(v1)


@pytest.mark.parametrize("entry, mode", [c for c in CASES if c[1] == "multiclass"],
                         ids=[i for c, i in zip(CASES, IDS) if c[1] == "multiclass"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_close_to_float32(entry, mode, dtype):
    x, t = _make(mode, (16, 16), dtype=torch.float32)
    fn = entry.cls(mode=mode)
    ref = fn(x, t)
    xh = x.to(dtype).requires_grad_(True)
    v = fn(xh, t)
    v.backward()
    assert bool(torch.isfinite(xh.grad).all())
    # inputs rounded to half precision: the loss moves by about the rounding of the logits
    tol = 1e-2 * max(1.0, abs(ref.item())) if dtype == torch.bfloat16 else 2e-3 * max(1.0, abs(ref.item()))
    assert abs(float(v) - ref.item()) < tol, (entry.name, float(v), ref.item())


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_bad_mode_and_reduction_named(entry):
    with pytest.raises(ValueError, match="`mode` must be one of"):
        entry.cls(mode="multi")
    if "reduction" in _params(entry):
        with pytest.raises(ValueError, match="`reduction` must be one of"):
            entry.cls(reduction="avg")


def test_docstrings_have_formula_and_source():
    for e in ENTRIES:
        doc = e.cls.function.__doc__ or ""
        assert ".. math::" in doc, e.name
        assert any(k in doc for k in ("seed 0", "et al", "20")), e.name
        assert (e.cls.__doc__ or "").strip(), e.name


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_declared_modes_are_the_accepted_ones(entry):
    """A mode outside ``info.modes`` is refused with a ValueError naming `mode`."""
    for mode in MODES:
        x, t = _make(mode, (3, 4))
        if mode in entry.cls.info.modes:
            assert torch.isfinite(entry.cls(mode=mode)(x, t))
        else:
            with pytest.raises(ValueError, match="`mode`"):
                entry.cls(mode=mode)(x, t)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_declared_batching_matches_the_signature(entry):
    """Statistics losses take `domain` and `sync` (the accumulator's and DDP's hooks);
    the others take no `sync`."""
    params = _params(entry)
    info = entry.cls.info
    assert info.differentiable
    if info.batching == "statistics":
        assert "domain" in params and "sync" in params and "reduction" in params, entry.name
    else:
        assert "sync" not in params, entry.name


def test_contract_rejects_bad_declarations():
    from seglosses._contract import LossInfo

    with pytest.raises(ValueError, match="`batching` must be one of"):
        LossInfo("x", "pixels")
    with pytest.raises(ValueError, match="`modes` must be one of"):
        LossInfo("x", "statistics", modes=("binary", "multi"))
    with pytest.raises(ValueError, match="`value_range` must be"):
        LossInfo("x", "statistics", value_range=(1.0, 0.0))
