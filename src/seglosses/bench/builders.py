"""The parts of a run built from its configuration: loss, U-Net, optimiser, learning-rate
schedule and mixed precision (:func:`seglosses.bench.train.train_run` puts them together)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from seglosses import build_loss
from seglosses.bench.unet import UNet
from seglosses.losses import SegLoss

if TYPE_CHECKING:
    from seglosses.bench.data.datasets import ItemDataset

__all__ = ["autocast_factory", "build_model", "build_optimizer", "build_run_loss", "build_scheduler",
           "class_frequencies", "loss_has_domain"]


def _seg_terms(loss: nn.Module) -> List[SegLoss]:
    return [m for m in loss.modules() if isinstance(m, SegLoss) and hasattr(type(m), "function")]


def loss_has_domain(spec: Any, mode: str) -> bool:
    """Whether some term of the loss ``spec`` takes a ``domain`` (image / batch) argument.

    Example:
        >>> loss_has_domain("dice", "binary"), loss_has_domain("ce", "binary")
        (True, False)
    """
    return any("domain" in term.config for term in _seg_terms(build_loss(spec, mode=mode)))


def build_run_loss(spec: Any, mode: str, domain: Optional[str] = None, *, distributed: bool = False) -> nn.Module:
    """The loss module of a run: ``build_loss(spec, mode=mode[, domain=domain])``.

    ``domain`` is passed only when some term takes it (a term's own ``domain`` wins). With
    ``distributed=True`` every batch-domain term that has a ``sync`` argument sums its
    statistics over the processes (``sync="distributed"``).

    Args:
        spec: a :func:`seglosses.build_loss` spec.
        mode: ``"binary"`` or ``"multiclass"``.
        domain: ``"image"``, ``"batch"`` or ``None``.
        distributed: set ``sync="distributed"`` on batch-domain terms.

    Raises:
        ValueError: an unknown loss name or argument (the message of :func:`build_loss`).

    Example:
        >>> build_run_loss("dice", "binary", "batch").spec()
        "dice(domain='batch')"
    """
    common: Dict[str, Any] = {"mode": mode}
    if domain is not None and loss_has_domain(spec, mode):
        common["domain"] = domain
    loss = build_loss(spec, **common)
    if distributed:
        for term in _seg_terms(loss):
            if term.config.get("domain") == "batch" and "sync" in term.config:
                term.config["sync"] = "distributed"
    return loss


def build_model(cfg: Mapping[str, Any], in_channels: int, out_channels: int,
                class_frequencies: Optional[Sequence[float]] = None) -> UNet:
    r"""The U-Net of a run from its ``model`` settings (``depth``, ``width``, ``norm``, ``groups``, ...).

    With ``prior_init: true`` in ``cfg`` and the training data's ``class_frequencies`` :math:`π_c`,
    the bias of the last 1x1 convolution starts at the prior, as Lin et al. (2017, section 4.1,
    "prior π for the rare class") initialise it:

    .. math::
        b = \log\frac{π_1}{1 - π_1}\ \text{(binary)},\qquad b_c = \log π_c\ \text{(multiclass)}

    so that the first predictions already have the data's class balance instead of p = 0.5. The
    same initialisation serves every loss of a study; without it, a pixelwise loss on
    two-way imbalanced data spends its first hundreds of Adam steps (about ``lr`` per step) moving
    that bias.

    Example:
        >>> net = build_model({"depth": 2, "width": 4, "prior_init": True}, 1, 1, [0.9, 0.1])
        >>> round(float(net.head.bias.detach()), 4)  # log(0.1 / 0.9)
        -2.1972
    """
    cfg = dict(cfg)
    prior = bool(cfg.pop("prior_init", False))
    model = UNet(in_channels, out_channels, **cfg)
    if prior and class_frequencies is not None:
        freq = torch.as_tensor(list(class_frequencies), dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
        with torch.no_grad():
            if out_channels == 1:
                model.head.bias.fill_(float(torch.log(freq[1] / (1 - freq[1]))))
            else:
                model.head.bias.copy_(torch.log(freq / freq.sum()).to(model.head.bias.dtype))
    return model


def class_frequencies(dataset: ItemDataset, num_classes: int, max_items: int = 256) -> List[float]:
    """Fraction of the pixels of each class over (up to ``max_items`` evenly spread) items of a data set.

    Example:
        >>> from seglosses.bench.data import SegmentationDataset
        >>> masks = torch.tensor([[[0, 0, 0, 1]], [[0, 0, 1, 1]]])
        >>> class_frequencies(SegmentationDataset(torch.zeros(2, 1, 1, 4), masks), 2)
        [0.625, 0.375]
    """
    n = len(dataset)
    step = max(1, n / max_items)
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for i in sorted({int(j * step) for j in range(min(n, max_items))}):
        mask = dataset[i][1]
        counts += torch.bincount(mask.flatten().clamp(0, num_classes - 1), minlength=num_classes).double()
    return (counts / counts.sum().clamp_min(1)).tolist()


def build_optimizer(params, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Adam or AdamW from ``{"name": "adam"|"adamw", "lr": ..., "weight_decay": ..., "betas": ...}``.

    Seed 000 uses Adam; seed 003 AdamW with learning rate 1e-4.

    Raises:
        ValueError: an unknown optimiser name.

    Example:
        >>> opt = build_optimizer(nn.Linear(1, 1).parameters(), {"name": "adamw", "lr": 1e-4})
        >>> type(opt).__name__, opt.param_groups[0]["lr"]
        ('AdamW', 0.0001)
    """
    cfg = dict(cfg)
    name = str(cfg.pop("name", "adam")).lower()
    cfg.pop("grad_clip", None)
    classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if name not in classes:
        raise ValueError(f"`optimizer.name` must be one of 'adam', 'adamw'; got {name!r}")
    if "betas" in cfg:
        cfg["betas"] = tuple(cfg["betas"])
    return classes[name](params, **cfg)


class _Poly:
    """Polynomial decay factor ``(1 - epoch / epochs) ** power`` (a picklable schedule)."""

    def __init__(self, epochs: int, power: float) -> None:
        self.epochs, self.power = max(1, epochs), power

    def __call__(self, epoch: int) -> float:
        return max(0.0, 1.0 - epoch / self.epochs) ** self.power


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any], epochs: int):
    """A per-epoch learning-rate schedule: ``constant``, ``cosine``, ``step`` or ``poly``.

    ``{"name": "cosine", "min_lr": 0}`` anneals to ``min_lr`` over the run's epochs;
    ``{"name": "step", "step_size": 10, "gamma": 0.1}``; ``{"name": "poly", "power": 0.9}``.

    Raises:
        ValueError: an unknown schedule name.

    Example:
        >>> opt = build_optimizer(nn.Linear(1, 1).parameters(), {"lr": 1.0})
        >>> s = build_scheduler(opt, {"name": "step", "step_size": 1, "gamma": 0.5}, 3)
        >>> opt.step(); s.step(); opt.param_groups[0]["lr"]
        0.5
    """
    cfg = dict(cfg or {})
    name = str(cfg.pop("name", "constant")).lower()
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _Poly(epochs, 0.0))
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs),
                                                          eta_min=float(cfg.get("min_lr", 0.0)))
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(cfg.get("step_size", 10)),
                                               gamma=float(cfg.get("gamma", 0.1)))
    if name == "poly":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _Poly(epochs, float(cfg.get("power", 0.9))))
    raise ValueError(f"`schedule.name` must be one of 'constant', 'cosine', 'step', 'poly'; got {name!r}")


def autocast_factory(device: torch.device, amp: str = "auto"):
    """Mixed precision on CUDA only: ``(autocast factory or None, uses a gradient scaler)``.

    ``amp``: ``"auto"`` (bf16 where supported, else fp16), ``"bf16"``, ``"fp16"`` or ``"off"``.
    On any other device the answer is ``(None, False)``.

    Example:
        >>> autocast_factory(torch.device("cpu"), "auto")
        (None, False)
    """
    amp = str(amp).lower()
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise ValueError(f"`amp` must be one of 'auto', 'bf16', 'fp16', 'off'; got {amp!r}")
    if device.type != "cuda" or amp == "off":
        return None, False
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return (lambda: torch.autocast("cuda", dtype=dtype)), dtype == torch.float16
