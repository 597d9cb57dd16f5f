"""Train a small network with a seglosses loss under Lightning, on synthetic data (CPU).

    python examples/integrations/lightning_train.py

Logs ``train/loss``, the loss's terms, and the seglosses metrics at each validation epoch.
"""
from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from seglosses.integrations.lightning import SegmentationModule


def synthetic(n: int = 32, size: int = 32, seed: int = 0) -> TensorDataset:
    """Images with a bright square; the label map marks it (class 1) and its rim (class 2)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g) * 0.2
    y = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        r, c = torch.randint(4, size - 12, (2,), generator=g).tolist()
        y[i, r:r + 8, c:c + 8] = 2
        y[i, r + 1:r + 7, c + 1:c + 7] = 1
        x[i, 0, r:r + 8, c:c + 8] += 0.7
    return TensorDataset(x, y)


def small_net(classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, classes, 1))


def main(max_steps: int = 20, val_batches: int = 2, n_train: int = 32) -> dict:
    torch.manual_seed(0)
    module = SegmentationModule(small_net(), loss="0.5*dice + 0.5*ce", mode="multiclass", num_classes=3,
                                metrics=["dice", "jaccard", "hd95"], lr=1e-2)
    trainer = L.Trainer(max_steps=max_steps, limit_val_batches=val_batches, check_val_every_n_epoch=1,
                        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, DataLoader(synthetic(n_train), batch_size=4, shuffle=True),
                DataLoader(synthetic(8, seed=1), batch_size=4))
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


if __name__ == "__main__":
    for key, value in sorted(main().items()):
        print(f"{key}: {value:.4f}")
