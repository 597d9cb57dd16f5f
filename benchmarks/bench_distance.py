"""Wall-clock timings of the distance transform backends.

Run ``python benchmarks/bench_distance.py`` for a markdown table of the median
time (ms) per backend and shape. The masks are smooth random blobs (about 20 %
foreground), closer to segmentation masks than independent noise.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from seglosses.distance import edt

DEFAULT_SHAPES = ((16, 256, 256), (16, 512, 512), (1, 128, 128, 128))


def blob_masks(shape: Sequence[int], *, seed: int = 0) -> torch.Tensor:
    """Bool masks ``[B, *spatial]`` of smooth random blobs (2D or 3D spatial)."""
    batch, *spatial = shape
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, 1, *[max(n // 16, 2) for n in spatial], generator=generator)
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
    fine = F.interpolate(coarse, size=spatial, mode=mode, align_corners=False)[:, 0]
    return fine > 0.5


def bench_distance(
    shapes: Sequence[Sequence[int]] = DEFAULT_SHAPES,
    backends: Sequence[str] = ("edt", "scipy", "torch"),
    *,
    repeats: int = 5,
    device: str = "cpu",
) -> dict[tuple[tuple[int, ...], str], float]:
    """Median wall time in ms of :func:`seglosses.distance.edt` per (shape, backend).

    The backends take turns within each repeat, so that a change in machine
    load hits all of them alike. Each backend runs once untimed first.
    """
    results: dict[tuple[tuple[int, ...], str], float] = {}
    for shape in shapes:
        mask = blob_masks(shape).to(device)
        times: dict[str, list[float]] = {b: [] for b in backends}
        for backend in backends:
            edt(mask, backend=backend)
        for _ in range(repeats):
            for backend in backends:
                if device != "cpu":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                edt(mask, backend=backend)
                if device != "cpu":
                    torch.cuda.synchronize()
                times[backend].append(time.perf_counter() - start)
        for backend in backends:
            results[(tuple(shape), backend)] = 1e3 * statistics.median(times[backend])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="edt,scipy,torch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    backends = args.backends.split(",")
    results = bench_distance(backends=backends, repeats=args.repeats, device=args.device)
    print(f"threads: {torch.get_num_threads()}\n")
    print("| shape | " + " | ".join(backends) + " |")
    print("|---" * (len(backends) + 1) + "|")
    for shape in DEFAULT_SHAPES:
        cells = " | ".join(f"{results[(tuple(shape), b)]:.0f}" for b in backends)
        print(f"| {'x'.join(map(str, shape))} | {cells} |")


if __name__ == "__main__":
    main()
