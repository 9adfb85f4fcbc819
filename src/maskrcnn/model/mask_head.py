"""Mask heads (RoI features -> mask features) and mask predictors (-> per-class logits).

Shape glossary: R RoIs; C channels of the pooled features; S the pooled side (14);
K classes including background; M the predicted mask side (28 = 2 * 14; 14 for C4).

Parameter names are torchvision's: the conv head is a Sequential of blocks `{i}.0` conv,
`{i}.1` norm (v2); the predictor has `conv5_mask` (2x2 stride-2 transposed conv) and
`mask_fcn_logits` (1x1 conv).
"""

from __future__ import annotations

from torch import Tensor, nn

from maskrcnn.model.box_head import conv_norm_relu


class MaskConvHead(nn.Sequential):
    """`num_convs` 3x3 conv (+norm) + ReLU blocks: (R, C, S, S) -> (R, channels, S, S)."""

    def __init__(self, *, in_channels: int, channels: int = 256, num_convs: int = 4, norm: str = "none") -> None:
        blocks = []
        for i in range(num_convs):
            blocks.append(conv_norm_relu(in_channels if i == 0 else channels, channels, norm))
        super().__init__(*blocks)
        self.out_channels = channels if num_convs > 0 else in_channels


class MaskPredictor(nn.Module):
    """Deconv 2x2 stride 2 + ReLU, then 1x1 conv: (R, C, S, S) -> (R, K, 2S, 2S) logits."""

    def __init__(self, *, in_channels: int, dim_reduced: int, num_classes: int) -> None:
        super().__init__()
        self.conv5_mask = nn.ConvTranspose2d(in_channels, dim_reduced, kernel_size=2, stride=2)
        self.relu = nn.ReLU(inplace=True)
        self.mask_fcn_logits = nn.Conv2d(dim_reduced, num_classes, kernel_size=1)
        for layer in (self.conv5_mask, self.mask_fcn_logits):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.mask_fcn_logits(self.relu(self.conv5_mask(x)))


class MaskMLPHead(nn.Module):
    """The paper's fully connected ablation: flatten, fc 1024 + ReLU, fc 1024 + ReLU -> (R, dim)."""

    def __init__(self, *, in_channels: int, pool_size: int, dim: int = 1024) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_channels * pool_size * pool_size, dim)
        self.fc2 = nn.Linear(dim, dim)
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = dim

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.fc2(self.relu(self.fc1(x.flatten(start_dim=1)))))


class MaskMLPPredictor(nn.Module):
    """One fc to K*M*M logits: (R, dim) -> (R, K, M, M)."""

    def __init__(self, *, in_features: int, num_classes: int, mask_size: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.mask_size = mask_size
        self.mask_fc_logits = nn.Linear(in_features, num_classes * mask_size * mask_size)
        nn.init.normal_(self.mask_fc_logits.weight, std=0.001)
        nn.init.zeros_(self.mask_fc_logits.bias)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.mask_fc_logits(x)  # (R, K*M*M)
        return logits.view(-1, self.num_classes, self.mask_size, self.mask_size)  # -> (R, K, M, M)
