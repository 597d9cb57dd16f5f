"""The seglosses benchmark suite: losses, distance transforms and metrics against the
peers (MONAI, kornia, torchmetrics, medpy, scipy, the ``edt`` package and, only when the
user installed it, segmentation-models-pytorch) and against the memory floor.

Run from the repository root::

    python -m benchmarks.run                      # full CPU run (about 10-15 min on 2 cores)
    python -m benchmarks.run --quick              # smoke run on small tensors (< 2 min)
    python -m benchmarks.run --sections losses --cases binary --dtypes float32
    python -m benchmarks.run --device cuda        # the same suite on a GPU

Method (see ``benchmarks/README.md``): every candidate of a group (the floors, our
implementations, the peers) runs in the same process on the same tensors; after a
warm-up the candidates take turns within each round (interleaved repetitions, the
order rotating from round to round) and the median over the rounds is reported.
Ratios are taken between medians of the same group, so a change of machine load hits
all of them alike.

* Floors: ``read`` reads the input and the target once (one reduction over each);
  ``RW`` reads both and writes one input-sized tensor (the gradient): no
  forward+backward can move less memory.
* Extra memory: the peak of the bytes allocated during one forward+backward, above the
  bytes allocated before it, minus the input gradient that the call leaves behind, in
  units of one input-sized tensor. On CPU the allocations are read from the profiler's
  memory events (``torch.profiler`` with ``profile_memory=True``: every allocation and
  free of the CPU allocator with the running total); on CUDA from
  ``torch.cuda.max_memory_allocated``.

The results go to ``benchmarks/results/<machine>.md`` (and a ``.json`` with every number).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as TF

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# --------------------------------------------------------------------------- helpers


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def module_version(name: str) -> Optional[str]:
    if not has_module(name):
        return None
    try:
        from importlib.metadata import version

        return version({"segmentation_models_pytorch": "segmentation-models-pytorch"}.get(name, name))
    except Exception:  # noqa: BLE001 - fall back on the module attribute
        pass
    try:
        return str(getattr(importlib.import_module(name), "__version__", "?"))
    except Exception:  # noqa: BLE001 - a broken peer is reported, not fatal
        return "import error"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_slug(device: str) -> str:
    if device == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
    else:
        name = f"{os.cpu_count()}core-{cpu_model()}"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{device}-{slug}"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def short_error(exc: BaseException) -> str:
    msg = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return msg[:90] + ("..." if len(msg) > 90 else "")


# --------------------------------------------------------------------------- data


def smooth_fields(batch: int, channels: int, spatial: Sequence[int], seed: int) -> torch.Tensor:
    """Smooth random fields ``[B, C, *S]`` (coarse noise upsampled), unit scale."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, channels, *[max(n // 16, 2) for n in spatial], generator=gen)
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
    fine = TF.interpolate(coarse, size=tuple(spatial), mode=mode, align_corners=False)
    return fine / fine.std()


@dataclass
class LossCase:
    """The tensors of one loss benchmark: logits ``x`` and the targets in each format."""

    name: str
    mode: str  # "binary" or "multiclass"
    shape: Tuple[int, ...]
    dtype: torch.dtype
    x: torch.Tensor  # leaf logits, requires grad
    target: torch.Tensor  # what seglosses takes: float [B,1,*S] (binary) or a label map [B,*S]
    target_channel: torch.Tensor  # [B,1,*S]: MONAI's target (float mask or label map with a channel)
    labels: torch.Tensor  # [B,*S] int64 label map (binary: {0, 1})

    @property
    def title(self) -> str:
        kind = "{0,1} float target" if self.mode == "binary" else "int64 label map"
        return f"{self.name}: logits {tuple(self.shape)} {str(self.dtype).replace('torch.', '')}, {kind}"


def make_loss_case(name: str, shape: Sequence[int], dtype: torch.dtype, device: str) -> LossCase:
    b, c, *spatial = shape
    fields = smooth_fields(b, max(c, 1), spatial, seed=1)
    noise = torch.randn(b, c, *spatial, generator=torch.Generator().manual_seed(2))
    if c == 1:
        labels = (fields[:, 0] > 0.5).long()
        logits = 3.0 * (fields - 0.5) + 0.7 * noise
        target = labels.unsqueeze(1).to(dtype)
        mode = "binary"
        target_channel = target
    else:
        labels = fields.argmax(1)
        logits = 2.0 * fields + 0.7 * noise
        target = labels
        mode = "multiclass"
        target_channel = labels.unsqueeze(1)
    x = logits.to(device=device, dtype=dtype).requires_grad_()
    return LossCase(name, mode, tuple(shape), dtype, x, target.to(device), target_channel.to(device),
                    labels.to(device))


def blob_masks(batch: int, spatial: Sequence[int], seed: int, level: float = 0.5) -> torch.Tensor:
    """Bool masks ``[B, *S]`` of smooth random blobs (about 30 % foreground)."""
    return smooth_fields(batch, 1, spatial, seed)[:, 0] > level


# --------------------------------------------------------------------------- measuring


@dataclass
class Candidate:
    """One implementation in a group: ``run()`` does the timed work (forward+backward)."""

    impl: str  # e.g. "seglosses", "MONAI"
    kind: str  # "floor", "ours", "peer", "ref"
    run: Callable[[], object]
    domain: Optional[str] = None  # "image" / "batch" for region losses
    note: str = ""
    grad_of: Optional[torch.Tensor] = None  # the leaf whose .grad the call leaves behind
    times: List[float] = field(default_factory=list)
    error: Optional[str] = None
    extra_mem: Optional[float] = None  # in input-sized tensors
    value: Optional[float] = None

    @property
    def median_ms(self) -> Optional[float]:
        return statistics.median(self.times) * 1e3 if self.times and self.error is None else None


class Timer:
    def __init__(self, device: str, rounds: int, min_rounds: int, budget_s: float) -> None:
        self.device, self.rounds, self.min_rounds, self.budget_s = device, rounds, min_rounds, budget_s

    def _once(self, cand: Candidate) -> float:
        if cand.grad_of is not None:
            cand.grad_of.grad = None
        sync(self.device)
        t0 = time.perf_counter()
        cand.run()
        sync(self.device)
        return time.perf_counter() - t0

    def time_group(self, cands: List[Candidate]) -> None:
        """Warm up, then interleaved rounds (rotating order); fills ``cand.times``."""
        per_round = 0.0
        for cand in cands:
            try:
                first = self._once(cand)
                if first < 0.5:  # a second warm-up call unless the call is slow
                    first = self._once(cand)
                per_round += first
            except Exception as exc:  # noqa: BLE001 - a failing peer is a result
                cand.error = short_error(exc)
        live = [c for c in cands if c.error is None]
        if not live:
            return
        rounds = int(self.budget_s / max(per_round, 1e-6))
        rounds = max(self.min_rounds, min(self.rounds, rounds))
        for r in range(rounds):
            k = r % len(live)
            for cand in live[k:] + live[:k]:
                cand.times.append(self._once(cand))


def extra_memory(cand: Candidate, device: str, unit_bytes: int) -> Optional[float]:
    """Peak allocation of one call above its start, minus the gradient it leaves, in units."""
    if cand.error is not None:
        return None
    if cand.grad_of is not None:
        cand.grad_of.grad = None
    grad_bytes = 0
    if device == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        cand.run()
        sync(device)
        peak = torch.cuda.max_memory_allocated() - base
    else:
        from torch.profiler import ProfilerActivity, profile

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                cand.run()
        allocs = []
        stack = list(prof.profiler.kineto_results.experimental_event_tree())
        while stack:
            ev = stack.pop()
            stack.extend(ev.children)
            extra = ev.extra_fields
            if type(extra).__name__ == "_ExtraFields_Allocation":
                allocs.append((ev.start_time_ns, int(extra.alloc_size), int(extra.total_allocated)))
        if not allocs:
            return 0.0
        allocs.sort()
        start = allocs[0][2] - allocs[0][1]
        peak = max(a[2] for a in allocs) - start
    if cand.grad_of is not None and cand.grad_of.grad is not None:
        grad_bytes = cand.grad_of.grad.numel() * cand.grad_of.grad.element_size()
        cand.grad_of.grad = None
    return max(peak - grad_bytes, 0) / unit_bytes


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    section: str
    case: str
    group: str
    impl: str
    kind: str
    domain: Optional[str]
    ms: Optional[float]
    x_rw: Optional[float]
    x_peer: Optional[float]  # ms / fastest peer ms
    extra_mem: Optional[float]
    note: str = ""
    error: Optional[str] = None
    value: Optional[float] = None
    rounds: int = 0


class Report:
    def __init__(self) -> None:
        self.rows: List[Row] = []
        self.tables: List[Tuple[str, str, List[str]]] = []  # (section, title, markdown lines)
        self.notes: List[str] = []

    def add_group(self, section: str, case: str, group: str, cands: List[Candidate], *,
                  rw_ms: Optional[float], floor_label: str = "RW") -> List[Row]:
        peers = [c for c in cands if c.kind == "peer" and c.median_ms is not None]
        rows = []
        for c in cands:
            ms = c.median_ms
            # ours: the peers of the same domain (or without one); a peer: every peer
            same = peers if c.kind == "peer" else ([p for p in peers if p.domain in (c.domain, None)] or peers)
            fastest = min((p.median_ms for p in same), default=None)
            row = Row(section, case, group, c.impl, c.kind, c.domain, ms,
                      None if ms is None or not rw_ms else ms / rw_ms,
                      None if ms is None or fastest is None or c.kind == "floor" else ms / fastest,
                      c.extra_mem, c.note, c.error, c.value, len(c.times))
            rows.append(row)
        self.rows.extend(rows)
        return rows


def fmt(v: Optional[float], digits: int = 2, suffix: str = "") -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0" + suffix
    if abs(v) >= 100:
        return f"{v:.0f}{suffix}"
    if abs(v) >= 10:
        return f"{v:.1f}{suffix}"
    return f"{v:.{digits}f}{suffix}"


def impl_label(row: Row) -> str:
    label = row.impl
    if row.domain:
        label += f" ({row.domain})"
    return label


# --------------------------------------------------------------------------- loss candidates


def find_function(name: str) -> Optional[Callable]:
    """A function of ``seglosses.functional`` (or one of its family modules) by name."""
    import seglosses.functional as F

    fn = getattr(F, name, None)
    if fn is not None:
        return fn
    for mod in ("region", "distribution", "lovasz", "margin", "boundary", "compound", "regularizers"):
        try:
            fn = getattr(importlib.import_module(f"seglosses.functional.{mod}"), name, None)
        except ImportError:
            fn = None
        if fn is not None:
            return fn
    return None


def registry_entries() -> List[object]:
    try:
        from seglosses import registry
    except ImportError:
        return []
    return list(registry.ENTRIES)


def accepts(cls_or_fn: object, key: str) -> bool:
    import inspect

    target = cls_or_fn.__init__ if isinstance(cls_or_fn, type) else cls_or_fn
    try:
        return key in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def fwd_bwd(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
            t: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        loss_fn(x, t).backward()

    return run


def floor_candidates(x: torch.Tensor, targets: Sequence[torch.Tensor], act: Optional[str]) -> List[Candidate]:
    """``read``: one reduction over the input and over each target; ``RW``: that plus
    writing one input-sized tensor. ``activation``: the sigmoid/softmax alone (one pass)."""
    xd = x.detach()

    def read() -> None:
        xd.sum()
        for t in targets:
            t.sum()

    def rw() -> None:
        xd.sum()
        for t in targets:
            t.sum()
        torch.empty_like(xd).fill_(1.0)

    out = [Candidate("read floor", "floor", read), Candidate("RW floor", "floor", rw)]
    if act == "sigmoid":
        out.append(Candidate("sigmoid alone (fwd)", "ref", lambda: torch.sigmoid(xd)))
    elif act == "softmax":
        out.append(Candidate("softmax alone (fwd)", "ref", lambda: torch.softmax(xd, 1)))
    return out


def monai_losses():
    try:
        import monai.losses as ML  # noqa: F401
    except Exception:  # noqa: BLE001
        return None
    return ML


def kornia_losses():
    try:
        import kornia.losses as KL  # noqa: F401
    except Exception:  # noqa: BLE001
        return None
    return KL


def smp_losses():
    # segmentation-models-pytorch pins its own torch: used only when the user installed it
    if not has_module("segmentation_models_pytorch"):
        return None
    try:
        import segmentation_models_pytorch.losses as SL  # noqa: F401
    except Exception:  # noqa: BLE001
        return None
    return SL


def peer_candidates(loss: str, case: LossCase) -> List[Candidate]:
    """The peers' forms of one loss on the case's tensors (MONAI, kornia, torch, smp)."""
    x, mc = case.x, case.mode == "multiclass"
    ML, KL, SL = monai_losses(), kornia_losses(), smp_losses()
    out: List[Candidate] = []

    def monai(name: str, domains=("image", "batch"), **kw) -> None:
        if ML is None or not hasattr(ML, name):
            return
        act = dict(softmax=True, to_onehot_y=True) if mc else dict(sigmoid=True)
        if name == "FocalLoss":
            act = dict(use_softmax=True, to_onehot_y=True) if mc else {}
        for dom in domains:
            extra = dict(batch=True) if dom == "batch" else {}
            try:
                mod = getattr(ML, name)(**act, **kw, **extra)
            except Exception as exc:  # noqa: BLE001
                c = Candidate("MONAI", "peer", lambda: None, dom)
                c.error = short_error(exc)
                out.append(c)
                continue
            out.append(Candidate("MONAI", "peer", fwd_bwd(mod, x, case.target_channel), dom if domains[1:] else None,
                                 note=f"{name}", grad_of=x))

    def kornia(fn_name: str, *args, binary_ok: bool = False, **kw) -> None:
        if KL is None or not hasattr(KL, fn_name) or (not mc and not binary_ok):
            return
        fn = getattr(KL, fn_name)
        tgt = case.labels if mc or fn_name == "lovasz_hinge_loss" else case.target
        out.append(Candidate("kornia", "peer", fwd_bwd(lambda a, b: fn(a, b, *args, **kw), x, tgt),
                             note=fn_name, grad_of=x))

    def smp(cls_name: str, **kw) -> None:
        if SL is None or not hasattr(SL, cls_name):
            return
        mod = getattr(SL, cls_name)(mode="multiclass" if mc else "binary", **kw)
        out.append(Candidate("smp", "peer", fwd_bwd(mod, x, case.labels if mc else case.target), note=cls_name,
                             grad_of=x))

    if loss == "dice":
        monai("DiceLoss")
        kornia("dice_loss")
        smp("DiceLoss", from_logits=True)
    elif loss == "iou":
        monai("DiceLoss", jaccard=True)
        smp("JaccardLoss", from_logits=True)
    elif loss == "tversky":
        monai("TverskyLoss", alpha=0.3, beta=0.7)
        kornia("tversky_loss", 0.3, 0.7)
        smp("TverskyLoss", alpha=0.3, beta=0.7, from_logits=True)
    elif loss == "generalized_dice":
        monai("GeneralizedDiceLoss")
    elif loss == "focal_tversky":
        smp("TverskyLoss", alpha=0.3, beta=0.7, gamma=4.0 / 3.0, from_logits=True)
    elif loss == "focal":
        monai("FocalLoss", domains=("image",), gamma=2.0)
        if mc:
            kornia("focal_loss", None, 2.0, "mean")
        else:
            kornia("binary_focal_loss_with_logits", None, 2.0, "mean", binary_ok=True)
        smp("FocalLoss")
    elif loss == "cross_entropy":
        if mc:
            out.append(Candidate("torch F.cross_entropy", "peer", fwd_bwd(TF.cross_entropy, x, case.labels),
                                 grad_of=x))
        else:
            out.append(Candidate("torch F.binary_cross_entropy_with_logits", "peer",
                                 fwd_bwd(TF.binary_cross_entropy_with_logits, x, case.target), grad_of=x))
    elif loss == "dice+ce":
        monai("DiceCELoss")
    elif loss == "dice+focal":
        monai("DiceFocalLoss", gamma=2.0)
    elif loss == "lovasz":
        if mc:
            kornia("lovasz_softmax_loss")
        else:
            kornia("lovasz_hinge_loss", binary_ok=True)
        smp("LovaszLoss", per_image=True)
    elif loss == "hausdorff_dt":
        monai("HausdorffDTLoss", domains=("image",), include_background=True)
    elif loss == "log_hausdorff_dt":
        monai("LogHausdorffDTLoss", domains=("image",), include_background=True)
    elif loss == "mcc":
        monai("MCCLoss")
    elif loss == "cldice" and not mc:  # MONAI pools the channels of a multiclass input
        monai("SoftclDiceLoss", domains=("image",), iter_=3)
    elif loss == "dice_cldice" and not mc:
        monai("SoftDiceclDiceLoss", domains=("image",), iter_=3)
    elif loss == "gwdl" and mc and ML is not None and hasattr(ML, "GeneralizedWassersteinDiceLoss"):
        c = x.shape[1]
        mod = ML.GeneralizedWassersteinDiceLoss(dist_matrix=1 - torch.eye(c, device=x.device))
        out.append(Candidate("MONAI", "peer", fwd_bwd(mod, x, case.labels), note="GeneralizedWassersteinDiceLoss",
                             grad_of=x))
    elif loss == "unified_focal" and not mc and ML is not None and hasattr(ML, "AsymmetricUnifiedFocalLoss"):
        mod = ML.AsymmetricUnifiedFocalLoss(delta=0.6)  # binary, our δ; takes probabilities: sigmoid timed too
        out.append(Candidate("MONAI", "peer", fwd_bwd(lambda a, b: mod(torch.sigmoid(a), b), x, case.target_channel),
                             note="AsymmetricUnifiedFocalLoss", grad_of=x))
    elif loss == "hausdorff_er" and mc and KL is not None and hasattr(KL, "HausdorffERLoss"):
        cls = KL.HausdorffERLoss if x.dim() == 4 else KL.HausdorffERLoss3D
        mod = cls(alpha=2.0, k=10)  # scores every channel of softmax(x): include_background=True here
        out.append(Candidate("kornia", "peer", fwd_bwd(lambda a, b: mod(torch.softmax(a, 1), b), x, case.target_channel),
                             note=cls.__name__, grad_of=x))
    return out


COMPOUNDS = {
    "dice+ce": ("dice_loss", "cross_entropy_loss"),
    "dice+focal": ("dice_loss", "focal_loss"),
}


def our_candidates(loss: str, case: LossCase) -> List[Candidate]:
    """seglosses' form of a registered loss (or a compound), image and batch domain."""
    x, mode = case.x, case.mode
    out: List[Candidate] = []
    if loss in COMPOUNDS:
        fns = [find_function(n) for n in COMPOUNDS[loss]]
        if any(f is None for f in fns):
            return out
        for dom in ("image", "batch"):
            kws = [dict(mode=mode, **({"domain": dom} if accepts(f, "domain") else {})) for f in fns]
            if dom == "batch" and not any("domain" in k for k in kws):
                continue

            def loss_fn(a, b, fns=fns, kws=kws):
                total = fns[0](a, b, **kws[0])
                for f, k in zip(fns[1:], kws[1:]):
                    total = total + f(a, b, **k)
                return total

            out.append(Candidate("seglosses", "ours", fwd_bwd(loss_fn, x, case.target), dom, grad_of=x,
                                 note=" + ".join(COMPOUNDS[loss])))
        return out
    entry = next((e for e in registry_entries() if e.name == loss), None)
    if entry is None:
        return out
    cls = entry.cls
    info = getattr(cls, "info", None)
    if info is not None and mode not in info.modes:
        return out  # e.g. gwdl takes multiclass inputs only: no row in the binary case
    domains = ("image", "batch") if accepts(cls, "domain") else (None,)
    for dom in domains:
        kw = dict(mode=mode)
        if dom is not None:
            kw["domain"] = dom
        if accepts(cls, "include_background") and loss in ("hausdorff_dt", "log_hausdorff_dt", "hausdorff_er",
                                                            "boundary"):
            kw["include_background"] = True
        try:
            mod = cls(**kw)
        except Exception as exc:  # noqa: BLE001
            c = Candidate("seglosses", "ours", lambda: None, dom)
            c.error = short_error(exc)
            out.append(c)
            continue
        out.append(Candidate("seglosses", "ours", fwd_bwd(mod, x, case.target), dom, grad_of=x,
                             note=type(mod).__name__))
    if KERNEL_ROWS and getattr(entry, "family", "region") == "region":
        # the fused kernel through torch.compile (seglosses.set_kernel("compiled")); compiled
        # here, before the timed rounds, so that the rounds time the compiled code only
        for dom in domains:
            kw = dict(mode=mode, **({"domain": dom} if dom is not None else {}))
            out.append(compiled_candidate(cls(**kw), x, case.target, dom))
    if loss == "dice" and accepts(cls, "check_values"):
        # the cost of the opt-out value checks (one min/max pass over input and target)
        mod = cls(mode=mode, check_values=False)
        out.append(Candidate("seglosses check_values=False", "ours", fwd_bwd(mod, x, case.target), "image",
                             grad_of=x))
    return out


KERNEL_ROWS = True  # --no-compiled turns the compiled-kernel rows off


def compiled_candidate(mod: Callable, x: torch.Tensor, t: torch.Tensor, dom: Optional[str]) -> Candidate:
    """A loss module run with the compiled statistics kernel, compiled before timing."""
    from seglosses import use_kernel

    def run() -> None:
        with use_kernel("compiled"):
            mod(x, t).backward()

    cand = Candidate("seglosses kernel=compiled", "ours", run, dom, grad_of=x)
    try:
        t0 = time.perf_counter()
        run()
        x.grad = None
        cand.note = f"compiled in {time.perf_counter() - t0:.1f} s"
    except Exception as exc:  # noqa: BLE001 - reported as a failing row
        cand.error = short_error(exc)
    return cand


def loss_names() -> List[Tuple[str, str]]:
    """(name, family) of every registered loss, then the compounds that peers have."""
    names = [(e.name, getattr(e, "family", "region")) for e in registry_entries()]
    return names + [(k, "compound") for k in COMPOUNDS]


# --------------------------------------------------------------------------- sections


LOSS_CASES = {
    "binary": (16, 1, 256, 256),
    "multiclass": (8, 4, 256, 256),
    "3d": (2, 3, 64, 128, 128),
}
QUICK_LOSS_CASES = {
    "binary": (4, 1, 128, 128),
    "multiclass": (2, 4, 128, 128),
    "3d": (1, 3, 32, 64, 64),
}


def run_losses(args, timer: Timer, report: Report, log) -> None:
    cases = QUICK_LOSS_CASES if args.quick else LOSS_CASES
    for case_name in args.cases:
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            case = make_loss_case(case_name, cases[case_name], dtype, args.device)
            if KERNEL_ROWS and hasattr(torch, "_dynamo"):
                # each case compiles the kernel for its own static shapes (a shape seen after
                # another would otherwise be compiled with dynamic shapes, as in a user's
                # process that changes image sizes)
                torch._dynamo.reset()
            unit = case.x.numel() * case.x.element_size()
            targets = [case.target]
            act = "softmax" if case.mode == "multiclass" else "sigmoid"
            lines = [
                "| loss | implementation | median ms | x RW | x fastest peer | extra memory |",
                "|---|---|---:|---:|---:|---:|",
            ]
            log(f"\n== losses: {case.title}")
            floor_rows: Dict[str, List[float]] = {}
            for loss, family in loss_names():
                if args.losses and loss not in args.losses:
                    continue
                ours = our_candidates(loss, case)
                if not ours:
                    continue
                peers = peer_candidates(loss, case)
                floors = floor_candidates(case.x, targets, act)
                cands = floors + ours + peers
                timer.time_group(cands)
                for c in ours + peers:
                    if not args.no_memory:
                        try:
                            c.extra_mem = extra_memory(c, args.device, unit)
                        except Exception as exc:  # noqa: BLE001
                            c.note += f" (memory: {short_error(exc)})"
                rw = floors[1].median_ms
                rows = report.add_group("losses", case.title, loss, cands, rw_ms=rw)
                for fl, row in zip(floors, rows):
                    floor_rows.setdefault(fl.impl, []).append(row.ms or float("nan"))
                for row in rows[len(floors):]:
                    status = f"fails: {row.error}" if row.error else ""
                    name = f"{loss}" + (f" [{family}]" if family not in ("region",) else "")
                    lines.append(
                        f"| {name} | {impl_label(row)}{(' ' + row.note) if row.note and row.kind == 'peer' else ''}"
                        f" | {fmt(row.ms) if not status else status} | {fmt(row.x_rw, suffix='x')}"
                        f" | {fmt(row.x_peer, suffix='x')} | {fmt(row.extra_mem)} |"
                    )
                    log(f"  {loss:26s} {impl_label(row):28s} {fmt(row.ms):>8s} ms  "
                        f"xRW {fmt(row.x_rw):>6s}  xpeer {fmt(row.x_peer):>6s}  mem {fmt(row.extra_mem)}"
                        f"{'  ' + status if status else ''}")
            head = []
            for name, vals in floor_rows.items():
                vals = [v for v in vals if not math.isnan(v)]
                if vals:
                    head.append(f"| floor | {name} | {fmt(statistics.median(vals), 3)} | - | - | - |")
            report.tables.append(("losses", case.title, lines[:2] + head + lines[2:]))
            del case


EDT_SHAPES = {"16x256^2": (16, (256, 256)), "16x512^2": (16, (512, 512)), "1x128^3": (1, (128, 128, 128))}
QUICK_EDT_SHAPES = {"4x128^2": (4, (128, 128)), "4x256^2": (4, (256, 256)), "1x64^3": (1, (64, 64, 64))}


def run_edt(args, timer: Timer, report: Report, log) -> None:
    try:
        from seglosses.distance import edt as our_edt
    except ImportError:
        report.notes.append("EDT section skipped: `seglosses.distance.edt` is not there.")
        return
    import inspect

    backends = ["auto"]
    sig = inspect.signature(our_edt)
    if "backend" in sig.parameters:
        backends += ["torch"]
    shapes = QUICK_EDT_SHAPES if args.quick else EDT_SHAPES
    lines = ["| shape | implementation | median ms | x fastest peer | x RW | max abs diff vs scipy |",
             "|---|---|---:|---:|---:|---:|"]
    for label, (b, spatial) in shapes.items():
        mask = blob_masks(b, spatial, seed=3).to(args.device)
        mask_np = mask.cpu().numpy()
        cands: List[Candidate] = []
        fl = mask.float()

        def read(mask=mask):
            mask.sum()

        def rw(mask=mask, fl=fl):
            mask.sum()
            torch.empty_like(fl).fill_(1.0)

        cands += [Candidate("read floor", "floor", read), Candidate("RW floor", "floor", rw)]
        for be in backends:
            kw = {} if be == "auto" else {"backend": be}
            cands.append(Candidate(f"seglosses edt(backend={be!r})", "ours",
                                   lambda kw=kw, mask=mask: our_edt(mask, **kw)))
        ref_cache: Dict[str, np.ndarray] = {}
        try:
            from scipy import ndimage

            def scipy_run(mask_np=mask_np):
                return np.stack([ndimage.distance_transform_edt(m) for m in mask_np])

            cands.append(Candidate("scipy distance_transform_edt (loop)", "peer", scipy_run))
            ref_cache["ref"] = scipy_run()
        except ImportError:
            pass
        if has_module("edt"):
            import edt as edt_pkg

            def edt_run(mask_np=mask_np):
                return np.stack([edt_pkg.edt(m, parallel=1) for m in mask_np])

            cands.append(Candidate("edt package (loop, 1 thread)", "peer", edt_run))
        timer.time_group(cands)
        for c in cands:
            if c.kind == "ours" and c.error is None and "ref" in ref_cache:
                out = c.run().float().cpu().numpy()
                c.value = float(np.abs(out - ref_cache["ref"]).max())
            if c.kind == "peer" and c.error is None and "ref" in ref_cache:
                c.value = float(np.abs(np.asarray(c.run(), dtype=np.float64) - ref_cache["ref"]).max())
        rows = report.add_group("edt", label, "edt", cands, rw_ms=cands[1].median_ms)
        for row in rows:
            lines.append(f"| {label} | {row.impl} | {fmt(row.ms) if not row.error else 'fails: ' + row.error} "
                         f"| {fmt(row.x_peer, suffix='x')} | {fmt(row.x_rw, suffix='x')} "
                         f"| {fmt(row.value, 3) if row.value is not None else '-'} |")
            log(f"  edt {label:10s} {row.impl:40s} {fmt(row.ms):>8s} ms xpeer {fmt(row.x_peer)} "
                f"maxdiff {fmt(row.value, 3)}{'  ' + row.error if row.error else ''}")
    report.tables.append(("edt", "Euclidean distance transform of blob masks (about 30 % foreground)", lines))


SURFACE_CASES = {"16 pairs 256^2": (16, (256, 256)), "1 pair 128^3": (1, (128, 128, 128))}
QUICK_SURFACE_CASES = {"4 pairs 128^2": (4, (128, 128)), "1 pair 64^3": (1, (64, 64, 64))}


def run_surface(args, timer: Timer, report: Report, log) -> None:
    try:
        import seglosses.metrics as SM

        hd95, assd = SM.hd95, SM.assd
    except (ImportError, AttributeError):
        report.notes.append("Surface section skipped: `seglosses.metrics.hd95`/`assd` are not there.")
        return
    try:
        from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
    except Exception:  # noqa: BLE001
        compute_hausdorff_distance = compute_average_surface_distance = None
    try:
        from medpy.metric import binary as medpy_binary
    except Exception:  # noqa: BLE001
        medpy_binary = None
    cases = QUICK_SURFACE_CASES if args.quick else SURFACE_CASES
    lines = ["| metric | pairs | implementation | median ms | x fastest peer | max abs diff vs peer |",
             "|---|---|---|---:|---:|---:|"]
    for label, (b, spatial) in cases.items():
        target = blob_masks(b, spatial, seed=4)
        pred = blob_masks(b, spatial, seed=4, level=0.45) ^ (torch.rand(target.shape, generator=torch.Generator()
                                                                       .manual_seed(5)) < 0.002)
        pred_f = pred.unsqueeze(1).float().to(args.device)
        tgt_l = target.long().to(args.device)
        pred_np, tgt_np = pred.numpy(), target.numpy()
        pred_c, tgt_c = pred.unsqueeze(1).float(), target.unsqueeze(1).float()
        for metric in ("hd95", "assd"):
            cands: List[Candidate] = []
            ours: Dict[str, Callable] = {}
            if metric == "hd95":
                ours["seglosses hd95 (max of directed)"] = lambda: hd95(pred_f, tgt_l, reduction="none")
                ours["seglosses hd95 (pooled)"] = lambda: hd95(pred_f, tgt_l, reduction="none", convention="pooled")
            else:
                ours["seglosses assd"] = lambda: assd(pred_f, tgt_l, reduction="none")
            for name, fn in ours.items():
                cands.append(Candidate(name, "ours", fn))
            peer_fns: Dict[str, Callable] = {}
            if compute_hausdorff_distance is not None:
                if metric == "hd95":
                    peer_fns["MONAI compute_hausdorff_distance(percentile=95)"] = lambda: compute_hausdorff_distance(
                        pred_c, tgt_c, include_background=True, percentile=95)
                else:
                    peer_fns["MONAI compute_average_surface_distance(symmetric)"] = (
                        lambda: compute_average_surface_distance(pred_c, tgt_c, include_background=True,
                                                                 symmetric=True))
            if medpy_binary is not None:
                f = medpy_binary.hd95 if metric == "hd95" else medpy_binary.assd
                peer_fns[f"medpy {metric} (loop)"] = lambda f=f: torch.tensor(
                    [[f(pred_np[i], tgt_np[i])] for i in range(b)])
            for name, fn in peer_fns.items():
                cands.append(Candidate(name, "peer", fn))
            timer.time_group(cands)
            # value agreement: max of directed vs MONAI, pooled vs medpy, assd vs both
            vals = {c.impl: c.run() for c in cands if c.error is None}
            for c in cands:
                if c.kind != "ours" or c.impl not in vals:
                    continue
                if "pooled" in c.impl:
                    ref = next((v for k, v in vals.items() if k.startswith("medpy")), None)
                else:
                    ref = next((v for k, v in vals.items() if k.startswith("MONAI")), None)
                if ref is not None and c.impl in vals:
                    c.value = float((vals[c.impl].double().cpu().reshape(-1)
                                     - torch.as_tensor(ref).double().cpu().reshape(-1)).abs().max())
            rows = report.add_group("surface", label, metric, cands, rw_ms=None)
            for row in rows:
                lines.append(f"| {metric} | {label} | {row.impl} | {fmt(row.ms) if not row.error else 'fails: ' + row.error}"
                             f" | {fmt(row.x_peer, suffix='x')} | {fmt(row.value, 4) if row.value is not None else '-'} |")
                log(f"  {metric} {label:15s} {row.impl:50s} {fmt(row.ms):>8s} ms xpeer {fmt(row.x_peer)} "
                    f"diff {fmt(row.value, 4)}{'  ' + row.error if row.error else ''}")
    report.tables.append(("surface", "Surface metrics of blob mask pairs (MONAI and ours: max of the two directed "
                                     "95th percentiles; medpy: pooled)", lines))


def two_discs(size: int, radius: float, shift: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Two overlapping discs in a ``size x size`` image, centres ``shift`` apart along both axes."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = (size - 1) / 2
    a = ((yy - c + shift / 2) ** 2 + (xx - c + shift / 2) ** 2) <= radius * radius
    b = ((yy - c - shift / 2) ** 2 + (xx - c - shift / 2) ** 2) <= radius * radius
    return a, b


def run_modified_hausdorff(args, timer: Timer, report: Report, log) -> None:
    """Seed 000 eq. 7 on one tile of two overlapping discs: the default path (no pairs formed) vs
    all |X| x |Y| pairs (the previous implementation, still used for small sets), same values."""
    try:
        import seglosses.metrics as SM
        from seglosses.metrics import surface as S

        mhd = SM.modified_hausdorff
        threshold = S._ALL_PAIRS_MAX
    except (ImportError, AttributeError):
        report.notes.append("Modified Hausdorff row skipped: the pair-free path is not there.")
        return
    size, radius, shift = (128, 40.0, 12.0) if args.quick else (256, 80.0, 24.0)
    a, b = two_discs(size, radius, shift)
    pred = a[None, None].float().to(args.device)
    tgt = b[None].long().to(args.device)
    label = f"1 pair {size}^2, discs of {int(a.sum())} and {int(b.sum())} px"

    last: Dict[str, torch.Tensor] = {}  # each candidate's latest value (no extra call of the slow one)

    def default_path():
        last["ours"] = mhd(pred, tgt, reduction="none")

    def all_pairs():
        S._ALL_PAIRS_MAX = 1 << 62
        try:
            last["ref"] = mhd(pred, tgt, reduction="none")
        finally:
            S._ALL_PAIRS_MAX = threshold

    cands = [Candidate("seglosses modified_hausdorff (default)", "ours", default_path),
             Candidate("all X-Y pairs (previous implementation)", "ref", all_pairs)]
    # the all-pairs call takes tens of seconds: one warm-up and as few rounds as the budget allows
    Timer(args.device, args.rounds, 1, args.budget).time_group(cands)
    ours, ref = cands[0], cands[1]
    if "ours" in last and "ref" in last:
        ours.value = float((last["ours"].double() - last["ref"].double()).abs().max())
        log(f"  modified_hausdorff values: default {last['ours'].double().item():.10f}, "
            f"all pairs {last['ref'].double().item():.10f}")
    rows = report.add_group("mhd", label, "modified_hausdorff", cands, rw_ms=None)
    speed = None if ours.median_ms is None or ref.median_ms is None else ref.median_ms / ours.median_ms
    lines = ["| case | implementation | median ms | rounds | speed-up | max abs diff vs all pairs |",
             "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        sp = fmt(speed, suffix="x") if row.kind == "ours" else "-"
        lines.append(f"| {label} | {row.impl} | {fmt(row.ms) if not row.error else 'fails: ' + row.error} "
                     f"| {row.rounds} | {sp} | {fmt(row.value, 6) if row.value is not None else '-'} |")
        log(f"  modified_hausdorff {label} {row.impl:45s} {fmt(row.ms):>10s} ms rounds {row.rounds} "
            f"diff {fmt(row.value, 6)}{'  ' + row.error if row.error else ''}")
    report.tables.append(("mhd", "Seed 000 eq. 7 (modified Hausdorff distance, foreground sets) on one tile "
                                     "of two overlapping discs: default path vs all pairs", lines))


def run_overlap(args, timer: Timer, report: Report, log) -> None:
    try:
        import seglosses.metrics as SM

        our_dice = SM.dice
    except (ImportError, AttributeError):
        report.notes.append("Overlap section skipped: `seglosses.metrics.dice` is not there.")
        return
    b, c, hw = (8, 4, (128, 128)) if args.quick else (64, 4, (256, 256))
    fields = smooth_fields(b, c, hw, seed=6)
    tgt_l = fields.argmax(1)
    pred_l = (fields + 0.3 * torch.randn(fields.shape, generator=torch.Generator().manual_seed(7))).argmax(1)
    pred_oh = TF.one_hot(pred_l, c).movedim(-1, 1).float().to(args.device)
    tgt_oh = TF.one_hot(tgt_l, c).movedim(-1, 1).float().to(args.device)
    pred_l, tgt_l = pred_l.to(args.device), tgt_l.to(args.device)
    label = f"{b}x{c}x{hw[0]}x{hw[1]}"
    lines = ["| input | implementation | median ms | x fastest peer | x read | max abs diff vs peer |",
             "|---|---|---:|---:|---:|---:|"]
    for fmt_name, (p, t) in {"one-hot float": (pred_oh, tgt_oh), "label maps": (pred_l, tgt_l)}.items():
        cands: List[Candidate] = [Candidate("read floor", "floor", lambda p=p, t=t: (p.sum(), t.sum()))]
        cands.append(Candidate("seglosses metrics.dice", "ours",
                               lambda p=p, t=t: our_dice(p, t, mode="multiclass", num_classes=c,
                                                         reduction="none")))
        if fmt_name == "one-hot float":
            try:
                from monai.metrics import DiceMetric

                metric = DiceMetric(include_background=True, reduction="none")

                def monai_run(p=p, t=t, metric=metric):
                    metric.reset()
                    metric(p, t)
                    return metric.aggregate()

                cands.append(Candidate("MONAI DiceMetric", "peer", monai_run))
            except Exception:  # noqa: BLE001
                pass
        if has_module("torchmetrics"):
            try:
                from torchmetrics.functional.segmentation import dice_score

                fmt_tm = "one-hot" if fmt_name == "one-hot float" else "index"
                pp, tt = (p.long(), t.long()) if fmt_tm == "one-hot" else (p, t)
                cands.append(Candidate(f"torchmetrics dice_score(input_format={fmt_tm!r})", "peer",
                                       lambda pp=pp, tt=tt, fmt_tm=fmt_tm: dice_score(
                                           pp, tt, num_classes=c, include_background=True, average="none",
                                           input_format=fmt_tm)))
            except Exception:  # noqa: BLE001
                pass
        timer.time_group(cands)
        vals = {cd.impl: cd.run() for cd in cands if cd.error is None and cd.kind != "floor"}
        ours_v = vals.get("seglosses metrics.dice")
        for cd in cands:
            if cd.kind == "ours" and ours_v is not None:
                diffs = [float((ours_v.double().cpu().reshape(-1) - torch.as_tensor(v).double().cpu().reshape(-1))
                               .abs().max()) for k, v in vals.items() if k != cd.impl
                         and torch.as_tensor(v).numel() == ours_v.numel()]
                cd.value = max(diffs) if diffs else None
        rows = report.add_group("overlap", f"{label} {fmt_name}", "dice", cands, rw_ms=cands[0].median_ms)
        for row in rows:
            lines.append(f"| {fmt_name} | {row.impl} | {fmt(row.ms) if not row.error else 'fails: ' + row.error} "
                         f"| {fmt(row.x_peer, suffix='x')} | {fmt(row.x_rw, suffix='x')} "
                         f"| {fmt(row.value, 6) if row.value is not None else '-'} |")
            log(f"  overlap {fmt_name:14s} {row.impl:55s} {fmt(row.ms):>8s} ms xpeer {fmt(row.x_peer)}"
                f"{'  ' + row.error if row.error else ''}")
    report.tables.append(("overlap", f"Per-image, per-class Dice of hard predictions, {label}", lines))


def run_profile(args, timer: Timer, report: Report, log) -> None:
    """torch.profiler op tables of seglosses' Dice (image domain) per case and kernel: where the time goes
    (with the compiled kernel, each compiled graph is one row, ``## Call CompiledFxGraph ...``)."""
    if args.device != "cpu":
        return
    from torch.profiler import ProfilerActivity, profile

    import seglosses.functional as F

    from seglosses import use_kernel

    cases = QUICK_LOSS_CASES if args.quick else LOSS_CASES
    kernels = ("eager", "compiled") if KERNEL_ROWS else ("eager",)
    for case_name in args.cases:
        case = make_loss_case(case_name, cases[case_name], torch.float32, args.device)
        for kernel in kernels:
            run = fwd_bwd(lambda a, b: F.dice_loss(a, b, mode=case.mode), case.x, case.target)
            with use_kernel(kernel), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(3):
                    case.x.grad = None
                    run()
                reps = 10
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(reps):
                        case.x.grad = None
                        run()
            stats = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
            total = sum(e.self_cpu_time_total for e in stats)
            lines = ["| op | calls per step | self ms per step | share |", "|---|---:|---:|---:|"]
            for e in stats[:12]:
                key = e.key if len(e.key) <= 60 else e.key[:57] + "..."
                lines.append(f"| `{key}` | {e.count / reps:g} | {e.self_cpu_time_total / reps / 1e3:.3f} "
                             f"| {100 * e.self_cpu_time_total / max(total, 1):.0f} % |")
            lines.append(f"| total (profiled) | | {total / reps / 1e3:.3f} | 100 % |")
            report.tables.append(("profile", f"dice_loss forward+backward, kernel={kernel}, {case.title}", lines))
            log(f"  profile kernel={kernel} {case.title}: {total / reps / 1e3:.3f} ms per step (profiled)")


# --------------------------------------------------------------------------- targets


def target_summary(report: Report) -> List[str]:
    """Check the issue's targets against the measured rows; one line per check."""
    lines = ["| target | case | measured | status |", "|---|---|---|---|"]
    region = set()
    for e in registry_entries():
        if getattr(e, "family", "region") == "region":
            region.add(e.name)
    loss_rows = [r for r in report.rows if r.section == "losses"]

    def group_rows(case, group):
        return [r for r in loss_rows if r.case == case and r.group == group]

    for r in loss_rows:
        if r.kind != "ours" or r.ms is None or r.group not in region:
            continue
        rows = group_rows(r.case, r.group)
        rw = next((x.ms for x in rows if x.impl == "RW floor"), None)
        peers = [x for x in rows if x.kind == "peer" and x.ms is not None]
        name = f"{r.group}, {impl_label(r)}"
        ok = r.x_rw is not None and r.x_rw <= 2.0
        lines.append(f"| {name}: fwd+bwd <= 2x RW | {r.case} | {fmt(r.x_rw)}x RW ({fmt(r.ms)} ms) | "
                     f"{'met' if ok else f'missed by {fmt(r.x_rw / 2.0)}x'} |")
        if peers:
            fastest = min(peers, key=lambda x: x.ms)
            speedup = fastest.ms / r.ms
            binding_floor = rw is not None and fastest.ms <= 3.2 * rw
            status = "met" if speedup >= 5 else f"missed: {fmt(speedup)}x instead of 5x"
            if binding_floor and speedup < 5:
                status = "n/a: peer within 3.2x of RW, the floor target binds"
            lines.append(f"| {name}: >= 5x faster than the fastest peer | {r.case} | speed-up {fmt(speedup)}x vs "
                         f"{fastest.impl} {fastest.note} ({fmt(fastest.ms)} ms) | {status} |")
        if r.extra_mem is not None:
            lines.append(f"| {name}: extra memory <= 1 input | {r.case} | {fmt(r.extra_mem)} | "
                         f"{'met' if r.extra_mem <= 1.02 else f'missed by {fmt(r.extra_mem - 1.0)}'} |")
    for r in loss_rows:
        if r.kind != "ours" or r.ms is None:
            continue
        rows = group_rows(r.case, r.group)
        peers = [x for x in rows if x.kind == "peer" and x.ms is not None]
        if r.group in ("focal", "cross_entropy", "topk"):
            ref = [x for x in loss_rows if x.case == r.case and x.group == "cross_entropy" and x.kind == "peer"
                   and x.ms is not None]
            if ref:
                ratio = r.ms / ref[0].ms
                lines.append(f"| {r.group}, {impl_label(r)}: no slower than torch CE | {r.case} | {fmt(ratio)}x torch CE | "
                             f"{'met' if ratio <= 1.0 else f'missed by {fmt(ratio)}x'} |")
        if r.group == "lovasz" and peers:
            fastest = min(peers, key=lambda x: x.ms)
            sp = fastest.ms / r.ms
            lines.append(f"| lovasz, {impl_label(r)}: >= 2x faster than the fastest peer | {r.case} | speed-up {fmt(sp)}x | "
                         f"{'met' if sp >= 2 else 'missed'} |")
        if r.group in ("hausdorff_dt", "boundary") and "binary" in r.case:
            monai = [x for x in loss_rows if x.case == r.case and x.group == "hausdorff_dt" and x.impl == "MONAI"
                     and x.ms is not None]
            if monai:
                sp = monai[0].ms / r.ms
                lines.append(f"| {r.group}, {impl_label(r)}: >= 5x faster than MONAI HausdorffDTLoss | {r.case} | "
                             f"speed-up {fmt(sp)}x | {'met' if sp >= 5 else 'missed'} |")
    for r in report.rows:
        if r.section == "edt" and r.kind == "ours" and r.ms is not None:
            peers = [x for x in report.rows if x.section == "edt" and x.case == r.case and x.kind == "peer"
                     and x.ms is not None]
            if peers:
                fastest = min(peers, key=lambda x: x.ms)
                ok = r.ms <= fastest.ms and (r.value is None or r.value < 1e-4)
                lines.append(f"| EDT {r.impl}: <= fastest of scipy/edt, exact | {r.case} | "
                             f"{fmt(r.ms / fastest.ms)}x {fastest.impl}, max diff {fmt(r.value, 3)} | "
                             f"{'met' if ok else 'missed'} |")
        if r.section == "surface" and r.kind == "ours" and r.ms is not None and "256" in r.case:
            monai = [x for x in report.rows if x.section == "surface" and x.case == r.case and x.group == r.group
                     and x.impl.startswith("MONAI") and x.ms is not None]
            if monai:
                sp = monai[0].ms / r.ms
                lines.append(f"| {r.impl}: >= 5x faster than MONAI, same values | {r.case} | speed-up {fmt(sp)}x, "
                             f"max diff {fmt(r.value, 4)} | {'met' if sp >= 5 else 'missed'} |")
    for r in report.rows:
        if r.section == "mhd" and r.kind == "ours" and r.ms is not None:
            ref = [x for x in report.rows if x.section == "mhd" and x.case == r.case
                   and x.group == r.group and x.kind == "ref" and x.ms is not None]
            if ref:
                sp = ref[0].ms / r.ms
                ok = sp >= 20 and r.value is not None and r.value <= 1e-9
                lines.append(f"| modified Hausdorff (seed 000 eq. 7): >= 20x faster than all pairs, same values | "
                             f"{r.case} | speed-up {fmt(sp)}x, max diff {fmt(r.value, 6)} | "
                             f"{'met' if ok else 'missed'} |")
    return lines


# --------------------------------------------------------------------------- main


SECTIONS = {
    "losses": run_losses,
    "edt": run_edt,
    "surface": run_surface,
    "mhd": run_modified_hausdorff,
    "overlap": run_overlap,
    "profile": run_profile,
}


def write_markdown(path: str, args, report: Report, header: Dict[str, str]) -> None:
    out = [f"# seglosses benchmark: {header['machine']}", ""]
    for k, v in header.items():
        out.append(f"- **{k}**: {v}")
    out.append("")
    out.append("Times are medians of interleaved rounds (same process, same tensors). `x RW`: the median over "
               "the RW floor of the same group; `x fastest peer`: the median over the fastest peer's median "
               "(below 1 = faster); extra memory: peak allocation of one forward+backward above its start, minus "
               "the input gradient it leaves, in input-sized tensors (see benchmarks/README.md).")
    out.append("")
    titles = {"losses": "Losses (forward+backward)", "edt": "Distance transforms", "surface": "Surface metrics",
              "mhd": "Modified Hausdorff distance (seed 000 eq. 7)",
              "overlap": "Overlap metrics", "profile": "Profiles of seglosses' Dice (where the time goes)"}
    for section in SECTIONS:
        tables = [t for t in report.tables if t[0] == section]
        if not tables:
            continue
        out.append(f"## {titles[section]}")
        out.append("")
        for _, title, lines in tables:
            out.append(f"### {title}")
            out.append("")
            out.extend(lines)
            out.append("")
    out.append("## Targets of issue 7")
    out.append("")
    out.extend(target_summary(report))
    out.append("")
    if report.notes:
        out.append("## Notes")
        out.append("")
        out.extend(f"- {n}" for n in report.notes)
        out.append("")
    with open(path, "w") as fh:
        fh.write("\n".join(out))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="small tensors and few rounds: a smoke run (< 2 min)")
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    ap.add_argument("--cases", nargs="+", default=list(LOSS_CASES), choices=list(LOSS_CASES))
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    ap.add_argument("--losses", nargs="+", default=None, help="only these registry names / compounds")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--rounds", type=int, default=None, help="max interleaved rounds per group (default 15; quick 3)")
    ap.add_argument("--min-rounds", type=int, default=None, help="min rounds per group (default 5; quick 2)")
    ap.add_argument("--budget", type=float, default=None, help="seconds of timed rounds per group (default 3)")
    ap.add_argument("--no-memory", action="store_true", help="skip the extra-memory measurement")
    ap.add_argument("--no-compiled", action="store_true",
                    help="skip the rows of the compiled statistics kernel (they compile for seconds each)")
    ap.add_argument("--steady-malloc", action="store_true",
                    help="glibc: serve large blocks from the heap and never trim it (mallopt), so that "
                         "freed memory is reused without page faults: times without the OS's share")
    ap.add_argument("--machine", default=None, help="results file name (default: device-cores-cpu model)")
    ap.add_argument("--output", default=None, help="markdown path (default benchmarks/results/<machine>.md)")
    args = ap.parse_args(argv)
    if args.quick:
        args.dtypes = args.dtypes if "--dtypes" in (argv or sys.argv) else ["float32"]
    args.rounds = args.rounds or (3 if args.quick else 15)
    args.min_rounds = args.min_rounds or (2 if args.quick else 5)
    args.budget = args.budget or (0.3 if args.quick else 3.0)
    return args


def steady_malloc() -> str:
    """Ask glibc to keep freed memory (no mmap for large blocks, no trimming)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return "not available (no C library found)"
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):
        return "not available (no mallopt)"
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, (1 << 31) - 1)
    return "on (mallopt: M_MMAP_THRESHOLD 1 GiB, M_TRIM_THRESHOLD 2 GiB)" if ok else "mallopt refused"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    global KERNEL_ROWS
    KERNEL_ROWS = not args.no_compiled
    malloc_state = steady_malloc() if args.steady_malloc else "default (the C library's)"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    t_start = time.perf_counter()
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    machine = args.machine or machine_slug(args.device)
    suffix = ("-quick" if args.quick else "") + ("-steady-malloc" if args.steady_malloc else "")
    out_md = args.output or os.path.join(RESULTS_DIR, f"{machine}{suffix}.md")
    os.makedirs(os.path.dirname(out_md) or ".", exist_ok=True)
    timer = Timer(args.device, args.rounds, args.min_rounds, args.budget)
    report = Report()

    def log(msg: str) -> None:
        print(msg, flush=True)

    for section in args.sections:
        log(f"\n### section {section}")
        SECTIONS[section](args, timer, report, log)
    elapsed = time.perf_counter() - t_start
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else None
    peers = ", ".join(f"{m} {v}" for m in ("monai", "kornia", "torchmetrics", "medpy", "scipy", "edt",
                                           "segmentation_models_pytorch") if (v := module_version(m)))
    import seglosses

    header = {
        "machine": machine,
        "CPU": f"{cpu_model()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}",
        "GPU": torch.cuda.get_device_name(0) if args.device == "cuda" else "not used",
        "software": f"Python {platform.python_version()}, torch {torch.__version__}, seglosses "
                    f"{getattr(seglosses, '__version__', '?')}; peers: {peers or 'none'}; smp "
                    f"{'installed' if has_module('segmentation_models_pytorch') else 'not installed (skipped)'}",
        "command": "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "wall time": f"{elapsed / 60:.1f} min",
        "load average (1 min) at start / end": (f"{load0[0]:.2f} / {load1[0]:.2f}" if load0 and load1 else "n/a"),
        "rounds": f"{args.min_rounds}-{args.rounds} per group (time budget {args.budget} s per group)",
        "allocator": malloc_state,
    }
    write_markdown(out_md, args, report, header)
    with open(os.path.splitext(out_md)[0] + ".json", "w") as fh:
        json.dump({"header": header, "rows": [asdict(r) for r in report.rows]}, fh, indent=1)
    log(f"\nwrote {out_md} ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
