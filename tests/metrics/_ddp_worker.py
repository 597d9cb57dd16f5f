"""One process of the 2-process test of SegmentationMetrics under torch.distributed (gloo).

Run as ``python -m tests.metrics._ddp_worker RANK WORLD PORT OUT`` from the repository root.
Every rank builds the same data set, updates with its own shard (of unequal size) in
batches, calls ``compute()`` (the all-reduce) and saves the result to ``OUT.RANK.pt``.
"""
from __future__ import annotations

import sys

import torch
import torch.distributed as dist


def dataset():
    """The shared data: 7 images, 3 classes, 2D, and the metric configuration."""
    gen = torch.Generator().manual_seed(11)
    x = torch.rand(7, 3, 12, 15, generator=gen).softmax(1)
    t = torch.randint(0, 3, (7, 12, 15), generator=gen)
    t[2][t[2] == 2] = 1  # a class absent from one image
    return x, t


def make_metrics():
    from seglosses.metrics import SegmentationMetrics

    return SegmentationMetrics(
        ["dice", "iou", "balanced_accuracy", "pixel_accuracy", ("ap", {"bins": 64}), ("hd95", {"missing": "diagonal"}),
         "assd", "surface_dice", "iou_per_class", "mcc", ("fbeta_score", {"beta": 2.0}), "pt", "gds", "avd",
         ("fm", {"average": "weighted"}), ("auc", {"bins": 32}),
         ("ece", {"bins": 10}), "mce", ("hausdorff", {"distance": "chessboard", "directed": True})],
        num_classes=3, mode="multiclass", spacing=(1.0, 0.5),
    )


SHARDS = {0: slice(0, 3), 1: slice(3, 7)}  # rank 0: 3 images, rank 1: 4


def main(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        x, t = dataset()
        m = make_metrics()
        shard = SHARDS[rank]
        xs, ts = x[shard], t[shard]
        for start in range(0, xs.shape[0], 2):  # batches of 2
            m.update(xs[start:start + 2], ts[start:start + 2])
        result = m.compute()
        local = m.state()
        torch.save({"result": result, "local": local}, f"{out}.{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
