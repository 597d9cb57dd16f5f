"""The regularisers of seed 000 (sections 2.2-2.3), in one place.

* :func:`label_smoothing`: a target transform, ỹ = (1 − ε) y + ε/C (eq. 5);
* :class:`LabelNoisePenalty`: KL(u ‖ ŷ), label smoothing's equivalent for any loss (Claim 2);
* :class:`ConfidencePenalty`: KL(ŷ ‖ u) = log C − H(ŷ) (eq. 6).

Each penalty is usable alone or added to any loss with a weight::

    loss = TverskyLoss(alpha=0.3, beta=0.7) + 0.1 * ConfidencePenalty()
"""
from .functional.regularizers import confidence_penalty, label_noise_penalty, label_smoothing
from .losses.regularizers import ConfidencePenalty, LabelNoisePenalty

__all__ = [
    "label_smoothing",
    "label_noise_penalty",
    "confidence_penalty",
    "LabelNoisePenalty",
    "ConfidencePenalty",
]
