"""
Reliability diagram of a calibrated and an uncalibrated model
=============================================================

A model is calibrated when, among the pixels it gives foreground probability about
:math:`q`, a fraction :math:`q` is foreground. The reliability diagram bins the predicted
probabilities and plots each bin's observed foreground frequency against its mean
prediction; the expected calibration error (ECE) is the bin-size-weighted mean gap.

seglosses has no calibration metric yet, so this script computes the diagram itself
from binned confidences (15 equal-width bins), on synthetic data where the true
foreground probability of every pixel is known: the **calibrated** model predicts it, the
**uncalibrated** one is overconfident (its logits are the true ones times 3), as networks
trained to zero cross entropy tend to be. The margin-calibration loss and the confidence
penalty are the library's tools against the second case.
"""
import matplotlib.pyplot as plt
import torch

import seglosses as sl

generator = torch.Generator().manual_seed(0)
B, H, W = 16, 64, 64
yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
# a smooth true foreground probability per pixel (blobs at random places), labels drawn from it
centres = torch.rand(B, 2, generator=generator) * 1.2 - 0.6
dist2 = (yy[None] - centres[:, :1, None]) ** 2 + (xx[None] - centres[:, 1:, None]) ** 2
true_logit = 4.0 - 18.0 * dist2
p_true = torch.sigmoid(true_logit)
labels = (torch.rand(B, H, W, generator=generator) < p_true).long()

models = {"calibrated": p_true, "uncalibrated (logits x 3)": torch.sigmoid(3.0 * true_logit)}


def reliability(prob, target, bins=15):
    """Per bin: mean prediction, foreground frequency, pixel count; and the ECE."""
    prob, target = prob.flatten(), target.flatten().double()
    index = torch.clamp((prob * bins).long(), max=bins - 1)
    count = torch.bincount(index, minlength=bins).double()
    conf = torch.bincount(index, weights=prob.double(), minlength=bins) / count.clamp(min=1)
    freq = torch.bincount(index, weights=target, minlength=bins) / count.clamp(min=1)
    ece = float((count / count.sum() * (conf - freq).abs()).sum())
    return conf, freq, count, ece


fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
axes[0].plot([0, 1], [0, 1], color="grey", lw=0.8, label="perfect calibration")
for k, (name, prob) in enumerate(models.items()):
    conf, freq, count, ece = reliability(prob, labels)
    used = count > 0
    dice = float(sl.metrics.dice(prob[:, None], labels))
    nll = float(sl.CrossEntropyLoss(mode="binary", from_logits=False)(prob[:, None], labels))
    print(f"{name}: ECE {ece:.4f}, cross entropy {nll:.4f}, Dice {dice:.4f}")
    axes[0].plot(conf[used], freq[used], "-o", color=f"C{k}", label=f"{name}: ECE {ece:.3f}")
    axes[1].bar(torch.arange(15)[used] + (k - 0.5) * 0.4, count[used], width=0.4, color=f"C{k}", label=name)
    axes[1].set_yscale("log")
axes[0].set_xlabel("mean predicted foreground probability (bin)")
axes[0].set_ylabel("observed foreground frequency")
axes[0].legend(fontsize=8)
axes[0].set_title("reliability diagram")
axes[1].set_xlabel("bin (15 equal-width bins)")
axes[1].set_ylabel("pixels")
axes[1].set_title("pixels per bin")
axes[1].legend(fontsize=8)
axes[2].imshow(torch.cat([p_true[0], models["uncalibrated (logits x 3)"][0]], dim=1), cmap="gray")
axes[2].contour(torch.cat([labels[0], labels[0]], dim=1), levels=[0.5], colors="r", linewidths=0.6)
axes[2].set_title("image 0: calibrated (left), overconfident (right)")
axes[2].set_axis_off()
fig.tight_layout()
plt.show()

# %%
# Both models make the same hard decisions (the same pixels are above 0.5), so Dice
# cannot tell them apart; the cross entropy and the reliability diagram can.
