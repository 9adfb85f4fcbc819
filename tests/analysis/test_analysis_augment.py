"""`maskrcnn analyze augment`: a grid PNG of augmented training samples, its JSON, its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.analysis.augment_grid import augmented_samples, draw_augment_grid, tile
from maskrcnn.cli import main
from maskrcnn.config import load_config
from maskrcnn.data.build import build_dataset
from maskrcnn.ops.boxes import masks_to_boxes

EVERYTHING = [
    "data.augment.vertical_flip=0.5", "data.augment.rotate90=0.5", "data.augment.transpose=0.5",
    "data.augment.scale_jitter=1.0", "data.augment.scale_range=[0.4,1.8]", "data.augment.pad_value=0.3",
    "data.augment.brightness=0.3", "data.augment.contrast=0.3", "data.augment.gamma=0.5",
    "data.augment.blur=0.5", "data.augment.noise=0.5",
]  # fmt: skip


def shapes_sets(tmp_path: Path) -> list[str]:
    items = ["data.train.kind=shapes", f"data.train.annotations={tmp_path}/shapes/train.json",
             "data.train.num_images=3", "data.train.image_size=48", "data.train.seed=0", *EVERYTHING]  # fmt: skip
    return [arg for item in items for arg in ("--set", item)]


def test_cli_writes_the_grid_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["analyze", "augment", "--config", "shapes_demo", *shapes_sets(tmp_path), "--samples", "5",
            "--cell", "96", "--output", str(out), "--json", str(tmp_path / "augment.json")]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "RandomScaleJitter" in text and "RandomGaussianNoise" in text and "augment_grid.png" in text
    with Image.open(out / "augment_grid.png") as picture:
        assert picture.mode == "RGB"
        width, height = picture.size
    assert width >= 3 * 96 and height >= 2 * 96  # 5 cells: 3 columns, 2 rows
    data = json.loads((tmp_path / "augment.json").read_text())
    assert [s["index"] for s in data["samples"]] == [0, 1, 2, 0, 1]  # cycles through the 3 images
    assert all(not s["original"] for s in data["samples"])
    # same seed, same picture
    first = (out / "augment_grid.png").read_bytes()
    assert main(argv) == 0
    assert (out / "augment_grid.png").read_bytes() == first


def test_one_image_shown_first_as_it_is(tmp_path: Path) -> None:
    cfg = load_config("shapes_demo", shapes_sets(tmp_path)[1::2])
    dataset = build_dataset(cfg.data.train, cfg.data.augment, train=True)
    pipeline, dataset.transforms = dataset.transforms, None
    state = torch.get_rng_state()
    samples = augmented_samples(dataset, pipeline, 6, seed=4, image_index=2)
    assert torch.equal(torch.get_rng_state(), state), "the caller's generator was moved"
    assert [s.index for s in samples] == [2] * 6 and samples[0].original and not samples[1].original
    assert np.array_equal(samples[0].image, dataset.load_image(2))
    assert any(s.image.shape != samples[0].image.shape or not np.array_equal(s.image, samples[0].image) for s in samples[1:])
    for sample in samples:  # what is drawn is consistent
        masks = sample.targets.masks
        assert masks.shape[1:] == sample.image.shape[:2]
        torch.testing.assert_close(sample.targets.boxes, masks_to_boxes(masks), rtol=0, atol=0)
    picture = draw_augment_grid(samples, dataset.class_names, cell=64, columns=2, title="t")
    assert picture.dtype == np.uint8 and picture.shape[1] >= 2 * 64


def test_tile_centres_pictures_of_different_sizes() -> None:
    a = np.full((10, 20, 3), 255, np.uint8)
    b = np.full((20, 8, 3), 100, np.uint8)
    sheet = tile([a, b, a], columns=2)
    assert sheet.shape == (2 * 20 + 3 * 4, 2 * 20 + 3 * 4, 3)
    assert (sheet[4 + 5 : 4 + 15, 4 : 24] == 255).all()  # a, centred vertically in the first cell
    assert (sheet[4 : 24, 24 + 4 + 6 : 24 + 4 + 14] == 100).all()  # b, centred horizontally


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["analyze", "augment", "--config", "shapes_demo", *shapes_sets(tmp_path), "--output", str(tmp_path)]
    assert main([*argv, "--image", "7"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "maskrcnn: error: --image: expected an index in 0..2, got 7"
    assert main([*argv, "--set", "data.augment.rotate90=2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "maskrcnn: error: data.augment.rotate90: expected a probability in [0, 1], got 2.0"
    assert main([*argv, "--samples", "1", "--cell", "0"]) == 1
    assert capsys.readouterr().err.strip() == "maskrcnn: error: --cell: expected at least 16 pixels, got 0"
    assert not (tmp_path / "augment_grid.png").exists()


def test_with_every_augmentation_off_the_grid_shows_the_images_as_they_are(tmp_path: Path, capsys) -> None:
    argv = ["analyze", "augment", "--config", "shapes_demo", *shapes_sets(tmp_path)[:10],
            "--set", "data.augment.horizontal_flip=0", "--samples", "2", "--no-boxes", "--cell", "64",
            "--output", str(tmp_path), "--json", str(tmp_path / "a.json")]  # fmt: skip
    assert main(argv) == 0
    assert "switches every augmentation off" in capsys.readouterr().out
    assert all(s["original"] for s in json.loads((tmp_path / "a.json").read_text())["samples"])
