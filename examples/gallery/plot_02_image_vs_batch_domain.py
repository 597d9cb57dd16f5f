"""
Image domain vs batch domain: an empty image and a small object
===============================================================

A batch of four images: two with a large object, one with a **small object** (a few
pixels) and one **empty** (no foreground). The model predicts every object a little too
small (a ring of missed pixels) and, on the empty image, a faint false-positive blob.

With ``domain="image"`` the Dice/Tversky index is computed per image and then averaged, so
the small object and the empty image weigh as much as the large objects; with
``domain="batch"`` one index is computed over the sums of the whole batch (seed 000
section 2.1), so every pixel weighs the same. The figure shows the per-image losses
(``reduction="none"``), the batch loss and where each domain puts its gradient.
"""
import matplotlib.pyplot as plt
import torch

import seglosses as sl

H = W = 48
yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")


def disc(cy, cx, r):
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).long()


targets = torch.stack([disc(24, 24, 14), disc(20, 26, 12), disc(30, 18, 2), torch.zeros(H, W, dtype=torch.long)])
# predicted probabilities: the object shrunk by one pixel (0.9 inside, 0.1 outside) and,
# on the empty image, a faint blob of 0.3
pred = torch.stack([disc(24, 24, 13), disc(20, 26, 11), disc(30, 18, 1), torch.zeros(H, W, dtype=torch.long)]).double()
probs = 0.1 + 0.8 * pred
probs[3] = 0.05 + 0.25 * disc(10, 36, 5).double()
probs = probs.unsqueeze(1).requires_grad_(True)  # [B, 1, H, W]

results = {}
for domain in ("image", "batch"):
    loss_fn = sl.DiceLoss(mode="binary", from_logits=False, domain=domain)
    loss = loss_fn(probs, targets)
    (grad,) = torch.autograd.grad(loss, probs)
    per = sl.DiceLoss(mode="binary", from_logits=False, domain=domain, reduction="none")(probs, targets)
    results[domain] = (float(loss.detach()), grad[:, 0], per.detach().flatten())
    print(f"{domain:5s} domain: loss {float(loss.detach()):.4f}; per-image/batch values {per.detach().flatten().tolist()}")

names = ["large", "large", "small object", "empty"]
fig, axes = plt.subplots(3, 4, figsize=(12, 9))
for i in range(4):
    axes[0, i].imshow(probs[i, 0].detach(), vmin=0, vmax=1, cmap="gray")
    axes[0, i].contour(targets[i], levels=[0.5], colors="r", linewidths=0.8)
    title = f"{names[i]}: image-domain loss {results['image'][2][i]:.3f}"
    axes[0, i].set_title(title, fontsize=9)
    for row, domain in ((1, "image"), (2, "batch")):
        g = results[domain][1][i]
        lim = float(results[domain][1].abs().max())
        axes[row, i].imshow(g, cmap="coolwarm", vmin=-lim, vmax=lim)
        axes[row, i].set_title(f"{domain} domain: |grad| sum {float(g.abs().sum()):.3f}", fontsize=9)
for ax in axes.flat:
    ax.set_axis_off()
fig.suptitle(f"Dice loss: image domain {results['image'][0]:.3f} (mean of 4 images), "
             f"batch domain {results['batch'][0]:.3f} (one index over the batch)\n"
             "row 1: prediction (grey) and truth (red); rows 2-3: dL/dp (blue: raise p, red: lower p)")
fig.tight_layout()
plt.show()

# %%
# What the figure shows. In the image domain the empty image's term is stuck: with a
# small :math:`\delta`, :math:`1 - \delta/(FP + \delta)` stays about 1 whatever the
# false positives, so its gradient is almost 0 and nothing removes the faint blob. The
# small object's few pixels decide a whole term, so each gets a large gradient (dark
# blue). In the batch domain the blob's false positives are pushed down like any other
# background pixel, and every pixel of the batch weighs the same. See
# :doc:`/guides/domains`.
