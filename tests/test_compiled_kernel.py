"""The compiled statistics kernel (``seglosses.use_kernel("compiled")``) agrees with the eager one.

Every comparison runs the same call under ``use_kernel("eager")`` and
``use_kernel("compiled")`` and compares values and gradients: the moments of
:func:`seglosses._stats.moments` (every moment alone and in the combinations the
losses use, for every activation and target layout, with and without
``ignore_index``, in float64, float32 and bfloat16), a float64 gradcheck through the
compiled kernel, every region loss of the registry (both domains, 2D and 3D), and the
overlap metrics that call the kernel. Also: the kernel selection (``set_kernel``,
``use_kernel``, ``SEGLOSSES_KERNEL``) and the input errors under the compiled kernel.

Slow (each new kernel signature compiles for a second or two): run with
``python -m pytest -m slow tests/test_compiled_kernel.py``. To keep the compile count
down, every case flattens to ``[2, C, 120]`` pixels (2D ``8 x 15`` and 3D ``4 x 6 x 5``
give the same kernel signature) and the moments are asked for as the losses ask (value
checks deferred into the kernel), so the 3D cases and the losses reuse the code compiled
for the moment cases. The fused functions themselves are checked term by term against
the eager kernel, for every moment set and target kind, without compiling, in
``tests/test_fused.py``.
"""
from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass
from typing import Dict, Tuple

import pytest
import torch
import torch.nn.functional as tnf

import seglosses
from seglosses import _fused, _stats, registry
from seglosses._inputs import canonicalize
from seglosses._stats import MOMENTS, moments
from seglosses.functional import dice_loss, sensitivity_specificity_loss, soft_confusion, tversky_loss
from seglosses.metrics import SegmentationMetrics
from seglosses.metrics import overlap as overlap_metrics

pytestmark = pytest.mark.slow

IGNORE = 255
SPATIAL_2D = (8, 15)    # N = 120, non-square, odd width
SPATIAL_3D = (4, 6, 5)  # N = 120, non-cubic: the same compiled signature as 2D
SPATIALS = {"2d": SPATIAL_2D, "3d": SPATIAL_3D}
P_MOMENTS = ("p", "pg", "pp", "ppg", "pgg", "absdiff")  # the moments with a gradient

TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
}


@dataclass(frozen=True)
class Case:
    """An (input, target) layout: mode, channels, target kind, logits or probabilities."""

    mode: str
    channels: int
    target: str  # "labels" (integer), "onehot" or "soft" (float)
    from_logits: bool = True


CASES: Dict[str, Case] = {
    "sigmoid-binary": Case("binary", 1, "labels"),
    "sigmoid-multilabel": Case("multilabel", 3, "labels"),
    "softmax-labels-c2": Case("multiclass", 2, "labels"),
    "softmax-labels-c4": Case("multiclass", 4, "labels"),
    "softmax-labels-c20": Case("multiclass", 20, "labels"),
    "softmax-onehot-c2": Case("multiclass", 2, "onehot"),
    "softmax-soft-c4": Case("multiclass", 4, "soft"),
    "softmax-soft-c20": Case("multiclass", 20, "soft"),
    "probs-labels-c4": Case("multiclass", 4, "labels", from_logits=False),
    "probs-multilabel-soft": Case("multilabel", 3, "soft", from_logits=False),
}
assert CASES["softmax-labels-c20"].channels > _fused.UNROLL_MAX >= CASES["softmax-soft-c4"].channels


def make_pair(case: Case, spatial=SPATIAL_2D, ignore: bool = False, dtype=torch.float64, seed: int = 0):
    """A prediction, a target and the canonicalize keywords for ``case``.

    With ``ignore`` about a fifth of the pixels carry ``IGNORE`` (in one channel of a
    dense target, which removes the pixel from every channel).
    """
    gen = torch.Generator().manual_seed(seed)
    b, c = 2, case.channels
    logits = 2 * torch.randn(b, c, *spatial, generator=gen, dtype=torch.float64)
    if case.from_logits:
        x = logits
    else:
        x = torch.softmax(logits, 1) if case.mode == "multiclass" else torch.sigmoid(logits)
    tdtype = torch.float64 if dtype == torch.float64 else torch.float32
    if case.target == "labels":
        if case.mode == "multilabel":
            t = torch.randint(0, 2, (b, c, *spatial), generator=gen)
        else:
            t = torch.randint(0, 2 if case.mode == "binary" else c, (b, *spatial), generator=gen)
    elif case.target == "onehot":
        t = tnf.one_hot(torch.randint(0, c, (b, *spatial), generator=gen), c).movedim(-1, 1).to(tdtype)
    else:
        r = torch.randn(b, c, *spatial, generator=gen, dtype=torch.float64)
        t = (torch.softmax(r, 1) if case.mode == "multiclass" else torch.sigmoid(r)).to(tdtype)
    if ignore:
        drop = torch.rand((b, *spatial), generator=gen) < 0.2
        if t.dim() == x.dim():
            t[:, 0][drop] = IGNORE
        else:
            t[drop] = IGNORE
    kw = dict(mode=case.mode, from_logits=case.from_logits, ignore_index=IGNORE if ignore else None)
    return x.to(dtype), t, kw


def upstream(key: str, like: torch.Tensor) -> torch.Tensor:
    """Fixed weights for a ``[B, C]`` output (distinct per key): a non-uniform upstream gradient."""
    gen = torch.Generator().manual_seed(sum(map(ord, key)))
    return (0.5 + torch.rand(like.shape, generator=gen, dtype=torch.float64)).to(like.dtype)


@pytest.fixture(autouse=True)
def _kernel_state(monkeypatch):
    """Every test starts from the default kernel and leaves no selection behind."""
    monkeypatch.delenv("SEGLOSSES_KERNEL", raising=False)
    monkeypatch.setattr(_fused, "_state", {})
    yield


@pytest.fixture(scope="module", autouse=True)
def _recompile_limit():
    """This file compiles about a hundred signatures of the kernel's two functions in one
    process. Each signature has its own compile cache (so the default limit of 8 variants
    per cache binds only on shapes, see ``test_many_signatures_in_one_process``); the limits
    are raised here so that shape variants of a signature never fall back."""
    torch._dynamo.reset()
    with torch._dynamo.config.patch(recompile_limit=1024, accumulated_recompile_limit=4096):
        yield
    torch._dynamo.reset()


@pytest.fixture
def spy(monkeypatch):
    """Counts the calls of the compiled entry points (so a comparison cannot pass by
    running the eager kernel twice)."""
    calls = {"forward": 0, "backward": 0}

    def wrap(fn, key):
        def run(*args):
            calls[key] += 1
            return fn(*args)
        return run

    monkeypatch.setattr(_stats, "compiled_forward", wrap(_stats.compiled_forward, "forward"))
    monkeypatch.setattr(_stats, "compiled_backward", wrap(_stats.compiled_backward, "backward"))
    return calls


def run_both(fn, x: torch.Tensor, grad: bool = True):
    """``fn(x)`` (a dict of tensors) and ``∂(Σ weights * outputs)/∂x`` under each kernel."""
    out = {}
    for kernel in ("eager", "compiled"):
        xx = x.detach().clone().requires_grad_(grad)
        with seglosses.use_kernel(kernel):
            values = fn(xx)
            diff = {k: v for k, v in values.items() if v.requires_grad}
            if diff:
                sum((upstream(k, v) * v).sum() for k, v in diff.items()).backward()
        out[kernel] = ({k: v.detach() for k, v in values.items()}, xx.grad, sorted(diff))
    return out["eager"], out["compiled"]


def assert_agree(eager, compiled, tol, grad_dtype=None) -> None:
    (ev, eg, ediff), (cv, cg, cdiff) = eager, compiled
    assert ediff == cdiff, "the same outputs carry a gradient"
    assert sorted(ev) == sorted(cv)
    for k in ev:
        assert cv[k].dtype == ev[k].dtype and cv[k].shape == ev[k].shape, k
        torch.testing.assert_close(cv[k], ev[k], **tol, msg=lambda m: f"value {k!r}: {m}")
    if eg is None:
        assert cg is None
        return
    assert cg is not None and cg.dtype == eg.dtype
    if grad_dtype is not None:
        assert cg.dtype == grad_dtype
    torch.testing.assert_close(cg.double(), eg.double(), **tol, msg=lambda m: f"gradient: {m}")


def moments_fn(target, kw, names, checks: bool = True):
    """The moments as the losses ask for them: value checks deferred into the kernel's
    pass (``checks=False``: no value checks, the kernel computes no bounds)."""
    opts = dict(defer_checks=True) if checks else dict(check_values=False)

    def fn(x):
        return moments(canonicalize(x, target, **kw, **opts), names)
    return fn


def check_moments(case_name: str, names: Tuple[str, ...], ignore: bool, dtype=torch.float64, spy=None,
                  spatial=SPATIAL_2D, tol=None, checks: bool = True) -> None:
    x, t, kw = make_pair(CASES[case_name], spatial, ignore, dtype)
    eager, compiled = run_both(moments_fn(t, kw, names, checks), x)
    if tol is None:
        tol = TOL[dtype]
    assert_agree(eager, compiled, tol, grad_dtype=dtype)
    has_grad = any(k in P_MOMENTS for k in names)
    assert bool(eager[2]) == has_grad
    if spy is not None:
        assert spy["forward"] >= 1
        assert (spy["backward"] >= 1) == has_grad


# --------------------------------------------------------------------------- moments

ALL = MOMENTS
COMBINATIONS = [("p", "g", "pg"), ("p", "g", "absdiff"), ("p", "g", "pg", "n"), ("pp", "gg", "pg")]
# The budget (a compilation per signature, a few seconds each) does not allow every
# moment set on every case. All ten moments at once, with a distinct upstream weight per
# moment, check every forward and backward term on every case (a wrong term cannot
# cancel). Each moment alone checks the kernel without the other terms (unused upstream
# gradients, or no backward at all). The combinations run on the three core cases, which
# the losses below share: sigmoid (one block), softmax unrolled over a label map, and
# softmax over C > UNROLL_MAX with a soft dense target.
CORE = ["sigmoid-binary", "softmax-labels-c4", "softmax-soft-c20"]
COMBINATION_CASES = [(case, names) for case in CORE for names in COMBINATIONS
                     # the unrolled softmax compiles slowest: there only the sets of the losses
                     if case != "softmax-labels-c4" or names in (("p", "g", "pg"), ("p", "g", "absdiff"))]


@pytest.mark.parametrize("name", MOMENTS)
def test_moment_alone(name: str, spy) -> None:
    """Each moment alone (its forward term, its backward term, or no backward)."""
    check_moments("sigmoid-binary", (name,), ignore=True, spy=spy)


@pytest.mark.parametrize("case", list(CASES))
def test_all_moments(case: str, spy) -> None:
    """All ten moments at once, every activation and target layout (with ignore_index)."""
    check_moments(case, ALL, ignore=True, spy=spy)


def test_all_moments_all_pixels_no_checks(spy) -> None:
    """No ignore mask and no value checks (``check_values=False``: no bounds in the kernel)."""
    check_moments("softmax-soft-c20", ALL, ignore=False, checks=False, spy=spy)


@pytest.mark.parametrize("case,names", COMBINATION_CASES, ids=[f"{c}-{'-'.join(n)}" for c, n in COMBINATION_CASES])
def test_moment_combinations(case: str, names, spy) -> None:
    """The combinations the losses and metrics ask for (with ignore_index)."""
    check_moments(case, names, ignore=True, spy=spy)


def test_moments_in_any_order() -> None:
    """The outputs come back under their names whatever the order asked."""
    x, t, kw = make_pair(CASES["softmax-soft-c20"], ignore=True)
    with seglosses.use_kernel("compiled"):
        a = moments_fn(t, kw, ("pp", "gg", "pg"))(x)
        b = moments_fn(t, kw, ("pg", "pp", "gg"))(x)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-12, atol=1e-12)


def test_all_moments_float32(spy) -> None:
    check_moments("softmax-labels-c4", ALL, ignore=True, dtype=torch.float32, spy=spy)


@pytest.mark.parametrize("case", ["sigmoid-binary", "softmax-soft-c20"])
def test_all_moments_bfloat16(case: str, spy) -> None:
    """bfloat16 input: sums in float32 (the eager kernel rounds the probabilities to
    bfloat16, the compiled one keeps them in float32: a loose tolerance), and the
    gradient in bfloat16. (Without ``absdiff`` for a soft target: where p and g differ
    by less than the rounding, the two kernels take sign(p - g) on opposite sides.)"""
    names = ALL if CASES[case].target == "labels" else tuple(k for k in ALL if k != "absdiff")
    x, t, kw = make_pair(CASES[case], ignore=True, dtype=torch.bfloat16)
    eager, compiled = run_both(moments_fn(t, kw, names), x)
    assert all(v.dtype == torch.float32 for v in compiled[0].values())
    assert compiled[1].dtype == torch.bfloat16
    # against float64 statistics of the same bfloat16 input, both kernels are close
    with seglosses.use_kernel("eager"):
        exact = moments_fn(t.double() if t.is_floating_point() else t, kw, names)(x.double())
    for k in names:
        scale = float(exact[k].abs().max()) + 1.0
        for got in (eager[0][k], compiled[0][k]):
            torch.testing.assert_close(got.double(), exact[k], rtol=0, atol=1e-2 * scale)
    assert_agree(eager, compiled, dict(rtol=2e-2, atol=2e-2 * float(eager[1].abs().max())),
                 grad_dtype=torch.bfloat16)
    assert spy["forward"] >= 1 and spy["backward"] >= 1


def test_unused_moment_has_no_gradient_term() -> None:
    """A differentiable moment that the loss does not use (upstream gradient None)."""
    x, t, kw = make_pair(CASES["softmax-labels-c4"], ignore=True)
    grads = {}
    for kernel in ("eager", "compiled"):
        xx = x.clone().requires_grad_()
        with seglosses.use_kernel(kernel):
            m = moments_fn(t, kw, ("p", "g", "pg"))(xx)
            (upstream("pg", m["pg"]) * m["pg"]).sum().backward()
        grads[kernel] = xx.grad
    torch.testing.assert_close(grads["compiled"], grads["eager"], **TOL[torch.float64])


SMALL = {"2d": (3, 5), "3d": (2, 3, 4)}  # other pixel counts: the dynamic-shape kernel


def test_other_image_sizes_agree(spy) -> None:
    """Other pixel counts: the recompiled (dynamic-shape) kernel agrees too."""
    for spatial in ((7, 9), *SMALL.values()):
        check_moments("softmax-labels-c4", ("p", "g", "pg"), ignore=True, spatial=spatial, spy=spy)


# --------------------------------------------------------------------------- gradcheck
# (the small sizes reuse the dynamic-shape kernel of the test above)


@pytest.mark.parametrize("dims", list(SMALL))
def test_gradcheck_dice_multiclass_ignore_index(dims: str, spy) -> None:
    x, t, kw = make_pair(CASES["softmax-labels-c4"], SMALL[dims], ignore=True)
    with seglosses.use_kernel("compiled"):
        assert torch.autograd.gradcheck(
            lambda v: dice_loss(v, t, reduction="none", **kw), (x.requires_grad_(),), eps=1e-6, atol=1e-8, rtol=1e-6,
        )
    assert spy["forward"] > 1 and spy["backward"] >= 1


@pytest.mark.parametrize("dims", list(SPATIALS))
def test_gradcheck_tversky_binary(dims: str, spy) -> None:
    x, t, kw = make_pair(CASES["sigmoid-binary"], SPATIALS[dims], ignore=True)
    with seglosses.use_kernel("compiled"):
        assert torch.autograd.gradcheck(
            lambda v: tversky_loss(v, t, alpha=0.3, beta=0.7, reduction="none", **kw),
            (x.requires_grad_(),), eps=1e-6, atol=1e-8, rtol=1e-6,
        )
    assert spy["forward"] > 1 and spy["backward"] >= 1


def test_gradcheck_squared_dice_soft_target(spy) -> None:
    """Softmax over C > UNROLL_MAX, soft dense target, squared denominator (fast mode:
    random projections of the Jacobian, this input has 4800 elements)."""
    x, t, kw = make_pair(CASES["softmax-soft-c20"], ignore=True)
    with seglosses.use_kernel("compiled"):
        assert torch.autograd.gradcheck(
            lambda v: dice_loss(v, t, squared_denominator=True, reduction="none", **kw),
            (x.requires_grad_(),), eps=1e-6, atol=1e-8, rtol=1e-6, fast_mode=True,
        )
    assert spy["backward"] >= 1


# --------------------------------------------------------------------------- region losses

REGION = [e for e in registry.ENTRIES if e.family == "region"]
LOSS_CASES = CORE  # with ignore_index: the moment signatures compiled above


def test_region_entries() -> None:
    """The registry's region family is what the tests below run over."""
    names = {e.name for e in REGION}
    assert names >= {"dice", "iou", "tversky", "focal_tversky", "generalized_dice", "sensitivity_specificity"}


def loss_fn(loss, t):
    def fn(x):
        return {"loss": loss(x, t)}
    return fn


# (not sensitivity_specificity over the unrolled softmax: its eight moments there are the
# slowest compilation of the file, ~20 s with the batch domain; all ten moments of that
# case are compared above, and the loss runs on the other two cases)
REGION_CASES = [(e, c) for e in REGION for c in LOSS_CASES
                if not (e.name == "sensitivity_specificity" and c == "softmax-labels-c4")]


@pytest.mark.parametrize("domain", ["image", "batch"])
@pytest.mark.parametrize("entry,case", REGION_CASES, ids=[f"{e.name}-{c}" for e, c in REGION_CASES])
def test_region_loss(entry, case: str, domain: str, spy) -> None:
    """Every region loss of the registry, per item and class (``reduction="none"``) and
    reduced, 2D and 3D."""
    for spatial in SPATIALS.values():
        x, t, kw = make_pair(CASES[case], spatial, ignore=True)
        for reduction in ("none", "mean"):
            loss = entry.cls(domain=domain, reduction=reduction, **kw)
            eager, compiled = run_both(loss_fn(loss, t), x)
            assert eager[2] == ["loss"]
            assert_agree(eager, compiled, TOL[torch.float64])
    assert spy["forward"] >= 4 and spy["backward"] >= 4


LOSS_OPTIONS = [
    ("dice", dict(squared_denominator=True)),
    ("dice", dict(soft_form=True)),
    ("tversky", dict(soft_form=True, alpha=0.2, beta=0.8)),
    ("iou", dict(include_background=False, class_weights=[float(k) for k in range(1, 20)])),
    ("focal_tversky", dict(gamma=0.75, include_background=False)),
    ("generalized_dice", dict(weight_type="simple")),
    ("sensitivity_specificity", dict(w=0.3)),
]


@pytest.mark.parametrize("domain", ["image", "batch"])
@pytest.mark.parametrize("name,options", LOSS_OPTIONS, ids=[f"{n}-{'-'.join(o)}" for n, o in LOSS_OPTIONS])
def test_region_loss_options_soft_target(name: str, options, domain: str, spy) -> None:
    """Options that change the moments (squared denominator, soft form) or their use,
    on a soft multiclass target with ignore_index, 2D and 3D."""
    for spatial in SPATIALS.values():
        x, t, kw = make_pair(CASES["softmax-soft-c20"], spatial, ignore=True)
        loss = registry.resolve(name).cls(domain=domain, reduction="none", **options, **kw)
        eager, compiled = run_both(loss_fn(loss, t), x)
        assert_agree(eager, compiled, TOL[torch.float64])
    assert spy["backward"] >= 2


# --------------------------------------------------------------------------- metrics

# the overlap metrics score hard predictions; binary and multilabel ones go through the
# kernel (multiclass ones count a label map with ``label_moments`` instead)
OVERLAP = [overlap_metrics.dice, overlap_metrics.jaccard, overlap_metrics.tversky_index,
           overlap_metrics.sensitivity, overlap_metrics.specificity, overlap_metrics.precision,
           overlap_metrics.balanced_accuracy, overlap_metrics.pixel_accuracy, overlap_metrics.iou_per_class,
           overlap_metrics.mean_iou]
METRIC_CASES = [("sigmoid-binary", False), ("sigmoid-binary", True), ("probs-multilabel-soft", True)]


def metric_pair(case: str, ignore: bool, spatial):
    """Probabilities (binary / multilabel) and an integer target."""
    c = CASES[case]
    x, t, kw = make_pair(Case(c.mode, c.channels, "labels", from_logits=False), spatial, ignore, torch.float32)
    return x, t, dict(mode=c.mode, ignore_index=kw["ignore_index"])


@pytest.mark.parametrize("domain", ["image", "batch"])
@pytest.mark.parametrize("case,ignore", METRIC_CASES, ids=[f"{c}-{i}" for c, i in METRIC_CASES])
@pytest.mark.parametrize("metric", OVERLAP, ids=[m.__name__ for m in OVERLAP])
def test_overlap_metric(metric, case: str, ignore: bool, domain: str, spy) -> None:
    """Hard counts: the two kernels give identical values."""
    for spatial in SPATIALS.values():
        x, t, kw = metric_pair(case, ignore, spatial)
        extra = dict(domain=domain)
        if metric not in (overlap_metrics.iou_per_class, overlap_metrics.mean_iou):
            extra["reduction"] = "none"
        values = {}
        for kernel in ("eager", "compiled"):
            with seglosses.use_kernel(kernel):
                values[kernel] = metric(x, t, **kw, **extra)
        torch.testing.assert_close(values["compiled"], values["eager"], rtol=0, atol=0, equal_nan=True)
    assert spy["forward"] >= 2


def test_streaming_metrics(spy) -> None:
    x, t, kw = metric_pair("probs-multilabel-soft", True, SPATIAL_2D)
    x2, t2, _ = metric_pair("probs-multilabel-soft", True, SPATIAL_2D)
    results = {}
    for kernel in ("eager", "compiled"):
        with seglosses.use_kernel(kernel):
            acc = SegmentationMetrics(["dice", "jaccard", "specificity", "balanced_accuracy"], num_classes=3, **kw)
            acc.update(x, t)
            acc.update(x2.flip(-1), t2)
            results[kernel] = acc.compute()
    assert sorted(results["compiled"]) == sorted(results["eager"])
    for k, v in results["eager"].items():
        torch.testing.assert_close(results["compiled"][k], v, rtol=0, atol=0, equal_nan=True)
    assert spy["forward"] >= 2


@pytest.mark.parametrize("options", [dict(), dict(with_tn=True), dict(soft_form=True, domain="batch")],
                         ids=["tp-fp-fn", "with_tn", "soft_form-batch"])
def test_soft_confusion(options, spy) -> None:
    x, t, kw = make_pair(CASES["softmax-soft-c20"], ignore=True)

    def fn(v):
        c = soft_confusion(v, t, **kw, **options)
        return dict(zip(("tp", "fp", "fn", "tn"), c.as_tuple()))

    eager, compiled = run_both(fn, x)
    assert_agree(eager, compiled, TOL[torch.float64])


# --------------------------------------------------------------------------- kernel selection


def test_set_kernel_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"`kernel` must be one of 'eager', 'compiled', 'auto'; got 'bogus'"):
        seglosses.set_kernel("bogus")
    with pytest.raises(ValueError, match=r"`kernel`.*did you mean 'compiled'"):
        seglosses.set_kernel("compild")
    with pytest.raises(ValueError, match=r"`kernel`"):
        seglosses.set_kernel(None)  # type: ignore[arg-type]
    assert seglosses.get_kernel() == "eager"


def test_set_and_get_kernel() -> None:
    assert seglosses.get_kernel() == "eager"
    seglosses.set_kernel("compiled")
    assert seglosses.get_kernel() == "compiled"
    seglosses.set_kernel("eager")
    assert seglosses.get_kernel() == "eager"


def test_use_kernel_restores_previous_kernel() -> None:
    seglosses.set_kernel("compiled")
    with seglosses.use_kernel("eager"):
        assert seglosses.get_kernel() == "eager"
        with seglosses.use_kernel("compiled"):
            assert seglosses.get_kernel() == "compiled"
        assert seglosses.get_kernel() == "eager"
    assert seglosses.get_kernel() == "compiled"
    with pytest.raises(KeyError, match="raised in the block"):
        with seglosses.use_kernel("eager"):
            raise KeyError("raised in the block")
    assert seglosses.get_kernel() == "compiled"
    with pytest.raises(ValueError, match="`kernel`"):
        with seglosses.use_kernel("bogus"):
            pass  # pragma: no cover
    assert seglosses.get_kernel() == "compiled"


def test_environment_variable_sets_default(monkeypatch) -> None:
    monkeypatch.setenv("SEGLOSSES_KERNEL", "compiled")
    monkeypatch.setattr(_fused, "_state", {})
    assert seglosses.get_kernel() == "compiled"
    with seglosses.use_kernel("eager"):
        assert seglosses.get_kernel() == "eager"
    assert seglosses.get_kernel() == "compiled"
    monkeypatch.setenv("SEGLOSSES_KERNEL", "")
    monkeypatch.setattr(_fused, "_state", {})
    assert seglosses.get_kernel() == "eager"


def test_environment_variable_selects_compiled_code(monkeypatch, spy) -> None:
    monkeypatch.setenv("SEGLOSSES_KERNEL", "compiled")
    monkeypatch.setattr(_fused, "_state", {})
    x, t, kw = make_pair(CASES["sigmoid-binary"], ignore=True)
    dice_loss(x.requires_grad_(), t, **kw).backward()
    assert spy["forward"] == 1 and spy["backward"] == 1


def test_environment_variable_bad_value(monkeypatch) -> None:
    monkeypatch.setenv("SEGLOSSES_KERNEL", "fast")
    monkeypatch.setattr(_fused, "_state", {})
    with pytest.raises(ValueError, match=r"SEGLOSSES_KERNEL.*`kernel` must be one of 'eager', 'compiled', 'auto'; got 'fast'"):
        seglosses.get_kernel()
    x, t, kw = make_pair(CASES["sigmoid-binary"])
    with pytest.raises(ValueError, match="SEGLOSSES_KERNEL"):
        dice_loss(x, t, **kw)
    seglosses.set_kernel("eager")  # an explicit choice overrides the bad default
    assert seglosses.get_kernel() == "eager"


# --------------------------------------------------------------------------- input errors


def _error_under_both(call) -> str:
    """Run ``call`` under each kernel; both must raise ValueError with the same message."""
    messages = {}
    for kernel in ("eager", "compiled"):
        with seglosses.use_kernel(kernel):
            with pytest.raises(ValueError) as info:
                call()
        messages[kernel] = str(info.value)
    assert messages["compiled"] == messages["eager"]
    return messages["compiled"]


def _bad(case: str, where: str, index, value):
    """A valid pair of ``case`` (float64, with ignore_index: the signatures compiled above)
    with one bad entry."""
    def make():
        x, t, kw = make_pair(CASES[case], ignore=True)
        (x if where == "input" else t)[index] = value
        return x, t, kw
    make.__name__ = f"{case}-{where}-{value}"
    return make


BAD_INPUTS = [
    (_bad("softmax-labels-c4", "input", (1, 2, 3, 4), float("nan")),
     r"`input` must be finite; got 1 NaN and 0 Inf values"),
    (_bad("sigmoid-binary", "input", (0, 0, 0, 0), float("-inf")),
     r"`input` must be finite; got 0 NaN and 1 Inf values"),
    (_bad("softmax-labels-c4", "target", (0, 1, 2), 4),
     r"`target` labels must lie in \[0, 3\] or ignore_index=255 for 4 classes; got values in \[0, 4\]"),
    (_bad("softmax-labels-c4", "target", (1, 0, 0), -1),
     r"`target` labels must lie in \[0, 3\] or ignore_index=255 for 4 classes; got values in \[-1, 3\]"),
    (_bad("sigmoid-binary", "target", (0, 3, 3), 2),
     r"`target` labels must lie in \[0, 1\] or ignore_index=255 for 2 classes; got values in \[0, 2\]"),
    (_bad("probs-labels-c4", "input", (0, 1, 2, 3), 1.5),
     r"`input` must hold probabilities in \[0, 1\] \(pass from_logits=True for logits\); got values in \[.*, 1\.5\]"),
    (_bad("probs-multilabel-soft", "input", (1, 0, 0, 0), -0.25),
     r"`input` must hold probabilities in \[0, 1\].*; got values in \[-0\.25, "),
    (_bad("softmax-soft-c20", "target", (0, 3, 0, 0), float("nan")),
     r"`target` must be finite; got 1 NaN and 0 Inf values"),
]


@pytest.mark.parametrize("make,message", BAD_INPUTS, ids=[m.__name__ for m, _ in BAD_INPUTS])
def test_bad_input_raises_same_error(make, message) -> None:
    x, t, kw = make()
    for grad in (False, True):
        xx = x.clone().requires_grad_(grad)
        for call in (lambda: dice_loss(xx, t, **kw),
                     lambda: tversky_loss(xx, t, domain="batch", **kw),
                     lambda: soft_confusion(xx, t, **kw)):
            got = _error_under_both(call)
            assert re.search(message, got), got
    # the kernel still works after the errors
    x, t, kw = make_pair(CASES["sigmoid-binary"], ignore=True)
    with seglosses.use_kernel("compiled"):
        assert torch.isfinite(dice_loss(x, t, **kw))


def test_bad_input_to_metric_raises_same_error() -> None:
    x, t, kw = metric_pair("probs-multilabel-soft", True, SPATIAL_2D)
    x[0, 0, 0, 0] = float("nan")
    got = _error_under_both(lambda: overlap_metrics.dice(x, t, **kw))
    assert "`input` must be finite; got 1 NaN and 0 Inf values" in got
    x, t, kw = metric_pair("sigmoid-binary", False, SPATIAL_2D)
    x[0, 0, 1, 1] = 2.0
    got = _error_under_both(lambda: overlap_metrics.jaccard(x, t, **kw))
    assert got.startswith("`input` must hold probabilities in [0, 1]")


# --------------------------------------------------------------------------- many signatures


def _nine_signatures():
    """Nine distinct kernel signatures of a script with a few region losses (the first
    eight compiled by the tests above: their forward graphs come from the compile cache)."""
    calls = []
    for case in ("sigmoid-binary", "softmax-soft-c20", "softmax-labels-c4"):
        x, t, kw = make_pair(CASES[case], ignore=True)
        for loss in (dice_loss, functools.partial(dice_loss, soft_form=True), sensitivity_specificity_loss):
            calls.append((loss, x, t, kw))
    return calls


def test_many_signatures_in_one_process() -> None:
    """At dynamo's default recompile limit, a script may use more than eight signatures."""
    torch._dynamo.reset()
    try:
        with torch._dynamo.config.patch(recompile_limit=8):
            for loss, x, t, kw in _nine_signatures():
                with seglosses.use_kernel("eager"):
                    expected = loss(x.clone().requires_grad_(), t, **kw)
                with seglosses.use_kernel("compiled"):
                    got = loss(x.clone().requires_grad_(), t, **kw)  # the 9th signature fails
                torch.testing.assert_close(got, expected, **TOL[torch.float64])
    finally:
        torch._dynamo.reset()


def test_past_the_recompile_limit_the_fused_form_runs_uncompiled() -> None:
    """More shape variants of one signature than the compiler keeps: a warning, then the
    fused functions run uncompiled, with the same values."""
    torch._dynamo.reset()
    _fused._warned.clear()
    try:
        with torch._dynamo.config.patch(recompile_limit=1, automatic_dynamic_shapes=False):
            for spatial in ((4, 5), (5, 6), (6, 7)):
                x = torch.randn(2, 3, *spatial, dtype=torch.float64)
                t = torch.randint(0, 3, (2, *spatial))
                with seglosses.use_kernel("eager"):
                    xe = x.clone().requires_grad_()
                    expected = dice_loss(xe, t, mode="multiclass")
                    ge, = torch.autograd.grad(expected, xe)
                with seglosses.use_kernel("compiled"), warnings.catch_warnings(record=True) as rec:
                    warnings.simplefilter("always")
                    xc = x.clone().requires_grad_()
                    got = dice_loss(xc, t, mode="multiclass")
                    gc, = torch.autograd.grad(got, xc)
                torch.testing.assert_close(got, expected, **TOL[torch.float64])
                torch.testing.assert_close(gc, ge, **TOL[torch.float64])
                if spatial != (4, 5):
                    assert any("run the fused form uncompiled" in str(w.message) for w in rec) or _fused._warned
        assert _fused._warned
    finally:
        _fused._warned.clear()
        torch._dynamo.reset()
