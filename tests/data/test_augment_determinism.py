"""Augmentations replay exactly: the same seed gives the same batches, and a run that stops
after some batches and restores the saved generators (as `train --resume` does) gets the
batches the uninterrupted run got, with every augmentation on."""

from __future__ import annotations

from pathlib import Path

import torch

from maskrcnn.config import AugmentConfig, DatasetConfig
from maskrcnn.data.build import build_dataset
from maskrcnn.data.loader import build_loader
from maskrcnn.engine.resume_state import (
    capture_rng_state,
    cycle_batches,
    restore_rng_state,
)

EVERYTHING = AugmentConfig(
    horizontal_flip=0.5, vertical_flip=0.5, rotate90=0.5, transpose=0.5, random_crop=0.3, scale_jitter=0.7,
    scale_range=[0.4, 1.8], pad_value=0.2, min_area=3, photometric=True, brightness=0.2, contrast=0.2, gamma=0.4,
    blur=0.4, noise=0.4,
)  # fmt: skip


def _loader(tmp_path: Path):
    ds = DatasetConfig(kind="shapes", annotations=str(tmp_path / "shapes" / "train.json"), num_images=5, image_size=40)
    dataset = build_dataset(ds, EVERYTHING, train=True)
    return build_loader(dataset, batch_size=2, train=True, seed=3)


def _take(batches, count: int) -> list:
    return [next(batches)[2] for _ in range(count)]


def _same(a, b) -> bool:
    images_a, targets_a, _ = a
    images_b, targets_b, _ = b
    return all(torch.equal(x, y) for x, y in zip(images_a, images_b)) and all(
        torch.equal(s.masks, t.masks) and torch.equal(s.boxes, t.boxes) and torch.equal(s.labels, t.labels)
        for s, t in zip(targets_a, targets_b)
    ) and len(images_a) == len(images_b)


def test_resuming_mid_run_replays_the_augmentations(tmp_path: Path) -> None:
    torch.manual_seed(11)
    straight = _take(cycle_batches(_loader(tmp_path), seed=3), 7)  # 3 batches per pass: crosses passes

    torch.manual_seed(11)
    first = cycle_batches(_loader(tmp_path), seed=3)
    _take(first, 4)  # pass 0 (3 batches) and the first batch of pass 1
    saved = capture_rng_state()
    torch.manual_seed(999)  # the process dies; a new one starts with other state
    restore_rng_state(saved)
    resumed = _take(cycle_batches(_loader(tmp_path), seed=3, start_epoch=1, start_batch=1), 3)

    assert all(_same(a, b) for a, b in zip(straight[4:], resumed))
    # and the augmentations did something: every image differs from the file it came from
    plain = build_dataset(DatasetConfig(kind="shapes", annotations=str(tmp_path / "shapes" / "train.json"), num_images=5,
                                        image_size=40), None, train=True)  # fmt: skip
    originals = {plain.image_info(i)["file_name"]: plain[i][0] for i in range(len(plain))}
    for images, _, infos in straight:
        for image, info in zip(images, infos):
            original = originals[info["file_name"]]
            assert image.shape != original.shape or not torch.equal(image, original)
