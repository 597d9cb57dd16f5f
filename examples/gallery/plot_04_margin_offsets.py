"""
Margin offsets against class frequency
======================================

The distribution-aware margin calibration loss (seed 003) shifts each class's margin by
offsets computed from the label distribution (Corollary 1.1): a rarer class gets a larger
offset :math:`\\rho_{0k}`, in the proportions of the paper's eq. 23,
:math:`\\rho_{0i}/\\rho_{0j} = n_j\\sqrt{n-n_i}/(n_i\\sqrt{n-n_j})`.
:func:`seglosses.functional.margin_offsets` computes them from class counts.
"""
import matplotlib.pyplot as plt
import torch

from seglosses.functional import margin_offsets

# two classes: the foreground's share of the pixels from 0.1 % to 50 %
fractions = torch.logspace(-3, torch.log10(torch.tensor(0.5)), 60)
n = 1_000_000
rho_fg, rho_bg, rho_none_fg = [], [], []
for f in fractions:
    counts = [n * (1 - float(f)), n * float(f)]
    off = margin_offsets(counts, tau=1.0)
    rho_bg.append(float(off.rho_0k[0]))
    rho_fg.append(float(off.rho_0k[1]))
    rho_none_fg.append(float(margin_offsets(counts, tau=1.0, offset_norm="none").rho_0k[1]))

# four classes with a fixed ratio, at several data-set sizes: "sum" offsets do not depend
# on the number of pixels, the literal ("none") ones shrink like 1/sqrt(n)
shares = torch.tensor([0.85, 0.10, 0.04, 0.01])
sizes = [1e3, 1e4, 1e5, 1e6, 1e7]
by_size = {"sum": [], "none": []}
for size in sizes:
    for norm in by_size:
        by_size[norm].append(margin_offsets((shares * size).tolist(), offset_norm=norm).rho_0k.tolist())

fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
axes[0].loglog(fractions, rho_fg, label="foreground (rare) class")
axes[0].loglog(fractions, rho_bg, label="background class")
axes[0].set_xlabel("foreground share of the pixels")
axes[0].set_ylabel(r"offset $\rho_{0k}$ (offset_norm='sum', $\tau$ = 1)")
axes[0].legend()
axes[0].set_title("two classes")
axes[1].loglog(fractions, rho_none_fg, color="C2")
axes[1].set_xlabel("foreground share of the pixels")
axes[1].set_ylabel(r"offset $\rho_{0k}$ of the foreground (offset_norm='none')")
axes[1].set_title(f"literal offsets, n = {n:,} pixels")
for k in range(4):
    axes[2].semilogx(sizes, [row[k] for row in by_size["sum"]], "-o", color=f"C{k}", label=f"class {k}: {float(shares[k]):.0%}")
    axes[2].semilogx(sizes, [row[k] for row in by_size["none"]], ":", color=f"C{k}")
axes[2].set_yscale("log")
axes[2].set_xlabel("pixels n")
axes[2].set_ylabel(r"$\rho_{0k}$ (solid: 'sum', dotted: 'none')")
axes[2].set_title("four classes, fixed shares")
axes[2].legend(fontsize=8)
fig.tight_layout()
plt.show()
