"""The documented request limits of `maskrcnn serve` (docs/serve.md); options change them."""

from __future__ import annotations

from dataclasses import dataclass

MAX_UPLOAD_BYTES = 32 * 1024 * 1024  # request body, multipart framing included: 413 above
MAX_IMAGE_PIXELS = 40_000_000  # width * height, read from the header before decoding: 413 above


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_IMAGE_PIXELS
