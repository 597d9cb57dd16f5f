"""A 2D U-Net, the model of ``seglosses bench``.

Seed 000 (section 3) trains a U-Net on every configuration. The network here follows
O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional networks for biomedical image
segmentation", MICCAI 2015, pp. 234-241, with the usual modern changes:

* 3x3 convolutions with zero padding (the paper uses unpadded ones and crops the skips), so the
  output has the input's spatial size;
* an optional normalisation after each convolution: BatchNorm (the common default) or GroupNorm
  (independent of the batch size, so it behaves the same for batch sizes 8 and 64, which matters
  when comparing imagewise and batchwise losses across batch sizes);
* inputs whose height or width is not a multiple of ``2**depth`` are padded by edge replication
  (split evenly between both sides) and the logits are cropped back.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from seglosses._options import lookup_option

__all__ = ["UNet"]

NORMS = ("batch", "group", "none")
UPSAMPLING = ("transpose", "bilinear")


class UNet(nn.Module):
    """2D U-Net (Ronneberger et al., 2015) returning logits of the input's spatial size.

    The encoder has ``depth`` down-sampling steps (2x2 max-pooling), each followed by a block of
    two 3x3 convolutions with normalisation and ReLU; level ``i`` has ``width * 2**i`` channels.
    The decoder mirrors it: up-sampling (a 2x2 transposed convolution, or bilinear interpolation
    followed by a 1x1 convolution), concatenation with the encoder's skip tensor, and a
    double-convolution block. A 1x1 convolution maps to ``num_classes`` output channels.

    As in the paper, dropout (``Dropout2d``, when ``dropout > 0``) acts at the end of the
    contracting path, i.e. after the bottleneck block.

    Weights are initialised with Kaiming-normal (fan-in, ReLU gain) convolutions, zero biases and
    unit normalisation scales, from torch's global generator: the same ``torch.manual_seed``
    gives the same network.

    Args:
        in_channels: channels of the input image (1 for grey, 3 for RGB).
        num_classes: output channels: 1 for binary segmentation (one logit per pixel), ``C`` for
            ``C``-class multiclass segmentation.
        depth: number of down-sampling steps, ``>= 1``.
        width: channels of the first level, ``>= 1``; level ``i`` has ``width * 2**i``.
        norm: ``"batch"`` (BatchNorm2d), ``"group"`` (GroupNorm) or ``"none"``.
        groups: GroupNorm groups; a level whose channel count ``groups`` does not divide uses
            the greatest common divisor of both.
        dropout: drop probability of the ``Dropout2d`` after the bottleneck, in ``[0, 1)``.
        upsampling: ``"transpose"`` (learned 2x2 transposed convolution) or ``"bilinear"``.

    Shape:
        input ``[B, in_channels, H, W]`` with any ``H, W >= 1``; output
        ``[B, num_classes, H, W]`` (logits).

    Raises:
        ValueError: if an argument is out of range or an option is unknown.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = UNet(1, 1, depth=2, width=4)
        >>> net(torch.rand(2, 1, 13, 17)).shape
        torch.Size([2, 1, 13, 17])
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 1,
        depth: int = 4,
        width: int = 32,
        norm: str = "batch",
        groups: int = 8,
        dropout: float = 0.0,
        upsampling: str = "transpose",
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes),
                            ("depth", depth), ("width", width), ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1; got {value!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1); got {dropout!r}")
        self.norm = lookup_option("norm", norm, NORMS)
        self.upsampling = lookup_option("upsampling", upsampling, UPSAMPLING)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.depth, self.width, self.groups, self.dropout = depth, width, groups, float(dropout)

        channels = [width * 2**i for i in range(depth + 1)]
        self.encoder = nn.ModuleList([_ConvBlock(in_channels, channels[0], norm, groups)])
        for i in range(depth):
            self.encoder.append(_ConvBlock(channels[i], channels[i + 1], norm, groups))
        self.bottleneck_dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(depth)):
            if upsampling == "transpose":
                self.up.append(nn.ConvTranspose2d(channels[i + 1], channels[i], kernel_size=2, stride=2))
            else:
                self.up.append(nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    nn.Conv2d(channels[i + 1], channels[i], kernel_size=1),
                ))
            self.decoder.append(_ConvBlock(2 * channels[i], channels[i], norm, groups))
        self.head = nn.Conv2d(channels[0], num_classes, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every weight (Kaiming-normal convolutions, zero biases, unit norms)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes, H, W]`` of an image batch ``[B, in_channels, H, W]``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"`x` must have shape [B, {self.in_channels}, H, W]; got {list(x.shape)}"
            )
        height, width = x.shape[-2:]
        multiple = 2**self.depth
        pad_h = (-height) % multiple
        pad_w = (-width) % multiple
        # (left, right, top, bottom), split evenly so both borders see the same context.
        pad = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        if pad_h or pad_w:
            x = F.pad(x, pad, mode="replicate")

        skips = []
        for i, block in enumerate(self.encoder):
            if i > 0:
                x = F.max_pool2d(x, kernel_size=2)
            x = block(x)
            skips.append(x)
        x = self.bottleneck_dropout(skips.pop())
        for up, block in zip(self.up, self.decoder):
            x = block(torch.cat([skips.pop(), up(x)], dim=1))
        logits = self.head(x)
        if pad_h or pad_w:
            logits = logits[..., pad[2]:pad[2] + height, pad[0]:pad[0] + width]
        return logits

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, num_classes={self.num_classes}, depth={self.depth}, "
                f"width={self.width}, norm={self.norm!r}, upsampling={self.upsampling!r}, "
                f"dropout={self.dropout}")


class _ConvBlock(nn.Sequential):
    """Two (3x3 convolution, normalisation, ReLU) layers."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, groups: int) -> None:
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, kernel_size=3, padding=1, bias=norm == "none"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(out_channels))
            elif norm == "group":
                layers.append(nn.GroupNorm(math.gcd(groups, out_channels), out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
