"""The embedded default study of ``seglosses bench`` (run with no study file).

Two bundled synthetic data sets (:func:`seglosses.bench.synthetic.make_synthetic`, generated in
code, nothing to download), both two-way imbalanced as seed 000 section 2.1 describes (few images
with foreground; in those, small irregular regions):

* ``synthetic-binary``: one foreground class in a quarter of the images;
* ``synthetic-multiclass``: two foreground classes (bright fine-grained round blobs, dark striped
  elongated blobs) in half of the images.

Losses: cross entropy (the baseline), Dice in the image and the batch domain (seed 000 Table 1),
batchwise Tversky (seed 000), focal, Lovász, margin calibration (seed 003) and Dice + CE. A small
U-Net, Adam, the positive:negative ratio sampler of seed 000 section 3.1, one seed; sized to
finish in under five minutes on two CPU cores (the timing is in the README).
"""
from __future__ import annotations

import copy
from typing import Any, Dict

__all__ = ["DEFAULT_STUDY", "default_study"]

_LOSSES = [
    {"label": "CE", "loss": "ce"},
    {"label": "Dice (image)", "loss": "dice(domain='image')"},
    {"label": "Dice (batch)", "loss": "dice(domain='batch')"},
    {"label": "Tversky (batch)", "loss": "tversky(alpha=0.3, beta=0.7, domain='batch')"},
    {"label": "Focal", "loss": "focal(gamma=2.0)"},
    {"label": "Lovasz", "loss": "lovasz"},
    {"label": "Margin calibration", "loss": "margin_calibration"},
    {"label": "Dice+CE", "loss": "0.5*dice(domain='batch') + 0.5*ce"},
]

#: The default study as a study-file mapping (see :mod:`seglosses.bench.study`).
DEFAULT_STUDY: Dict[str, Any] = {
    "name": "default",
    "datasets": [
        {"name": "synthetic-binary", "type": "synthetic", "n_images": 200, "size": 64, "mode": "binary",
         "positive_fraction": 0.25, "seed": 0, "split": {"fractions": [0.6, 0.2, 0.2], "seed": 1},
         "class_names": ["background", "foreground"]},
        {"name": "synthetic-multiclass", "type": "synthetic", "n_images": 200, "size": 64, "mode": "multiclass",
         "num_classes": 3, "positive_fraction": 0.5, "seed": 1, "split": {"fractions": [0.6, 0.2, 0.2], "seed": 0},
         "class_names": ["background", "bright grainy", "dark striped"]},
    ],
    "losses": _LOSSES,
    "domains": ["image"],
    "batch_sizes": [8],
    "seeds": [0],
    "epochs": 12,
    "optimizer": {"name": "adam", "lr": 3e-3, "weight_decay": 0.0},
    "schedule": {"name": "cosine"},
    "model": {"depth": 3, "width": 8, "norm": "batch", "prior_init": True},
    "sampler": {"ratio": "dataset"},
    "eval": {"metrics": None, "batch_size": 32, "samples": 4},
    "baseline": "CE",
}


def default_study() -> Dict[str, Any]:
    """A fresh copy of :data:`DEFAULT_STUDY`.

    Example:
        >>> default_study()["name"]
        'default'
    """
    return copy.deepcopy(DEFAULT_STUDY)
