"""Where a model's anchors sit for an image: resize, padding, feature sizes, anchors.

Shape glossary: G boxes of one image; T anchors of one image over all levels; A_l anchors
of level l.

The resize is the model transform's test-time one (shortest side to min_size[-1] unless
the long side passes max_size; output side floor(side * scale)), the padding goes up to a
multiple of size_divisible, and the feature sizes come from running the actual backbone
on the meta device (shapes only) for that padded size.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from maskrcnn.config import ConfigError, ModelConfig
from maskrcnn.model.backbone import build_backbone
from maskrcnn.model.transform import resize_boxes, resize_scale_factor
from maskrcnn.ops.anchors import AnchorGenerator

CACHED_SIZES = 8  # padded sizes whose anchors are kept (a few MB each at 800x1216)


@dataclass(frozen=True)
class ResizedGeometry:
    scale: float
    resized: tuple[int, int]  # (h, w) after resize
    padded: tuple[int, int]  # (Hp, Wp) after padding


def resized_geometry(height: int, width: int, model_cfg: ModelConfig, min_size: int | None = None) -> ResizedGeometry:
    t = model_cfg.transform
    short_side = t.fixed_scale * min(height, width) if t.fixed_scale > 0 else float(min_size or t.min_size[-1])
    scale = resize_scale_factor(height, width, short_side, float(t.max_size))
    new_h, new_w = int(math.floor(height * scale)), int(math.floor(width * scale))
    div = max(int(t.size_divisible), 1)
    return ResizedGeometry(scale, (new_h, new_w), (math.ceil(new_h / div) * div, math.ceil(new_w / div) * div))


def scale_boxes(boxes_xyxy: Tensor, original: tuple[int, int], geometry: ResizedGeometry) -> Tensor:
    """(G, 4) boxes in original pixels -> resized-image pixels, as the model transform scales them."""
    return resize_boxes(boxes_xyxy.float(), original, geometry.resized)


class AnchorLayout:
    """Anchors per level for padded image sizes, from a model config (cached per size)."""

    def __init__(self, model_cfg: ModelConfig) -> None:
        # Built on the CPU, then moved to the meta device: forward passes give shapes only.
        self.backbone: nn.Module = build_backbone(model_cfg.backbone).to("meta")
        self.level_names: list[str] = list(self.backbone.feature_names)
        sizes, ratios = model_cfg.anchors.sizes, model_cfg.anchors.aspect_ratios
        if len(sizes) != len(self.level_names):
            raise ConfigError(
                f"model.anchors.sizes: {len(sizes)} anchor levels but the backbone "
                f"({model_cfg.backbone.name}, layout {model_cfg.backbone.layout}) gives "
                f"{len(self.level_names)} feature levels {self.level_names}"
            )
        self.generator = AnchorGenerator(sizes, ratios)
        self._cache: OrderedDict[tuple[int, int], list[Tensor]] = OrderedDict()

    def feature_sizes(self, padded: tuple[int, int]) -> list[tuple[int, int]]:
        with torch.no_grad():
            features = self.backbone(torch.zeros(1, 3, *padded, device="meta"))
        return [(int(f.shape[-2]), int(f.shape[-1])) for f in features.values()]

    def anchors(self, padded: tuple[int, int]) -> list[Tensor]:
        """Per level (A_l, 4) xyxy in padded-image pixels, (row, col, anchor) order."""
        if padded not in self._cache:
            self._cache[padded] = self.generator(padded, self.feature_sizes(padded), "cpu", torch.float32)
            if len(self._cache) > CACHED_SIZES:
                self._cache.popitem(last=False)
        self._cache.move_to_end(padded)
        return self._cache[padded]
