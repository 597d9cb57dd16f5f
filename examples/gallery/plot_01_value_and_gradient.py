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
    "cross entropy": sl.CrossEntropyLoss(mode="binary", from_logits=False),
    "focal (gamma=2)": sl.FocalLoss(mode="binary", from_logits=False, gamma=2.0),
    "Dice": sl.DiceLoss(mode="binary", from_logits=False),
    "Tversky (a=0.3, b=0.7)": sl.TverskyLoss(mode="binary", from_logits=False, alpha=0.3, beta=0.7),
    "confidence penalty": sl.ConfidencePenalty(mode="binary", from_logits=False),
}


def curve(loss_fn, g):
    """Loss value and d loss / d p of pixel 0, for every p, with the pixel's label g."""
    values, grads = [], []
    for q in p:
        q = q.clone().requires_grad_(True)
        probs = torch.cat([q.view(1), context_p]).view(1, 1, 1, 8)
        target = torch.cat([torch.tensor([g]), context_g]).view(1, 1, 8)
        value = loss_fn(probs, target)
        (grad,) = torch.autograd.grad(value, q)
        values.append(float(value.detach()))
        grads.append(float(grad))
    return values, grads


# the Lovász hinge takes logits (binary): plot it against the logit's probability
lovasz = sl.LovaszLoss(mode="binary")


def lovasz_curve(g):
    values, grads = [], []
    for q in p:
        z = torch.logit(q).clone().requires_grad_(True)
        logits = torch.cat([z.view(1), torch.logit(context_p)]).view(1, 1, 1, 8)
        target = torch.cat([torch.tensor([g]), context_g]).view(1, 1, 8)
        value = lovasz(logits, target)
        (grad,) = torch.autograd.grad(value, z)
        values.append(float(value.detach()))
        grads.append(float(grad))  # the hinge is defined on logits: its gradient in z
    return values, grads


fig, axes = plt.subplots(2, 6, figsize=(17, 5.5), sharex=True)
for col, (name, loss_fn) in enumerate(list(losses.items()) + [("Lovász hinge (grad in logit z)", None)]):
    for g, style in ((1, "-"), (0, "--")):
        values, grads = curve(loss_fn, g) if loss_fn is not None else lovasz_curve(g)
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
