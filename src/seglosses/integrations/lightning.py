"""A ``LightningModule`` that trains with a seglosses loss and logs seglosses metrics.

Needs the ``lightning`` extra (``pip install -e ".[lightning]"``) and torchmetrics.

Example (``examples/integrations/lightning_train.py`` runs it on synthetic data)::

    import lightning as L
    from seglosses.integrations.lightning import SegmentationModule

    module = SegmentationModule(net, loss="0.5*dice + 0.5*ce", mode="multiclass", num_classes=3,
                                metrics=["dice", "jaccard", "hd95"])
    L.Trainer(max_epochs=10).fit(module, train_loader, val_loader)

The loss is logged as ``train/loss`` (and each term of a sum as ``train/<term>``); the
metrics, from :class:`~seglosses.metrics.TorchmetricsSegmentationMetrics`, as
``val/<metric>_<aggregation>`` at the end of each validation epoch (synchronised across
processes by torchmetrics).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import lightning as L
import torch
from torch import Tensor, nn

from .. import build_loss
from ..losses import WeightedSum
from ..metrics.adapters import TorchmetricsSegmentationMetrics

__all__ = ["SegmentationModule"]


class SegmentationModule(L.LightningModule):
    """Train ``net`` with a seglosses loss; evaluate with seglosses metrics.

    Args:
        net: the network, ``[B, in, *spatial] -> [B, C, *spatial]`` logits.
        loss: a :func:`seglosses.build_loss` spec or a loss module.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"`` (for the loss spec and the metrics).
        num_classes: classes of a multiclass label map (for the metrics).
        metrics: metric names (:data:`seglosses.metrics.METRIC_NAMES`).
        lr: Adam's learning rate.
        metric_kwargs: more arguments of :class:`~seglosses.metrics.SegmentationMetrics`.
    """

    def __init__(self, net: nn.Module, loss: Any = "dice + ce", *, mode: str = "binary",
                 num_classes: Optional[int] = None, metrics: Sequence[str] = ("dice", "jaccard"),
                 lr: float = 1e-3, **metric_kwargs: Any) -> None:
        super().__init__()
        self.net = net
        self.loss_fn = loss if isinstance(loss, nn.Module) else build_loss(loss, mode=mode)
        self.val_metrics = TorchmetricsSegmentationMetrics(list(metrics), num_classes, mode=mode,
                                                           from_logits=True, **metric_kwargs)
        self.lr = lr

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        if isinstance(self.loss_fn, WeightedSum):
            loss, terms = self.loss_fn(logits, y, return_terms=True)
            for name, value in terms.items():
                self.log(f"train/{name}", value.detach(), batch_size=x.shape[0])
        else:
            loss = self.loss_fn(logits, y)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val/loss", self.loss_fn(logits, y), batch_size=x.shape[0])
        self.val_metrics.update(logits.detach(), y)

    def on_validation_epoch_end(self) -> None:
        results = self.val_metrics.compute()
        self.log_dict({f"val/{k}": v.float().mean() for k, v in results.items()})
        self.val_metrics.reset()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)
