from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from maskrcnn.data.images import (
    ImageReadError,
    image_size,
    read_image,
    read_label_image,
)


def test_rgb_is_returned_as_is(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    out = read_image(tmp_path / "x.png")
    assert out.dtype == np.uint8 and np.array_equal(out, pixels)
    assert image_size(tmp_path / "x.png") == (5, 7)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    Image.fromarray(np.array([[0, 100], [200, 255]], np.uint8)).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (2, 2, 3) and out[1, 0].tolist() == [200, 200, 200]


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 0, 128]]], np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out[0, 0].tolist() == [255, 0, 0]  # opaque red stays red
    assert out[0, 1].tolist() == [255, 255, 255]  # transparent -> white
    assert all(abs(v - 127) <= 1 for v in out[0, 2])  # half black over white -> mid gray


def test_palette_image(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    image.putdata([0, 1, 1])
    image.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png")[0].tolist() == [[0, 0, 0], [10, 20, 30], [10, 20, 30]]


def test_sixteen_bit_is_scaled_to_eight_bits(tmp_path):
    Image.fromarray(np.array([[0, 65535, 32896]], np.uint16)).save(tmp_path / "d.png")
    out = read_image(tmp_path / "d.png")
    assert out[0, :, 0].tolist() == [0, 255, 128]
    small = np.array([[0, 10, 200]], np.uint16)  # fits in 8 bits: kept as is
    Image.fromarray(small).save(tmp_path / "s.png")
    assert read_image(tmp_path / "s.png")[0, :, 1].tolist() == [0, 10, 200]


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"nothing\.png: image file not found"):
        read_image(tmp_path / "nothing.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(ImageReadError, match=r"bad\.jpg: cannot read image"):
        read_image(tmp_path / "bad.jpg")
    assert issubclass(ImageReadError, ValueError)


def test_label_images(tmp_path):
    labels = np.array([[0, 1, 1], [2, 2, 300]], np.uint16)
    Image.fromarray(labels).save(tmp_path / "l.png")
    assert read_label_image(tmp_path / "l.png").tolist() == labels.tolist()
    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 1] = [0, 1, 2]
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert read_label_image(tmp_path / "c.png").tolist() == [[0, 258]]
