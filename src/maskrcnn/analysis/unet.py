"""A small U-Net (Ronneberger et al. 2015), the shipped example of `maskrcnn analyze params`.

Shape glossary: N images; H, W input size (multiples of 16); F = n_filters.

    c1..c5: two 3x3 convs + ReLU each (F, 2F, 4F, 8F, 16F channels), 2x2 max-pool p1..p4
            between them (H -> H/16)
    u6..u9: 3x3 transposed convs with stride 2 (doubling H, W), each concatenated with
            the encoder output of the same size (c4, c3, c2, c1), then c6..c9 (two 3x3 convs)
    output: 1x1 conv to `n_classes` channels + sigmoid

Parameter counts for get_unet((256, 256, 3), n_filters=16): c1 448 + 2320, c2 4640 + 9248,
c3 18496 + 36928, c4 73856 + 147584, c5 295168 + 590080, u6 295040, c6 295040 + 147584,
u7 73792, c7 73792 + 36928, u8 18464, c8 18464 + 9248, u9 4624, c9 4624 + 2320, output 170.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DoubleConv(nn.Module):
    """3x3 conv + ReLU, twice, size-preserving."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:  # (N, Cin, H, W) -> (N, Cout, H, W)
        return F.relu(self.conv2(F.relu(self.conv1(x))))


def up_conv(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    """3x3 transposed conv, stride 2, 'same' padding: (N, Cin, H, W) -> (N, Cout, 2H, 2W)."""
    return nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)


class UNet(nn.Module):
    def __init__(self, *, in_channels: int = 3, n_filters: int = 16, n_classes: int = 10) -> None:
        super().__init__()
        f = n_filters
        self.c1 = DoubleConv(in_channels, f)
        self.p1 = nn.MaxPool2d(2)
        self.c2 = DoubleConv(f, 2 * f)
        self.p2 = nn.MaxPool2d(2)
        self.c3 = DoubleConv(2 * f, 4 * f)
        self.p3 = nn.MaxPool2d(2)
        self.c4 = DoubleConv(4 * f, 8 * f)
        self.p4 = nn.MaxPool2d(2)
        self.c5 = DoubleConv(8 * f, 16 * f)
        self.u6 = up_conv(16 * f, 8 * f)
        self.c6 = DoubleConv(16 * f, 8 * f)
        self.u7 = up_conv(8 * f, 4 * f)
        self.c7 = DoubleConv(8 * f, 4 * f)
        self.u8 = up_conv(4 * f, 2 * f)
        self.c8 = DoubleConv(4 * f, 2 * f)
        self.u9 = up_conv(2 * f, f)
        self.c9 = DoubleConv(2 * f, f)
        self.output = nn.Conv2d(f, n_classes, 1)

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, n_classes, H, W) in (0, 1)
        c1 = self.c1(x)  # (N, F, H, W)
        c2 = self.c2(self.p1(c1))  # (N, 2F, H/2, W/2)
        c3 = self.c3(self.p2(c2))  # (N, 4F, H/4, W/4)
        c4 = self.c4(self.p3(c3))  # (N, 8F, H/8, W/8)
        c5 = self.c5(self.p4(c4))  # (N, 16F, H/16, W/16)
        c6 = self.c6(torch.cat([self.u6(c5), c4], dim=1))  # (N, 16F, H/8, W/8) -> (N, 8F, H/8, W/8)
        c7 = self.c7(torch.cat([self.u7(c6), c3], dim=1))  # -> (N, 4F, H/4, W/4)
        c8 = self.c8(torch.cat([self.u8(c7), c2], dim=1))  # -> (N, 2F, H/2, W/2)
        c9 = self.c9(torch.cat([self.u9(c8), c1], dim=1))  # -> (N, F, H, W)
        return torch.sigmoid(self.output(c9))


def get_unet(input_shape: tuple[int, int, int], n_filters: int = 16, n_classes: int = 10) -> UNet:
    """A U-Net for images of `input_shape` = (H, W, C); H and W must be multiples of 16."""
    height, width, channels = input_shape
    if height % 16 or width % 16:
        raise ValueError(f"get_unet: input height and width must be multiples of 16 (4 poolings), got {input_shape}")
    return UNet(in_channels=channels, n_filters=n_filters, n_classes=n_classes)


def unet_example_input(input_shape: tuple[int, int, int]) -> Tensor:
    """A zero batch of one image in NCHW for an (H, W, C) shape."""
    height, width, channels = input_shape
    return torch.zeros(1, channels, height, width)
