"""A short training run on synthetic data: every region loss, imagewise and batchwise.

Run: python examples/quickstart.py
"""
from __future__ import annotations

import time

import torch

import seglosses as sl


def synthetic(n=32, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images, masks = [], []
    for i in range(n):
        m = torch.zeros(size, size, dtype=torch.long)
        if i % 4 == 0:  # one image in four has a lesion
            cy, cx = torch.randint(8, size - 8, (2,), generator=g).tolist()
            r = int(torch.randint(3, 7, (1,), generator=g))
            m = (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).long()
        img = 0.3 * torch.rand(size, size, generator=g) + 0.5 * m
        images.append(img[None])
        masks.append(m)
    return torch.stack(images), torch.stack(masks)


def train(loss_fn, x, y, steps=40):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 1, 1),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = (torch.sigmoid(net(x)) > 0.5).long()[:, 0]
    c = sl.functional.soft_confusion(pred[:, None].float(), y, domain="batch")
    return float(2 * c.tp / (2 * c.tp + c.fp + c.fn)), float(loss.detach())


def main():
    torch.set_num_threads(2)
    x, y = synthetic()
    print(f"{'loss':<34} {'domain':<6} {'final loss':>10} {'Dice':>6} {'s':>5}")
    for name in ["dice", "tversky", "focal_tversky"]:
        for domain in ("image", "batch"):
            t0 = time.perf_counter()
            loss_fn = sl.registry.resolve(name).cls(domain=domain)
            dice, final = train(loss_fn, x, y)
            print(f"{name:<34} {domain:<6} {final:10.4f} {dice:6.3f} {time.perf_counter() - t0:5.1f}")
    loss_fn = sl.TverskyLoss(domain="batch") + 0.1 * sl.ConfidencePenalty()
    dice, final = train(loss_fn, x, y)
    print(f"{'tversky + 0.1*confidence_penalty':<34} {'batch':<6} {final:10.4f} {dice:6.3f}")


if __name__ == "__main__":
    main()
