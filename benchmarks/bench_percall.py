"""The fixed cost of one call: seglosses' Dice against MONAI's on tiny inputs.

On a tiny input the time of a forward+backward is the per-call overhead (Python, op
dispatch, autograd nodes, host syncs), not the arithmetic. The candidates run
interleaved (the order rotating every round) in one process on the same tensors; the
median of each is reported with its ratio to MONAI's. With ``--baseline NAME`` an
importable copy of another seglosses version runs in the same rounds (see
:mod:`benchmarks.bench_interleaved`)::

    python -m benchmarks.bench_percall                  # (16,1,4,4) binary and (4,3,4,4) multiclass
    python -m benchmarks.bench_percall --rounds 41 --calls 200
    PYTHONPATH=src:/tmp/old python -m benchmarks.bench_percall --baseline seglosses_base
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import time
from typing import Callable, Dict, List

import torch


def _time(fn: Callable[[], None], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def _candidates(case: str, packages: Dict[str, object]) -> Dict[str, Callable[[], None]]:
    g = torch.Generator().manual_seed(0)
    if case == "binary":
        x = torch.randn(16, 1, 4, 4, generator=g).requires_grad_()
        t = (torch.rand(16, 1, 4, 4, generator=g) > 0.5).float()
        mode = "binary"
        monai_kw = dict(sigmoid=True)
        t_ours = t
    else:
        x = torch.randn(4, 3, 4, 4, generator=g).requires_grad_()
        lab = torch.randint(0, 3, (4, 4, 4), generator=g)
        t = torch.nn.functional.one_hot(lab, 3).movedim(-1, 1).float()
        mode = "multiclass"
        monai_kw = dict(softmax=True)
        t_ours = lab
    out: Dict[str, Callable[[], None]] = {}
    for name, pkg in packages.items():
        ours = pkg.DiceLoss(mode=mode)  # type: ignore[attr-defined]

        def run_ours(ours=ours) -> None:
            x.grad = None
            ours(x, t_ours).backward()

        out[name] = run_ours
    try:
        from monai.losses import DiceLoss as MonaiDice

        peer = MonaiDice(**monai_kw)

        def run_monai() -> None:
            x.grad = None
            peer(x, t).backward()

        out["MONAI"] = run_monai
    except ImportError:
        pass
    return out


def main(argv: List[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=31)
    ap.add_argument("--calls", type=int, default=100, help="calls per timed block")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline", default=None, help="importable name of another seglosses version")
    ap.add_argument("--steady-malloc", action="store_true",
                    help="glibc keeps freed memory in the heap (times without the page faults of fresh allocations)")
    args = ap.parse_args(argv)
    if args.steady_malloc:
        from benchmarks.run import steady_malloc

        print(f"allocator: {steady_malloc()}")
    torch.set_num_threads(args.threads)
    packages = {"seglosses": importlib.import_module("seglosses")}
    if args.baseline:
        packages["baseline"] = importlib.import_module(args.baseline)
    for case in ("binary", "multiclass"):
        cands = _candidates(case, packages)
        for fn in cands.values():
            _time(fn, args.calls)  # warm-up
        times: Dict[str, List[float]] = {k: [] for k in cands}
        names = list(cands)
        for r in range(args.rounds):
            for k in names[r % len(names):] + names[:r % len(names)]:
                times[k].append(_time(cands[k], args.calls))
        med = {k: statistics.median(v) for k, v in times.items()}
        ref = med.get("MONAI")
        shape = "(16,1,4,4) binary" if case == "binary" else "(4,3,4,4) multiclass"
        for k, m in med.items():
            ratio = f"{m / ref:.2f}x MONAI" if ref else "-"
            print(f"{shape:24s} {k:10s} {m * 1e6:8.1f} us/call  {ratio}")


if __name__ == "__main__":
    main()
