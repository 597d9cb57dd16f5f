"""Dice forward+backward of the default (eager) path against MONAI, many interleaved rounds.

For a loaded machine, where the suite's few rounds per group cannot resolve small
differences: each round runs every candidate once per case in a rotating order, and the
report is the median time per candidate with its ratio to MONAI's median. With
``--baseline NAME`` an importable copy of another seglosses version (a package under
another name, e.g. an older checkout copied to ``seglosses_base``) runs in the same
rounds, so old and new are compared on the same tensors at the same moments::

    python -m benchmarks.bench_interleaved --rounds 41
    PYTHONPATH=src:/tmp/old python -m benchmarks.bench_interleaved --baseline seglosses_base
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import time
from typing import Callable, Dict, List, Tuple

import torch

CASES = {
    "binary (16,1,256,256)": ((16, 1, 256, 256), "binary"),
    "multiclass (8,4,256,256)": ((8, 4, 256, 256), "multiclass"),
    "3d (2,3,64,128,128)": ((2, 3, 64, 128, 128), "multiclass"),
    "tiny binary (16,1,4,4)": ((16, 1, 4, 4), "binary"),
}


def _make(shape, mode, dtype) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(dtype).requires_grad_()
    if mode == "binary":
        t = (torch.rand(shape, generator=g) > 0.5).to(dtype)
        return x, t, t
    lab = torch.randint(0, shape[1], (shape[0],) + shape[2:], generator=g)
    onehot = torch.nn.functional.one_hot(lab, shape[1]).movedim(-1, 1).to(dtype)
    return x, lab, onehot


def _candidates(packages: Dict[str, object], mode: str, domain: str, x, t_ours, t_monai) -> Dict[str, Callable]:
    out: Dict[str, Callable] = {}
    for name, pkg in packages.items():
        loss = pkg.DiceLoss(mode=mode, domain=domain)  # type: ignore[attr-defined]

        def run(loss=loss) -> None:
            x.grad = None
            loss(x, t_ours).backward()

        out[name] = run
    from monai.losses import DiceLoss

    kw = dict(sigmoid=True) if mode == "binary" else dict(softmax=True)
    peer = DiceLoss(batch=domain == "batch", **kw)

    def run_monai() -> None:
        x.grad = None
        peer(x, t_monai).backward()

    out["MONAI"] = run_monai
    return out


def main(argv: List[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline", default=None, help="importable name of another seglosses version")
    ap.add_argument("--cases", nargs="+", default=list(CASES))
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
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
    print("| case | dtype | domain | candidate | median ms | x MONAI |")
    print("|---|---|---|---|---:|---:|")
    for case in args.cases:
        shape, mode = CASES[case]
        calls = 50 if shape[-1] == 4 else 1
        for dtype in args.dtypes:
            x, t_ours, t_monai = _make(shape, mode, getattr(torch, dtype))
            for domain in ("image", "batch"):
                cands = _candidates(packages, mode, domain, x, t_ours, t_monai)
                for fn in cands.values():
                    fn()
                    fn()
                times: Dict[str, List[float]] = {k: [] for k in cands}
                names = list(cands)
                for r in range(args.rounds):
                    for k in names[r % len(names):] + names[:r % len(names)]:
                        t0 = time.perf_counter()
                        for _ in range(calls):
                            cands[k]()
                        times[k].append((time.perf_counter() - t0) / calls)
                med = {k: statistics.median(v) for k, v in times.items()}
                for k, m in med.items():
                    print(f"| {case} | {dtype} | {domain} | {k} | {m * 1e3:.3f} | {m / med['MONAI']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
