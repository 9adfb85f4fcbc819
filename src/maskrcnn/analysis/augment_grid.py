"""`maskrcnn analyze augment`: a grid of augmented training samples with their masks and boxes.

The training set of a config is read as training reads it, each sample goes through the
`data.augment` pipeline, and the results are drawn (translucent masks, outlines, boxes,
class names; see visualize/overlays.py) into one PNG, so that a user can see what the
model will be trained on before training. Random numbers come from a generator seeded
with `seed`, apart from the caller's.

Shape glossary: H, W a sample's height and width after augmentation; N its instances.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from maskrcnn.analysis.errors import AnalysisError
from maskrcnn.structures import Targets, image_to_tensor
from maskrcnn.visualize.overlays import draw_instances
from maskrcnn.visualize.panels import LEGEND_BACKGROUND, with_title

# Above this many instances a cell leaves out the captions (they would hide the masks).
MAX_CAPTIONED = 25
CELL_GAP = 4


@dataclass
class AugmentedSample:
    """One drawn cell: training image `index` after the pipeline (or as it is, when `original`)."""

    index: int
    file_name: str
    original: bool
    input_hw: tuple[int, int]
    image: np.ndarray  # (H, W, 3) uint8
    targets: Targets  # boxes (N, 4), labels (N,), masks (N, H, W) or None
    input_instances: int

    def summary(self) -> dict:
        return {
            "index": self.index, "file_name": self.file_name, "original": self.original,
            "input_hw": list(self.input_hw), "output_hw": list(self.image.shape[:2]),
            "input_instances": self.input_instances, "output_instances": len(self.targets),
        }  # fmt: skip


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def augmented_samples(
    dataset,
    pipeline: Callable[[torch.Tensor, Targets], tuple[torch.Tensor, Targets]] | None,
    count: int,
    *,
    seed: int = 0,
    image_index: int | None = None,
) -> list[AugmentedSample]:
    """`count` samples: images 0, 1, 2, ... (cycling) each augmented once; or, with
    `image_index`, that image as it is followed by count - 1 augmentations of it.

    `dataset` is a CocoDataset without transforms of its own (`load_image`, `load_targets`,
    `image_info`)."""
    if len(dataset) == 0:
        raise AnalysisError("analyze augment: the training set has no images with annotations")
    if count < 1:
        raise AnalysisError(f"--samples: expected at least 1, got {count}")
    if image_index is not None and not 0 <= image_index < len(dataset):
        raise AnalysisError(f"--image: expected an index in 0..{len(dataset) - 1}, got {image_index}")
    samples: list[AugmentedSample] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for number in range(count):
            index = image_index if image_index is not None else number % len(dataset)
            original = pipeline is None or (image_index is not None and number == 0)
            pixels = dataset.load_image(index)
            image = image_to_tensor(pixels)  # (3, H, W)
            targets = dataset.load_targets(index)
            input_instances = len(targets)
            if not original:
                image, targets = pipeline(image, targets)
            samples.append(AugmentedSample(
                index=index, file_name=str(dataset.image_info(index)["file_name"]), original=original,
                input_hw=(pixels.shape[0], pixels.shape[1]), image=_to_uint8(image), targets=targets,
                input_instances=input_instances,
            ))  # fmt: skip
    return samples


def check_grid_options(samples: int, cell: int, columns: int | None) -> None:
    """Stop early, before reading any image, on grid options that cannot work."""
    if samples < 1:
        raise AnalysisError(f"--samples: expected at least 1, got {samples}")
    if cell < 16:
        raise AnalysisError(f"--cell: expected at least 16 pixels, got {cell}")
    if columns is not None and columns < 1:
        raise AnalysisError(f"--columns: expected at least 1, got {columns}")


def _cell_title(sample: AugmentedSample) -> str:
    """"#3 128x96 2/3": image index, size after augmentation, instances kept / before."""
    height, width = sample.image.shape[:2]
    what = " original" if sample.original else ""
    return f"#{sample.index}{what} {height}x{width} {len(sample.targets)}/{sample.input_instances}"


def draw_sample(sample: AugmentedSample, class_names: Sequence[str] | None, cell: int, boxes: bool = True) -> np.ndarray:
    """One sample scaled so that its longer side is `cell` pixels, masks (and boxes) drawn, titled."""
    height, width = sample.image.shape[:2]
    targets = sample.targets
    picture = draw_instances(
        sample.image, targets.boxes, targets.labels, masks=targets.masks, class_names=class_names,
        scale=cell / max(height, width), show_boxes=boxes, show_captions=len(targets) <= MAX_CAPTIONED,
    )  # fmt: skip
    return with_title(picture, _cell_title(sample), font_size=12)


def tile(pictures: Sequence[np.ndarray], columns: int) -> np.ndarray:
    """Place (h, w, 3) uint8 pictures row by row, each centred in a cell of the largest size."""
    cell_h = max(p.shape[0] for p in pictures)
    cell_w = max(p.shape[1] for p in pictures)
    rows = -(-len(pictures) // columns)
    height = rows * cell_h + (rows + 1) * CELL_GAP
    width = columns * cell_w + (columns + 1) * CELL_GAP
    sheet = np.empty((height, width, 3), dtype=np.uint8)
    sheet[:] = np.asarray(LEGEND_BACKGROUND, dtype=np.uint8)
    for number, picture in enumerate(pictures):
        row, column = divmod(number, columns)
        top = CELL_GAP + row * (cell_h + CELL_GAP) + (cell_h - picture.shape[0]) // 2
        left = CELL_GAP + column * (cell_w + CELL_GAP) + (cell_w - picture.shape[1]) // 2
        sheet[top : top + picture.shape[0], left : left + picture.shape[1]] = picture
    return sheet


def draw_augment_grid(
    samples: Sequence[AugmentedSample],
    class_names: Sequence[str] | None = None,
    *,
    cell: int = 256,
    columns: int | None = None,
    title: str | None = None,
    boxes: bool = True,
) -> np.ndarray:
    """All samples in a grid (about square when `columns` is not given): (H, W, 3) uint8."""
    if not samples:
        raise AnalysisError("analyze augment: no samples to draw")
    check_grid_options(len(samples), cell, columns)
    columns = columns or max(1, int(np.ceil(np.sqrt(len(samples)))))
    sheet = tile([draw_sample(s, class_names, cell, boxes) for s in samples], columns)
    return with_title(sheet, title) if title else sheet

