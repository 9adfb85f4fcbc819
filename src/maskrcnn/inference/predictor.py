"""`Predictor`: run a trained model on RGB NumPy images and get NumPy arrays back.

    predictor = Predictor.from_checkpoint("runs/demo/model_final.pt")
    out = predictor(image)            # image: (H, W, 3) uint8 RGB
    out["boxes"]   (N, 4) float32 x1 y1 x2 y2 in image pixels
    out["labels"]  (N,) int64, 1..num_classes-1 (index into predictor.class_names)
    out["scores"]  (N,) float32, highest first, all >= predictor.score_threshold
    out["masks"]   (N, H, W) bool

The model itself (an nn.Module) stays apart from this class: the Predictor owns the
device, the thresholds, input checks, and the class names / COCO category ids that a
checkpoint carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from maskrcnn.checkpoints import load_checkpoint
from maskrcnn.config import (
    Config,
    TilingConfig,
    check_mask_threshold,
    check_test_augment,
)
from maskrcnn.data.image_source import ImageSource, open_image_source
from maskrcnn.devices import resolve_device
from maskrcnn.errors import UserError
from maskrcnn.inference.precision import (
    check_precision,
    keep_heads_float32,
    precision_context,
)
from maskrcnn.inference.tiling.grid import check_tiling
from maskrcnn.inference.tiling.tiled_prediction import ModelTileDetector, predict_tiled
from maskrcnn.model.build import with_test_augment
from maskrcnn.runtime import reuse_freed_memory
from maskrcnn.structures import Detections, image_to_tensor

_TILING = TilingConfig()


class ImageFormatError(UserError):
    """An image given to the Predictor that is not an (H, W, 3) uint8 RGB array."""


def check_image(image: Any, where: str = "image") -> np.ndarray:
    """Return `image` as a contiguous (H, W, 3) uint8 array or raise ImageFormatError."""
    if hasattr(image, "detach"):
        raise ImageFormatError(f"{where}: expected a NumPy array (H, W, 3) uint8, got a torch tensor; use .numpy()")
    if not isinstance(image, np.ndarray):
        raise ImageFormatError(f"{where}: expected a NumPy array (H, W, 3) uint8, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageFormatError(f"{where}: expected dtype uint8 (0..255), got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageFormatError(
            f"{where}: expected shape (H, W, 3) RGB, got {tuple(image.shape)}"
            + ("; grayscale? stack it to 3 channels" if image.ndim == 2 else "")
            + ("; RGBA? drop the alpha channel" if image.ndim == 3 and image.shape[2] == 4 else "")
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageFormatError(f"{where}: empty image of shape {tuple(image.shape)}")
    return np.ascontiguousarray(image)


def detections_to_numpy(det: Detections, score_threshold: float, mask_threshold: float, height: int, width: int) -> dict[str, np.ndarray]:
    """Keep detections scoring >= score_threshold; masks (N, H, W) bool: probability above
    mask_threshold, as the COCO evaluation, torchvision and the exported model binarise."""
    keep = det.scores >= score_threshold  # (N,)
    boxes = det.boxes[keep].detach().float().cpu().numpy().reshape(-1, 4)
    if det.masks is not None:
        masks = (det.masks[keep] > mask_threshold).cpu().numpy()
    else:
        masks = np.zeros((boxes.shape[0], height, width), dtype=bool)
    return {
        "boxes": boxes.astype(np.float32),
        "labels": det.labels[keep].detach().cpu().numpy().astype(np.int64),
        "scores": det.scores[keep].detach().float().cpu().numpy().astype(np.float32),
        "masks": masks.reshape(-1, height, width).astype(bool),
    }


class Predictor:
    """A model in eval mode on a device, with thresholds and class names."""

    def __init__(
        self,
        model: nn.Module,
        *,
        class_names: Sequence[str] | None = None,
        label_to_category_id: dict[int, int] | None = None,
        score_threshold: float = 0.5,
        mask_threshold: float | None = None,
        device: str | torch.device | None = None,
        config: Any | None = None,
        precision: str = "fp32",
        test_augment: str | None = None,
    ) -> None:
        self.device = resolve_device(device)
        check_precision(precision, self.device)
        self.precision = precision  # "bf16": bfloat16 convs / matmuls (inference.precision)
        if self.device.type == "cpu":
            reuse_freed_memory()  # feature maps reuse pages instead of page-faulting each pass
        self.model = model.to(self.device).eval()
        if precision == "bf16":
            keep_heads_float32(self.model)
        self.class_names = list(class_names) if class_names is not None else None
        self.label_to_category_id = dict(label_to_category_id) if label_to_category_id else None
        self.score_threshold = float(score_threshold)
        if mask_threshold is not None:  # the model owns it; tiles and evaluation read it there
            check_mask_threshold(mask_threshold, "mask_threshold")
            self.model.mask_threshold = float(mask_threshold)
        self.config = config
        if test_augment is None:
            test_augment = config.model.test_augment if isinstance(config, Config) else "none"
        check_test_augment(test_augment, "test_augment")
        self.test_augment = test_augment
        # what runs: the model, or test-time augmentation around it (model.build.with_test_augment)
        self.detector = with_test_augment(self.model, test_augment)

    @property
    def mask_threshold(self) -> float:
        """A mask pixel is on above this probability: the model's model.roi_heads.mask_threshold."""
        return float(getattr(self.model, "mask_threshold", 0.5))  # 0.5: a stand-in model

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        config: str | Any | None = None,
        device: str | torch.device | None = None,
        *,
        score_threshold: float = 0.5,
        mask_threshold: float | None = None,
        winograd: bool = True,
        precision: str = "fp32",
        test_augment: str | None = None,
        mask_paste: str | None = None,
    ) -> "Predictor":
        """Load a native checkpoint, or a torchvision state dict with `config` naming a built-in config.

        The model is prepared for inference (`load_model(..., for_inference=True)`);
        `winograd=False` keeps the wide 3x3 convs direct: results closer to the unprepared
        model's by about 1e-5 relative, 1.4-1.7x slower on the CPU
        (benchmarks/inference.py --no-winograd). `precision="bf16"`: bfloat16 convolutions
        and matmuls on CPUs with AVX512_BF16 / AMX (refused elsewhere; see inference.precision).
        `test_augment` ("none", "flips", "dihedral"; None: the checkpoint's model.test_augment)
        predicts on mirrored copies and merges them (maskrcnn.model.test_augment).
        `mask_threshold` (None: the checkpoint's model.roi_heads.mask_threshold) binarises masks;
        `mask_paste` ("torchvision", "exact"; None: the checkpoint's model.roi_heads.mask_paste)
        is how they are pasted (maskrcnn.ops.exact_paste).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(2, "checkpoint file not found", str(path))
        resolved = resolve_device(device)
        check_precision(precision, resolved)  # before loading: fail fast
        overrides = [
            f"{key}={value}"
            for key, value in (
                ("model.test_augment", test_augment),
                ("model.roi_heads.mask_paste", mask_paste),
                ("model.roi_heads.mask_threshold", mask_threshold),
            )
            if value is not None
        ]
        loaded = load_checkpoint(
            path, config=config, device=resolved, for_inference=True, winograd=winograd, overrides=overrides
        )
        return cls(
            loaded.model,
            class_names=loaded.class_names,
            label_to_category_id=loaded.label_to_category_id,
            score_threshold=score_threshold,
            device=resolved,
            config=loaded.config,
            precision=precision,
        )

    def category_id(self, label: int) -> int:
        """The dataset category id of a model label (label itself when no mapping is known)."""
        if self.label_to_category_id is None:
            return int(label)
        return int(self.label_to_category_id.get(int(label), int(label)))

    def class_name(self, label: int) -> str:
        if self.class_names is not None and 0 <= label < len(self.class_names):
            return self.class_names[label]
        return str(label)

    def predict_tiled(
        self,
        image: Any,
        *,
        tile: int = _TILING.tile_size,
        overlap: int = _TILING.overlap,
        scale: float = _TILING.scale,
        merge_threshold: float = _TILING.merge_threshold,
        intensity: str = "auto",
        progress: bool = False,
    ) -> Any:
        """Predict a large image in overlapping tiles at the model's scale; see maskrcnn.inference.tiling.tiled_prediction.

        `image`: an image file path (TIFFs are read tile by tile), an (H, W, 3) uint8 array
        (an np.memmap stays on disk), an (H, W) or (H, W, C) array of another depth
        (brought to 0..255 by `intensity`), or an ImageSource. Returns a TiledPrediction:
        boxes, labels, scores, masks as crops (`.instances`), `.rles()`, `.label_image()`.
        """
        check_tiling(tile, overlap, scale)
        source = image if isinstance(image, ImageSource) else open_image_source(image, intensity)
        detector = ModelTileDetector(self.detector, self.device, score_threshold=self.score_threshold, scale=scale)
        try:
            with precision_context(self.precision, self.device):  # bf16 reaches the tiles too
                return predict_tiled(
                    detector, source, tile_size=tile, overlap=overlap, merge_threshold=merge_threshold, progress=progress
                )
        finally:
            if source is not image:
                source.close()

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        return self.predict_batch([image])[0]

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Run the model once on several images (any sizes); one result dict per image."""
        checked = [check_image(image, f"image {i}" if len(images) > 1 else "image") for i, image in enumerate(images)]
        if not checked:
            return []
        tensors = [image_to_tensor(image, self.device) for image in checked]  # each (3, H, W)
        with precision_context(self.precision, self.device):
            if self.device.type == "cpu":
                # One forward per image: on the CPU a padded batch of 8 mixed sizes ran at 0.71x
                # the images/s of one at a time (benchmarks/inference.py --batch).
                detections: list[Detections] = [self.detector([tensor])[0] for tensor in tensors]
            else:
                detections = self.detector(tensors)
        return [
            detections_to_numpy(det, self.score_threshold, self.mask_threshold, *image.shape[:2])
            for det, image in zip(detections, checked)
        ]
