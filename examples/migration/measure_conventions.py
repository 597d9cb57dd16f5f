"""Measure the convention differences between MONAI and seglosses behind the migration guide.

Run from the repository root::

    python examples/migration/measure_conventions.py

It prints one line per case: the MONAI value, the seglosses value with the mapped
arguments, and their difference. The table of ``docs/guides/migrating.rst`` holds these
numbers, and ``tests/docs/test_migration_numbers.py`` checks that they still come out.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import torch

import seglosses as sl


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 3, 16, 16, generator=g)
    labels = torch.randint(0, 3, (4, 16, 16), generator=g)
    labels[0][labels[0] == 2] = 1  # class 2 absent from image 0
    bin_logits = torch.randn(4, 1, 16, 16, generator=g)
    bin_target = (torch.rand(4, 16, 16, generator=g) > 0.7).long()
    bin_target[1] = 0  # an image without foreground
    return logits, labels, bin_logits, bin_target


def cases() -> Dict[str, Callable[[], Tuple[float, float]]]:
    """name -> a function returning (MONAI value, seglosses value)."""
    from monai import losses as ML
    from monai import metrics as MM

    logits, labels, bin_logits, bin_target = _data()
    onehot = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    label_ch = labels[:, None]  # MONAI's [B, 1, *S] label map

    def dice_binary():
        m = ML.DiceLoss(sigmoid=True)(bin_logits, bin_target[:, None].float())
        s = sl.DiceLoss(smooth=1e-5)(bin_logits, bin_target)
        return float(m), float(s)

    def dice_default_smooth():
        # the same call with each library's default smoothing
        m = ML.DiceLoss(sigmoid=True)(bin_logits, bin_target[:, None].float())
        s = sl.DiceLoss()(bin_logits, bin_target)
        return float(m), float(s)

    def dice_multiclass_batch():
        m = ML.DiceLoss(softmax=True, to_onehot_y=True, include_background=False, batch=True)(logits, label_ch)
        s = sl.DiceLoss(mode="multiclass", include_background=False, domain="batch", smooth=1e-5)(logits, labels)
        return float(m), float(s)

    def tversky():
        m = ML.TverskyLoss(softmax=True, to_onehot_y=True, alpha=0.3, beta=0.7)(logits, label_ch)
        s = sl.TverskyLoss(mode="multiclass", alpha=0.3, beta=0.7, smooth=1e-5)(logits, labels)
        return float(m), float(s)

    def generalized_dice():
        m = ML.GeneralizedDiceLoss(softmax=True, to_onehot_y=True)(logits, label_ch)
        s = sl.GeneralizedDiceLoss(mode="multiclass", smooth=1e-5)(logits, labels)
        return float(m), float(s)

    def dice_ce():
        m = ML.DiceCELoss(softmax=True, to_onehot_y=True)(logits, label_ch)
        s = sl.build_loss("dice(smooth=1e-5) + ce", mode="multiclass")(logits, labels)
        return float(m), float(s)

    def focal():
        m = ML.FocalLoss(gamma=2.0)(bin_logits, bin_target[:, None].float())
        s = sl.FocalLoss(gamma=2.0)(bin_logits, bin_target)
        return float(m), float(s)

    def focal_alpha():
        m = ML.FocalLoss(gamma=2.0, alpha=0.25)(bin_logits, bin_target[:, None].float())
        s = sl.FocalLoss(gamma=2.0, alpha=0.25)(bin_logits, bin_target)
        return float(m), float(s)

    def focal_multiclass_default():
        # MONAI's FocalLoss applies a sigmoid per channel unless use_softmax=True
        m = ML.FocalLoss(gamma=2.0, to_onehot_y=True)(logits, label_ch)
        s = sl.FocalLoss(gamma=2.0, mode="multiclass")(logits, labels)
        return float(m), float(s)

    def focal_multiclass_softmax():
        m = ML.FocalLoss(gamma=2.0, to_onehot_y=True, use_softmax=True)(logits, label_ch)
        s = sl.FocalLoss(gamma=2.0, mode="multiclass")(logits, labels)
        return float(m), float(s)

    def dice_all_fp_empty():
        # every pixel predicted foreground on an image without foreground
        target = torch.zeros(1, 16, 16, dtype=torch.long)
        probs = torch.ones(1, 1, 16, 16)
        m = ML.DiceLoss()(probs, target[:, None].float())
        s = sl.DiceLoss(from_logits=False)(probs, target)
        return float(m), float(s)

    def hausdorff_dt():
        m = ML.HausdorffDTLoss(sigmoid=True, include_background=True)(bin_logits, bin_target[:, None].float())
        s = sl.HausdorffDTLoss()(bin_logits, bin_target)
        return float(m), float(s)

    def dice_metric_empty():
        # image 1 has no foreground in the target; predict none there either
        pred = (bin_logits > 0).float()
        pred[1] = 0
        metric = MM.DiceMetric(include_background=True)  # ignore_empty=True by default
        m = metric(pred, bin_target[:, None].float()).nanmean()
        s = sl.metrics.dice(pred, bin_target)  # empty=1.0 by default
        return float(m), float(s)

    def dice_metric_empty_nan():
        pred = (bin_logits > 0).float()
        pred[1] = 0
        m = MM.DiceMetric(include_background=True)(pred, bin_target[:, None].float()).nanmean()
        s = sl.metrics.dice(pred, bin_target, empty="nan")
        return float(m), float(s)

    def hd95():
        pred = (bin_logits > 0.5).float()
        target = bin_target.clone()
        target[1, 4:9, 4:9] = 1  # give every image a surface
        m = MM.HausdorffDistanceMetric(include_background=True, percentile=95)(pred, target[:, None].float())
        s = sl.metrics.hd95(pred, target)
        return float(m.mean()), float(s)

    return {
        "DiceLoss, binary, smooth 1e-5 both": dice_binary,
        "DiceLoss, binary, each library's default smooth": dice_default_smooth,
        "DiceLoss, multiclass, no background, batch": dice_multiclass_batch,
        "TverskyLoss, alpha 0.3, beta 0.7": tversky,
        "GeneralizedDiceLoss, class absent from one image": generalized_dice,
        "DiceCELoss vs dice + ce": dice_ce,
        "FocalLoss, gamma 2, binary": focal,
        "FocalLoss, gamma 2, alpha 0.25, binary": focal_alpha,
        "FocalLoss, multiclass, MONAI default (sigmoid)": focal_multiclass_default,
        "FocalLoss, multiclass, MONAI use_softmax=True": focal_multiclass_softmax,
        "DiceLoss, all foreground predicted on an empty image": dice_all_fp_empty,
        "HausdorffDTLoss, alpha 2, binary": hausdorff_dt,
        "DiceMetric, an empty image (defaults)": dice_metric_empty,
        "DiceMetric, an empty image, empty='nan'": dice_metric_empty_nan,
        "HausdorffDistanceMetric(percentile=95) vs hd95": hd95,
    }


def measure() -> Dict[str, Tuple[float, float]]:
    return {name: fn() for name, fn in cases().items()}


if __name__ == "__main__":
    for name, (m, s) in measure().items():
        print(f"{name:55s} MONAI {m:.6f}  seglosses {s:.6f}  difference {s - m:+.2e}")
