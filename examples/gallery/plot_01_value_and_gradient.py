"""
Value and gradient against the predicted probability
====================================================

One pixel, predicted foreground probability :math:`p`, for a **foreground** pixel
(:math:`g = 1`, solid) and a **background** pixel (:math:`g = 0`, dashed), one loss per
family: cross entropy and focal loss (distribution), Dice and Tversky (region, here of a
one-pixel image plus a fixed context of correctly predicted pixels so that the ratio is
not degenerate), the Lovász hinge, and the confidence penalty (a regulariser).

The value is the loss of the whole image, the gradient is :math:`\\partial L / \\partial p`
of the pixel that varies, both computed by seglosses and autograd.
"""
import matplotlib.pyplot as plt
import torch

import seglosses as sl

torch.set_default_dtype(torch.float64)
p = torch.linspace(0.01, 0.99, 99)

# the varying pixel sits at index 0 of a 1 x 1 x 1 x 8 image; the other seven pixels are a
# fixed context: three foreground pixels predicted 0.9, four background pixels predicted 0.1
context_p = torch.tensor([0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1])
context_g = torch.tensor([1, 1, 1, 0, 0, 0, 0])

losses = {
    "cross entropy": sl.CrossEntropyLoss(mode="binary", from_logits=False, reduction="none"),
    "focal (gamma=2)": sl.FocalLoss(mode="binary", from_logits=False, gamma=2.0, reduction="none"),
    "Dice": sl.DiceLoss(mode="binary", from_logits=False, reduction="none"),
    "Tversky (a=0.3, b=0.7)": sl.TverskyLoss(mode="binary", from_logits=False, alpha=0.3, beta=0.7,
                                             reduction="none"),
    "confidence penalty": sl.ConfidencePenalty(mode="binary", from_logits=False, reduction="none"),
    # the Lovász hinge is defined on logits (binary): plotted against sigmoid(z), gradient in z
    "Lovász hinge (grad in logit z)": sl.LovaszLoss(mode="binary", reduction="none"),
}


def curve(name, loss_fn, g):
    """Loss of each image and d loss / d p of its pixel 0: one image per value of p, in one call
    (``reduction="none"`` keeps the images apart, so one backward pass gives every gradient)."""
    logits_input = name.startswith("Lovász")
    q = (torch.logit(p) if logits_input else p).clone().requires_grad_(True)
    context = torch.logit(context_p) if logits_input else context_p
    x = torch.cat([q[:, None], context.expand(len(p), 7)], dim=1).view(len(p), 1, 1, 8)
    target = torch.cat([torch.full((len(p), 1), g), context_g.expand(len(p), 7)], dim=1).view(len(p), 1, 8)
    per_image = loss_fn(x, target).reshape(len(p), -1).mean(dim=1)  # each image's own loss
    (grad,) = torch.autograd.grad(per_image.sum(), q)
    return per_image.detach(), grad


fig, axes = plt.subplots(2, 6, figsize=(17, 5.5), sharex=True)
for col, (name, loss_fn) in enumerate(losses.items()):
    for g, style in ((1, "-"), (0, "--")):
        values, grads = curve(name, loss_fn, g)
        label = "foreground pixel" if g else "background pixel"
        axes[0, col].plot(p, values, style, label=label)
        axes[1, col].plot(p, grads, style, label=label)
    axes[0, col].set_title(name, fontsize=10)
    axes[1, col].axhline(0, color="grey", lw=0.5)
    axes[1, col].set_xlabel("predicted probability p")
axes[0, 0].set_ylabel("loss of the image")
axes[1, 0].set_ylabel("dL / dp")
axes[0, 0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
# Reading the figure: cross entropy's gradient grows without bound as a foreground pixel's
# probability goes to 0, the focal loss flattens it for well-classified pixels; the region
# losses' gradient depends on the rest of the image (here a fixed context) and stays
# bounded; the Tversky loss with :math:`\beta > \alpha` pushes a missed foreground pixel
# harder than a false-positive background pixel. The confidence penalty is smallest at
# :math:`p = 0.5` whatever the label: it is a regulariser, always added to a loss.
