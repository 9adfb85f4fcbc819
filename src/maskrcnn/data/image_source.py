"""Image files as sources of rectangles, decoded only where needed when the format allows.

Shape glossary: H, W the image's height and width; h, w a region's; C samples per pixel
(1 gray, 2 gray + alpha, 3 RGB, 4 RGBA).

    source = open_image_source("slide.tif", intensity="auto")   # reads the header only
    region = source.read(0, 1024, 0, 1024)                     # (h, w, 3) uint8

- TIFF (through tifffile): tiled or striped, any compression tifffile decodes itself
  (none, deflate, LZW, PackBits, ...): only the tiles or strips that a region touches are
  read and decoded; a small cache keeps recently decoded ones, so neighbouring regions of
  a tiled read do not decode them again. Other TIFFs (palette, YCbCr, JPEG-compressed
  without imagecodecs) go through Pillow, whole.
- `.npy` arrays: memory-mapped.
- PNG, JPEG and the rest: Pillow decodes the whole image once (these formats have no
  random access); memory is then H * W * C bytes (more for 16-bit data).

Values become 0..255 by an intensity window (`maskrcnn.data.intensity`); data-dependent
modes take one pass over the image in row bands first.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from maskrcnn.data.intensity import (
    IntensityWindow,
    apply_window,
    check_mode,
    gather_stats,
    intensity_window,
    needs_stats,
    sample_stride,
)
from maskrcnn.errors import UserError

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
PIL_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
SEGMENT_CACHE_BYTES = 64 * 2**20  # a few rows of TIFF tiles: neighbouring regions reuse them
BAND_BYTES = 64 * 2**20  # rows per pass of the statistics scan: about this many bytes


class ImageReadError(UserError):
    """An image file that is missing or cannot be decoded."""


class ImageTooLargeError(ImageReadError):
    """An image with more pixels than the limit for reading it whole."""


class RawImage(Protocol):
    """Pixels as stored: (h, w) or (h, w, C) of any dtype."""

    height: int
    width: int
    dtype: np.dtype
    channels: int

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray: ...


class ArrayImage:
    """An (H, W) or (H, W, C) array in memory (or memory-mapped) as a RawImage."""

    def __init__(self, array: np.ndarray, where: str = "image") -> None:
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
            raise ImageReadError(
                f"{where}: image of shape {tuple(array.shape)}; expected (H, W) grayscale or (H, W, C) "
                "with C = 2 (gray + alpha), 3 (RGB) or 4 (RGBA)"
            )
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise ImageReadError(f"{where}: empty image of shape {tuple(array.shape)}")
        self.array = array
        self.height, self.width = int(array.shape[0]), int(array.shape[1])
        self.dtype = array.dtype
        self.channels = 1 if array.ndim == 2 else int(array.shape[2])

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return np.asarray(self.array[y0:y1, x0:x1])


class TiffRegions:
    """The first image of a TIFF, read by the tiles or strips that a region touches."""

    def __init__(self, path: Path, tif: Any) -> None:
        self.path = path
        self.tif = tif
        page = tif.pages.first
        self.page = page
        self.height, self.width = int(page.imagelength), int(page.imagewidth)
        self.channels = int(page.samplesperpixel)
        self.dtype = np.dtype(page.dtype)
        self.chunk_h, self.chunk_w = int(page.chunks[0]), int(page.chunks[1])
        self.tiled = bool(page.is_tiled)
        self.chunks_x = -(-self.width // self.chunk_w)
        self._decode = page.decode
        self._decode_args: dict[str, Any] = {"_fullsize": self.tiled}
        if page.compression in (6, 7, 34892, 33007):  # JPEG variants
            self._decode_args.update(jpegtables=page.jpegtables, jpegheader=page.jpegheader)
        self._cache: OrderedDict[int, np.ndarray | None] = OrderedDict()
        self._cached_bytes = 0

    def _segment(self, index: int) -> np.ndarray | None:
        """Decoded tile/strip `index`: (rows, cols, C), or None for an empty segment."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        offset, count = self.page.dataoffsets[index], self.page.databytecounts[index]
        data = None
        if count > 0:
            fh = self.tif.filehandle
            with fh.lock:
                fh.seek(offset)
                data = fh.read(count)
        segment, _, _ = self._decode(data, index, **self._decode_args)
        if segment is not None:
            segment = segment.reshape(segment.shape[-3], segment.shape[-2], -1)  # drop depth
        self._cache[index] = segment
        self._cached_bytes += 0 if segment is None else segment.nbytes
        while self._cached_bytes > SEGMENT_CACHE_BYTES and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= 0 if old is None else old.nbytes
        return segment

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        out = np.zeros((y1 - y0, x1 - x0, self.channels), dtype=self.dtype)
        for cy in range(y0 // self.chunk_h, -(-y1 // self.chunk_h)):
            cx_range = range(x0 // self.chunk_w, -(-x1 // self.chunk_w)) if self.tiled else range(1)
            for cx in cx_range:
                segment = self._segment(cy * self.chunks_x + cx if self.tiled else cy)
                if segment is None:
                    continue
                sy, sx = cy * self.chunk_h, cx * self.chunk_w  # the segment's top-left in the image
                ry0, ry1 = max(y0, sy), min(y1, sy + segment.shape[0], self.height)
                rx0, rx1 = max(x0, sx), min(x1, sx + segment.shape[1], self.width)
                if ry1 > ry0 and rx1 > rx0:
                    out[ry0 - y0 : ry1 - y0, rx0 - x0 : rx1 - x0] = segment[ry0 - sy : ry1 - sy, rx0 - sx : rx1 - sx]
        return out[:, :, 0] if self.channels == 1 else out


@contextlib.contextmanager
def pil_size_limit_lifted() -> Iterator[None]:
    """Let Pillow open an image of any size (our own limit is checked instead)."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def check_pixel_limit(path: Path, height: int, width: int, max_pixels: int | None) -> None:
    if max_pixels is not None and height * width > max_pixels:
        raise ImageTooLargeError(
            f"{path}: {width}x{height} pixels ({height * width / 1e6:.1f} Mpx) is over the limit of "
            f"{max_pixels / 1e6:.1f} Mpx for reading a whole image; predict it in tiles "
            f"(maskrcnn predict --tile 1024) or raise the limit (--max-image-pixels {height * width})"
        )


def is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in TIFF_MAGIC


def _open_tiff(path: Path) -> TiffRegions | None:
    """A TiffRegions for the first image, or None when Pillow should read this TIFF instead."""
    import tifffile

    tif = tifffile.TiffFile(path)
    try:
        page = tif.pages.first
        series = tif.series[0]
        plane = (int(page.imagelength), int(page.imagewidth))
        squeezed = tuple(s for s in series.shape if s != 1)
        allowed = {plane, (*plane, int(page.samplesperpixel))}
        if squeezed not in allowed or page.imagedepth > 1:
            raise ImageReadError(
                f"{path}: TIFF of shape {tuple(series.shape)} (axes {series.axes}); expected one 2-D image, "
                "grayscale (YX) or RGB(A) (YXS): save a single plane or an RGB composite"
            )
        supported = int(page.photometric) in (1, 2) and (page.planarconfig == 1 or page.samplesperpixel == 1)
        if not supported or page.samplesperpixel > 4:
            tif.close()
            return None
        regions = TiffRegions(path, tif)
        regions._segment(0)  # fails here if tifffile cannot decode this compression
        return regions
    except ImageReadError:
        tif.close()
        raise
    except Exception:  # noqa: BLE001 - not decodable by tifffile alone: let Pillow try
        tif.close()
        return None


def pil_to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert a PIL image of an 8-bit mode to a (H, W, 3) uint8 array (deep modes: see read_image)."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy


def _open_with_pil(path: Path, max_pixels: int | None) -> ArrayImage:
    with pil_size_limit_lifted(), Image.open(path) as image:
        check_pixel_limit(path, image.height, image.width, max_pixels)
        image.load()
        if image.mode in PIL_HIGH_DEPTH_MODES:
            return ArrayImage(np.asarray(image), str(path))
        if image.mode in ("L", "1"):  # kept as one channel: a third of the memory of RGB
            return ArrayImage(np.asarray(image.convert("L")), str(path))
        return ArrayImage(pil_to_rgb_array(image), str(path))


def open_raw_image(path: str | Path, max_pixels: int | None = None) -> RawImage:
    """A RawImage for `path`; `max_pixels` refuses images that would be decoded whole above it."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            return ArrayImage(array, str(path))
        if is_tiff(path):
            regions = _open_tiff(path)
            if regions is not None:
                return regions
        return _open_with_pil(path, max_pixels)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc})") from None


def close_raw_image(raw: RawImage) -> None:
    """Close the TIFF file a RawImage holds open (read by regions); nothing to do for arrays."""
    tif = getattr(raw, "tif", None)
    if tif is not None:
        tif.close()


def raw_to_rgb(region: np.ndarray, window: IntensityWindow) -> np.ndarray:
    """(h, w) or (h, w, C) raw values -> (h, w, 3) uint8; alpha composited on white."""
    if region.ndim == 2:
        gray = apply_window(region, window)
        return np.repeat(gray[:, :, None], 3, axis=2)
    channels = region.shape[2]
    color = region[:, :, :1] if channels in (1, 2) else region[:, :, :3]
    rgb = apply_window(color, window)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    if channels in (2, 4):
        alpha = region[:, :, -1:].astype(np.float32)
        full = 1.0 if region.dtype.kind == "f" else float(np.iinfo(region.dtype).max)
        alpha = np.clip(alpha / full, 0.0, 1.0)
        rgb = np.rint(rgb.astype(np.float32) * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(rgb)


class ImageSource:
    """A RawImage with its intensity window: `read` gives (h, w, 3) uint8 RGB."""

    def __init__(self, raw: RawImage, window: IntensityWindow, name: str = "image") -> None:
        self.raw = raw
        self.window = window
        self.name = name
        self.height, self.width = raw.height, raw.width

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return raw_to_rgb(self.raw.read(y0, y1, x0, x1), self.window)

    def close(self) -> None:
        close_raw_image(self.raw)


def window_for(raw: RawImage, intensity: str) -> IntensityWindow:
    """The intensity window of a whole RawImage (a pass over it in row bands if the mode needs one)."""
    check_mode(intensity)
    if not needs_stats(raw.dtype, intensity):
        return intensity_window(raw.dtype, intensity, None)
    stride = sample_stride(raw.height, raw.width)
    row_bytes = raw.width * raw.channels * np.dtype(raw.dtype).itemsize
    band = max(stride, BAND_BYTES // max(row_bytes, 1) // stride * stride)
    bands = (raw.read(y, min(y + band, raw.height), 0, raw.width) for y in range(0, raw.height, band))
    return intensity_window(raw.dtype, intensity, gather_stats(bands, stride))


def open_image_source(
    image: str | Path | np.ndarray, intensity: str = "auto", max_pixels: int | None = None
) -> ImageSource:
    """An ImageSource for a file or an array ((H, W) or (H, W, C), any dtype; memmaps stay lazy)."""
    if isinstance(image, np.ndarray):
        raw: RawImage = ArrayImage(image)
        name = "image"
    else:
        raw = open_raw_image(image, max_pixels)
        name = str(image)
    try:
        return ImageSource(raw, window_for(raw, intensity), name)
    except Exception:
        close_raw_image(raw)
        raise
