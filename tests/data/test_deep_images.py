"""Issue 15's image cases: 12-bit data in 16-bit files, float TIFFs, huge images, thin images."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from maskrcnn.data.image_source import (
    ImageTooLargeError,
    open_image_source,
    open_raw_image,
)
from maskrcnn.data.images import ImageReadError, image_size, read_image
from maskrcnn.data.intensity import IntensityModeError


def ramp(top: int, dtype=np.uint16) -> np.ndarray:
    return np.linspace(0, top, 64 * 48).reshape(48, 64).astype(dtype)


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_twelve_bit_data_in_a_sixteen_bit_file_keeps_its_brightness(tmp_path, suffix):
    data = ramp(4080)
    path = tmp_path / f"twelve{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, data)
    else:
        Image.fromarray(data).save(path)
    out = read_image(path)  # auto: 0..4095 -> 0..255
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert out.max() == round(4080 * 255 / 4095) and out[0, 0, 0] == 0
    expected = np.rint(data.astype(np.float64) * 255 / 4095).astype(np.uint8)
    assert np.abs(out[:, :, 0].astype(int) - expected).max() <= 1
    assert read_image(path, intensity="dtype").max() == round(4080 * 255 / 65535)  # the old, near-black result
    assert read_image(path, intensity="range").max() == 255


def test_float_tiff_in_unit_range_is_not_binarised(tmp_path):
    data = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(30, 40)
    tifffile.imwrite(tmp_path / "f.tif", data)
    out = read_image(tmp_path / "f.tif")[:, :, 0]
    assert len(np.unique(out)) > 200 and out.min() == 0 and out.max() == 255
    assert abs(int(out[15, 20]) - round(float(data[15, 20]) * 255)) <= 1


def test_float_tiff_outside_unit_range_and_nan(tmp_path):
    data = np.full((10, 10), -5.0, dtype=np.float32)
    data[0, 0], data[1, 1] = 15.0, np.nan
    tifffile.imwrite(tmp_path / "g.tif", data)
    out = read_image(tmp_path / "g.tif")[:, :, 0]  # negative values: the image's own range
    assert out[0, 0] == 255 and out[5, 5] == 0 and out[1, 1] == 0


def test_percentile_ignores_hot_pixels(tmp_path):
    data = ramp(1000)
    data[0, :3] = 65535  # three hot pixels
    tifffile.imwrite(tmp_path / "hot.tif", data)
    assert read_image(tmp_path / "hot.tif")[24, 32, 0] < 10  # auto: 16-bit full scale, dark
    assert read_image(tmp_path / "hot.tif", intensity="percentile")[24, 32, 0] > 100


def test_rgb_sixteen_bit_tiff_and_unknown_mode(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint16)
    rgb[..., 0] = 4095
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    assert read_image(tmp_path / "rgb.tif")[0, 0].tolist() == [255, 0, 0]
    with pytest.raises(IntensityModeError, match="expected one of auto"):
        read_image(tmp_path / "rgb.tif", intensity="bright")


def test_multichannel_stack_is_refused_in_one_line(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 20, 30), np.uint16), photometric="minisblack",
                    metadata={"axes": "CYX"})
    with pytest.raises(ImageReadError, match=r"stack\.tif: TIFF of shape \(3, 20, 30\).*expected one 2-D image"):
        read_image(tmp_path / "stack.tif")


def test_huge_image_is_refused_before_decoding_naming_the_limit(tmp_path):
    # Pillow refuses (DecompressionBombError) above 2 x 89.5 Mpx: a 19000 x 19000 PNG is a few
    # hundred KB of zeros; we must refuse it by its header, in one line, naming the option.
    path = tmp_path / "big.png"
    Image.new("1", (19000, 19000)).save(path)
    with pytest.raises(ImageTooLargeError, match=r"19000x19000 pixels \(361\.0 Mpx\).*--tile.*--max-image-pixels"):
        read_image(path)
    assert image_size(path) == (19000, 19000)  # the header alone is fine
    small_limit = tmp_path / "s.png"
    Image.new("L", (30, 20)).save(small_limit)
    with pytest.raises(ImageTooLargeError, match="limit of 0.0 Mpx"):
        read_image(small_limit, max_pixels=100)
    assert read_image(small_limit, max_pixels=None).shape == (20, 30, 3)


def test_tiled_tiff_regions_match_the_whole_image(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4096, (300, 410, 3), dtype=np.uint16)
    for name, kwargs in {"tiled.tif": {"tile": (64, 64), "compression": "zlib"},
                         "strips.tif": {"rowsperstrip": 7}}.items():
        tifffile.imwrite(tmp_path / name, data, photometric="rgb", **kwargs)
        raw = open_raw_image(tmp_path / name)
        assert type(raw).__name__ == "TiffRegions"
        for y0, y1, x0, x1 in [(0, 300, 0, 410), (37, 101, 250, 410), (299, 300, 0, 1), (64, 128, 64, 128)]:
            assert np.array_equal(raw.read(y0, y1, x0, x1), data[y0:y1, x0:x1])
        source = open_image_source(tmp_path / name)
        whole = read_image(tmp_path / name)
        assert np.array_equal(source.read(10, 200, 33, 300), whole[10:200, 33:300])
        source.close()
        raw.tif.close()


def test_npy_memmap_source(tmp_path):
    data = np.random.default_rng(1).integers(0, 255, (50, 60, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", data)
    source = open_image_source(tmp_path / "a.npy")
    assert isinstance(source.raw.array, np.memmap)
    assert np.array_equal(source.read(5, 25, 7, 60), data[5:25, 7:60])
