"""A seglosses loss and metric in a MONAI training loop (MONAI transforms, data and UNet).

    python examples/integrations/monai_loop.py

Everything is MONAI's except two lines: the loss (``sl.build_loss``) and the metric
(``sl.metrics.SegmentationMetrics``). MONAI's label maps are ``[B, 1, *spatial]``;
:func:`seglosses.integrations.squeeze_channel_label` gives the ``[B, *spatial]`` label map
seglosses takes.
"""
from __future__ import annotations

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.networks.nets import UNet
from monai.transforms import Compose, EnsureTyped, RandFlipd, RandRotate90d, ScaleIntensityd

import seglosses as sl
from seglosses.integrations import squeeze_channel_label


def synthetic_items(n: int, size: int = 32, seed: int = 0) -> list:
    """MONAI-style dict items: a noisy image with a bright disc, its [1, H, W] label map."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    items = []
    for _ in range(n):
        cy, cx, r = rng.integers(8, size - 8), rng.integers(8, size - 8), rng.integers(3, 7)
        label = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.float32)[None]
        image = (rng.normal(0, 0.3, (1, size, size)) + 2 * label).astype(np.float32)
        items.append({"image": image, "label": label})
    return items


def main(steps: int = 6, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    train_transforms = Compose([
        ScaleIntensityd(keys="image"),
        RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=1),
        RandRotate90d(keys=["image", "label"], prob=0.5),
        EnsureTyped(keys=["image", "label"]),
    ])
    val_transforms = Compose([ScaleIntensityd(keys="image"), EnsureTyped(keys=["image", "label"])])
    train_loader = DataLoader(Dataset(synthetic_items(16, seed=seed), train_transforms), batch_size=4, shuffle=True)
    val_loader = DataLoader(Dataset(synthetic_items(8, seed=seed + 1), val_transforms), batch_size=4)

    model = UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)
    loss_fn = sl.build_loss("dice(domain='batch') + focal")          # seglosses, binary mode
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    metrics = sl.metrics.SegmentationMetrics(["dice", "hd95"], from_logits=True)   # seglosses

    losses = []
    step = 0
    while step < steps:
        for batch in train_loader:
            model.train()
            optimizer.zero_grad()
            loss = loss_fn(model(batch["image"]), squeeze_channel_label(batch["label"]))
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            if step == steps:
                break
    model.eval()
    with torch.no_grad():
        for batch in val_loader:
            metrics.update(model(batch["image"]), squeeze_channel_label(batch["label"]))
    results = {k: float(v) for k, v in metrics.compute().items()}
    results["first_loss"], results["last_loss"] = losses[0], losses[-1]
    return results


if __name__ == "__main__":
    for key, value in main(steps=40).items():
        print(f"{key}: {value:.4f}")
