"""
Boundary loss and Hausdorff-DT loss: the distance maps
======================================================

The boundary loss (Kervadec et al. 2019) weights each pixel's predicted probability by
the **signed distance** :math:`\\phi_G` to the truth's boundary (negative inside), so false
positives far from the object cost more than those near it. The Hausdorff-DT loss
(Karimi & Salcudean 2019) weights the squared error by :math:`d_G^\\alpha + d_S^\\alpha`,
the distances to the boundaries of truth and prediction. Both maps come from
:mod:`seglosses.distance` (exact Euclidean distance transforms).
"""
import matplotlib.pyplot as plt
import torch

import seglosses as sl
from seglosses.distance import signed_distance, two_sided_distance

H, W = 64, 80  # non-square on purpose
yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
truth = (((yy - 30) / 18) ** 2 + ((xx - 36) / 24) ** 2 <= 1).long()
# a prediction shifted right by 8 pixels, with a spurious blob far away
pred = ((((yy - 30) / 18) ** 2 + ((xx - 44) / 24) ** 2 <= 1) | ((yy - 8) ** 2 + (xx - 72) ** 2 <= 16)).double()

phi = signed_distance(truth[None])[0]
d_truth = two_sided_distance(truth[None])[0]
d_pred = two_sided_distance(pred.long()[None])[0]

probs = (0.05 + 0.9 * pred)[None, None].requires_grad_(True)
bd = sl.BoundaryLoss(mode="binary", from_logits=False)(probs, truth[None])
(g_bd,) = torch.autograd.grad(bd, probs)
hd = sl.HausdorffDTLoss(mode="binary", from_logits=False, alpha=2.0)(probs, truth[None])
(g_hd,) = torch.autograd.grad(hd, probs)
print(f"boundary loss {float(bd.detach()):.4f}, Hausdorff-DT loss {float(hd.detach()):.4f}")

fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
panels = [
    (phi, "signed distance to the truth's boundary $\\phi_G$", "RdBu_r", True),
    (d_truth ** 2 + d_pred ** 2, "Hausdorff-DT weight $d_G^2 + d_S^2$", "magma", False),
    (pred, "prediction (white) and truth (red contour)", "gray", False),
    (g_bd[0, 0], f"boundary loss {float(bd.detach()):.3f}: dL/dp", "RdBu_r", True),
    (g_hd[0, 0], f"Hausdorff-DT loss {float(hd.detach()):.3f}: dL/dp", "RdBu_r", True),
    (d_truth, "distance to the other side of the truth's boundary", "viridis", False),
]
for ax, (img, title, cmap, centred) in zip(axes.flat, panels):
    kw = {"vmin": -float(img.abs().max()), "vmax": float(img.abs().max())} if centred else {}
    im = ax.imshow(img, cmap=cmap, **kw)
    ax.contour(truth, levels=[0.5], colors="r", linewidths=0.8)
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, fraction=0.035)
fig.tight_layout()
plt.show()

# %%
# The boundary loss's gradient is :math:`\phi_G / N` for every pixel: lowering p pays off
# in proportion to how far outside the object the pixel lies (red), raising it inside
# (blue). The Hausdorff-DT gradient is concentrated where truth and prediction disagree
# *and* lie far from either boundary: the far blob and the shifted edge.
